"""What a customer's state remembers of programmes: recent contacts (for the contact
cap and cooldowns, both arms alike) and open attribution windows (revenue so far).

Immutable, like the other parts of a state that copies share.

>>> memory = ProgrammeMemory().contacted(100.0, "win_back")
>>> memory = memory.opened(Attribution("t1", "win_back", "treatment", 100.0, 500.0, 3.0, 80.0,
...                                    5.0, True, 0.0))
>>> memory.exposed_to("win_back"), memory.exposed_to("save_offer")
(True, False)
>>> memory = memory.attribute(200.0, 25.0).attribute(50.0, 99.0)  # the second is before it
>>> memory.open[0].revenue
25.0
>>> ProgrammeMemory.from_list(memory.to_list()) == memory
True
"""

from __future__ import annotations

from typing import NamedTuple

from models.timeline import SECONDS_PER_DAY


class Attribution(NamedTuple):
    """One trigger's attribution window and the revenue seen in it so far."""

    trigger_id: str
    programme_id: str
    arm: str
    start: float  # event time of the trigger; revenue strictly after it counts
    end: float  # revenue up to and including this instant counts
    covariate: float  # pre-period value, for variance reduction
    stake: float  # value at stake when triggered
    cost: float  # spent on this contact (0 for control)
    first: bool  # the customer's first exposure to this programme (measured)
    revenue: float  # purchases minus refunds in the window so far


class ProgrammeMemory:
    __slots__ = ("contacts", "exposed", "open")

    def __init__(
        self,
        contacts: tuple[tuple[float, str], ...] = (),
        open: tuple[Attribution, ...] = (),
        exposed: frozenset[str] = frozenset(),
    ) -> None:
        self.contacts = contacts  # (event time, programme id), oldest first
        self.open = open
        self.exposed = exposed  # programmes ever triggered, either arm

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgrammeMemory):
            return NotImplemented
        return (self.contacts, self.open, self.exposed) == (
            other.contacts,
            other.open,
            other.exposed,
        )

    def __repr__(self) -> str:
        return (
            f"ProgrammeMemory(contacts={self.contacts!r}, open={self.open!r}, "
            f"exposed={sorted(self.exposed)!r})"
        )

    def exposed_to(self, programme_id: str) -> bool:
        return programme_id in self.exposed

    def contacts_since(self, since: float) -> int:
        return sum(1 for at, _ in self.contacts if at > since)

    def last_contact(self, programme_id: str) -> float | None:
        for at, contacted in reversed(self.contacts):
            if contacted == programme_id:
                return at
        return None

    def contacted(self, at: float, programme_id: str, keep_days: int = 3650) -> ProgrammeMemory:
        """Remember a contact; contacts older than `keep_days` are forgotten."""
        since = at - keep_days * SECONDS_PER_DAY
        kept = tuple(c for c in self.contacts if c[0] > since)
        return ProgrammeMemory((*kept, (at, programme_id)), self.open, self.exposed)

    def opened(self, attribution: Attribution) -> ProgrammeMemory:
        exposed = self.exposed | {attribution.programme_id}
        return ProgrammeMemory(self.contacts, (*self.open, attribution), exposed)

    def attribute(self, at: float, amount: float) -> ProgrammeMemory:
        """Add revenue (negative for a refund) at `at` to every window that holds it."""
        if not any(a.start < at <= a.end for a in self.open):
            return self
        updated = tuple(
            a._replace(revenue=a.revenue + amount) if a.start < at <= a.end else a
            for a in self.open
        )
        return ProgrammeMemory(self.contacts, updated, self.exposed)

    def closing(self, watermark: float) -> tuple[ProgrammeMemory, tuple[Attribution, ...]]:
        """Split off the windows that ended before the watermark."""
        closed = tuple(a for a in self.open if a.end < watermark)
        if not closed:
            return self, ()
        still_open = tuple(a for a in self.open if a.end >= watermark)
        return ProgrammeMemory(self.contacts, still_open, self.exposed), closed

    def to_list(self) -> list:
        return [
            [list(c) for c in self.contacts],
            [list(a) for a in self.open],
            sorted(self.exposed),
        ]

    @classmethod
    def from_list(cls, fields: list) -> ProgrammeMemory:
        contacts, attributions, exposed = fields
        return cls(
            tuple((float(at), str(pid)) for at, pid in contacts),
            tuple(Attribution(*a) for a in attributions),
            frozenset(exposed),
        )


NO_PROGRAMMES = ProgrammeMemory()

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

    def attribute(self, at: float, amount: float, grace: float = 0.0) -> ProgrammeMemory:
        """Add revenue (negative for a refund) at `at` to every window that holds it. A
        refund also counts against a window that ended at most `grace` seconds before
        it (what the offer sold and was returned is not revenue), unless a newer window
        of the same programme holds it.

        >>> memory = ProgrammeMemory().opened(Attribution("t", "p", "treatment", 0.0, 10.0,
        ...     0.0, 1.0, 0.0, True, 0.0)).attribute(5.0, 30.0)
        >>> [memory.attribute(at, -8.0, grace=5.0).open[0].revenue for at in (14.0, 16.0)]
        [22.0, 30.0]
        """
        holding = [a for a in self.open if self._holds(a, at, amount, grace)]
        if not holding:
            return self
        updated = tuple(
            a._replace(revenue=a.revenue + amount) if a in holding else a for a in self.open
        )
        return ProgrammeMemory(self.contacts, updated, self.exposed)

    def _holds(self, window: Attribution, at: float, amount: float, grace: float) -> bool:
        if window.start < at <= window.end:
            return True
        if amount >= 0 or not window.end < at <= window.end + grace:
            return False
        return not any(
            b.programme_id == window.programme_id and b.start < at <= b.end for b in self.open
        )

    def closing(
        self, watermark: float, grace: float = 0.0
    ) -> tuple[ProgrammeMemory, tuple[Attribution, ...]]:
        """Split off the windows whose end, plus the refunds' `grace`, the watermark
        has passed."""
        closed = tuple(a for a in self.open if a.end + grace < watermark)
        if not closed:
            return self, ()
        still_open = tuple(a for a in self.open if a.end + grace >= watermark)
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

"""What a customer's state remembers of programmes: recent contacts (for the contact
cap and cooldowns, both arms alike), open attribution windows (revenue so far) and
the sales they counted (so a refund naming its purchase in `refund_of` counts against
the windows that counted that purchase, and only those).

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

SALES_KEPT = 32  # sales remembered per customer while windows are open (newest kept)


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


class Sale(NamedTuple):
    """A purchase an open window counted, for the refunds that name it."""

    fingerprint: bytes  # of the purchase's event id
    at: float  # its event time: the windows holding it are the ones it counted in
    unrefunded: float  # what refunds naming it may still take back


class ProgrammeMemory:
    __slots__ = ("contacts", "exposed", "open", "sales", "sales_lost_until")

    def __init__(
        self,
        contacts: tuple[tuple[float, str], ...] = (),
        open: tuple[Attribution, ...] = (),
        exposed: frozenset[str] = frozenset(),
        sales: tuple[Sale, ...] = (),
        sales_lost_until: float | None = None,
    ) -> None:
        self.contacts = contacts  # (event time, programme id), oldest first
        self.open = open
        self.exposed = exposed  # programmes ever triggered, either arm
        self.sales = sales  # counted by open windows and not refunded in full, oldest first
        # A sale was forgotten (`SALES_KEPT`, or a state written before sales were
        # kept): until the windows that may have counted it, ending at most at this
        # time, have closed, a refund naming an unknown purchase may be of it.
        self.sales_lost_until = sales_lost_until

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgrammeMemory):
            return NotImplemented
        return self._fields() == other._fields()

    def _fields(self) -> tuple:
        return (self.contacts, self.open, self.exposed, self.sales, self.sales_lost_until)

    def _with(self, **changes: object) -> ProgrammeMemory:
        fields = {
            "contacts": self.contacts,
            "open": self.open,
            "exposed": self.exposed,
            "sales": self.sales,
            "sales_lost_until": self.sales_lost_until,
        }
        return ProgrammeMemory(**(fields | changes))

    def __repr__(self) -> str:
        return (
            f"ProgrammeMemory(contacts={self.contacts!r}, open={self.open!r}, "
            f"exposed={sorted(self.exposed)!r}, sales={self.sales!r}, "
            f"sales_lost_until={self.sales_lost_until!r})"
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
        return self._with(contacts=(*kept, (at, programme_id)))

    def opened(self, attribution: Attribution) -> ProgrammeMemory:
        exposed = self.exposed | {attribution.programme_id}
        return self._with(open=(*self.open, attribution), exposed=exposed)

    def attribute(
        self,
        at: float,
        amount: float,
        grace: float = 0.0,
        sale: bytes | None = None,
        refund_of: bytes | None = None,
    ) -> ProgrammeMemory:
        """Add revenue (negative for a refund) at `at` to every window that holds it. A
        purchase with its fingerprint (`sale`) is remembered for the refunds naming it.

        A refund naming its purchase (`refund_of`, a fingerprint) counts against the
        windows that counted that purchase and have not ended more than `grace` seconds
        before it, up to what the purchase brought, and against nothing if no open
        window counted it (a purchase from before the windows). Any other refund counts
        against every window that holds its time, and against one that ended at most
        `grace` seconds before it (what the offer sold and was returned is not revenue),
        unless a newer window of the same programme holds it.

        >>> memory = ProgrammeMemory().opened(Attribution("t", "p", "treatment", 0.0, 10.0,
        ...     0.0, 1.0, 0.0, True, 0.0)).attribute(5.0, 30.0, sale=b"s")
        >>> [memory.attribute(at, -8.0, grace=5.0).open[0].revenue for at in (14.0, 16.0)]
        [22.0, 30.0]
        >>> [memory.attribute(8.0, -50.0, refund_of=f).open[0].revenue for f in (b"s", b"x")]
        [0.0, 30.0]
        >>> memory.attribute(16.0, -8.0, grace=5.0, refund_of=b"s").open[0].revenue
        30.0
        """
        if refund_of is not None and amount < 0:
            matched = self._refund_sale(refund_of, at, amount, grace)
            if matched is not None:
                return matched
        holding = [a for a in self.open if self._holds(a, at, amount, grace)]
        if not holding:
            return self
        updated = tuple(
            a._replace(revenue=a.revenue + amount) if a in holding else a for a in self.open
        )
        if sale is None or amount <= 0:
            return self._with(open=updated)
        sales = (*self.sales, Sale(sale, at, amount))
        lost_until = self.sales_lost_until
        if len(sales) > SALES_KEPT:  # the oldest goes: the windows open now may hold it
            ends = [a.end for a in self.open]
            lost_until = max(ends if lost_until is None else [*ends, lost_until])
        return self._with(open=updated, sales=sales[-SALES_KEPT:], sales_lost_until=lost_until)

    def _refund_sale(
        self, refund_of: bytes, at: float, amount: float, grace: float
    ) -> ProgrammeMemory | None:
        """A refund of a remembered sale, taken from the windows that counted it and
        ended at most `grace` before it; self when no open window counted the purchase;
        None when that is not known."""
        sold = next((s for s in self.sales if s.fingerprint == refund_of), None)
        if sold is None:
            return None if self.sales_lost_until is not None else self
        taken = max(amount, -sold.unrefunded)  # a refund takes back at most the sale
        updated = tuple(
            a._replace(revenue=a.revenue + taken)
            if a.start < sold.at <= a.end and at <= a.end + grace
            else a
            for a in self.open
        )
        left = sold.unrefunded + taken
        # a sale refunded in full has nothing left to take back: it frees its place
        sales = tuple(
            sold._replace(unrefunded=left) if s is sold else s
            for s in self.sales
            if s is not sold or left > 0.0
        )
        return self._with(open=updated, sales=sales)

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
        sales = tuple(
            sold for sold in self.sales if any(a.start < sold.at <= a.end for a in still_open)
        )
        lost_until = self.sales_lost_until
        if lost_until is not None and all(a.end > lost_until for a in still_open):
            lost_until = None  # every window that may have counted a lost sale has closed
        return self._with(open=still_open, sales=sales, sales_lost_until=lost_until), closed

    def to_list(self) -> list:
        return [
            [list(c) for c in self.contacts],
            [list(a) for a in self.open],
            sorted(self.exposed),
            [list(sold) for sold in self.sales],
            self.sales_lost_until,
        ]

    @classmethod
    def from_list(cls, fields: list) -> ProgrammeMemory:
        contacts, attributions, exposed, *sales = fields
        open_windows = tuple(Attribution(*a) for a in attributions)
        return cls(
            tuple((float(at), str(pid)) for at, pid in contacts),
            open_windows,
            frozenset(exposed),
            tuple(Sale(*sold) for sold in sales[0]) if sales else (),
            # written before sales were kept: the open windows' sales are unknown
            sales[1] if sales else max((a.end for a in open_windows), default=None),
        )


NO_PROGRAMMES = ProgrammeMemory()

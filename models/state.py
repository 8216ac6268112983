"""Per-customer state: the value model's sufficient statistics and what scoring needs.

Purchases are merged per UTC calendar day (BTYD convention). Amounts are in the
base currency. The state serializes to a compact, versioned msgpack array.

>>> s = CustomerState.new(first_seen=0.0)
>>> s.add_purchase(day=10, amount=20.0); s.add_purchase(day=10, amount=5.0)
>>> s.add_purchase(day=17, amount=30.0)
>>> s.repeat_days, s.first_day, s.last_day, s.spend_first, s.spend_repeat
(1, 10, 17, 25.0, 30.0)
>>> CustomerState.from_bytes(s.to_bytes()) == s
True
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Iterable

import msgpack

from models.churn_features import widen_v6
from models.engagement import Engagement
from models.errors import ClvError
from models.ids import FINGERPRINT_BYTES
from models.needs import Affinity
from models.programmes.memory import ProgrammeMemory

# 2: 8-byte fingerprints; 3: engagement, snapshots; 4: needs, tiers; 5: programmes;
# 6: each remembered event id with its event time; 7: days since every interaction
# kind in the churn snapshots (older vectors are widened), and the version that served
# each snapshot (-1 for older ones); 8: the sales of open programme windows, for the
# refunds naming them (an older state's windows have theirs unknown); 9: the event time
# of each consent flag's setting (unknown in older states: any later setting applies)
_FORMAT_VERSION = 9
_READABLE_VERSIONS = (4, 5, 6, 7, 8, 9)
_CONSENT_FLAGS = ("marketing_email", "marketing_sms", "marketing_phone", "profiling")


# (taken at, served probability, features, stayed, number of the version that served it)
Snapshot = tuple[float, float, array, bool, int]


def _vector(packed: bytes) -> array:
    vector = array("d")
    vector.frombytes(packed)
    return vector


class StateFormatError(ClvError):
    """Serialized state that this version cannot read."""


class CustomerState:
    """Mutable record owned by one transition at a time (see `copy`)."""

    __slots__ = (
        "affinity",
        "consent",
        "consent_at",
        "country",
        "due_day",
        "engagement",
        "first_day",
        "first_seen",
        "last_day",
        "last_event_at",
        "population_bins",
        "programmes",
        "purchase_count",
        "recent_days",
        "recent_ids",
        "refund_count",
        "refund_total",
        "repeat_days",
        "rescore_step",
        "scored_at",
        "segment",
        "segment_since",
        "snapshots",
        "spend_first",
        "spend_repeat",
        "tier_since",
        "value_tier",
    )

    def __init__(self) -> None:
        self.first_seen = 0.0  # event time of the customer's first event of any kind
        self.last_event_at = 0.0
        self.first_day: int | None = None  # first purchase day (UTC epoch day)
        self.last_day = 0
        self.repeat_days = 0  # x: purchase days after the first
        self.recent_days: list[int] = []  # purchase days still open to late events
        self.spend_first = 0.0
        self.spend_repeat = 0.0
        self.refund_total = 0.0
        self.refund_count = 0
        self.purchase_count = 0
        # Recent event ids, oldest first: records of an 8-byte fingerprint and the
        # event's time (a little-endian double) in one immutable blob: compact, shared
        # by copies, searched in C.
        self.recent_ids = b""
        self.consent: dict[str, bool] = {}
        # Event time of each consent flag's setting (immutable: replaced, shared by
        # copies): an older setting arriving later does not undo a newer one.
        self.consent_at: dict[str, float] = {}
        self.country: str | None = None
        self.scored_at = 0.0
        self.segment: str | None = None  # lifecycle segment
        self.segment_since = 0.0
        self.value_tier: str | None = None
        self.tier_since = 0.0
        # The bins this customer is counted in, in the partition's population quantiles.
        self.population_bins: tuple[int, int, int, int] | None = None
        self.affinity = Affinity()  # immutable: shared by copies
        self.due_day: int | None = None
        self.rescore_step = 0
        self.engagement = Engagement()  # immutable: shared by copies
        self.programmes: ProgrammeMemory | None = None  # immutable: shared by copies
        # Churn-feature snapshots awaiting their label, oldest first (immutable tuple):
        # (event time taken, probability served then, feature vector, a purchase inside
        # the window was seen: labelled 0 when the window ends).
        self.snapshots: tuple[Snapshot, ...] = ()

    @classmethod
    def new(cls, first_seen: float) -> CustomerState:
        state = cls()
        state.first_seen = state.last_event_at = state.scored_at = first_seen
        return state

    def copy(self) -> CustomerState:
        """An independent copy (explicit assignments: this is on the hot path)."""
        twin = CustomerState.__new__(CustomerState)
        twin.affinity = self.affinity
        twin.consent = dict(self.consent)
        twin.consent_at = self.consent_at
        twin.country = self.country
        twin.due_day = self.due_day
        twin.engagement = self.engagement
        twin.programmes = self.programmes
        twin.snapshots = self.snapshots
        twin.first_day = self.first_day
        twin.first_seen = self.first_seen
        twin.last_day = self.last_day
        twin.last_event_at = self.last_event_at
        twin.purchase_count = self.purchase_count
        twin.recent_days = list(self.recent_days)
        twin.recent_ids = self.recent_ids
        twin.refund_count = self.refund_count
        twin.refund_total = self.refund_total
        twin.repeat_days = self.repeat_days
        twin.rescore_step = self.rescore_step
        twin.scored_at = self.scored_at
        twin.segment = self.segment
        twin.segment_since = self.segment_since
        twin.spend_first = self.spend_first
        twin.spend_repeat = self.spend_repeat
        twin.value_tier = self.value_tier
        twin.tier_since = self.tier_since
        twin.population_bins = self.population_bins
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomerState):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _DATA_SLOTS)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in _DATA_SLOTS)
        return f"CustomerState({fields})"

    # -- value-model statistics ---------------------------------------------------
    @property
    def has_purchased(self) -> bool:
        return self.first_day is not None

    @property
    def gross_spend(self) -> float:
        return self.spend_first + self.spend_repeat

    @property
    def net_spend(self) -> float:
        return max(0.0, self.gross_spend - self.refund_total)

    @property
    def mean_repeat_spend(self) -> float:
        """Mean spend per repeat purchase day, scaled down by the refunded share."""
        return self.spend_summary()[0]

    def spend_summary(self) -> tuple[float, float]:
        """(mean repeat spend, net spend) in one pass (the scorer needs both)."""
        gross = self.spend_first + self.spend_repeat
        net = gross - self.refund_total
        if net <= 0.0:
            return 0.0, 0.0
        if self.repeat_days == 0:
            return 0.0, net
        return self.spend_repeat / self.repeat_days * (net / gross), net

    def add_purchase(self, day: int, amount: float) -> None:
        """Count a purchase; same-day purchases merge into one purchase day."""
        self.purchase_count += 1
        if self.first_day is None:
            self.first_day = self.last_day = day
            self.spend_first = amount
            self.recent_days = [day]
            return
        if day == self.first_day:
            self.spend_first += amount
            return
        if day < self.first_day:  # an earlier (late but allowed) purchase becomes the first
            self.spend_repeat += self.spend_first
            self.spend_first = amount
            self.repeat_days += 1
            self.first_day = day
            bisect.insort(self.recent_days, day)
            return
        self.spend_repeat += amount
        if day == self.last_day or day in self.recent_days:
            return
        self.repeat_days += 1
        self.last_day = max(self.last_day, day)
        bisect.insort(self.recent_days, day)

    def add_refund(self, amount: float) -> None:
        """Refunds reduce value; they are not purchases and never count as activity."""
        self.refund_total += amount
        self.refund_count += 1

    def forget_days_before(self, day: int) -> None:
        """Drop purchase days no late event can reach any more (keeps the state small)."""
        days = self.recent_days
        if days and days[0] < day:
            cut = bisect.bisect_left(days, day)
            # The last purchase day is always kept: it is t_x.
            self.recent_days = days[cut:] or [days[-1]]

    # -- de-duplication -----------------------------------------------------------
    def has_seen(self, fingerprint: bytes) -> bool:
        ids = self.recent_ids
        at = ids.find(fingerprint)
        while at >= 0:
            if at % _ID_RECORD == 0:  # a match across two records does not count
                return True
            at = ids.find(fingerprint, at + 1)
        return False

    def remember(self, fingerprint: bytes, at: float, watermark: float, limit: int) -> bool:
        """Remember an applied event's id until the watermark passes its time `at`.
        Ids already behind the watermark are dropped first (a repeat of them would be
        late). Returns True when the `limit` forced out an id still in reach.

        >>> s = CustomerState()
        >>> s.remember(b"a" * 8, at=10.0, watermark=0.0, limit=2)
        False
        >>> s.remember(b"b" * 8, at=20.0, watermark=0.0, limit=2), s.has_seen(b"a" * 8)
        (False, True)
        >>> s.remember(b"c" * 8, at=30.0, watermark=15.0, limit=2), s.has_seen(b"a" * 8)
        (False, False)
        >>> s.remember(b"d" * 8, at=40.0, watermark=15.0, limit=2), s.has_seen(b"b" * 8)
        (True, False)
        """
        ids = self.recent_ids
        start, size = 0, len(ids)
        while start < size and _TIME.unpack_from(ids, start + FINGERPRINT_BYTES)[0] < watermark:
            start += _ID_RECORD
        ids = ids[start:] + fingerprint + _TIME.pack(at)
        if len(ids) > limit * _ID_RECORD:  # (times arrive out of order within the lateness)
            ids = _in_reach(ids, watermark)
        overflow = len(ids) > limit * _ID_RECORD
        if overflow:
            ids = ids[len(ids) - limit * _ID_RECORD :]
        self.recent_ids = ids
        return overflow

    def update_consent(self, flags: Iterable[tuple[str, bool | None]], at: float) -> None:
        """Set the flags given (None: unchanged) as of event time `at`, unless a flag
        was set later (at the same time a withdrawal wins), whatever order they came
        in. An objection to profiling also drops the churn snapshots not learned yet
        and the category affinity, even one a later grant overrides: no model learns
        from them, and what was gathered around an objection is not served later.

        >>> s = CustomerState.new(0.0)
        >>> s.update_consent([("marketing_email", True)], at=5.0)
        >>> s.update_consent([("marketing_email", False), ("profiling", None)], at=3.0)
        >>> s.consent, s.consent_at
        ({'marketing_email': True}, {'marketing_email': 5.0})
        """
        changed: dict[str, float] = {}
        for name, granted in flags:
            if granted is None:
                continue
            if name == "profiling" and not granted:
                self.snapshots = ()
                self.affinity = Affinity()
            set_at = changed.get(name, self.consent_at.get(name))
            if set_at is None or at > set_at or (at == set_at and not granted):
                self.consent[name] = granted
                changed[name] = at
        if changed:  # a new dict: copies share the old one
            self.consent_at = {**self.consent_at, **changed}

    # -- serialization ------------------------------------------------------------
    def to_bytes(self) -> bytes:
        times = self.consent_at
        consent = [
            None if name not in self.consent else [self.consent[name], times.get(name)]
            for name in _CONSENT_FLAGS
        ]
        return msgpack.packb(
            [
                _FORMAT_VERSION,
                self.first_seen,
                self.last_event_at,
                self.first_day,
                self.last_day,
                self.repeat_days,
                self.recent_days,
                self.spend_first,
                self.spend_repeat,
                self.refund_total,
                self.refund_count,
                self.purchase_count,
                self.recent_ids,
                consent,
                self.country,
                self.scored_at,
                self.segment,
                self.segment_since,
                self.due_day,
                self.rescore_step,
                self.engagement.to_list(),
                [
                    [at, p, v.tobytes(), stayed, number]
                    for at, p, v, stayed, number in self.snapshots
                ],
                self.value_tier,
                self.tier_since,
                self.population_bins,
                self.affinity.to_list() if self.affinity.entries else None,
                self.programmes.to_list() if self.programmes is not None else None,
            ],
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        fields = msgpack.unpackb(data, raw=False)
        if not fields or fields[0] not in _READABLE_VERSIONS:
            raise StateFormatError(f"unknown state format {fields[:1]!r}")
        programmes = fields.pop() if fields[0] >= 5 else None
        state = cls.__new__(cls)
        (
            _,
            state.first_seen,
            state.last_event_at,
            state.first_day,
            state.last_day,
            state.repeat_days,
            state.recent_days,
            state.spend_first,
            state.spend_repeat,
            state.refund_total,
            state.refund_count,
            state.purchase_count,
            packed_ids,
            consent,
            state.country,
            state.scored_at,
            state.segment,
            state.segment_since,
            state.due_day,
            state.rescore_step,
            engagement,
            snapshots,
            state.value_tier,
            state.tier_since,
            bins,
            affinity,
        ) = fields
        state.population_bins = tuple(bins) if bins is not None else None
        state.programmes = ProgrammeMemory.from_list(programmes) if programmes else None
        state.affinity = Affinity.from_list(affinity) if affinity else Affinity()
        state.engagement = Engagement.from_list(engagement)
        state.snapshots = tuple(
            (s[0], s[1], _vector(s[2]), len(s) > 3 and bool(s[3]), s[4] if len(s) > 4 else -1)
            for s in snapshots
        )
        if fields[0] < 7 and state.snapshots:
            # the features format 6 lacked are "never" in every snapshot: what the state
            # knows now depends on interactions after the snapshot (a later one hides
            # the one before), and a label must not learn from what came after
            state.snapshots = tuple(
                (at, p, array("d", widen_v6(vector)), *rest)
                for at, p, vector, *rest in state.snapshots
            )
        state.recent_ids = (
            bytes(packed_ids) if fields[0] >= 6 else _with_times(packed_ids, state.last_event_at)
        )
        if fields[0] < 9:  # flags without their times: any later setting applies
            consent = [None if flag is None else [flag, None] for flag in consent]
        flags = [(name, flag) for name, flag in zip(_CONSENT_FLAGS, consent, strict=True) if flag]
        state.consent = {name: granted for name, (granted, _) in flags}
        state.consent_at = {name: at for name, (_, at) in flags if at is not None}
        return state


_TIME = struct.Struct("<d")
_ID_RECORD = FINGERPRINT_BYTES + _TIME.size


def _in_reach(ids: bytes, watermark: float) -> bytes:
    """The id records whose time the watermark has not passed, wherever they stand."""
    return b"".join(
        ids[i : i + _ID_RECORD]
        for i in range(0, len(ids), _ID_RECORD)
        if _TIME.unpack_from(ids, i + FINGERPRINT_BYTES)[0] >= watermark
    )


def _with_times(fingerprints: bytes, at: float) -> bytes:
    """Fingerprints of an older format (no times) as records dated `at` (the customer's
    last event): kept until the watermark passes it."""
    stamp = _TIME.pack(at)
    return b"".join(
        fingerprints[i : i + FINGERPRINT_BYTES] + stamp
        for i in range(0, len(fingerprints), FINGERPRINT_BYTES)
    )


_DATA_SLOTS = CustomerState.__slots__

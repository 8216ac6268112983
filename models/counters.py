"""What a scoring engine counts: inputs read, applied, repeated, dead-lettered (by
reason), silent customers re-scored, erasures, refits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.outputs import DeadLetterReason


@dataclass
class Counters:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    rescored: int = 0
    erased: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    after_until: int = 0
    refits: int = 0
    failed_refits: int = 0
    skipped_refits: int = 0  # too little data yet
    refits_missing_statistics: int = 0  # a leader's fits without some partitions' statistics
    dedupe_overflows: int = 0  # ids dropped while a repeat could still be applied
    dropped_after_erasure: int = 0  # events of an erased customer dated before it
    erasures_predating_customer: int = 0  # all that is kept came after: kept

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "late": self.dead_lettered.get(DeadLetterReason.LATE.value, 0),
            "dead_lettered": sum(self.dead_lettered.values()),
            "dead_lettered_by_reason": dict(sorted(self.dead_lettered.items())),
            "rescored": self.rescored,
            "erased": self.erased,
            "ignored_after_as_of": self.after_until,
            "refits": self.refits,
            "failed_refits": self.failed_refits,
            "skipped_refits": self.skipped_refits,
            "refits_missing_statistics": self.refits_missing_statistics,
            "dedupe_overflows": self.dedupe_overflows,
            "dropped_after_erasure": self.dropped_after_erasure,
            "erasures_predating_customer": self.erasures_predating_customer,
        }

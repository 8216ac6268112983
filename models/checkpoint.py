"""Checkpoints of a scoring engine's partition-wide state (not the customers' states).

A checkpoint holds what is not derived from the customers' states: the event clock,
the scorer (value parameters, online churn and needs models, the frozen population
snapshot), the refit schedule, the quality-report cycle, the counters and the
recent erasures. Timers and
the live population counts are rebuilt from the states on restore. Restoring a
checkpoint into an engine holding the states of the same moment continues exactly as
if it had never stopped (a pending refit is fitted again, in-process, when due).
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass, replace

from models.clock import EventClock
from models.counters import Counters
from models.engine import ScoringEngine
from models.errors import ClvError
from models.refit_schedule import PendingFit
from models.scorer import Scorer
from models.shared_fits import FollowerSchedule

_FORMAT = 1


class CheckpointError(ClvError):
    """A checkpoint that cannot be read (corrupt, or from another format)."""


@dataclass(frozen=True)
class EngineCheckpoint:
    scorer: Scorer
    clock: EventClock
    counters: Counters
    refit_next_day: int | None
    refit_pending: PendingFit | None
    report_day: int | None
    refreshed_day: int | None
    erasures: tuple[tuple[str, float], ...] = ()  # customers erased, while still in reach
    # A follower partition (`models.shared_fits`): the leader's refits installed so far.
    refit_installed_through: int | None = None
    # ... and the last refit slot its published statistics cover (`models.shared_stats`).
    stats_through: int | None = None
    # A bounded catch-up left customers due: they are re-scored first (`on_clock`).
    rescoring: bool = False


def checkpoint_bytes(engine: ScoringEngine) -> bytes:
    """The engine's partition-wide state, pickled and compressed."""
    refits = engine._refits
    pending = refits.pending
    if pending is not None and pending.future is not None:
        pending = replace(pending, future=None)  # a future does not pickle: refit when due
    checkpoint = EngineCheckpoint(
        scorer=engine.scorer,
        clock=engine.clock,
        counters=engine.counters,
        refit_next_day=refits.next_day,
        refit_pending=pending,
        report_day=engine._learning.next_report_day,
        refreshed_day=engine._refreshed_day,
        erasures=tuple(sorted(engine.erasures.items())),
        refit_installed_through=getattr(refits, "installed_through", None),
        stats_through=getattr(refits, "stats_through", None),
        rescoring=engine._rescoring,
    )
    return zlib.compress(pickle.dumps((_FORMAT, checkpoint), pickle.HIGHEST_PROTOCOL), 1)


def restore_checkpoint(engine: ScoringEngine, blob: bytes, derive: bool = True) -> None:
    """Install a checkpoint into an engine that already holds the matching states.
    `derive` off: the caller derives the timers from the states next
    (`engine.rebuild_in_steps`)."""
    try:
        version, checkpoint = pickle.loads(zlib.decompress(blob))
    except Exception as error:
        raise CheckpointError(f"unreadable checkpoint: {error}") from error
    if version != _FORMAT or not isinstance(checkpoint, EngineCheckpoint):
        raise CheckpointError(f"unknown checkpoint format {version!r}")
    engine.scorer = checkpoint.scorer
    # the current settings (the checkpoint's may be older), and the process's value
    # model for these parameters (its memo shared with other partitions)
    engine.scorer.adopt(engine.config)
    book = engine.scorer.programmes
    if book is not None:
        book.scope = engine.scope
    engine.clock = checkpoint.clock
    engine.counters = checkpoint.counters
    refits = engine._refits
    if isinstance(refits, FollowerSchedule):
        refits.installed_through = getattr(checkpoint, "refit_installed_through", None)
        refits.stats_through = getattr(checkpoint, "stats_through", None)
        engine._plan_snapshot()
    else:
        refits.next_day = checkpoint.refit_next_day
        refits.pending = checkpoint.refit_pending
        refits.resume()  # the pending fit in the executor again (a future is not kept)
    engine._learning.model = churn = engine.scorer.churn
    scorer = engine.scorer
    if churn is not None and scorer.version_number not in churn.by_version.names:
        # a checkpoint from before quality per version: name the version serving now
        churn.by_version.name(scorer.version_number, scorer.model_version)
    engine._learning.next_report_day = checkpoint.report_day
    engine._refreshed_day = checkpoint.refreshed_day
    engine.erasures = dict(checkpoint.erasures)
    engine._rescoring = getattr(checkpoint, "rescoring", False)
    if derive:
        engine.rebuild_timers()

"""Helper processes that end with the process that started them.

A `ProcessPoolExecutor` worker whose parent is killed (SIGKILL, a crash) waits for
work forever: it holds both ends of its call queue, so it never sees end of file,
and under the forkserver start method it also keeps the forkserver alive. A worker
started with `exit_with_parent(os.getpid())` as its initializer checks every second
whether that process still exists and exits when it does not. It also removes the
parent's multiprocessing directory (`pymp-*`, where the forkserver's socket lives),
which a killed parent cannot remove itself.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

POLL_SECONDS = 1.0
_HAS_PROC = os.path.isdir("/proc/self")


def exit_with_parent(parent_pid: int, leftover_dir: str | None = None) -> None:
    """Start a daemon thread that ends this process once `parent_pid` has gone, first
    removing `leftover_dir` (the parent's `pymp-*` directory) if it is still there."""
    threading.Thread(target=_watch, args=(parent_pid, leftover_dir), daemon=True).start()


def _watch(parent_pid: int, leftover_dir: str | None) -> None:
    while process_exists(parent_pid):
        time.sleep(POLL_SECONDS)
    # A parent that exits normally removes its directory itself; a killed one cannot.
    if leftover_dir is not None and os.path.basename(leftover_dir).startswith("pymp-"):
        shutil.rmtree(leftover_dir, ignore_errors=True)
    os._exit(0)  # no other clean-up to do: the work it held belonged to the dead parent


def process_exists(pid: int) -> bool:
    """Whether a process with this id is alive. A zombie (dead, not yet reaped by its
    parent) counts as gone where /proc tells: its parent may be waiting for our
    output to end before it reaps.

    >>> process_exists(os.getpid())
    True
    """
    if _HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fit_executor(start_method: str = "forkserver") -> Executor:
    """One worker process for population refits, so they run beside the replay. It is
    started (and imports the fitter) now, while the replay's first weeks are read.
    A process forked from one that started a forkserver cannot use that forkserver
    (it is not the forkserver's parent): it asks for `spawn`, and its helper is not
    told to remove a `pymp-*` directory (a forked process inherits its parent's, which
    is not its own to remove). Should that process die (e.g. OOM-killed), the next fit
    starts a new one: the refits stay off the event loop."""
    return RenewedPool(lambda: _fit_pool(start_method))


class RenewedPool(Executor):
    """A process pool that a submit finds broken (its worker died) is replaced by a
    new one; otherwise `ProcessPoolExecutor` as it is."""

    def __init__(self, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self._pool = make()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._make()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _fit_pool(start_method: str) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(start_method)
    leftover = None
    if start_method == "forkserver":
        context.set_forkserver_preload(["models.refit", "streams.orphan_guard"])
        leftover = multiprocessing.util.get_temp_dir()  # the forkserver's socket is there
    executor = ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=exit_with_parent,  # a killed scorer or worker leaves no orphans
        initargs=(os.getpid(), leftover),
    )
    executor.submit(abs, 0)
    return executor

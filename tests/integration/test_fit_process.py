"""The refit process dies with the scorer that started it, even a SIGKILLed one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

KILLED_SCORER = textwrap.dedent(
    """
    import os, signal
    from streams.orphan_guard import fit_executor

    executor = fit_executor()
    print(executor.submit(os.getpid).result(), executor.submit(os.getppid).result(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever adopts it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_scorer_leaves_no_fit_worker_or_forkserver_behind(tmp_path):
    scorer = subprocess.run(
        [sys.executable, "-c", KILLED_SCORER],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        # the killed scorer's multiprocessing directory is made in tmp_path
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert scorer.returncode == -9, scorer.stderr
    worker, forkserver = map(int, scorer.stdout.split())
    assert worker != forkserver != os.getpid()
    deadline = time.monotonic() + 15
    while (running(worker) or running(forkserver)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(worker), "the fit worker outlived its killed scorer"
    assert not running(forkserver), "the forkserver outlived its killed scorer"
    assert not list(tmp_path.glob("pymp-*")), "the killed scorer's pymp directory stayed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_refits_go_on_in_a_new_fit_process_after_the_fit_process_died():
    """A fit process killed (e.g. by the OOM killer) breaks its pool: the refit it ran
    is fitted again in-process (`RefitSchedule`), but the next ones must run in a fit
    process again, not on the service's event loop for ever after."""
    import signal

    from streams.orphan_guard import fit_executor

    executor = fit_executor()
    try:
        worker = executor.submit(os.getpid).result(timeout=60)
        assert worker != os.getpid()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the pool notices its worker's death
        new_worker = executor.submit(os.getpid).result(timeout=60)
        assert new_worker not in (worker, os.getpid())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)

"""Temporary directories owned by a process, swept once their owner has died.

A worker killed with SIGKILL cannot delete its temporary directories; the next
process that asks for one with the same prefix deletes those whose owner (the
process id written inside) no longer runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from streams.orphan_guard import process_exists

OWNER_FILE = "owner.pid"


def owned_dir(base: Path | None, prefix: str) -> Path:
    """A new directory `{prefix}*` under `base` (None: the system's temporary
    directory), marked with this process's id, after deleting the `{prefix}*`
    directories of processes that are no longer running.

    >>> base = Path(tempfile.mkdtemp())
    >>> for name, pid in (("app-old", 999999999), ("app-alive", os.getpid())):
    ...     (base / name).mkdir(); _ = (base / name / OWNER_FILE).write_text(str(pid))
    >>> mine = owned_dir(base, "app-")
    >>> sorted(p.name for p in base.iterdir()) == sorted([mine.name, "app-alive"])
    True
    >>> shutil.rmtree(base)
    """
    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob(f"{prefix}*"):
        if old.is_dir() and not _owner_alive(old):
            shutil.rmtree(old, ignore_errors=True)
    mine = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (mine / OWNER_FILE).write_text(str(os.getpid()))
    return mine


def _owner_alive(directory: Path) -> bool:
    try:
        pid = int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return True  # not ours to judge (being created, or not made by `owned_dir`)
    return process_exists(pid)

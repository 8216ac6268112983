#!/usr/bin/env python3
"""Set up clvstream on a fresh machine (Python 3.11+ and pip only) and run it.

    python3 dev.py up       the main job: embedded broker + Redis, a worker, a demo replay
    python3 dev.py demo     score the bundled CDNOW data offline and print a summary
    python3 dev.py test     every test (lint, unit, integration), in 2-4 processes
    python3 dev.py shell    print how to activate the environment

The virtual environment `.venv` is created on first use and refreshed when
pyproject.toml changes; what it installs is declared in pyproject.toml and comes
from PyPI (network access needed on the first run).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".clvstream-installed"


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run under an older python3
        sys.exit(f"clvstream needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing clvstream and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(_fingerprint())


def run(command: list[str]) -> int:
    """Run `command` and wait for it. Ctrl-C reaches the child from the terminal and
    it stops what it started; this process waits for that (`subprocess.run` would
    SIGKILL the child a quarter of a second after the interrupt)."""
    child = subprocess.Popen(command, cwd=ROOT)  # (before SIG_IGN: the child inherits it)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


def _parallel(pytest_args: list[str]) -> list[str]:
    """Two to four test processes (pytest-xdist), each with its own embedded broker and
    Redis: the integration tests mostly wait on workers they started, so the suite
    takes about half as long on two cores. Left alone when the caller chooses
    (`-n 0` runs in one process).

    >>> _parallel([]) == ["-n", str(min(max(os.cpu_count() or 1, 2), 4)), "--dist", "worksteal"]
    True
    >>> _parallel(["-n", "0", "tests/unit"])
    []
    """
    if any(arg.startswith(("-n", "--numprocesses")) for arg in pytest_args):
        return []
    workers = min(max(os.cpu_count() or 1, 2), 4)
    return ["-n", str(workers), "--dist", "worksteal"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "demo", "test", "shell"):
        print(__doc__)
        return 2
    ensure_environment()
    action, rest = argv[0], argv[1:]
    if action in ("up", "demo"):
        return run([str(BIN / "clvstream"), action, *rest])
    if action == "test":
        lint = run([str(BIN / "ruff"), "check", "."])
        fmt = run([str(BIN / "ruff"), "format", "--check", "--quiet", "."])
        tests = run([str(BIN / "python"), "-m", "pytest", *_parallel(rest), *rest])
        return lint or fmt or tests
    print(f"source {BIN / 'activate'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

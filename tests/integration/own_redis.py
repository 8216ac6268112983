"""A Redis-protocol server of a test's own (Valkey, on a free port), to kill and start
again: its files are in the test's folder, and nothing it held survives a kill."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from streams.devstack import free_port, redis_ready, valkey_binary, valkey_command


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        workdir.mkdir(exist_ok=True)
        self._command = valkey_command(valkey_binary(), port, workdir)
        self._server: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait (up to 10 s) until it answers."""
        self._server = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not redis_ready(self.url) and time.monotonic() < deadline:
            time.sleep(0.05)

    def pause(self, paused: bool = True) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) it: connections open, nothing answered."""
        if self._server is not None:
            self._server.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def kill(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            self._server = None

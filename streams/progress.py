"""A minimal progress line on a terminal (stderr); silent when not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()
        self._last_drawn = 0.0

    def update(self, done: int, items: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_drawn < 0.2:
            return
        self._last_drawn = now
        self._draw(done, items, now)

    def close(self, done: int, items: int) -> None:
        if self.enabled:
            self._draw(done, items, time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, done: int, items: int, now: float) -> None:
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * 30)
        rate = items / max(now - self._started, 1e-9)
        self.stream.write(f"\r{self.label} [{bar:<30}] {share:6.1%} {items:,} events {rate:,.0f}/s")
        self.stream.flush()

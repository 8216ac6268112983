"""Redis evicting keys: rows gone without a trace the markers could see.

A Redis with `maxmemory` set evicts keys when full, by its `maxmemory-policy`. The
`allkeys-*` policies take customer rows, sorted-set members and markers alike, in no
order the scores-offset markers (`agents.redis_loss`) can notice; `volatile-*` take
only keys with a time to live (flush tokens, erasure tombstones). `noeviction` refuses
writes instead, which the worker keeps and writes again once Redis has room: nothing is
lost. No read-back follows an eviction (a Redis that is full would evict again what
it is given), unless a marker was taken, which is a loss like any other. The worker
reports instead (`/health`, a counter, a warning).

>>> watch = EvictionWatch()
>>> watch.observe({"evicted_keys": 40, "maxmemory": 1 << 20, "maxmemory_policy": "allkeys-lru"})
0
>>> watch.risky_policy
'allkeys-lru'
>>> watch.observe({"evicted_keys": 52, "maxmemory": 1 << 20, "maxmemory_policy": "allkeys-lru"})
12
>>> watch.observe({"evicted_keys": 60, "run_id": "restarted", "maxmemory": 0})
0
>>> watch.risky_policy
''

>>> watch.evicted
12
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EVICTS_ANY_KEY = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


class EvictionWatch:
    """Keys Redis evicted while the worker watched, from `INFO` stats and memory."""

    def __init__(self) -> None:
        self._last: int | None = None  # Redis's own count at the last look
        self._server = ""  # its run_id then
        self.evicted = 0  # keys evicted while watched
        self.policy = ""
        self.maxmemory = 0

    def observe(self, info: Mapping[str, Any]) -> int:
        """One look (`run_id`, `evicted_keys`, `maxmemory`, `maxmemory_policy`); returns
        the keys evicted since the last one. The first look, and one at another server
        (restarted, or failed over to), only set where counting starts."""
        count, server = int(info.get("evicted_keys", 0)), str(info.get("run_id", ""))
        self.policy = str(info.get("maxmemory_policy", ""))
        self.maxmemory = int(info.get("maxmemory", 0))
        same = self._last is not None and server == self._server and count >= self._last
        new = count - self._last if same and self._last is not None else 0
        self._last, self._server = count, server
        self.evicted += new
        return new

    @property
    def risky_policy(self) -> str:
        """The policy, if it may evict customer rows (a memory limit and `allkeys-*`)."""
        return self.policy if self.maxmemory and self.policy in EVICTS_ANY_KEY else ""

"""Current scores served from Redis: one hash per customer, sorted sets per segment.

Key layout (prefix `clvstream:` by default):

- `{prefix}customer:{customer_id}`: hash with the offline scorer's CSV columns plus
  `scored_at` (ISO) and `_at` (epoch seconds of `scored_at`, for ordering);
- `{prefix}lifecycle:{lifecycle}` and `{prefix}tier:{value_tier}`: sorted sets of
  customer ids scored by CLV, so "the 100 highest-value customers now at risk" is
  `ZREVRANGE clvstream:lifecycle:at_risk 0 99 WITHSCORES`;
- `{prefix}erased:{customer_id}`: the event time of an erasure (kept `tombstone_days`),
  so a replayed older score cannot bring an erased customer back.

Each write is one Lua script per customer, atomic: a score older than the one stored
(or than an erasure) is ignored, so replays and retries never go back in time. A
batch keeps only the latest score per customer and goes out in one pipeline. When
Redis is unreachable the pending scores stay (one per customer) and go out at the
next `flush`; scoring never waits for Redis.
"""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.offline import SCORE_COLUMNS, cell_text

_UPSERT = """
local at = tonumber(ARGV[3])
local erased = redis.call('GET', ARGV[1] .. 'erased:' .. ARGV[2])
if erased and tonumber(erased) >= at then return 0 end
local old = redis.call('HMGET', KEYS[1], '_at', 'lifecycle', 'value_tier')
if old[1] and tonumber(old[1]) > at then return 0 end
if old[2] then redis.call('ZREM', ARGV[1] .. 'lifecycle:' .. old[2], ARGV[2]) end
if old[3] and old[3] ~= '' then redis.call('ZREM', ARGV[1] .. 'tier:' .. old[3], ARGV[2]) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_at', ARGV[3], unpack(ARGV, 7))
if ARGV[6] ~= '' then
  redis.call('ZADD', ARGV[1] .. 'lifecycle:' .. ARGV[4], ARGV[6], ARGV[2])
  if ARGV[5] ~= '' then redis.call('ZADD', ARGV[1] .. 'tier:' .. ARGV[5], ARGV[6], ARGV[2]) end
end
return 1
"""

_ERASE = """
local at = tonumber(ARGV[3])
local old = redis.call('HMGET', KEYS[1], '_at', 'lifecycle', 'value_tier')
if old[2] then redis.call('ZREM', ARGV[1] .. 'lifecycle:' .. old[2], ARGV[2]) end
if old[3] and old[3] ~= '' then redis.call('ZREM', ARGV[1] .. 'tier:' .. old[3], ARGV[2]) end
redis.call('DEL', KEYS[1])
redis.call('SET', ARGV[1] .. 'erased:' .. ARGV[2], ARGV[3], 'EX', ARGV[4])
return 1
"""

HASH_FIELDS = (*SCORE_COLUMNS, "scored_at")


class RedisScoreStore:
    """Batched, order-safe writes of score events (and erasures) to Redis."""

    def __init__(
        self, client: aioredis.Redis, prefix: str = "clvstream:", tombstone_days: int = 30
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.tombstone_seconds = tombstone_days * 86_400
        self._upsert = client.register_script(_UPSERT)
        self._erase = client.register_script(_ERASE)
        self._pending: dict[str, tuple[float, dict | None]] = {}
        self.written = 0
        self.ignored_older = 0
        self.failed_flushes = 0

    def customer_key(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}"

    def add(self, customer_id: str, score: dict | None, erased_at: float | None = None) -> None:
        """Queue a score event (or, with `score` None, an erasure at `erased_at`); only
        the latest per customer is kept until the next flush."""
        at = _epoch(score["scored_at"]) if score is not None else float(erased_at or 0.0)
        pending = self._pending.get(customer_id)
        if pending is None or at >= pending[0]:
            self._pending[customer_id] = (at, score)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> bool:
        """Write everything pending in one pipeline; False (and kept) if Redis is down."""
        if not self._pending:
            return True
        batch = self._pending
        self._pending = {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for customer_id, (at, score) in batch.items():
                    await self._queue(pipe, customer_id, at, score)
                results = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self.failed_flushes += 1
            for customer_id, (at, score) in batch.items():  # newer ones queued meanwhile win
                if customer_id not in self._pending or self._pending[customer_id][0] < at:
                    self._pending[customer_id] = (at, score)
            return False
        self.written += sum(1 for result in results if result == 1)
        self.ignored_older += sum(1 for result in results if result == 0)
        return True

    async def _queue(self, pipe, customer_id: str, at: float, score: dict | None) -> None:
        key, prefix = self.customer_key(customer_id), self.prefix
        if score is None:
            args = [prefix, customer_id, repr(at), self.tombstone_seconds]
            await self._erase(keys=[key], args=args, client=pipe)
            return
        clv = score.get("clv")
        fields: list[str] = []
        for name in HASH_FIELDS:
            fields += [name, cell_text(score.get(name))]
        args = [
            prefix,
            customer_id,
            repr(at),
            score.get("lifecycle") or "",
            score.get("value_tier") or "",
            repr(float(clv)) if clv is not None else "",
            *fields,
        ]
        await self._upsert(keys=[key], args=args, client=pipe)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()

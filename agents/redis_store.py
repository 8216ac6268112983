"""Current scores served from Redis: one hash per customer, sorted sets per segment.

Key layout (prefix `clvstream:` by default):

- `{prefix}customer:{customer_id}`: hash with the offline scorer's CSV columns plus
  `scored_at` (ISO) and `_at` (epoch seconds of `scored_at`, for ordering);
- `{prefix}lifecycle:{lifecycle}` and `{prefix}tier:{value_tier}`: sorted sets of
  customer ids scored by CLV, so "the 100 highest-value customers now at risk" is
  `ZREVRANGE clvstream:lifecycle:at_risk 0 99 WITHSCORES`; a customer whose CLV is not
  known (a prospect, or before the first value fit) is scored -inf: counted, last;
- `{prefix}segment-clv`: hash of the CLV summed over each of those sets (fields
  `lifecycle:{lifecycle}`, `tier:{value_tier}`), kept by the same scripts, so the
  customers and value per segment are `ZCARD` and `HGET`, not a read of every member;
  the first flush of a worker sums sets written before the totals existed (once per
  Redis, marked by the field `_complete`). Workers of a version without the totals
  must not write while a version with them runs (stop them before upgrading);
- `{prefix}erased:{customer_id}`: the event time of an erasure (kept `tombstone_days`),
  so a replayed older score cannot bring an erased customer back.

Writes are Lua scripts, atomic per customer: a score older than the one stored (or
than an erasure) is ignored, so replays and retries never go back in time. A batch
keeps only the latest score per customer; one script call carries up to 500
customers (the hash fields as one JSON argument each: packing fewer arguments is
most of the client's cost) and all calls go out in one pipeline. When
Redis is unreachable the pending scores stay (one per customer) and go out at the
next `flush`; scoring never waits for Redis.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import uuid
from datetime import datetime

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.timeline import iso_utc
from streams.offline import SCORE_COLUMNS, cell_text

log = logging.getLogger(__name__)

_WRITE_BATCH = """
-- A customer whose CLV is not known (a prospect, or before the first value fit) is
-- in its sets all the same, with the score -inf: counted, listed last, not summed.
local function leave(prefix, set, id)
  local clv = redis.call('ZSCORE', prefix .. set, id)
  if clv then
    redis.call('ZREM', prefix .. set, id)
    if redis.call('ZCARD', prefix .. set) == 0 then  -- exactly 0, no rounding residue
      redis.call('HSET', prefix .. 'segment-clv', set, 0)
    elseif clv ~= '-inf' then
      redis.call('HINCRBYFLOAT', prefix .. 'segment-clv', set, -tonumber(clv))
    end
  end
end
local function join(prefix, set, id, clv)
  if clv == '' then
    redis.call('ZADD', prefix .. set, '-inf', id)
  else
    redis.call('ZADD', prefix .. set, clv, id)
    redis.call('HINCRBYFLOAT', prefix .. 'segment-clv', set, clv)
  end
end
local prefix, ttl = ARGV[1], ARGV[2]
local written, ignored = 0, 0
for i = 1, #KEYS do
  local n = 2 + (i - 1) * 7
  local id, kind, at = ARGV[n + 1], ARGV[n + 2], tonumber(ARGV[n + 3])
  local lifecycle, tier, clv = ARGV[n + 4], ARGV[n + 5], ARGV[n + 6]
  local erased = redis.call('GET', prefix .. 'erased:' .. id)
  local old = redis.call('HMGET', KEYS[i], '_at', 'lifecycle', 'value_tier')
  if kind == 'E' and not (erased and tonumber(erased) >= at) then
    -- the latest erasure's time keeps every score up to it out (a replayed older
    -- erasure never lowers it)
    redis.call('SET', prefix .. 'erased:' .. id, ARGV[n + 3], 'EX', ttl)
  end
  if (erased and tonumber(erased) >= at and kind == 'S')
     or (old[1] and tonumber(old[1]) > at) then
    ignored = ignored + 1  -- older than what is kept (a customer back after an erasure)
  else
    if old[2] then leave(prefix, 'lifecycle:' .. old[2], id) end
    if old[3] and old[3] ~= '' then leave(prefix, 'tier:' .. old[3], id) end
    redis.call('DEL', KEYS[i])
    if kind == 'S' then
      redis.call('HSET', KEYS[i], '_at', ARGV[n + 3], unpack(cjson.decode(ARGV[n + 7])))
      if lifecycle ~= '' then join(prefix, 'lifecycle:' .. lifecycle, id, clv) end
      if tier ~= '' then join(prefix, 'tier:' .. tier, id, clv) end
    end
    written = written + 1
  end
end
-- the totals hash lost (a restart without persistence, FLUSHDB, eviction): the
-- client sums the sets again
return {written, ignored, redis.call('HEXISTS', prefix .. 'segment-clv', '_complete')}
"""

# Sums the sets into `segment-clv` once, for sets written before the totals were
# kept (the write script only adds and subtracts); `_complete` marks it done.
_START_TOTALS = """
local hash = ARGV[1] .. 'segment-clv'
if redis.call('HEXISTS', hash, '_complete') == 1 then return 0 end
redis.call('DEL', hash)
for i = 1, #KEYS do
  local members = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
  local sum = 0
  for j = 2, #members, 2 do
    if members[j] ~= '-inf' then sum = sum + tonumber(members[j]) end
  end
  redis.call('HSET', hash, string.sub(KEYS[i], #ARGV[1] + 1), string.format('%.17g', sum))
end
redis.call('HSET', hash, '_complete', '1')
return #KEYS
"""

_CUSTOMERS_PER_CALL = 500
_TOKEN_SECONDS = 30 * 86_400  # a worker's flush token outlives any pause between its flushes
HASH_FIELDS = (*SCORE_COLUMNS, "scored_at")
_WHOLE_NUMBERS = frozenset({"frequency", "recency_days", "tenure_days"})
_NUMBERS = frozenset(
    {"monetary_value", "total_spend", "refund_total", "p_alive", "expected_purchases",
     "predicted_value", "clv", "churn_probability", "value_churn_probability"}
)  # fmt: skip
_LISTS = frozenset({"churn_reasons", "top_needs"})


def typed_value(name: str, stored: bytes | str | None) -> object:
    """A hash value as JSON wants it (the hash keeps the CSV's text): numbers as
    numbers, lists as lists, an empty cell as null.

    >>> typed_value("frequency", b"3"), typed_value("clv", "12.500000"), typed_value("clv", "")
    (3, 12.5, None)
    >>> typed_value("top_needs", "books; toys"), typed_value("top_needs", "")
    (['books', 'toys'], [])
    >>> typed_value("lifecycle", b"lost")
    'lost'
    """
    text = stored.decode() if isinstance(stored, bytes) else stored
    if name in _LISTS:
        return text.split("; ") if text else []
    if not text:
        return None
    if name in _WHOLE_NUMBERS:
        return int(text)
    if name in _NUMBERS:
        return float(text)
    return text


class RedisScoreStore:
    """Batched, order-safe writes of score events (and erasures) to Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "clvstream:",
        tombstone_days: int = 30,
        flush_limit: int = 20_000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.flush_limit = flush_limit
        self.tombstone_seconds = tombstone_days * 86_400
        self._write_batch = client.register_script(_WRITE_BATCH)
        self._start_totals = client.register_script(_START_TOTALS)
        self._totals_started = False
        self._pending: dict[str, tuple[float, dict | None]] = {}
        self._in_flight = 0  # customers of a flush whose writes are not answered yet
        self.written = 0
        self.ignored_older = 0
        self.failed_flushes = 0
        self.last_error = ""  # of the last flush, if it failed
        # Scores (and erasures) given so far, and how many of the first of them Redis
        # has answered for: a checkpoint covers only scores that are in Redis.
        self.added = 0
        self.written_upto = 0
        # Each flush reads this worker's token, then writes a new one after its scores: a
        # Redis that lost acknowledged writes (restarted, failed over) shows an older token
        # or none (`lost_writes`, see `agents.redis_loss`). Redis keeps its writes in
        # order, so a token it kept means it kept every write before it.
        self.token_key = f"{prefix}flush-token:{uuid.uuid4().hex}"
        self.token = 0  # the last token Redis acknowledged (0: none yet)
        self._token_may_be: set[int] = set()  # after failed flushes: tokens perhaps written
        self.lost_writes = False  # set by a flush that found the token behind; reset by the reader

    def customer_key(self, customer_id: str) -> str:
        return customer_key(self.prefix, customer_id)

    def add(self, customer_id: str, score: dict | None, erased_at: float | None = None) -> None:
        """Queue a score event (or, with `score` None, an erasure at `erased_at`); only
        the latest per customer is kept until the next flush."""
        if score is not None:
            at = _epoch(score["scored_at"])
        else:  # to the microsecond, as a score's `scored_at`: the same time compares equal
            at = _epoch(iso_utc(float(erased_at or 0.0)))
        self.added += 1
        pending = self._pending.get(customer_id)
        if pending is None or at >= pending[0]:
            self._pending[customer_id] = (at, score)

    async def start_totals(self) -> None:
        """Make sure the per-segment totals cover every set (once per Redis: sets
        written before totals were kept are summed; a no-op afterwards)."""
        sets = await _segment_sets(self.client, self.prefix)
        await self._start_totals(keys=sets, args=[self.prefix])
        self._totals_started = True

    @property
    def pending(self) -> int:
        """Customers whose latest score is not in Redis yet: queued, or in a flush that
        Redis has not answered (so 0 means every score given so far is written)."""
        return len(self._pending) + self._in_flight

    async def flush(self) -> bool:
        """Write what is pending, up to `flush_limit` customers, oldest first (one
        script call per 500 customers, one pipeline); False, and kept for the next
        flush, if Redis is unreachable or refuses (a replica after a failover answers
        READONLY, a full disk MISCONF). A backlog of 100,000 customers took 4 s in one
        pipeline, near the client's timeout: a larger one would fail every time."""
        if not self._pending:
            if not self._in_flight:
                self.written_upto = self.added
            return True
        if len(self._pending) <= self.flush_limit:
            taken_upto: int | None = self.added  # every score given so far, or a newer one
            items = list(self._pending.items())
            self._pending = {}
        else:  # a backlog (after an outage) in parts, each well within the client's timeout
            taken_upto = None
            items = list(itertools.islice(self._pending.items(), self.flush_limit))
            for customer_id, _ in items:
                del self._pending[customer_id]
        self._in_flight = len(items)
        token = self.token + len(self._token_may_be) + 1
        try:
            if not self._totals_started:
                await self.start_totals()
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self.token_key)
                for start in range(0, len(items), _CUSTOMERS_PER_CALL):
                    chunk = items[start : start + _CUSTOMERS_PER_CALL]
                    keys = [self.customer_key(customer_id) for customer_id, _ in chunk]
                    args: list = [self.prefix, self.tombstone_seconds]
                    for customer_id, (at, score) in chunk:
                        args += _script_args(customer_id, at, score)
                    await self._write_batch(keys=keys, args=args, client=pipe)
                pipe.set(self.token_key, token, ex=_TOKEN_SECONDS)
                seen, *results, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            self._token_may_be.add(token)  # (its pipeline may have been written in part)
            self.failed_flushes += 1
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("Redis write failed, %d customers kept for the next: %s", len(items), error)
            self._queue_again(items)
            return False
        except BaseException:  # cancelled (a stop), or a fault: nothing taken is lost
            self._token_may_be.add(token)
            self._queue_again(items)
            raise
        finally:
            self._in_flight = 0
        if self.token and not self._token_seen(seen):
            self.lost_writes = True
        self.token, self._token_may_be = token, set()
        self.written += sum(written for written, _, _ in results)
        self.ignored_older += sum(ignored for _, ignored, _ in results)
        self.last_error = ""
        if taken_upto is not None:
            self.written_upto = max(self.written_upto, taken_upto)
        if not all(complete for _, _, complete in results):
            self._totals_started = False  # (if this fails, the next flush sums them)
            with contextlib.suppress(RedisError, OSError):
                await self.start_totals()
        return True

    def forget_token(self) -> None:
        """A loss already found otherwise (the markers): the next flush compares nothing
        (it would find the same loss again), it starts the tokens anew."""
        self.token, self._token_may_be = 0, set()

    def _token_seen(self, seen: bytes | None) -> bool:
        """Whether the token Redis showed is one this worker wrote last (or may have)."""
        return seen is not None and int(seen) in {self.token, *self._token_may_be}

    def _queue_again(self, items: list[tuple[str, tuple[float, dict | None]]]) -> None:
        for customer_id, (at, score) in items:  # newer ones queued meanwhile win
            if customer_id not in self._pending or self._pending[customer_id][0] < at:
                self._pending[customer_id] = (at, score)


async def segment_totals(
    client: aioredis.Redis, prefix: str, sets: list[str]
) -> dict[str, tuple[int, float | None]]:
    """Customers and summed CLV of each named sorted set (e.g. `lifecycle:at_risk`),
    in one round trip whatever the number of customers; the CLV is None until the
    totals are started (no worker has written yet)."""
    async with client.pipeline(transaction=False) as pipe:
        for name in sets:
            pipe.zcard(prefix + name)
        pipe.hmget(prefix + "segment-clv", [*sets, "_complete"])
        *counts, sums = await pipe.execute()
    *sums, complete = sums
    return {
        name: (int(count), (float(clv or 0.0) if count else 0.0) if complete else None)
        for name, count, clv in zip(sets, counts, sums, strict=True)
    }


async def top_of_segment(
    client: aioredis.Redis, prefix: str, segment_set: str, limit: int, fields: list[str]
) -> list[dict]:
    """The `limit` highest-CLV customers of one sorted set (e.g. `lifecycle:at_risk`),
    highest first, each with the asked `fields` of its hash (`typed_value`, None when
    missing): one `ZREVRANGE`, then one pipeline of `HMGET`s. A customer scored again
    between the two shows its newest fields."""
    members = await client.zrevrange(prefix + segment_set, 0, limit - 1, withscores=True)
    top = [
        {"customer_id": member.decode(), "clv": clv if clv != -math.inf else None}
        for member, clv in members
    ]
    if not fields or not top:
        return top
    async with client.pipeline(transaction=False) as pipe:
        for row in top:  # (`_at`: every hash has it, so a missing one means no hash)
            pipe.hmget(customer_key(prefix, row["customer_id"]), ["_at", *fields])
        values = await pipe.execute()
    rows = []
    for row, (written_at, *found) in zip(top, values, strict=True):
        if written_at is None:
            continue  # erased (or its hash gone) between the two calls
        row.update(
            (name, typed_value(name, value)) for name, value in zip(fields, found, strict=True)
        )
        rows.append(row)
    return rows


def customer_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}customer:{customer_id}"


async def _segment_sets(client: aioredis.Redis, prefix: str) -> list[str]:
    keys: set[str] = set()
    for kind in ("lifecycle", "tier"):
        async for key in client.scan_iter(match=f"{prefix}{kind}:*", count=1000):
            keys.add(key.decode() if isinstance(key, bytes) else key)
    return sorted(keys)


def _script_args(customer_id: str, at: float, score: dict | None) -> list[str]:
    """The 7 script arguments of one customer: id, kind, time, lifecycle, tier, CLV and
    the hash fields as a JSON list of strings."""
    if score is None:
        return [customer_id, "E", repr(at), "", "", "", ""]
    clv = score.get("clv")
    fields: list[str] = []
    for name in HASH_FIELDS:
        fields += (name, cell_text(score.get(name)))
    return [
        customer_id,
        "S",
        repr(at),
        score.get("lifecycle") or "",
        score.get("value_tier") or "",
        repr(float(clv)) if clv is not None and math.isfinite(clv) else "",
        orjson.dumps(fields).decode(),
    ]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()

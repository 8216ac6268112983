"""The worker's HTTP API (Faust web): customers, segments, health, metrics.

- `GET /customers/{id}`: the customer's current scores, as served from Redis;
- `GET /segments`: customers and total CLV per lifecycle segment and value tier;
- `GET /segments/{group}/{name}?limit=100&fields=churn_probability,top_needs`: the
  highest-CLV customers of one lifecycle segment (`group` lifecycle) or value tier
  (`group` value_tier), highest first, with the asked score fields;
- `GET /programmes`: per programme, triggers by arm and the measured incremental
  revenue of the windows closed on this worker's partitions (pooled);
- `GET /health` (readiness): 200 when the scorer runs, holds its partitions (the
  consumer group's assignment has come and none is being restored or replayed), and
  Redis takes writes and answers a ping within a second, else 503;
- `GET /live` (liveness): 200 while the worker's event loop answers;
- `GET /metrics`: Prometheus text (events in / out, dead letters by reason, lag,
  latency from an input's broker timestamp to its score in Redis).

The views that read Redis answer 503 with the reason while Redis is unreachable or
answers with an error.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.redis_store import (
    HASH_FIELDS,
    customer_key,
    segment_totals,
    top_of_segment,
    typed_value,
)
from models.programmes.book import pooled_summary
from models.segments import LIFECYCLE_SEGMENTS, UNRANKED

MAX_LIMIT = 1000
# Fields a segment's top list may ask for: the hash's; the two every row has anyway
# are accepted and not read again.
IN_EVERY_ROW = frozenset({"customer_id", "clv"})
TOP_FIELDS = frozenset(HASH_FIELDS) - IN_EVERY_ROW

if TYPE_CHECKING:
    import faust
    import redis.asyncio as aioredis

    from agents.scoring import ScoringService


REDIS_VIEW_SECONDS = 2.0  # a view's reads; the client's own timeout is 5 s (writes)


def served_from_redis(view: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A view that reads Redis: 503 and the reason while Redis is unreachable, does not
    answer within `REDIS_VIEW_SECONDS` (hung, paused: the client would wait 5 s), or
    answers with an error (e.g. MASTERDOWN from a replica cut off, BUSY while a
    script runs too long; before, a 500 with a plain-text body).

    >>> from redis.exceptions import ResponseError
    >>> class Web:
    ...     def json(self, body, status=200):
    ...         return status, body
    >>> @served_from_redis
    ... async def view(web, request):
    ...     raise ResponseError("MASTERDOWN Link with MASTER is down")
    >>> asyncio.run(view(Web(), None))
    (503, {'error': 'Redis error: MASTERDOWN Link with MASTER is down'})
    """

    @functools.wraps(view)
    async def answer(web, request, **kwargs):
        try:
            return await asyncio.wait_for(view(web, request, **kwargs), REDIS_VIEW_SECONDS)
        except TimeoutError:
            error = f"Redis did not answer within {REDIS_VIEW_SECONDS:g} s"
            return web.json({"error": error}, status=503)
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            return web.json({"error": f"Redis unreachable: {error}"}, status=503)
        except RedisError as error:
            return web.json({"error": f"Redis error: {error}"}, status=503)

    return answer


def register_views(app: faust.App, service: ScoringService) -> None:
    def redis() -> aioredis.Redis:
        """The worker's Redis client; none until the scoring service has started (the
        web server answers before): a ConnectionError, so 503 (it was a 500)."""
        if service.redis is None:
            raise RedisConnectionError("not connected yet (the worker is starting)")
        return service.redis

    @app.page("/customers/{customer_id}")
    @served_from_redis
    async def customer(web, request, customer_id: str):
        prefix = service.settings.redis_prefix
        scores = await redis().hgetall(customer_key(prefix, customer_id))
        if not scores:
            return web.json({"error": f"no scores for customer {customer_id!r}"}, status=404)
        fields = {k.decode(): v for k, v in scores.items() if k != b"_at"}
        return web.json({name: typed_value(name, value) for name, value in fields.items()})

    def segment_sets() -> dict[str, list[str]]:
        tiers = [name for name, _ in service.settings.scoring.segments.value_tiers]
        return {
            "lifecycle": [f"lifecycle:{name}" for name in LIFECYCLE_SEGMENTS],
            "value_tier": [f"tier:{name}" for name in (*tiers, "rest", UNRANKED)],
        }

    @app.page("/segments")
    @served_from_redis
    async def segments(web, request):
        prefix = service.settings.redis_prefix
        groups = segment_sets()
        every_set = [name for names in groups.values() for name in names]
        totals = await segment_totals(redis(), prefix, every_set)
        result = {
            group: {
                name.split(":", 1)[1]: {
                    "customers": totals[name][0],
                    # (+ 0.0: a residue of summed floats rounds to -0.0, shown as such)
                    "clv": None if totals[name][1] is None else round(totals[name][1], 2) + 0.0,
                }
                for name in names
            }
            for group, names in groups.items()
        }
        return web.json(result)

    @app.page("/segments/{group}/{name}")
    @served_from_redis
    async def top_customers(web, request, group: str, name: str):
        sets = segment_sets()
        group = "value_tier" if group == "tier" else group  # Redis's name for it, too
        segment_set = f"{'tier' if group == 'value_tier' else group}:{name}"
        if segment_set not in sets.get(group, ()):
            known = {g: [s.split(":", 1)[1] for s in names] for g, names in sets.items()}
            error = f"no segment {group}/{name}"
            return web.json({"error": error, "known": known}, status=404)
        limit, fields, error = top_query(request.query)
        if error:
            return web.json({"error": error}, status=400)
        prefix = service.settings.redis_prefix
        top = await top_of_segment(redis(), prefix, segment_set, limit, fields)
        return web.json({"group": group, "segment": name, "customers": top})

    @app.page("/programmes")
    async def programmes(web, request):
        books = [
            scorer.engine.scorer.programmes
            for _, scorer in sorted(service.partitions.items())
            if scorer.engine.scorer.programmes is not None
        ]
        return web.json({"programmes": pooled_summary(books)})

    @app.page("/health")
    async def health(web, request):
        # a Redis that accepts connections but does not answer (hung, paused) fails
        # the next write only after its timeout: ask it directly, briefly (beside the
        # broker's end offsets: the answer takes the longer of the two, not their sum)
        _, redis_answers = await asyncio.gather(
            service.refresh_end_offsets(), service.redis_answers()
        )
        status = service.status()
        status["redis_ok"] = status["redis_ok"] and redis_answers
        holds = status["assigned"] and not status["restoring"] and not status["replaying"]
        healthy = service.consumer is not None and holds and status["redis_ok"]
        status["status"] = "ok" if healthy else "degraded"
        return web.json(status, status=200 if healthy else 503)

    @app.page("/live")
    async def live(web, request):
        """Liveness: the worker's event loop answers (a worker that is restoring or
        replaying is alive, though `/health` says it is not ready)."""
        uptime = round(time.time() - service.started_at, 1)
        return web.json({"status": "alive", "uptime_seconds": uptime})

    @app.page("/metrics")
    async def metrics(web, request):
        await service.refresh_end_offsets()
        counters = service.counters()
        extra = {
            "clvstream_customers": sum(len(s.states) for s in service.partitions.values()),
            "clvstream_assigned_partitions": len(service.partitions),
            "clvstream_redis_pending": service.store.pending if service.store else 0,
            "clvstream_buffered_records": sum(s.buffered() for s in service.partitions.values()),
            "clvstream_rescored_total": counters.get("rescored", 0),
            "clvstream_duplicates_total": counters.get("duplicates", 0),
            "clvstream_value_fits_missing_statistics_total": counters.get(
                "refits_missing_statistics", 0
            ),
            "clvstream_value_fits_installed_late_total": counters.get("late_fit_installs", 0),
        }
        text = service.metrics.render(service.lag(), extra)
        return web.text(text, content_type="text/plain")


def top_query(query) -> tuple[int, list[str], str]:
    """`limit` (1 to 1000, default 100) and `fields` (comma-separated score columns) of a
    segment's top list, or an error text.

    >>> top_query({"limit": "5", "fields": "churn_probability,top_needs"})
    (5, ['churn_probability', 'top_needs'], '')
    >>> top_query({"fields": "clv,customer_id,lifecycle"})  # every row has the first two
    (100, ['lifecycle'], '')
    >>> top_query({"limit": "0"})[2], top_query({"fields": "password"})[2]
    ('limit must be a whole number from 1 to 1000', "unknown field(s): ['password']")
    >>> [top_query({"limit": text})[0] for text in ("²", "9" * 5000, "-3", "1000", "1001")]
    [0, 0, 0, 1000, 0]
    """
    text = query.get("limit", "100")
    # ASCII digits only, and few of them: int() takes other digits, and a huge number
    limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else 0
    if not 1 <= limit <= MAX_LIMIT:
        return 0, [], f"limit must be a whole number from 1 to {MAX_LIMIT}"
    fields = [name for name in query.get("fields", "").split(",") if name]
    unknown = sorted(set(fields) - TOP_FIELDS - IN_EVERY_ROW)
    if unknown:
        return 0, [], f"unknown field(s): {unknown}"
    return limit, [name for name in fields if name not in IN_EVERY_ROW], ""

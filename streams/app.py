"""The Faust app factory: `create_app(settings)` builds the worker's app.

The app hosts the worker's life cycle (signals, start, stop), its web server and the
`ScoringService` (batched aiokafka consumer, changelog, Redis writes). Faust's own
group membership only carries its leader topic; the scoring consumer group is
`{app_id}-scorer` (see `agents.scoring` for why the hot path is not a Faust agent).
"""

from __future__ import annotations

import atexit
import shutil
from typing import Any

import faust

from agents.scoring import ScoringService
from agents.web import register_views
from models.errors import ConfigError
from streams.orphan_guard import fit_executor
from streams.scratch import owned_dir
from streams.settings import Settings


def create_app(settings: Settings) -> faust.App:
    """A Faust app for these settings (nothing connects until the worker starts)."""
    if not settings.kafka_url or settings.redis_url is None:
        raise ConfigError(
            "the worker needs CLVSTREAM_KAFKA_URL and CLVSTREAM_REDIS_URL "
            "(or run `clvstream up`, which starts an embedded broker and Redis)"
        )
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=_faust_credentials(settings),
        store="memory://",
        datadir=_scratch_dir(settings.app_id),
        topic_partitions=settings.partitions,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        broker_session_timeout=6,  # Faust's own group: a join waits up to half of this
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=6,
    )
    service = ScoringService(settings, fit_executor=fit_executor())  # refits off the loop
    app.service(service)
    register_views(app, service)
    app.scoring_service = service  # for the CLI and tests
    return app


def _scratch_dir(app_id: str) -> str:
    """Faust insists on a data directory even with the memory store: a temporary one,
    removed at exit, instead of `{app_id}-data` in the working directory (one left
    by a killed worker is removed by the next worker of the app)."""
    path = str(owned_dir(None, f"clvstream-{app_id}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _faust_credentials(settings: Settings) -> Any:
    options = settings.kafka.client_options()
    if "sasl_mechanism" in options:
        return faust.SASLCredentials(
            username=options.get("sasl_plain_username"),
            password=options.get("sasl_plain_password"),
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None

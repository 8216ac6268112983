"""A pass-through Faust agent: the per-event Faust baseline of `bench.stream`.

    BENCH_BROKER=kafka://... BENCH_TOPICS=a,b BENCH_EXPECT=N BENCH_APP=id \
        python -m bench.passthrough

One agent over the input topics does no work but count (raw values, no codec); when
it has seen BENCH_EXPECT events it prints `DONE <unix time>`.
"""

from __future__ import annotations

import os
import sys
import time

import faust


def main() -> None:
    app = faust.App(
        os.environ["BENCH_APP"],
        broker=os.environ["BENCH_BROKER"],
        store="memory://",
        datadir=os.environ.get("BENCH_DATADIR", "/tmp/clvstream-passthrough"),
        web_enabled=False,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        topic_allow_declare=False,
    )
    topics = app.topic(*os.environ["BENCH_TOPICS"].split(","), value_serializer="raw")
    expect = int(os.environ["BENCH_EXPECT"])
    seen = 0
    ready = False

    @app.timer(0.2)
    async def report_ready():
        nonlocal ready
        if not ready and app.consumer.assignment():
            ready = True
            print(f"READY {time.time():.6f}", flush=True)

    @app.agent(topics)
    async def passthrough(stream):
        nonlocal seen
        async for _ in stream:
            seen += 1
            if seen == 1:
                print(f"FIRST {time.time():.6f}", flush=True)
            if seen == expect:
                print(f"DONE {time.time():.6f}", flush=True)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()

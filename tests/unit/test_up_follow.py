"""`clvstream up`'s follower and the replay's delivery count, with stand-ins (the real
stack: tests/integration/test_up.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import streams.replay as replay_module
from streams.replay import ReplaySummary
from streams.settings import load_settings
from streams.up_follow import BackgroundReplay, follow


class Worker:
    def __init__(self, answers: list) -> None:
        self.answers, self.process = answers, SimpleNamespace(poll=lambda: None, returncode=None)

    def get(self, path: str, timeout: float = 10.0):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return 200, answer


def finished_replay() -> BackgroundReplay:
    replay = BackgroundReplay.__new__(BackgroundReplay)
    replay.summary, replay.error = ReplaySummary(events=3), None
    replay._thread = SimpleNamespace(is_alive=lambda: False)
    return replay


def test_a_slow_health_answer_is_reported_and_following_goes_on(tmp_path, capsys):
    done = {"customers": 3, "lag": 0, "redis_pending": 0, "caught_up": True, "status": "ok"}
    worker = Worker([TimeoutError("timed out"), done, done])
    sleeps: list[float] = []

    def servers_exited() -> list[str]:  # the broker dies after the third round
        return ["Tansu exited with code -9: ..."] if len(sleeps) > 2 else []

    code = follow(
        worker,
        finished_replay(),
        tmp_path,
        False,
        sleep=sleeps.append,
        servers_exited=servers_exited,
    )
    assert code == 1  # the broker stopped: not a summary as if all went well
    err = capsys.readouterr().err
    assert "did not answer: timed out" in err and "an embedded server stopped: Tansu" in err


def test_sends_the_broker_did_not_take_are_counted_and_said():
    async def outcomes() -> ReplaySummary:
        summary = ReplaySummary(events=2)
        loop = asyncio.get_running_loop()
        taken, refused = loop.create_future(), loop.create_future()
        for delivery in (taken, refused):
            delivery.add_done_callback(summary.delivered)
        taken.set_result(None)
        refused.set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0)
        return summary

    summary = asyncio.run(outcomes())
    assert summary.failed == 1 and "1 NOT taken by the broker (ConnectionError)" in str(summary)


class InstantProducer:
    """A producer whose every send is taken at once (a stand-in for the broker)."""

    async def start(self) -> None: ...

    async def send(self, topic: str, raw: bytes, key: bytes | None = None) -> asyncio.Future:
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
        return delivery

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


def test_a_slowly_paced_replay_stops_when_asked_and_only_once(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "input_producer", lambda settings: InstantProducer())
    path = tmp_path / "events.jsonl"
    path.write_text(
        "".join(f'{{"event_type": "transaction", "customer_id": "c{i}"}}\n' for i in range(9))
    )
    replay = BackgroundReplay(path, load_settings(), rate=0.02)  # an event every 50 s
    replay.start()
    time.sleep(0.3)
    started = time.monotonic()
    replay.stop()
    assert replay.done and time.monotonic() - started < 2.0  # not after the 50 s pause
    assert replay.summary.stopped and replay.summary.events == 1
    assert "stopped before the end of the file" in str(replay.summary)
    started = time.monotonic()
    replay.stop()  # asked again (up's stop after its Ctrl-C handler): no second wait
    assert time.monotonic() - started < 0.1

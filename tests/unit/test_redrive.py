"""Which dead letters `clvstream redrive` sends back, read from `clvstream score`'s
dead-letter file (the broker side is in tests/integration/test_redrive.py)."""

from __future__ import annotations

import orjson

from models.config import ScoringConfig
from streams.offline import score_file
from streams.redrive import ROUTING_REASONS, RedriveSummary, file_dead_letters, selected
from tests.factories import purchase


def test_the_raw_inputs_of_the_chosen_reasons_come_back_byte_for_byte(tmp_path):
    in_sek = purchase("c2", 5, currency="SEK")  # no exchange rate configured: rejected
    late = purchase("c1", 0.5)
    lines = [
        orjson.dumps(purchase("c1", 0)),
        orjson.dumps(purchase("c1", 5)),
        orjson.dumps(late),  # 4.5 days late: beyond the allowed lateness
        b'{"event_type": "transaction", "broken',
        orjson.dumps(in_sek),
    ]
    events, dead = tmp_path / "events.jsonl", tmp_path / "dead.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    score_file(events, tmp_path / "scores.csv", ScoringConfig(), dead_letter_path=dead,
               show_progress=False, fit_in_background=False)  # fmt: skip

    chosen = RedriveSummary()
    raws = list(selected(file_dead_letters(dead), ["late", "unsupported_currency"], chosen))
    assert raws == [lines[2], lines[4]]
    assert chosen.read == 3 and dict(chosen.by_reason) == {"late": 1, "unsupported_currency": 1}
    routing = RedriveSummary()
    assert list(selected(file_dead_letters(dead), ROUTING_REASONS, routing)) == []
    assert routing.read == 3 and not routing.by_reason  # nothing misrouted offline

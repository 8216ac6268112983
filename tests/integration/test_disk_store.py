"""The RocksDB store of the worker's customer states (local disk, no broker): a
partition scored on it gives exactly what it gives in memory, outputs, checkpoints and
restores alike, with a cache far smaller than the partition."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agents.changelog import ChangelogFold
from agents.disk_states import DiskStates
from agents.partition import (
    CHECKPOINT_KEY,
    NEW,
    Checkpoint,
    PartitionScorer,
    decode_checkpoint,
)
from models.config import ScoringConfig
from models.emitted import Output
from models.simulation import SimulationConfig
from models.state import CustomerState
from streams.simulate import write_simulation
from streams.topics import routing_fields

TOPICS = ("t.customer-events", "t.transactions", "t.interactions")
TOPIC_OF = {"customer": TOPICS[0], "transaction": TOPICS[1], "interaction": TOPICS[2]}


def records_by_topic(path: Path) -> dict[str, list[tuple[int, bytes | None, bytes, float]]]:
    by_topic: dict[str, list] = {topic: [] for topic in TOPICS}
    for line in path.read_bytes().splitlines():
        event_type, customer_id = routing_fields(line)
        topic = by_topic[TOPIC_OF.get(event_type, TOPICS[2])]
        key = customer_id.encode() if customer_id is not None else None
        topic.append((len(topic), key, line, 0.0))
    return by_topic


def run(
    part: PartitionScorer, by_topic: dict, chunk: int = 700
) -> tuple[list[Output], list[Checkpoint]]:
    """Feed the records in chunks, draining and checkpointing after each."""
    outputs, checkpoints = [], []
    longest = max(len(records) for records in by_topic.values())
    for start in range(0, longest, chunk):
        for topic, records in by_topic.items():
            part.add(topic, records[start : start + chunk])
        idle = {t for t, records in by_topic.items() if start + chunk >= len(records)}
        outputs += part.drain(idle)
        checkpoints.append(part.take_checkpoint())
    return outputs, checkpoints


def values(outputs: list[Output]) -> list[tuple]:
    return [(o.stream, o.key, orjson.dumps(o.value)) for o in outputs]


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("disk") / "events.jsonl"
    write_simulation(SimulationConfig(customers=400, days=400, seed=21), path)
    return path


def test_a_partition_on_disk_scores_exactly_as_in_memory(events, tmp_path):
    by_topic = records_by_topic(events)
    config = ScoringConfig()
    in_memory = PartitionScorer(0, TOPICS, config)
    disk = DiskStates(tmp_path / "p0", cache_customers=25)  # 400 customers: evictions
    on_disk = PartitionScorer(0, TOPICS, config, states=disk)
    memory_outputs, memory_checkpoints = run(in_memory, by_topic)
    disk_outputs, disk_checkpoints = run(on_disk, by_topic)
    assert len(memory_outputs) > 5000
    assert values(disk_outputs) == values(memory_outputs)
    # the same changed states at every checkpoint, in order, and the same offsets
    assert [c.states for c in disk_checkpoints] == [c.states for c in memory_checkpoints]
    offsets = [decode_checkpoint(c.record)[0] for c in disk_checkpoints]
    assert offsets == [decode_checkpoint(c.record)[0] for c in memory_checkpoints]
    assert len(disk) == len(in_memory.states) > 300
    assert len(disk._cache) <= 25
    assert dict(disk.items()) == dict(in_memory.states.items())  # equal states
    on_disk.close()
    assert not (tmp_path / "p0").exists()


def test_a_disk_store_restored_from_the_changelog_continues_as_in_memory(events, tmp_path):
    by_topic = records_by_topic(events)
    half = {topic: records[: len(records) // 2] for topic, records in by_topic.items()}
    rest = {topic: records[len(records) // 2 :] for topic, records in by_topic.items()}
    config = ScoringConfig()
    first = PartitionScorer(0, TOPICS, config)
    _, checkpoints = run(first, half)
    disk = DiskStates(tmp_path / "p0", cache_customers=10)
    folds = ChangelogFold(), ChangelogFold(into=disk)
    for checkpoint in checkpoints:
        for key, value in [*checkpoint.states, (CHECKPOINT_KEY, checkpoint.record)]:
            for fold in folds:
                fold.add(key, value)
    # the same changelog restored into memory and onto disk, with records written
    # after the last checkpoint (rolled back) and a customer whose checkpointed
    # version was compacted away (kept)
    last = checkpoints[-1].states
    customer, value = last[0]
    for fold in folds:
        fold.add(b"late-new", NEW + CustomerState.new(1.0).to_bytes())  # rolled back
        fold.add(customer, value)  # rolled back to the checkpoint's version
    decoded, on_disk_restored = (fold.result() for fold in folds)
    assert on_disk_restored.states is disk and len(disk._cache) == 0
    assert on_disk_restored.customers == decoded.customers > 300
    assert on_disk_restored.rolled_back == decoded.rolled_back == 2
    assert dict(disk.items()) == decoded.states and list(disk) == list(decoded.states)

    def restored(states) -> PartitionScorer:
        return PartitionScorer(
            0, TOPICS, config, states=states, engine_blob=decoded.engine_blob,
            offsets=decoded.offsets,
        )  # fmt: skip

    memory = restored(decoded.states)
    on_disk = restored(disk)
    memory_outputs, _ = run(memory, rest)
    disk_outputs, _ = run(on_disk, rest)
    assert values(disk_outputs) == values(memory_outputs) and len(memory_outputs) > 1000
    on_disk.close()


def test_the_disk_store_is_a_mapping_with_dict_order_and_change_tracking(tmp_path):
    states = DiskStates(tmp_path / "s", cache_customers=2)
    for number in range(5):
        states[f"c{number}"] = CustomerState.new(float(number))
    del states["c1"]
    states["c1"] = CustomerState.new(10.0)  # back, at the end as in a dict
    states["c0"] = CustomerState.new(20.0)  # replaced in place
    assert list(states) == ["c0", "c2", "c3", "c4", "c1"]
    assert [s.first_seen for s in states.values()] == [20.0, 2.0, 3.0, 4.0, 10.0]
    assert states.take_dirty() == {"c0", "c1", "c2", "c3", "c4"} and states.dirty == set()
    assert states.pop("nobody", None) is None and states.take_dirty() == {"nobody"}
    assert states.pop("c3").first_seen == 3.0 and "c3" not in states and len(states) == 4
    with pytest.raises(KeyError):
        states["c3"]
    assert states.get("c3") is None
    states.close()


_FILLS_THE_DISK = """
import resource, signal, sys
from pathlib import Path
from agents.disk_states import DiskStates
from models.state import CustomerState
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
states = DiskStates(Path(sys.argv[1]) / "p0", cache_customers=1)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # the disk is full
n = 0
try:
    while n < 400_000:
        states[f"c{n}"] = CustomerState.new(float(n))
        n += 1
        if n % 1000 == 0:
            states.flush()
except Exception as error:
    print("write failed:", error)
read_back = [states.get(f"c{i}").first_seen for i in (n - 1, n)]
print("read back:", read_back == [float(n - 1), float(n)])
try:
    states.flush()
except Exception as error:
    print(f"flush failed: {type(error).__name__}: {error}")
"""


def test_a_state_whose_write_to_a_full_disk_failed_is_kept_and_the_error_told(tmp_path):
    """RocksDB refuses a write (disk full: a file size limit here): the state being
    evicted stays in the cache, not lost (it was gone from both, and every later flush
    failed with a KeyError naming it instead of the disk's error)."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _FILLS_THE_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = run.stdout
    assert "write failed: IO error" in out, run.stderr[-2000:]
    assert "read back: True" in out, out
    assert "flush failed: Exception: IO error" in out, out

"""Customer states on local disk (RocksDB), for a partition whose states outgrow memory.

The `store = "rocksdb"` option of the worker. States live serialized in a RocksDB
database per partition; the most recently used `cache_customers` of them are kept
deserialized in memory, and a changed state is written to disk when it leaves the
cache or at `flush` (the worker flushes at each checkpoint). The changelog topic stays
the source of truth: on assignment the partition's changelog is folded into a fresh
database (`load`), so nothing here needs to survive a crash (no write-ahead log; the
directory is deleted on `close`).

It behaves as the in-memory `TrackedStates` does, so the engine gives the same outputs
on either store: iteration follows insertion order (as a dict's), and `take_dirty`
names the customers changed since the last call. The customer ids are kept in memory
(a dict of keys, about 100 bytes per customer); the states are not. A full scan
(`items`, `values`: a refit's statistics, a rebuild of timers) reads each state from
disk without disturbing the cache.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from models.state import CustomerState
from streams.scratch import owned_dir

_MISSING = object()


class DiskStates(MutableMapping[str, CustomerState]):
    """A `MutableMapping` of customer id -> state on RocksDB with a write-back cache.

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp())
    >>> states = DiskStates(base / "p0", cache_customers=1)
    >>> states["a"], states["b"] = CustomerState.new(1.0), CustomerState.new(2.0)
    >>> list(states), states["a"].first_seen, sorted(states.take_dirty())  # "a" from disk
    (['a', 'b'], 1.0, ['a', 'b'])
    >>> states.close(); shutil.rmtree(base)
    """

    def __init__(self, path: Path, cache_customers: int = 50_000) -> None:
        self.path = Path(path)
        if self.path.exists():  # a leftover of a killed worker: the changelog rebuilds it
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._options = _small_memory_options()
        self._db = Rdict(str(self.path), options=self._options)
        write_options = WriteOptions()
        write_options.disable_wal = True  # the changelog is the log
        self._db.set_write_options(write_options)
        self.cache_customers = max(1, cache_customers)
        self._keys: dict[str, None] = {}  # every customer, in insertion order
        self._cache: OrderedDict[str, CustomerState] = OrderedDict()  # most recent last
        self._unwritten: set[str] = set()  # cached states newer than their copy on disk
        self.dirty: set[str] = set()  # changed since `take_dirty` (the checkpoint)
        self._batch: WriteBatch | None = None  # `put_serialized` writes not yet written
        self._batched = 0
        self._closed = False

    # -- loading ------------------------------------------------------------------
    def put_serialized(self, customer_id: str, data: bytes | None) -> None:
        """Set (or with None remove) a customer's state in its serialized form
        (`CustomerState.to_bytes`), as the changelog holds it; batched until
        `finish_load`, and not marked dirty (it is what the changelog holds)."""
        if self._batch is None:
            self._batch, self._batched = WriteBatch(raw_mode=True), 0
        self._cache.pop(customer_id, None)
        self._unwritten.discard(customer_id)
        if data is None:
            self._keys.pop(customer_id, None)
            self._batch.delete(customer_id.encode())
        else:
            self._keys[customer_id] = None
            self._batch.put(customer_id.encode(), data)
        self._batched += 1
        if self._batched >= 10_000:
            self.finish_load()

    def finish_load(self) -> None:
        """Write what `put_serialized` batched, then flush RocksDB's memtable to disk
        (with no write-ahead log it would otherwise keep the loaded data in memory)."""
        if self._batch is not None:
            self._db.write(self._batch)
            self._batch = None
        self._db.flush()

    # -- the mapping ----------------------------------------------------------------
    def __getitem__(self, customer_id: str) -> CustomerState:
        state = self.get(customer_id, _MISSING)
        if state is _MISSING:
            raise KeyError(customer_id)
        return state

    def get(self, customer_id: str, default=None):
        cache = self._cache
        state = cache.get(customer_id)
        if state is not None:
            cache.move_to_end(customer_id)
            return state
        if customer_id not in self._keys:
            return default
        state = self._read(customer_id)
        cache[customer_id] = state
        self._evict()
        return state

    def __setitem__(self, customer_id: str, state: CustomerState) -> None:
        self._keys[customer_id] = None
        cache = self._cache
        cache[customer_id] = state
        cache.move_to_end(customer_id)
        self._unwritten.add(customer_id)
        self.dirty.add(customer_id)
        self._evict()

    def __delitem__(self, customer_id: str) -> None:
        self.dirty.add(customer_id)
        del self._keys[customer_id]
        self._cache.pop(customer_id, None)
        self._unwritten.discard(customer_id)
        self._db.delete(customer_id.encode())

    def pop(self, customer_id: str, *default):
        self.dirty.add(customer_id)  # as `TrackedStates`: a pop is a change, even of none
        if customer_id not in self._keys:
            if default:
                return default[0]
            raise KeyError(customer_id)
        state = self[customer_id]
        del self[customer_id]
        return state

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> ItemsView[str, CustomerState]:
        return _ScanItems(self)

    def values(self) -> ValuesView[CustomerState]:
        return _ScanValues(self)

    def scan(self) -> Iterator[tuple[str, CustomerState]]:
        """Every (customer id, state) in insertion order; states not cached are read
        from disk and not cached (a scan would flush the working set)."""
        cache = self._cache
        for customer_id in self._keys:
            state = cache.get(customer_id)
            yield customer_id, state if state is not None else self._read(customer_id)

    # -- checkpoints and lifetime ---------------------------------------------------
    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def flush(self) -> None:
        """Write every changed state still only in the cache to disk."""
        if not self._unwritten:
            return
        batch = WriteBatch(raw_mode=True)
        for customer_id in self._unwritten:
            batch.put(customer_id.encode(), self._cache[customer_id].to_bytes())
        self._db.write(batch)
        self._unwritten.clear()

    def close(self) -> None:
        """Close and delete the database (the changelog holds the states). Once."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        Rdict.destroy(str(self.path), self._options)
        shutil.rmtree(self.path, ignore_errors=True)
        self._keys.clear()
        self._cache.clear()
        self._unwritten.clear()

    # -- internals ------------------------------------------------------------------
    def _read(self, customer_id: str) -> CustomerState:
        return CustomerState.from_bytes(self._db[customer_id.encode()])

    def _evict(self) -> None:
        """Drop the least recently used states beyond the cache's size, each written
        first if changed: a write RocksDB refuses (disk full) raises with the state
        still cached, not lost."""
        cache = self._cache
        while len(cache) > self.cache_customers:
            customer_id, state = next(iter(cache.items()))
            if customer_id in self._unwritten:
                self._db[customer_id.encode()] = state.to_bytes()
                self._unwritten.discard(customer_id)
            del cache[customer_id]


def worker_store_dir(base: Path | None, app_id: str) -> Path:
    """A new directory for one worker's databases, under `base` (None: the system's
    temporary directory), marked with the worker's process id. Directories left by
    workers of this app that are no longer running (killed) are deleted first."""
    return owned_dir(base, f"{app_id}-states-")


def _small_memory_options() -> Options:
    """RocksDB options for a store that must stay small in memory: 4 MiB write buffers
    (two at most) and an 8 MiB block cache per partition."""
    options = Options(raw_mode=True)
    options.set_write_buffer_size(4 << 20)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(8 << 20))
    options.set_block_based_table_factory(table)
    return options


class _ScanItems(ItemsView):
    def __iter__(self) -> Iterator[tuple[str, CustomerState]]:
        return self._mapping.scan()


class _ScanValues(ValuesView):
    def __iter__(self) -> Iterator[CustomerState]:
        return (state for _, state in self._mapping.scan())

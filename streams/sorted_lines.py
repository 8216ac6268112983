"""Sorting more lines than should be held in memory: sorted runs of at most
`run_lines` lines, spilled to temporary files when there is more than one, merged
while read.

>>> list(sorted_lines(iter([b"c\\n", b"a\\n", b"d\\n", b"b\\n"]), run_lines=3))
[b'a\\n', b'b\\n', b'c\\n', b'd\\n']
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def sorted_lines(
    lines: Iterable[bytes], run_lines: int, spill_dir: Path | None = None
) -> Iterator[bytes]:
    """`lines` (each ending in a newline) in byte order, holding at most `run_lines`
    of them in memory (runs beyond the first go to temporary files in `spill_dir`,
    removed when the iterator is exhausted or closed)."""
    pending = iter(lines)
    run = sorted(itertools.islice(pending, run_lines))
    peek = next(pending, None)
    if peek is None:  # (the usual case: everything fits, nothing touches the disk)
        yield from run
        return
    pending = itertools.chain([peek], pending)
    with contextlib.ExitStack() as files:
        runs = []
        while run:
            spill = files.enter_context(tempfile.TemporaryFile(dir=spill_dir))
            spill.writelines(run)
            spill.seek(0)
            runs.append(spill)
            run.clear()  # (before the next run is read, not after)
            run = sorted(itertools.islice(pending, run_lines))
        yield from heapq.merge(*runs)

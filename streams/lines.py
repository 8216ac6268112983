"""Reading JSON Lines files: the one loop the offline scorer, the replay and the
report share, so each treats line ends and a byte-order mark alike.

>>> import io
>>> list(json_lines(io.BytesIO(b'\\xef\\xbb\\xbf{"a": 1}\\r\\n\\n{"b": 2}')))
[(1, 13, b'{"a": 1}'), (2, 14, b''), (3, 22, b'{"b": 2}')]
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import BinaryIO


def json_lines(handle: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(line number, bytes read through the line, the line without its line end) for
    each line, blank ones included; a UTF-8 byte-order mark before the first line (an
    editor saved it) is dropped."""
    done = 0
    for number, line in enumerate(handle, start=1):
        done += len(line)
        raw = line.rstrip(b"\r\n")
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        yield number, done, raw

"""The benchmarks' working directories: temporary, removed when the script exits
(set `CLVSTREAM_BENCH_KEEP=1` to keep one, e.g. for the workers' logs)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def work_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("CLVSTREAM_BENCH_KEEP"):
        print(f"working files kept in {path}")
    else:
        atexit.register(shutil.rmtree, path, True)
    return path

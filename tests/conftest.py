"""Suite-wide hooks: the suite leaves nothing in the temporary directory."""

from __future__ import annotations

import contextlib
import getpass
import os
import tempfile

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After pytest has removed a passing run's tmp_path directories (retention policy
    "failed"), remove their per-user parent too if nothing else is left in it."""
    with contextlib.suppress(OSError, KeyError):
        os.rmdir(os.path.join(tempfile.gettempdir(), f"pytest-of-{getpass.getuser()}"))

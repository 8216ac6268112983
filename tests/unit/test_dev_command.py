"""`python3 dev.py test` runs the suite in parallel unless told otherwise."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dev_module():
    spec = importlib.util.spec_from_file_location("dev_command", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_suite_runs_in_two_to_four_processes_unless_the_caller_chooses():
    dev = _dev_module()
    default = dev._parallel([])
    assert default[0] == "-n" and 2 <= int(default[1]) <= 4
    assert dev._parallel(["-n", "0"]) == []
    assert dev._parallel(["-n1"]) == []
    assert dev._parallel(["--numprocesses=3", "tests/unit"]) == []
    assert dev._parallel(["tests/unit", "-k", "name"]) == default


def test_the_dev_scripts_examples_hold():
    failures, attempted = doctest.testmod(_dev_module())
    assert attempted > 0 and failures == 0

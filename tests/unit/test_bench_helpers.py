"""The benchmark scripts' pure helpers: the figures they print are computed right."""

from __future__ import annotations

import pytest

from bench.metrics import median_ratio


def test_a_same_run_ratio_is_the_median_of_the_runs_ratios_not_the_ratio_of_medians():
    # The seventh session's three streaming runs (README): worker against the
    # pass-through of the same run 0.39 / 0.46 / 0.33, median 0.39. `bench.stream`
    # printed the ratio of the medians, 3,778 / 8,152 = 0.46: a worker median and a
    # pass-through median that need not come from the same run.
    workers = [3057, 3778, 3984]
    passthroughs = [7849, 8152, 12176]
    assert median_ratio(workers, passthroughs) == pytest.approx(3057 / 7849)
    assert median_ratio(workers, passthroughs) != pytest.approx(3778 / 8152)


def test_a_ratio_needs_one_baseline_per_run():
    with pytest.raises(ValueError):
        median_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        median_ratio([], [])

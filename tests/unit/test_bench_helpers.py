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


def test_the_memory_of_clvstream_score_counts_its_refit_processes_too():
    from bench.memory import descendants

    # init 1 -> bench 100 -> scorer 200 -> forkserver 300 -> fit worker 400, and the
    # scorer's resource tracker 201; 500 is another program beside them.
    parents = {100: 1, 200: 100, 201: 200, 300: 200, 400: 300, 500: 1}
    assert descendants(parents, 200) == {200, 201, 300, 400}
    assert descendants(parents, 400) == {400}
    assert descendants({}, 7) == {7}  # (gone: itself only, which then reads as 0)


def test_the_proportional_set_size_is_read_from_smaps_rollup():
    from bench.memory import proportional_kib

    text = (
        "561269a9e000-7ffd5b4bc000 ---p 00000000 00:00 0   [rollup]\n"
        "Rss:                1752 kB\nPss:                 228 kB\nPss_Dirty:   112 kB\n"
    )
    assert proportional_kib(text) == 228
    assert proportional_kib("Rss: 10 kB\n") is None

"""Fitter correctness on CDNOW master: the maximum-likelihood values measured with the
lifetimes library (same-day merged, weeks, calibration to 1997-09-30), reached through
the whole pipeline: rows -> events -> states -> sufficient statistics -> fit."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from models.btyd.fit import fit_purchase_model, fit_spend_model
from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.errors import FitError
from models.refit import fit_value_params
from models.timeline import day_of_date, end_of_day
from models.value import PRIOR_PARAMS
from streams.cli import CDNOW_FILE
from streams.importers import import_cdnow

CALIBRATION_END = day_of_date(date(1997, 9, 30))


@pytest.fixture(scope="module")
def cdnow_statistics(tmp_path_factory):
    events = tmp_path_factory.mktemp("cdnow") / "events.jsonl"
    import_cdnow(CDNOW_FILE, events)
    engine = ScoringEngine(ScoringConfig(), refit=False)
    until = end_of_day(CALIBRATION_END)
    with open(events, "rb") as lines:
        for number, line in enumerate(lines, 1):
            engine.process_raw(line, {"source": "file", "file": "cdnow", "line": number}, until)
    stats = engine.statistics(CALIBRATION_END)
    return stats


def test_calibration_population(cdnow_statistics):
    stats = cdnow_statistics
    assert len(stats) == 23_570
    assert int(np.sum(stats.x > 0)) == 9_451
    assert stats.repeat_customers == 9_450


def test_bg_nbd_matches_lifetimes(cdnow_statistics):
    s = cdnow_statistics
    fit = fit_purchase_model("bg_nbd", s.x, s.t_x_days / 7, s.T_days / 7)
    assert fit.params == pytest.approx((0.2516, 4.789, 0.7234, 2.161), rel=5e-4)
    assert fit.log_likelihood == pytest.approx(-95_368.4, abs=0.1)


def test_pareto_nbd_matches_lifetimes(cdnow_statistics):
    s = cdnow_statistics
    fit = fit_purchase_model("pareto_nbd", s.x, s.t_x_days / 7, s.T_days / 7)
    assert fit.params == pytest.approx((0.5974, 11.59, 0.5222, 8.828), rel=5e-4)
    assert fit.log_likelihood == pytest.approx(-95_415.1, abs=0.1)


def test_gamma_gamma_matches_lifetimes(cdnow_statistics):
    s = cdnow_statistics
    fit = fit_spend_model(s.x, s.mean_spend)
    assert fit.n == 9_450
    assert fit.params == pytest.approx((6.275, 3.624, 14.98), rel=5e-4)


def test_fit_ignores_customer_order(cdnow_statistics):
    s = cdnow_statistics
    order = np.random.default_rng(0).permutation(len(s))
    a = fit_purchase_model("pareto_nbd", s.x, s.t_x_days, s.T_days)
    b = fit_purchase_model("pareto_nbd", s.x[order], s.t_x_days[order], s.T_days[order])
    assert a.params == b.params


def test_refit_versions_its_parameters(cdnow_statistics):
    params = fit_value_params(cdnow_statistics, ScoringConfig(), PRIOR_PARAMS)
    assert params.fitted_through == "1997-09-30"
    assert params.version.startswith("pareto_nbd@1997-09-30#")
    assert params.n_customers == 23_570
    again = fit_value_params(cdnow_statistics, ScoringConfig(), PRIOR_PARAMS)
    assert again.version == params.version


def test_unidentifiable_history_is_refused(cdnow_statistics):
    """Six weeks of data cannot identify dropout: the fit is refused, not installed."""
    s = cdnow_statistics
    young = s.T_days <= 42
    with pytest.raises(FitError):
        fit_purchase_model("pareto_nbd", s.x[young], s.t_x_days[young] / 7, s.T_days[young] / 7)

"""The online churn model: River's standardized logistic regression, learning from
delayed labels, blended with the value model while it is young.

Protocol: River's (`predict_proba_one(x)`, `learn_one(x, y)` on dict features,
tolerant of missing keys). The scorer uses `probability(vector, value_p)`, the same
arithmetic on the `FEATURES` tuple with coefficients copied out of the pipeline
(no dicts per event); the copy is refreshed every `REFRESH_LABELS` labels, so a
served score lags the learner by fewer than that many labels (deterministically).

Cold start: the served probability is
    w * p_model + (1 - w) * p_value,   w = labels / (labels + warmup_labels),
where p_value is the value model's P(no purchase within the window). With no labels
it is the value model's answer; after `warmup_labels` labels it is half and half.

Quality is measured prequentially on the probabilities that were served when each
snapshot was taken (rolling AUC, log loss and Brier score), and an ADWIN detector
watches the log-loss stream for drift.

>>> model = ChurnModel(warmup_labels=10)
>>> x = {name: 0.0 for name in FEATURES}
>>> model.probability(tuple(x.values()), value_p=0.3)
0.3
>>> for k in range(40):
...     model.learn_one({**x, "recency_days": float(k % 2) * 90}, bool(k % 2))
>>> model.labels, round(model.predict_proba_one({**x, "recency_days": 90.0})[True], 2) > 0.5
(40, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from river import compose, drift, linear_model, metrics, optim, preprocessing, utils

from models.churn_features import FEATURES, VALUE_MODEL_INPUTS, describe_in
from models.churn_quality import QualityByVersion

_CLAMP = 30.0
REFRESH_LABELS = 64
Coefficients = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], float]
_Terms = tuple[tuple[int, float, float, float], ...]


def _scaled_terms(coefficients: Coefficients) -> _Terms:
    """(feature index, mean, scale, weight) of every feature with a scale, in order."""
    means, scales, weights, _ = coefficients
    return tuple(
        (index, mean, scale, weight)
        for index, (mean, scale, weight) in enumerate(zip(means, scales, weights, strict=True))
        if scale
    )


class ChurnModel:
    _terms: _Terms | None = None  # (a model pickled before the fast path had none)
    _by_version: QualityByVersion | None = None  # (nor before quality per version)

    def __init__(
        self,
        warmup_labels: int = 2000,
        learning_rate: float = 0.02,
        l2: float = 1e-4,
        metric_window: int = 5000,
    ) -> None:
        self.warmup_labels = warmup_labels
        self.version = f"logreg@lr{learning_rate:g}-l2{l2:g}-warmup{warmup_labels}"
        self.pipeline = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2),
        )
        self.labels = 0
        self.positives = 0
        self.rolling_auc = metrics.RollingROCAUC(window_size=metric_window)
        self.rolling_log_loss = utils.Rolling(metrics.LogLoss(), window_size=metric_window)
        self.rolling_brier = utils.Rolling(metrics.MSE(), window_size=metric_window)
        self.drift = drift.ADWIN()
        self.drifts = 0
        self._by_version = QualityByVersion()
        self._coefficients: Coefficients | None = None
        self._terms: _Terms | None = None  # the coefficients' terms, for the fast path

    def __setstate__(self, state: dict) -> None:
        # A model pickled with fewer features (an older release) recomputes its
        # coefficient copy by name; the pipeline's dicts take new features as they come.
        self.__dict__.update(state)
        coefficients = state.get("_coefficients")
        if coefficients is not None and len(coefficients[0]) != len(FEATURES):
            self._coefficients = self._terms = None

    # -- River protocol -----------------------------------------------------------
    def predict_proba_one(self, x: dict) -> dict[bool, float]:
        return self.pipeline.predict_proba_one(x)

    def learn_one(self, x: dict, y: bool) -> None:
        self.pipeline.learn_one(x, y)
        self.labels += 1
        self.positives += bool(y)
        if self.labels < REFRESH_LABELS or self.labels % REFRESH_LABELS == 0:
            self._coefficients = self._terms = None

    # -- the scorer's fast path ---------------------------------------------------
    def weight(self) -> float:
        """How much the served probability trusts this model (0 with no labels)."""
        return self.labels / (self.labels + self.warmup_labels) if self.labels else 0.0

    def coefficients(self) -> Coefficients:
        """The current (means, scales, weights, intercept): an immutable snapshot."""
        return self._coefficients or self._refresh()

    def model_probability(self, vector: Sequence[float]) -> float:
        if len(vector) != len(FEATURES):
            raise ValueError(f"{len(vector)} features, expected {len(FEATURES)}")
        terms = self.terms()
        z = self._coefficients[3]  # the intercept (`terms` refreshed the coefficients)
        for index, mean, scale, weight in terms:  # features without a scale add nothing
            z += weight * (vector[index] - mean) / scale
        z = max(-_CLAMP, min(_CLAMP, z))
        return 1.0 / (1.0 + math.exp(-z))

    def probability(self, vector: Sequence[float], value_p: float) -> float:
        """The served churn probability (see the module's cold-start rule)."""
        labels = self.labels
        if not labels:
            return value_p
        w = labels / (labels + self.warmup_labels)
        return w * self.model_probability(vector) + (1.0 - w) * value_p

    def contributions(
        self, vector: Sequence[float], coefficients: Coefficients | None = None
    ) -> list[tuple[str, float, float]]:
        """(feature, value, weight x standardized value), largest push towards churn first;
        with the given coefficients (as they were when a score was made) or the current."""
        means, scales, weights, _ = coefficients or self.coefficients()
        parts = [
            (name, value, weight * (value - mean) / scale if scale else 0.0)
            for name, value, mean, scale, weight in zip(
                FEATURES, vector, means, scales, weights, strict=True
            )
        ]
        return sorted(parts, key=lambda part: -part[2])

    def reasons(
        self, vector: Sequence[float], coefficients: Coefficients | None = None, top: int = 3
    ) -> list[str]:
        """The top factors raising this customer's churn risk, in plain words; with the
        given coefficients (as they were when a score was made) or the current."""
        terms = self.terms() if coefficients is None else _scaled_terms(coefficients)
        return ranked_reasons(vector, terms, top)

    def terms(self) -> _Terms:
        """The current coefficients as (feature index, mean, scale, weight) of every
        feature with a scale: an immutable snapshot, for `ranked_reasons`."""
        if self._coefficients is None or self._terms is None:
            self._terms = _scaled_terms(self.coefficients())
        return self._terms

    def _refresh(self) -> Coefficients:
        scaler = self.pipeline["StandardScaler"]
        regression = self.pipeline["LogisticRegression"]
        means = [float(scaler.means.get(name, 0.0)) for name in FEATURES]
        variances = [float(scaler.vars.get(name, 0.0)) for name in FEATURES]
        scales = tuple(math.sqrt(v) if v > 0 else 0.0 for v in variances)
        weights = tuple(float(regression.weights.get(name, 0.0)) for name in FEATURES)
        self._coefficients = (tuple(means), scales, weights, float(regression.intercept))
        self._terms = None
        return self._coefficients

    # -- online quality -------------------------------------------------------------
    @property
    def by_version(self) -> QualityByVersion:
        """Quality of the served probabilities per value-model version (see
        `models.churn_quality`)."""
        if self._by_version is None:
            self._by_version = QualityByVersion()
        return self._by_version

    def record(self, served: float, churned: bool, version_number: int = -1) -> None:
        """Score a resolved label against the probability served at snapshot time (by
        the version with that install number)."""
        self.by_version.record(version_number, served, churned)
        served = min(1.0 - 1e-12, max(1e-12, served))
        self.rolling_auc.update(churned, served)
        self.rolling_log_loss.update(churned, served)
        self.rolling_brier.update(float(churned), served)
        loss = -math.log(served if churned else 1.0 - served)
        self.drift.update(loss)
        if self.drift.drift_detected:
            self.drifts += 1

    def health(self) -> dict[str, float]:
        return {
            "labels": float(self.labels),
            "churn_rate": self.positives / self.labels if self.labels else 0.0,
            "rolling_auc": float(self.rolling_auc.get()),
            "rolling_log_loss": float(self.rolling_log_loss.get()),
            "rolling_brier": float(self.rolling_brier.get()),
            "model_weight": self.weight(),
            "drifts_detected": float(self.drifts),
        }

    @staticmethod
    def as_features(vector: Sequence[float]) -> dict[str, float]:
        return dict(zip(FEATURES, vector, strict=True))


def ranked_reasons(vector: Sequence[float], terms: _Terms, top: int = 3) -> list[str]:
    """The first `top` of the model's contributions (weight x standardized value,
    largest first, ties in feature order) that push towards churn, in plain words.
    Only features with a scale contribute, and only positive pushes are named, so those
    alone are ranked.

    >>> terms = ((0, 30.0, 10.0, 1.0), (2, 0.0, 1.0, -2.0))
    >>> ranked_reasons((50.0, 0.0, 1.0) + (0.0,) * (len(FEATURES) - 3), terms)
    ['no purchase for 50 days']
    """
    pushes = []
    for index, mean, scale, weight in terms:
        push = weight * (vector[index] - mean) / scale
        if push > 0:
            pushes.append((push, index))
    if len(pushes) > 1:
        pushes.sort(key=_by_push_descending)
    reasons: list[str] = []
    for _, index in pushes:  # distinct words (two features may say the same)
        words = describe_in(vector, index)
        if words not in reasons:
            reasons.append(words)
            if len(reasons) == top:
                break
    return reasons


def value_model_reasons(vector: Sequence[float]) -> list[str]:
    """Reasons of a probability the value model leads: its P(no purchase in the window)
    and the purchase history it reads (time since the last purchase, repeat days).

    >>> v = [0.0] * len(FEATURES)
    >>> v[FEATURES.index("recency_days")] = 40.0
    >>> value_model_reasons(v)[1:]
    ['no purchase for 40 days', 'no repeat purchase yet']
    >>> value_model_reasons(v)[0]
    'value model: P(no purchase in the window) 0.50'
    """
    return [describe_in(vector, index) for index in VALUE_MODEL_INPUTS]


def _by_push_descending(part: tuple[float, int]) -> float:
    return -part[0]

"""Churn quality per model version: how well the probabilities served under each
version of the scores (their `model_version`) predicted the labels that resolved.

A churn snapshot remembers the number of the version that served it (the engine's
install count); when its label resolves, the served probability and the label are
counted for that version. Figures are cumulative per version (a version serves for a
bounded time, so its label set is finite): labels, churn rate, log loss, Brier score,
and the ROC AUC from a histogram of the served probabilities per class (`BINS` equal
bins; pairs in one bin count half, so the AUC is exact to within the pairs sharing a
bin). Only the last `keep` versions are kept; labels of older ones count as `older`.

>>> quality = QualityByVersion(keep=2)
>>> quality.name(0, "v0"); quality.name(1, "v1")
>>> for served, churned in [(0.9, True), (0.2, False), (0.5, True), (0.6, False)]:
...     quality.record(1, served, churned)
>>> [(version, m["labels"], m["auc"]) for version, m in quality.changed()]
[('v1', 4.0, 0.75)]
>>> quality.changed()  # nothing new since
[]
"""

from __future__ import annotations

import math

BINS = 200
OLDER = "older"  # versions no longer kept, and snapshots taken before versions were kept
_EPS = 1e-12


class VersionQuality:
    """Cumulative quality of the probabilities one version served."""

    __slots__ = ("brier_sum", "labels", "log_loss_sum", "negatives", "positives_by_bin")

    def __init__(self) -> None:
        self.labels = 0
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.positives_by_bin = [0] * BINS
        self.negatives = [0] * BINS

    def update(self, served: float, churned: bool) -> None:
        p = min(1.0 - _EPS, max(_EPS, served))
        self.labels += 1
        self.log_loss_sum -= math.log(p if churned else 1.0 - p)
        self.brier_sum += (float(churned) - p) ** 2
        counts = self.positives_by_bin if churned else self.negatives
        counts[min(BINS - 1, int(p * BINS))] += 1

    def absorb(self, other: VersionQuality) -> None:
        """Add `other`'s labels to these (a version folded into `older`)."""
        self.labels += other.labels
        self.log_loss_sum += other.log_loss_sum
        self.brier_sum += other.brier_sum
        for mine, theirs in ((self.positives_by_bin, other.positives_by_bin),
                             (self.negatives, other.negatives)):  # fmt: skip
            for index, count in enumerate(theirs):
                mine[index] += count

    def auc(self) -> float | None:
        """P(a churner was served more than a stayer), ties half; None with one class."""
        positives, negatives = sum(self.positives_by_bin), sum(self.negatives)
        if not positives or not negatives:
            return None
        below = 0  # stayers in lower bins
        wins = 0.0
        for churners, stayers in zip(self.positives_by_bin, self.negatives, strict=True):
            wins += churners * (below + 0.5 * stayers)
            below += stayers
        return wins / (positives * negatives)

    def metrics(self) -> dict[str, float]:
        """Labels, churn rate, log loss, Brier and AUC (each left out while undefined:
        no labels, or the AUC with labels of one class only)."""
        n = self.labels
        if not n:
            return {"labels": 0.0}
        metrics = {
            "labels": float(n),
            "churn_rate": sum(self.positives_by_bin) / n,
            "log_loss": self.log_loss_sum / n,
            "brier": self.brier_sum / n,
        }
        auc = self.auc()
        if auc is not None:
            metrics["auc"] = auc
        return metrics


class QualityByVersion:
    """Per-version quality of the served churn probabilities (picklable, bounded)."""

    def __init__(self, keep: int = 12) -> None:
        self.keep = keep
        self.names: dict[int, str] = {}
        self.quality: dict[str, VersionQuality] = {}
        self._changed: set[str] = set()

    def name(self, number: int, version: str) -> None:
        """Version `number` (the engine's install count) is `version`."""
        self.names[number] = version
        if len(self.names) > self.keep:
            for old in sorted(self.names)[: len(self.names) - self.keep]:
                del self.names[old]
            kept = {*self.names.values(), OLDER}
            for version_name in [v for v in self.quality if v not in kept]:
                # its labels, counted so far and to come, count as older from now on
                older = self.quality.get(OLDER)
                if older is None:
                    older = self.quality[OLDER] = VersionQuality()
                older.absorb(self.quality.pop(version_name))
                self._changed.discard(version_name)
                self._changed.add(OLDER)

    def record(self, number: int, served: float, churned: bool) -> None:
        version = self.names.get(number, OLDER)
        quality = self.quality.get(version)
        if quality is None:
            quality = self.quality[version] = VersionQuality()
        quality.update(served, churned)
        self._changed.add(version)

    def changed(self) -> list[tuple[str, dict[str, float]]]:
        """(version, metrics) of each version with labels since the last call, in
        install order (`older` first)."""
        order = {version: number for number, version in self.names.items()}
        versions = sorted(self._changed, key=lambda v: (v != OLDER, order.get(v, -1), v))
        self._changed = set()
        return [(version, self.quality[version].metrics()) for version in versions]

    def all(self) -> list[tuple[str, dict[str, float]]]:
        """(version, metrics) of every kept version with labels, in install order."""
        order = {version: number for number, version in self.names.items()}
        versions = sorted(self.quality, key=lambda v: (v != OLDER, order.get(v, -1), v))
        return [(version, self.quality[version].metrics()) for version in versions]

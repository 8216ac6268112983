"""Customer needs: category affinity per customer and next-best categories.

`Affinity` (immutable, in the customer's state) keeps decayed purchase counts, spend
and views per category, and the categories of the last two purchase days (both
bounded).
`NeedsModel` (partition state) learns online which categories customers buy next
after which: item-to-item co-occurrence between consecutive purchase days. The next
best categories blend "what customers who bought this bought next" with the
customer's own affinity, read from a frozen `NeedsSnapshot` (refreshed once per
event-time day, like the population quantiles).

>>> from models.config import NeedsConfig
>>> cfg = NeedsConfig()
>>> model = NeedsModel(cfg.max_categories)
>>> for _ in range(5):
...     model.learn(("books",), ("music",))
>>> model.learn(("books",), ("toys",))
>>> a = Affinity().purchase(0.0, 0, {"books": 20.0}, cfg)
>>> top_needs(a, model.snapshot(), cfg)
['books', 'music', 'toys']
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from models.config import NeedsConfig
from models.timeline import SECONDS_PER_DAY

Entry = tuple[str, float, float, float]  # category, decayed purchases, spend, views
_ROW_LENGTH = 12  # most likely next categories kept per category in a snapshot
# Categories a purchase day's basket keeps (those bought for most; the day's first
# purchases first): a state stays small, and the model learns at most 32 x 32 pairs
BASKET_CATEGORIES = 32
_REBASE_EXPONENT = 400.0  # half-lives past the base day before counts are rebased
_NOTHING_LEFT = 1e-9  # a category's decayed purchases and views below this: dropped
_MEMO_LIMIT = 1 << 15  # affinities a snapshot remembers top needs for (cleared when full)


def _largest(spend: Mapping[str, float]) -> list[str]:
    """Categories by spend, largest first, ties by name.

    >>> _largest({"b": 1.0, "c": 5.0, "a": 1.0})
    ['c', 'a', 'b']
    """
    return [c for _, c in sorted([(-s, c) for c, s in spend.items()])]


class Affinity:
    """Immutable; every update returns a new value (states stay cheap to copy)."""

    __slots__ = ("at", "basket", "basket_day", "entries", "prior_basket")

    def __init__(
        self,
        at: float = 0.0,
        entries: tuple[Entry, ...] = (),
        basket_day: int | None = None,
        basket: tuple[str, ...] = (),
        prior_basket: tuple[str, ...] = (),
    ) -> None:
        self.at = at  # the time every entry is decayed to
        self.entries = entries
        self.basket_day = basket_day
        self.basket = basket  # categories of the latest purchase day
        self.prior_basket = prior_basket  # ... and of the purchase day before it

    def purchase(
        self, at: float, day: int, spend: Mapping[str, float], cfg: NeedsConfig
    ) -> Affinity:
        """After a purchase of `spend` per category on `day`."""
        entries = self._added(at, {c: (1.0, s, 0.0) for c, s in spend.items()}, cfg)
        if self.basket_day == day:
            room = BASKET_CATEGORIES - len(self.basket)
            added = [c for c in _largest(spend) if c not in self.basket][: max(room, 0)]
            basket = tuple(sorted([*self.basket, *added]))
            return Affinity(entries[0], entries[1], day, basket, self.prior_basket)
        categories = tuple(sorted(_largest(spend)[:BASKET_CATEGORIES]))
        if self.basket_day is not None and day < self.basket_day:  # late: history kept
            return Affinity(entries[0], entries[1], self.basket_day, self.basket, self.prior_basket)
        return Affinity(entries[0], entries[1], day, categories, self.basket)

    def view(self, at: float, category: str, cfg: NeedsConfig) -> Affinity:
        """After a page view (or a cart abandon) in `category`."""
        at_, entries = self._added(at, {category: (0.0, 0.0, 1.0)}, cfg)
        return Affinity(at_, entries, self.basket_day, self.basket, self.prior_basket)

    def refund(self, at: float, spend: Mapping[str, float], cfg: NeedsConfig) -> Affinity:
        """After a refund of `spend` per category: each category loses that spend and
        the same share of its purchases (a category refunded in full is gone, unless
        viewed). Categories not kept are left alone.

        >>> cfg = NeedsConfig()
        >>> a = Affinity().purchase(0.0, 0, {"shoes": 50.0, "socks": 10.0}, cfg)
        >>> [(c, n, s) for c, n, s, _ in a.refund(0.0, {"shoes": 50.0}, cfg).entries]
        [('socks', 1.0, 10.0)]
        >>> [(c, n, s) for c, n, s, _ in a.refund(0.0, {"shoes": 10.0}, cfg).entries]
        [('shoes', 0.8, 40.0), ('socks', 1.0, 10.0)]
        """
        old, new, now = self._decay(at, cfg)
        entries = []
        for category, n, s, v in self.entries:
            n, s, v = n * old, s * old, v * old
            refunded = spend.get(category, 0.0) * new
            if refunded > 0 and s > 0:
                kept = max(1.0 - refunded / s, 0.0)
                n, s = n * kept, s * kept
                if n <= _NOTHING_LEFT and v <= _NOTHING_LEFT:
                    continue
            entries.append((category, n, s, v))
        return Affinity(now, tuple(entries), self.basket_day, self.basket, self.prior_basket)

    def _decay(self, at: float, cfg: NeedsConfig) -> tuple[float, float, float]:
        """Factors for the kept entries and for an event at `at`, and the time both are
        then decayed to."""
        half_life = cfg.affinity_half_life_days * SECONDS_PER_DAY
        if at >= self.at:
            return 0.5 ** ((at - self.at) / half_life), 1.0, at
        # a late event counts less, as if decayed to the entries' time
        return 1.0, 0.5 ** ((self.at - at) / half_life), self.at

    def _added(
        self, at: float, updates: dict[str, tuple[float, float, float]], cfg: NeedsConfig
    ) -> tuple[float, tuple[Entry, ...]]:
        old, new, now = self._decay(at, cfg)
        merged = {c: (n * old, s * old, v * old) for c, n, s, v in self.entries}
        for category, (n, s, v) in updates.items():
            pn, ps, pv = merged.get(category, (0.0, 0.0, 0.0))
            merged[category] = (pn + n * new, ps + s * new, pv + v * new)
        kept = merged.items()
        if len(merged) > cfg.max_categories_per_customer:  # keep the strongest
            weight = cfg.view_weight
            kept = sorted(kept, key=lambda kv: (-(kv[1][0] + weight * kv[1][2]), kv[0]))
            kept = kept[: cfg.max_categories_per_customer]
        return now, tuple(sorted((c, n, s, v) for c, (n, s, v) in kept))

    def weights(self, cfg: NeedsConfig) -> tuple[dict[str, float], float]:
        """Each category's (decayed) purchases plus its weighted views, and their sum."""
        view_weight = cfg.view_weight
        raw = {c: n + view_weight * v for c, n, _, v in self.entries}
        return raw, sum(raw.values())

    def shares(self, cfg: NeedsConfig) -> dict[str, float]:
        """Each category's share of the customer's (decayed) purchases and views."""
        raw, total = self.weights(cfg)
        return {c: w / total for c, w in raw.items()} if total > 0 else {}

    def to_list(self) -> list:
        return [self.at, [list(e) for e in self.entries], self.basket_day,
                list(self.basket), list(self.prior_basket)]  # fmt: skip

    @classmethod
    def from_list(cls, data: list) -> Affinity:
        at, entries, basket_day, basket, prior = data
        return cls(at, tuple(tuple(e) for e in entries), basket_day, tuple(basket), tuple(prior))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Affinity):
            return NotImplemented
        return self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"Affinity({self.to_list()!r})"


class NeedsModel:
    """Counts of "bought category b on the purchase day after one with a" (picklable).

    What it learned fades with a half-life in event-time days, so the next categories
    follow what customers buy now, and a category nobody buys any more gives its place
    in the bounded vocabulary to a new one. The counts are kept as of `base_day` (a
    purchase learned on a later day counts 2 ** (days / half-life) there), which keeps
    learning O(1) and makes every count a function of the days alone, not of when the
    clock refreshed the snapshot.

    >>> model = NeedsModel(max_categories=2, half_life_days=30)
    >>> model.learn((), ("tents",), day=0)
    >>> model.learn((), ("boots",), day=0)
    >>> model.learn((), ("maps",), day=0)  # the vocabulary is full of stronger ones
    >>> sorted(model.popularity)
    ['boots', 'tents']
    >>> model.learn((), ("maps",), day=60)  # tents and boots faded below one purchase
    >>> sorted(model.popularity)  # (of two as weak, the first by name went)
    ['maps', 'tents']
    >>> [(c, round(p, 2)) for c, p in model.snapshot(day=60).popular]
    [('maps', 0.8), ('tents', 0.2)]
    """

    # (class defaults: a model pickled before forgetting learned its counts as of the
    # day it next learns; None: no day yet)
    base_day: int | None = None
    half_life_days = math.inf

    def __init__(self, max_categories: int, half_life_days: float = math.inf) -> None:
        self.max_categories = max_categories
        self.half_life_days = half_life_days
        self.base_day = None
        self.next_counts: dict[str, dict[str, float]] = {}
        self.popularity: dict[str, float] = {}

    def learn(self, prior: tuple[str, ...], bought: tuple[str, ...], day: int = 0) -> None:
        """One purchase day's categories `bought` (on `day`), after a purchase day of
        `prior` ones."""
        weight = self._weight(day)
        popularity = self.popularity
        basket = {*prior, *bought}  # none of them gives its place to another
        before_known = [c for c in prior if self._admit(c, weight, basket)]
        known = [c for c in bought if self._admit(c, weight, basket)]
        for category in known:
            popularity[category] += weight
        if not before_known or not known:
            return
        share = weight / len(before_known)
        for before in before_known:
            row = self.next_counts.setdefault(before, {})
            for category in known:
                row[category] = row.get(category, 0.0) + share

    def _weight(self, day: int) -> float:
        """What one purchase on `day` counts as of the base day (rebased when it grows
        large, at the same learned days whatever the clock does)."""
        if self.base_day is None:
            self.base_day = day
        exponent = (day - self.base_day) / self.half_life_days
        if exponent > _REBASE_EXPONENT:
            self._rescale(0.5**exponent)
            self.base_day, exponent = day, 0.0
        return 2.0**exponent

    def _rescale(self, factor: float) -> None:
        self.popularity = {c: n * factor for c, n in self.popularity.items()}
        self.next_counts = {
            before: {c: n * factor for c, n in row.items()}
            for before, row in self.next_counts.items()
        }

    def _admit(self, category: str, purchase: float, basket: set[str]) -> bool:
        """Whether the category is learned. The vocabulary is bounded: when it is full,
        a new category takes the place of the weakest one outside the `basket` if that
        one counts for less than a single purchase now (`purchase`), else it is not
        learned."""
        popularity = self.popularity
        if category in popularity:
            return True
        if len(popularity) >= self.max_categories:
            others = [(n, c) for c, n in popularity.items() if c not in basket]
            weakest = min(others, default=(math.inf, ""))
            if weakest[0] >= purchase:
                return False
            self._forget(weakest[1])
        popularity[category] = 0.0
        return True

    def _forget(self, category: str) -> None:
        del self.popularity[category]
        next_counts = self.next_counts
        next_counts.pop(category, None)
        emptied = []
        for before, row in next_counts.items():
            if row.pop(category, None) is not None and not row:
                emptied.append(before)  # all that came after it is forgotten
        for before in emptied:
            del next_counts[before]

    def snapshot(self, day: int | None = None) -> NeedsSnapshot:
        """The model as of `day` (its counts faded to then; None: as of the base day)."""
        base = self.base_day
        scale = 1.0 if day is None or base is None else 0.5 ** ((day - base) / self.half_life_days)
        return NeedsSnapshot(self.next_counts, self.popularity, scale)


class NeedsSnapshot:
    """Frozen next-category probabilities, smoothed towards popularity. It remembers
    the top needs it gave each customer's affinity (`top_needs`): a customer's scores
    of one day reuse them until the affinity changes; the memo goes with the snapshot
    when the next day's replaces it, and is not pickled."""

    __slots__ = ("_baskets", "_memo", "next", "popular")

    def __init__(
        self,
        next_counts: dict[str, dict[str, float]],
        popularity: dict[str, float],
        scale: float = 1.0,  # what a count is worth now (the model's fading)
    ) -> None:
        total = sum(popularity.values()) or 1.0
        # most first, ties by name: (-count, name) pairs sort without a key function
        ranked = sorted([(-n, c) for c, n in popularity.items() if n > 0])
        self.popular: tuple[tuple[str, float], ...] = tuple(
            (c, -negative / total) for negative, c in ranked[:_ROW_LENGTH]
        )
        prior = dict(self.popular)
        self.next: dict[str, tuple[tuple[str, float], ...]] = {}
        for before, row in next_counts.items():
            mass = sum(row.values()) * scale
            probabilities = {
                c: (n * scale + prior.get(c, 0.0)) / (mass + 1.0) for c, n in row.items()
            }
            for c, p in prior.items():
                probabilities.setdefault(c, p / (mass + 1.0))
            best = sorted([(-p, c) for c, p in probabilities.items()])[:_ROW_LENGTH]
            self.next[before] = tuple((c, -negative) for negative, c in best)
        # id(affinity) -> (affinity, config, top needs); the affinity is kept, so its id
        # cannot be reused by another object while the entry stands
        self._memo: dict[int, tuple[Affinity, NeedsConfig, tuple[str, ...]]] = {}
        # (basket, weight) -> the basket's part of the top-needs scores: customers who
        # bought the same categories last share it
        self._baskets: dict[tuple[tuple[str, ...], float], dict[str, float]] = {}

    def __getstate__(self) -> tuple[None, dict]:
        return None, {"next": self.next, "popular": self.popular}

    def __setstate__(self, state: tuple[None, dict]) -> None:
        _, slots = state
        self.next, self.popular, self._memo = slots["next"], slots["popular"], {}
        self._baskets = {}

    def basket_scores(self, basket: tuple[str, ...], weight: float) -> dict[str, float]:
        """What a last basket adds to each category's score (do not modify: shared)."""
        key = (basket, weight)
        scores = self._baskets.get(key)
        if scores is None:
            scores = {}
            for before in basket:
                for category, p in self.next.get(before, self.popular):
                    scores[category] = scores.get(category, 0.0) + weight * p / len(basket)
            if len(self._baskets) >= _MEMO_LIMIT:
                self._baskets.clear()
            self._baskets[key] = scores
        return scores


EMPTY_NEEDS = NeedsSnapshot({}, {})


def top_needs(affinity: Affinity, snapshot: NeedsSnapshot, cfg: NeedsConfig) -> list[str]:
    """The customer's next-best categories, best first."""
    memo = snapshot._memo
    known = memo.get(id(affinity))
    if known is not None and known[0] is affinity and known[1] is cfg:
        return list(known[2])
    basket = affinity.basket
    weight = cfg.next_weight if basket else 0.0
    scores = dict(snapshot.basket_scores(basket, weight)) if basket else {}
    # the customer's own shares (`Affinity.shares`), added without a dict of their own
    raw, total = affinity.weights(cfg)
    if total > 0:
        own = 1.0 - weight
        for category, value in raw.items():
            scores[category] = scores.get(category, 0.0) + own * (value / total)
    if len(scores) < cfg.top_needs:  # fill up with what is popular
        for category, p in snapshot.popular:
            scores.setdefault(category, 1e-9 * p)
    # best score first, ties by name: sorting (-score, name) pairs, no key function
    ranked = sorted([(-score, category) for category, score in scores.items()])
    best = tuple(category for _, category in ranked[: cfg.top_needs])
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[id(affinity)] = (affinity, cfg, best)
    return list(best)


def popular_categories(snapshot: NeedsSnapshot, n: int) -> list[str]:
    """The baseline: the `n` most bought categories."""
    return [category for category, _ in snapshot.popular[:n]]

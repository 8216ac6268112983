"""Customer needs: category affinity in the state, the next-category model, top needs."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import needs as needs_module
from models.config import NeedsConfig, ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.needs import Affinity, NeedsModel, popular_categories, top_needs
from models.state import CustomerState
from models.value import PRIOR_PARAMS
from tests.factories import customer_event, interaction, purchase, raw, refund

CFG = NeedsConfig()
DAY = 86_400.0


def basket(*categories, price=10.0):
    return [
        {"sku": f"{c}-1", "category": c, "quantity": 1, "unit_price": price} for c in categories
    ]


def test_affinity_decays_with_event_time_and_keeps_the_strongest_categories():
    cfg = NeedsConfig(max_categories_per_customer=2, affinity_half_life_days=10)
    a = Affinity().purchase(0.0, 0, {"books": 30.0}, cfg)
    a = a.purchase(10 * DAY, 10, {"music": 5.0}, cfg)
    shares = a.shares(cfg)
    assert shares["books"] == pytest.approx(0.5 / 1.5) and shares["music"] == pytest.approx(1 / 1.5)
    assert a.basket == ("music",) and a.prior_basket == ("books",)
    a = a.purchase(10 * DAY, 10, {"toys": 5.0}, cfg).purchase(10 * DAY, 10, {"toys": 5.0}, cfg)
    assert [entry[0] for entry in a.entries] == ["music", "toys"]  # books (weakest) dropped
    assert a.basket == ("music", "toys") and a.prior_basket == ("books",)


def test_a_late_purchase_counts_but_does_not_rewrite_the_basket_history():
    a = Affinity().purchase(20 * DAY, 20, {"books": 10.0}, CFG)
    late = a.purchase(5 * DAY, 5, {"garden": 10.0}, CFG)
    assert late.basket == ("books",) and late.basket_day == 20
    assert "garden" in late.shares(CFG) and late.shares(CFG)["garden"] < 0.5


def test_views_count_less_than_purchases():
    a = Affinity().purchase(0.0, 0, {"books": 10.0}, CFG).view(0.0, "music", CFG)
    assert a.shares(CFG)["music"] == pytest.approx(CFG.view_weight / (1 + CFG.view_weight))


def test_the_model_learns_what_customers_buy_next_and_snapshots_are_frozen():
    model = NeedsModel(max_categories=50)
    snapshot = model.snapshot()
    for _ in range(20):
        model.learn(("tents",), ("boots",))
        model.learn(("books",), ("books",))
    fresh = model.snapshot()
    customer = Affinity().purchase(0.0, 0, {"tents": 100.0}, CFG)
    assert top_needs(customer, snapshot, CFG) == ["tents"]  # learnt nothing yet
    needs = top_needs(customer, fresh, CFG)
    assert needs[:2] == ["tents", "boots"] or needs[:2] == ["boots", "tents"]
    assert popular_categories(fresh, 2) == ["books", "boots"]
    assert pickle.loads(pickle.dumps(model)).snapshot().next == fresh.next


def test_top_needs_are_remembered_per_snapshot_and_config_and_not_pickled():
    model = NeedsModel(max_categories=50)
    for _ in range(5):
        model.learn(("tents",), ("boots",))
    snapshot = model.snapshot()
    customer = Affinity().purchase(0.0, 0, {"tents": 100.0, "maps": 1.0}, CFG)
    expected = top_needs(Affinity.from_list(customer.to_list()), snapshot, CFG)
    assert sorted(expected) == ["boots", "maps", "tents"]
    first = top_needs(customer, snapshot, CFG)
    first.append("mutated by a caller")  # a fresh list: the memo is not shared
    assert top_needs(customer, snapshot, CFG) == expected
    one = NeedsConfig(top_needs=1)
    assert top_needs(customer, snapshot, one) == expected[:1]  # another config: not the memo
    assert id(customer) in snapshot._memo
    copy = pickle.loads(pickle.dumps(snapshot))
    assert copy.next == snapshot.next and copy.popular == snapshot.popular
    assert copy._memo == {} and top_needs(customer, copy, CFG) == expected


def test_customers_with_the_same_last_basket_share_its_part_and_never_change_it():
    model = NeedsModel(max_categories=50)
    for _ in range(5):
        model.learn(("tents",), ("boots", "maps"))
        model.learn(("books",), ("lamps",))
    snapshot = model.snapshot()
    hiker = Affinity().purchase(0.0, 0, {"tents": 100.0}, CFG).view(0.0, "books", CFG)
    reader = Affinity().purchase(0.0, 0, {"lamps": 500.0}, CFG)
    reader = reader.purchase(DAY, 1, {"tents": 5.0}, CFG)
    assert hiker.basket == reader.basket == ("tents",)
    # each on a snapshot of its own (nothing shared), then both on one
    alone = [top_needs(c, pickle.loads(pickle.dumps(snapshot)), CFG) for c in (hiker, reader)]
    together = [top_needs(c, snapshot, CFG) for c in (hiker, reader)]
    assert together == alone and alone[0] != alone[1]
    assert list(snapshot._baskets) == [(("tents",), CFG.next_weight)]  # one entry, shared


def test_the_vocabulary_is_bounded():
    model = NeedsModel(max_categories=3)
    model.learn(("a",), ("b", "c", "d", "e"))
    assert set(model.popularity) == {"a", "b", "c"}
    assert set(model.next_counts["a"]) == {"b", "c"}


def test_affinity_survives_serialization():
    state = CustomerState.new(0.0)
    state.affinity = Affinity().purchase(0.0, 0, {"books": 10.0}, CFG).view(DAY, "music", CFG)
    assert CustomerState.from_bytes(state.to_bytes()).affinity == state.affinity


def test_scores_carry_top_needs_learnt_from_other_customers():
    engine = ScoringEngine(ScoringConfig(churn_model=False), PRIOR_PARAMS, refit=False)
    events = []
    for c in range(30):  # everyone who buys a tent buys boots on their next visit
        events.append(purchase(f"c{c}", c, items=basket("tents")))
        events.append(purchase(f"c{c}", c + 20, items=basket("boots")))
    events.append(purchase("new", 60, items=basket("tents")))
    events.append(interaction("new", 61, "page_view", attributes={"category": "lamps"}))
    outputs = []
    for line, event in enumerate(sorted(events, key=lambda e: e["occurred_at"])):
        outputs += engine.process_raw(raw(event), {"source": "file", "file": "t", "line": line})
    last = [o.value for o in outputs if o.stream is Stream.SCORES and o.key == "new"][-1]
    assert last["top_needs"] == ["boots", "tents", "lamps"]
    popularity = engine.scorer.needs.popularity  # as of the first day learned: later
    fade = 2 ** (60 / CFG.next_half_life_days)  # purchases count up to this much there
    assert set(popularity) == {"tents", "boots"}
    assert 31 < popularity["tents"] < 31 * fade and 30 < popularity["boots"] < 30 * fade


def test_what_customers_bought_next_long_ago_fades_behind_what_they_buy_now():
    """Thirty tents-then-boots two years ago, ten tents-then-maps now: with a half-life
    of a year the old pattern counts 30 / 4, less than the new one."""
    model = NeedsModel(max_categories=50, half_life_days=365)
    for day in range(30):
        model.learn(("tents",), ("boots",), day)
    for day in range(730, 740):
        model.learn(("tents",), ("maps",), day)
    now = model.snapshot(day=740).next["tents"]
    assert [c for c, _ in now[:2]] == ["maps", "boots"]
    never_fading = NeedsModel(max_categories=50)
    for day in range(30):
        never_fading.learn(("tents",), ("boots",), day)
    for day in range(730, 740):
        never_fading.learn(("tents",), ("maps",), day)
    assert never_fading.snapshot(day=740).next["tents"][0][0] == "boots"


def test_counts_are_rebased_long_after_the_first_day_and_stay_finite():
    model = NeedsModel(max_categories=50, half_life_days=1)
    for day in range(0, 2_000, 5):
        model.learn(("a",), ("b" if day < 1_900 else "c",), day)
    assert model.base_day > 0
    assert model.popularity["a"] == 0  # (only ever bought before)
    assert 0 < model.popularity["b"] < 1e200 and 0 < model.popularity["c"] < 1e200
    assert model.snapshot(day=2_000).next["a"][0][0] == "c"


def test_a_model_pickled_before_it_could_forget_learns_on_as_of_its_next_day():
    old = NeedsModel(max_categories=50)
    old.learn(("tents",), ("boots",))
    del old.__dict__["base_day"], old.__dict__["half_life_days"]  # as pickled then
    restored = pickle.loads(pickle.dumps(old))
    restored.half_life_days = 365  # (`Scorer.adopt` sets the current settings)
    restored.learn(("tents",), ("maps",), 19_000)
    assert restored.base_day == 19_000
    assert restored.next_counts["tents"] == {"boots": 1.0, "maps": 1.0}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcdefgh"), max_size=3),
            st.lists(st.sampled_from("abcdefgh"), max_size=3),
            st.integers(0, 30),
        ),
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_the_vocabulary_never_outgrows_its_bound_and_counts_stay_consistent(learned, bound):
    model = NeedsModel(max_categories=bound, half_life_days=7)
    day = 0
    for prior, bought, gap in learned:
        day += gap
        model.learn(tuple(prior), tuple(bought), day)
        assert len(model.popularity) <= bound
        assert set(model.next_counts) <= set(model.popularity)
        for row in model.next_counts.values():
            assert set(row) <= set(model.popularity) and min(row.values()) > 0
        assert all(n >= 0 for n in model.popularity.values())
    snapshot = model.snapshot(day)
    assert all(0 <= p <= 1 for _, p in snapshot.popular)


def test_items_without_a_price_split_the_amount_by_quantity_and_odd_categories_are_ignored():
    """An item's `unit_price` is optional in the contract: a purchase whose items lack
    it is applied (it was a processing error, the purchase lost), its amount split by
    quantity. A browsing category (an attribute: any text) counts only if it is a valid
    category (no separators, control or invisible characters)."""
    engine = ScoringEngine(ScoringConfig(churn_model=False), PRIOR_PARAMS, refit=False)
    unpriced = [{"sku": "t", "category": "tents", "quantity": 3}]
    mixed = [*unpriced, {"sku": "b", "category": "boots", "quantity": 1, "unit_price": 5.0}]
    events = [
        purchase("a", 0, amount=40.0, items=unpriced),
        purchase("b", 0, amount=40.0, items=mixed),
        interaction("b", 1, "page_view", attributes={"category": "a; b\u0000\r\n "}),
        interaction("b", 2, "page_view", attributes={"category": "lamps"}),
    ]
    outputs = []
    for line, event in enumerate(events):
        outputs += engine.process_raw(raw(event), {"source": "file", "file": "t", "line": line})
    assert [o.value for o in outputs if o.stream is Stream.DEAD_LETTER] == []
    assert engine.counters.applied == 4
    spend_a = {c: spend for c, _, spend, _ in engine.states["a"].affinity.entries}
    spend_b = {c: spend for c, _, spend, _ in engine.states["b"].affinity.entries}
    assert spend_a == {"tents": pytest.approx(40.0)}
    assert spend_b["tents"] / spend_b["boots"] == pytest.approx(3.0)  # (decayed alike since)
    assert set(spend_b) == {"tents", "boots", "lamps"}  # not the odd one


def test_an_objection_to_profiling_clears_the_affinity_and_nothing_is_learned_while_it_stands():
    """The affinity kept growing while a customer objected to profiling, the
    partition's needs model learned their baskets, and a later grant served top needs
    read from what they bought and browsed while objecting (the churn snapshots, by
    contrast, were dropped and none taken)."""
    engine = ScoringEngine(ScoringConfig(churn_model=False), PRIOR_PARAMS, refit=False)
    events = [
        purchase("c", 0, items=basket("tents")),
        customer_event("c", 1, "consent", consent={"profiling": False}),
        purchase("c", 2, items=basket("lamps")),
        interaction("c", 3, "page_view", attributes={"category": "maps"}),
        purchase("c", 4, items=basket("boots")),
        customer_event("c", 5, "consent", consent={"profiling": True}),
        purchase("c", 6, items=basket("books")),
    ]
    affinities = []
    for line, event in enumerate(events):
        engine.process_raw(raw(event), {"source": "file", "file": "t", "line": line})
        affinities.append(engine.states["c"].affinity)
    assert [entry[0] for entry in affinities[0].entries] == ["tents"]
    assert all(affinity == Affinity() for affinity in affinities[1:5])
    assert [entry[0] for entry in affinities[6].entries] == ["books"]
    assert affinities[6].prior_basket == ()
    learned = engine.scorer.needs.popularity  # one purchase each (the later one: as of
    assert learned == {"tents": 1.0, "books": 2 ** (6 / CFG.next_half_life_days)}  # day 0)
    assert engine.scorer.needs.next_counts == {}


def test_a_late_objection_to_profiling_clears_the_affinity_too():
    state = CustomerState.new(0.0)
    state.affinity = Affinity().purchase(10 * DAY, 10, {"books": 10.0}, CFG)
    state.update_consent([("profiling", True)], at=20 * DAY)
    state.update_consent([("profiling", False)], at=5 * DAY)  # older: the grant stands
    assert state.consent["profiling"] is True and state.affinity == Affinity()


@settings(max_examples=100, deadline=None)
@given(
    purchases=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.dictionaries(
                st.from_regex(r"c[0-9]{1,3}", fullmatch=True), st.floats(0, 100), min_size=1
            ),
        ),
        max_size=12,
    )
)
def test_a_basket_holds_a_bounded_number_of_categories(purchases):
    """A purchase day's basket held every category bought that day: thousands in a
    state (each purchase of the day adding more), and the needs model learned every
    pair of them."""
    affinity = Affinity()
    for day, spend in sorted(purchases, key=lambda purchase: purchase[0]):
        affinity = affinity.purchase(day * DAY, day, spend, CFG)
        assert len(affinity.basket) <= needs_module.BASKET_CATEGORIES
        assert len(affinity.prior_basket) <= needs_module.BASKET_CATEGORIES
        assert list(affinity.basket) == sorted(affinity.basket)


def test_a_basket_keeps_the_categories_bought_for_most():
    spend = {f"c{n:04d}": float(n) for n in range(1000)}
    affinity = Affinity().purchase(0.0, 0, spend, CFG)
    assert affinity.basket == tuple(
        f"c{n:04d}" for n in range(1000 - needs_module.BASKET_CATEGORIES, 1000)
    )
    later = affinity.purchase(DAY / 2, 0, {"a": 1.0, "b": 2.0}, CFG)  # the same day: full
    assert later.basket == affinity.basket


def test_returned_items_no_longer_count_in_the_customers_affinity():
    """A customer who bought boots and maps and sent the boots back: the boots counted
    as their strongest need for good (a refund only lowered their value)."""
    engine = ScoringEngine(ScoringConfig(churn_model=False), PRIOR_PARAMS, refit=False)
    bought = basket("maps", price=10.0) + basket("boots", price=90.0)
    events = [
        purchase("c", 0, amount=100.0, items=bought),
        refund("c", 3, amount=90.0, items=basket("boots", price=90.0)),
        refund("d", 3, amount=5.0),  # (no items: the categories are not known)
    ]
    for line, event in enumerate(events):
        engine.process_raw(raw(event), {"source": "file", "file": "t", "line": line})
    affinity = engine.states["c"].affinity
    assert [entry[0] for entry in affinity.entries] == ["maps"]
    assert affinity.basket == ("boots", "maps")  # what they bought that day, still
    partly = Affinity().purchase(0.0, 0, {"boots": 90.0, "maps": 10.0}, CFG)
    partly = partly.refund(0.0, {"boots": 45.0}, CFG)
    assert dict((c, (n, s)) for c, n, s, _ in partly.entries) == {
        "boots": (0.5, 45.0),
        "maps": (1.0, 10.0),
    }

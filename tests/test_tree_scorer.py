"""The compiled tree walk the service scores with must give XGBoost's predictions bit for bit,
on every model shape it accepts, and must refuse (leaving XGBoost to score) what it cannot
reproduce: a compiled walk that differs is never used."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from serving import tree_scorer
from serving.tree_scorer import compile_booster
from trendcast.config import get_settings

RNG = np.random.default_rng(7)
X = RNG.normal(size=(3000, 20)).astype(np.float32)
Y = X[:, 0] * 0.01 + X[:, 3] * X[:, 5] * 0.002 + RNG.normal(size=3000) * 0.01
X_MISSING = X.copy()
X_MISSING[RNG.random(X.shape) < 0.05] = np.nan


@pytest.fixture(autouse=True)
def compiled_walk(monkeypatch):
    """Numba is a dependency of the service's environment: build the walk even where
    ``TRENDCAST_NO_NUMBA=1`` turned it off, and fail (ImportError) rather than skip without it."""
    monkeypatch.setattr(tree_scorer._compiled, "kernel", tree_scorer._build())
    monkeypatch.setattr(tree_scorer._compiled, "tried", True)


def booster(**params) -> xgb.Booster:
    data = params.pop("data", X)
    model = xgb.XGBRegressor(n_estimators=params.pop("n_estimators", 80), **params)
    found = model.fit(data, Y).get_booster()
    found.set_param({"nthread": 1})
    return found


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize(
    "params",
    [
        {"max_depth": 6},
        {"max_depth": 2, "base_score": 0.3, "learning_rate": 0.7},
        {"max_depth": 8, "data": X_MISSING},  # learned default branches
        {"max_depth": 4, "objective": "reg:pseudohubererror"},
        {"max_depth": 5, "objective": "reg:absoluteerror"},
        {"max_depth": 3, "num_parallel_tree": 3, "subsample": 0.8},
    ],
    ids=["depth6", "base-score", "missing", "pseudohuber", "absolute", "forest"],
)
@pytest.mark.parametrize("iterations", [(0, 0), (0, 17), (5, 40)])
def test_the_compiled_walk_equals_xgboost_bit_for_bit(params, iterations):
    model = booster(**params)
    compiled = compile_booster(model, iterations)
    assert compiled is not None
    rows = np.vstack([X_MISSING[:500], RNG.normal(scale=50, size=(2000, 20)).astype(np.float32)])
    for batch in (rows[:1], rows[1:2], rows[:1000], rows):
        expected = model.inplace_predict(batch, iteration_range=iterations)
        assert same_bits(compiled.predict(batch), expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: xgb.XGBClassifier(n_estimators=5).fit(X, Y > 0).get_booster(),
        lambda: xgb.XGBRegressor(n_estimators=5, booster="gblinear").fit(X, Y).get_booster(),
        lambda: xgb.XGBRegressor(n_estimators=5, booster="dart").fit(X, Y).get_booster(),
        lambda: xgb.XGBRegressor(n_estimators=5).fit(X, np.c_[Y, -Y]).get_booster(),
        lambda: xgb.XGBRegressor(n_estimators=5, objective="reg:gamma").fit(X, Y + 1).get_booster(),
    ],
    ids=["logistic", "gblinear", "dart", "two-outputs", "gamma-link"],
)
def test_what_it_cannot_reproduce_stays_with_xgboost(make):
    assert compile_booster(make(), (0, 0)) is None


def test_a_walk_that_differs_from_xgboost_is_never_used(monkeypatch):
    """The probe check is the safety net: a flattening that gets one threshold wrong by a
    single float32 step must be caught and refused."""
    model = booster(max_depth=4)
    flatten = tree_scorer._flatten

    def one_step_off(document, iterations):
        trees = flatten(document, iterations)
        split = int(np.flatnonzero(trees.left != -1)[0])
        trees.threshold[split] = np.nextafter(trees.threshold[split], np.float32(np.inf))
        return trees

    monkeypatch.setattr(tree_scorer, "_flatten", one_step_off)
    assert compile_booster(model, (0, 0)) is None


def test_no_numba_keeps_xgboost(monkeypatch):
    monkeypatch.setenv("TRENDCAST_NO_NUMBA", "1")
    get_settings.cache_clear()
    monkeypatch.setattr(tree_scorer._compiled, "kernel", None)
    monkeypatch.setattr(tree_scorer._compiled, "tried", False)
    try:
        assert compile_booster(booster(max_depth=3), (0, 0)) is None
    finally:
        get_settings.cache_clear()
        tree_scorer._compiled.tried = False

"""Scoring a served booster without XGBoost's per-call overhead.

``Booster.inplace_predict`` spends tens of microseconds per call building an array interface,
a JSON config and an output buffer before it walks a single tree: for the one-row requests the
service answers, that was the largest part of a prediction (benchmarks/RESULTS.md, the serving
profile). Here the booster's trees become flat arrays walked by one compiled loop that does
what XGBoost's CPU predictor does: start from the base score, follow ``value < split`` (missing
values take the default branch), and add each tree's leaf value in float32, tree by tree.

A model is scored this way only when that reproduces XGBoost bit for bit: ``compile_booster``
refuses what it does not cover (other objectives or boosters, categorical splits, several
outputs) and checks every candidate on probe rows against ``inplace_predict`` before it is
used. Otherwise, or with ``TRENDCAST_NO_NUMBA=1``, the service keeps XGBoost's own predict.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from trendcast.lazy_kernel import LazyKernel

log = logging.getLogger("trendcast.serving")

#: Objectives whose prediction is the raw margin (no link function to reproduce).
IDENTITY_OBJECTIVES = frozenset(
    {"reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:squaredlogerror"}
)
PROBE_ROWS = 4096


@dataclass(frozen=True)
class CompiledTrees:
    """A booster's trees as flat arrays: node ``i`` splits on ``feature[i]`` at
    ``threshold[i]`` unless ``left[i] == -1``, when ``value[i]`` is its leaf value."""

    roots: np.ndarray  # int64, the first node of each tree
    feature: np.ndarray  # int64
    threshold: np.ndarray  # float32
    left: np.ndarray  # int64, absolute node index or -1 for a leaf
    right: np.ndarray  # int64
    default_left: np.ndarray  # bool: where a missing value goes
    value: np.ndarray  # float32, leaf values
    base: np.float32  # the base score the sum starts from

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """float32 predictions for float32 rows in the booster's feature order."""
        out = np.empty(len(matrix), dtype=np.float32)
        _compiled()(  # type: ignore[misc]
            np.ascontiguousarray(matrix, dtype=np.float32),
            self.roots,
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.default_left,
            self.value,
            self.base,
            out,
        )
        return out


def compile_booster(
    booster: xgb.Booster, iterations: tuple[int, int], probes: np.ndarray | None = None
) -> CompiledTrees | None:
    """The booster's trees (within ``iterations``, as ``inplace_predict``'s
    ``iteration_range``) when the compiled walk reproduces XGBoost's predictions bit for bit on
    probe rows; None (with the reason logged) when it does not or cannot."""
    if _compiled() is None:
        return None
    try:
        trees = _flatten(json.loads(booster.save_raw("json")), iterations)
    except _Unsupported as exc:
        log.info("compiled scorer not used: %s; scoring with XGBoost", exc)
        return None
    rows = _probe_rows(trees, booster.num_features(), probes)
    expected = booster.inplace_predict(rows, iteration_range=iterations)
    got = trees.predict(rows)
    if expected.dtype != np.float32 or not np.array_equal(
        got.view(np.uint32), np.asarray(expected).view(np.uint32)
    ):
        log.warning("compiled scorer differs from XGBoost on probe rows; scoring with XGBoost")
        return None
    return trees


class _Unsupported(Exception):
    pass


def _flatten(model: dict, iterations: tuple[int, int]) -> CompiledTrees:
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective not in IDENTITY_OBJECTIVES:
        raise _Unsupported(f"objective {objective}")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise _Unsupported(f"booster {booster['name']}")
    param = learner["learner_model_param"]
    if int(param.get("num_target", "1")) != 1 or int(param.get("num_class", "0")) > 1:
        raise _Unsupported("more than one output")
    base = np.float32(float(param["base_score"].strip("[]")))
    gbtree = booster["model"]
    indptr = [int(i) for i in gbtree["iteration_indptr"]]
    begin, end = iterations
    end = len(indptr) - 1 if end == 0 else end
    if not 0 <= begin <= end < len(indptr):
        raise _Unsupported(f"iteration range {iterations} outside {len(indptr) - 1} rounds")
    chosen = gbtree["trees"][indptr[begin] : indptr[end]]
    if any(info != 0 for info in gbtree["tree_info"][indptr[begin] : indptr[end]]):
        raise _Unsupported("trees of another output group")
    roots, feature, threshold, left, right, default_left, value = [], [], [], [], [], [], []
    for tree in chosen:
        if any(tree["split_type"]) or tree["categories"]:
            raise _Unsupported("categorical splits")
        offset = len(feature)
        roots.append(offset)
        lefts, rights = tree["left_children"], tree["right_children"]
        feature += tree["split_indices"]
        threshold += tree["split_conditions"]  # a leaf's entry holds its value
        value += tree["split_conditions"]
        left += [c + offset if c != -1 else -1 for c in lefts]
        right += [c + offset if c != -1 else -1 for c in rights]
        default_left += [bool(d) for d in tree["default_left"]]
    return CompiledTrees(
        roots=np.asarray(roots, dtype=np.int64),
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float32),
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        default_left=np.asarray(default_left, dtype=np.bool_),
        value=np.asarray(value, dtype=np.float32),
        base=base,
    )


def _probe_rows(trees: CompiledTrees, width: int, given: np.ndarray | None) -> np.ndarray:
    """Rows that reach every kind of branch: each feature drawn from its split thresholds,
    the float32 neighbours on both sides of them, wide random values and missing values."""
    rng = np.random.default_rng(20261204)
    rows = np.empty((PROBE_ROWS, width), dtype=np.float32)
    splits = trees.left != -1
    for j in range(width):
        at = trees.threshold[splits & (trees.feature == j)]
        if len(at) == 0:
            at = np.zeros(1, dtype=np.float32)
        near = np.concatenate(
            [
                at,
                np.nextafter(at, np.float32(-np.inf)),
                np.nextafter(at, np.float32(np.inf)),
                rng.normal(0, 1e3, len(at)).astype(np.float32),
            ]
        )
        rows[:, j] = rng.choice(near, PROBE_ROWS)
    rows[rng.random(rows.shape) < 0.02] = np.nan
    if given is not None and len(given):
        rows = np.vstack([np.asarray(given, dtype=np.float32), rows])
    return rows


#: The walk, compiled on first use; None without Numba or with ``TRENDCAST_NO_NUMBA=1``.
_compiled: LazyKernel[Callable] = LazyKernel(lambda: _build())


def _build() -> Callable:
    import numba

    @numba.njit(nogil=True, cache=False, fastmath=False)
    def walk(x, roots, feature, threshold, left, right, default_left, value, base, out):
        for r in range(x.shape[0]):
            total = base
            for t in range(roots.shape[0]):
                node = roots[t]
                while left[node] != -1:
                    v = x[r, feature[node]]
                    if np.isnan(v):
                        node = left[node] if default_left[node] else right[node]
                    elif v < threshold[node]:
                        node = left[node]
                    else:
                        node = right[node]
                total = total + value[node]
            out[r] = total

    return walk

"""Benchmark results are produced by code, stamped, current and rendered as generated.

A result goes stale when its benchmark or any repo file it measured changes after it was
recorded (content hash per file, so this works in any clone, shallow or not); the fix is to rerun
the benchmark on an idle machine (`make bench`, or `python -m benchmarks.bench_NAME`).
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import report
from benchmarks.results_schema import REPO, RESULTS_DIR, Result, load, load_all, stale_sources

SCRIPTS = {
    p.stem.removeprefix("bench_"): p
    for pattern in ("bench_*.py", "profile_*.py")
    for p in (REPO / "benchmarks").glob(pattern)
}
BENCHES = sorted(SCRIPTS)


def test_every_benchmark_has_a_result_and_every_result_a_benchmark():
    results = {p.stem for p in RESULTS_DIR.glob("*.json")}
    assert sorted(results) == BENCHES, "run `make bench` (missing or orphaned result files)"


@pytest.mark.parametrize("name", BENCHES)
def test_result_is_committed_current_and_consistent(name):
    path = RESULTS_DIR / f"{name}.json"
    script = f"benchmarks/{SCRIPTS[name].name}"
    if not path.exists():
        pytest.fail(f"no result for {script}: run python -m benchmarks.{SCRIPTS[name].stem}")
    result = load(path)
    assert result.name == name and result.script == script
    assert not result.dirty, f"{path.name} was measured on an uncommitted tree"
    assert script in result.sources, "the benchmark itself is not hashed"
    stale = stale_sources(result)
    assert not stale, (
        f"{path.name} (commit {result.commit[:10]}) is stale: {', '.join(stale)} changed since; "
        f"rerun python -m benchmarks.{SCRIPTS[name].stem} on an idle machine"
    )
    assert result.figures, "a result with no figures"
    for t in result.targets:
        assert t.met == t.holds(), f"target {t.key}: verdict does not follow from its figures"
    keys = [f.key for f in result.figures]
    assert len(keys) == len(set(keys))


def test_results_md_is_exactly_what_the_generator_makes():
    assert (REPO / "benchmarks" / "RESULTS.md").read_text() == report.render(), (
        "RESULTS.md was edited by hand or not regenerated: run python -m benchmarks.report"
    )


def _outside_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)


def test_prose_holds_no_figures():
    for prose in sorted(report.PROSE_DIR.glob("*.md")):
        # a number is a digit that does not end a name (float32 is a name, 1.5x a figure)
        digits = re.findall(r"(?<![A-Za-z0-9_])\d[^\s]*", _outside_code(prose.read_text()))
        assert not digits, f"{prose.name} types figures by hand: {digits[:5]}"
        assert prose.stem in BENCHES, f"prose for a benchmark that does not exist: {prose.name}"


def test_a_changed_source_makes_a_result_stale(tmp_path, monkeypatch):
    """The staleness rule itself, on a copy: change one byte of a measured file and the result
    names it."""
    import benchmarks.results_schema as schema

    (tmp_path / "trendcast").mkdir()
    measured = tmp_path / "trendcast" / "thing.py"
    measured.write_text("x = 1\n")
    monkeypatch.setattr(schema, "REPO", tmp_path)
    any_result = next(iter(load_all().values()), None)
    if any_result is None:
        pytest.fail("no result files to copy the shape from: run make bench")
    data = json.loads(any_result.model_dump_json())
    data["sources"] = {"trendcast/thing.py": schema.blob_sha(measured)}
    result = Result.model_validate(data)
    assert schema.stale_sources(result) == []
    measured.write_text("x = 2\n")
    assert schema.stale_sources(result) == ["trendcast/thing.py"]
    measured.unlink()
    assert schema.stale_sources(result) == ["trendcast/thing.py"]


def test_a_forged_verdict_is_caught():
    any_result = next(iter(load_all().values()), None)
    if any_result is None or not any_result.targets:
        pytest.fail("no result with a target: run make bench")
    target = any_result.targets[0].model_copy(update={"met": not any_result.targets[0].met})
    assert target.met != target.holds()

"""Generate benchmarks/RESULTS.md from benchmarks/results/*.json (run by `make bench`).

Nothing in RESULTS.md is typed by hand: every figure, target verdict and phase comes from a
result file a benchmark wrote. The only hand-written text is prose in `benchmarks/prose/NAME.md`,
shown under a "Prose" heading, and a test keeps figures out of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.results_schema import OPS, Result, Target, load_all

HERE = Path(__file__).parent
RESULTS_MD = HERE / "RESULTS.md"
PROSE_DIR = HERE / "prose"
# the order of `make bench`; a result not listed here goes last, by name
ORDER = (
    "load",
    "durability",
    "ingest",
    "features",
    "backtest",
    "serving",
    "venue",
    "deploy",
    "portfolio",
    "cluster",
)


def fmt(value: float | int | str, unit: str = "", *, digits: int | None = None) -> str:
    """A figure with its unit; ``digits`` significant digits where a verdict hangs on it."""
    unit = unit.strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if digits is not None and isinstance(value, float):
        text = f"{value:.{digits}g}"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, int) or (abs(value) >= 1000 and float(value).is_integer()):
        text = f"{int(value):,}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("x", "%") else f"{text} {unit}"


def measured(t: Target) -> str:
    """The measured value with as many significant digits as its verdict needs (a value just
    under its threshold must not print as the threshold)."""
    if not isinstance(t.value, float):
        return fmt(t.value, t.unit)
    for digits in range(3, 7):
        text = f"{t.value:.{digits}g}"
        if OPS[t.op](float(text), t.threshold) == t.met:
            return fmt(float(text), t.unit, digits=digits)
    return fmt(t.value, t.unit, digits=6)


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |")
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _stamp(r: Result) -> str:
    m = r.machine
    libs = ", ".join(f"{k} {v}" for k, v in r.versions.items())
    dirty = " **(uncommitted changes: not citable)**" if r.dirty else ""
    return (
        f"Measured {r.date} at commit `{r.commit[:10]}`{dirty} with `{r.command}`. "
        f"Machine: {m.cores} cores ({m.cpu}), {m.memory_gb:g} GB, {m.system}; load average "
        f"{m.load_before[0]:g} before and {m.load_after[0]:g} after. Python {r.python}; {libs}."
    )


def section(r: Result) -> list[str]:
    out = [f"## {r.title} (`benchmarks/{Path(r.script).name}`)", "", _stamp(r), "", r.description]
    if r.params:
        params = ", ".join(f"{k} = {fmt(v)}" for k, v in r.params.items())
        out += ["", f"Parameters: {params}."]
    if r.figures:
        rows = [[f.label, fmt(f.value, f.unit), f.role, f.note] for f in r.figures]
        out += ["", *_table(["what", "figure", "whose", "note"], rows, "lrll")]
    if r.targets:
        rows = [
            [
                t.label,
                measured(t),
                f"{t.op} {fmt(t.threshold, t.unit)}",
                "**met**" if t.met else "**missed**",
            ]
            for t in r.targets
        ]
        out += ["", *_table(["target", "measured", "rule", "verdict"], rows, "lrll")]
    if r.phases:
        rows = [
            [
                p.name,
                fmt(p.seconds, "s"),
                fmt(p.peak_rss_mb, "MB"),
                fmt(p.peak_rss_mb - p.rss_start_mb, "MB"),
                fmt(p.peak_tree_rss_mb, "MB"),
                "" if p.peak_traced_mb is None else fmt(p.peak_traced_mb, "MB"),
            ]
            for p in r.phases
        ]
        header = [
            "phase",
            "time",
            "peak RSS",
            "above the phase's start",
            "with child processes",
            "tracemalloc peak",
        ]
        out += ["", *_table(header, rows, "lrrrrr")]
    prose = PROSE_DIR / f"{r.name}.md"
    if prose.exists():
        out += ["", "Prose (hand-written; the figures are in the tables above):", ""]
        out += prose.read_text().strip().splitlines()
    return [*out, ""]


def render(results: dict[str, Result] | None = None) -> str:
    results = load_all() if results is None else results
    names = sorted(results, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json` (each written "
        "by its benchmark; `make bench` runs them all). Do not edit: rerun the benchmark. "
        "`tests/test_bench_results.py` fails when a benchmark or any code it measured changed "
        "after its result was recorded, or when this file differs from what the generator makes.",
        "",
        "## Targets at a glance",
        "",
    ]
    rows = []
    for name in names:
        r = results[name]
        for t in r.targets:
            verdict = "met" if t.met else "**missed**"
            rows.append(
                [
                    name,
                    t.label,
                    measured(t),
                    f"{t.op} {fmt(t.threshold, t.unit)}",
                    verdict,
                    f"`{r.commit[:10]}`",
                ]
            )
    out += _table(["benchmark", "target", "measured", "rule", "verdict", "commit"], rows, "llrlll")
    out.append("")
    for name in names:
        out += section(results[name])
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        same = RESULTS_MD.exists() and RESULTS_MD.read_text() == text
        print("RESULTS.md is up to date" if same else "RESULTS.md differs: run benchmarks.report")
        return 0 if same else 1
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD} from {len(load_all())} result files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

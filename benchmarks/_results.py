"""Recording a benchmark's figures as a stamped, machine-readable result.

Every number in RESULTS.md comes from a `Recorder`: a benchmark adds its figures (ours and the
baselines measured in the same run), its targets and its phases, then `write()` stamps them with
the commit, the dirty flag, the machine, the library versions and the content hash of every repo
file the run imported or declared it measures, so a test can tell when a result went stale.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.results_schema import (
    OPS,
    REPO,
    RESULTS_DIR,
    Figure,
    Machine,
    Op,
    Phase,
    Result,
    Role,
    Target,
    blob_sha,
)

KEY_LIBRARIES = (
    "numpy",
    "pandas",
    "pyarrow",
    "sqlalchemy",
    "psycopg2-binary",
    "pgserver",
    "xgboost",
    "mlflow",
    "bentoml",
    "duckdb",
    "numba",
    "vectorbt",
    "dask",
    "distributed",
    "skfolio",
)
_SOURCE_ROOTS = ("trendcast", "serving", "training", "ingestion_lambda", "dashboard", "benchmarks")
_MB = 1024 * 1024


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _versions() -> dict[str, str]:
    found = {}
    for name in KEY_LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """RSS of this process, and of it plus its children (servers it started)."""
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return own, total


class _Sampler(threading.Thread):
    """Samples RSS every `period` seconds so a phase's peak is its own, not the process's."""

    def __init__(self, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.proc = psutil.Process()
        self.peak_own = self.peak_tree = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def sample(self) -> None:
        own, tree = _tree_rss(self.proc)
        self.peak_own = max(self.peak_own, own)
        self.peak_tree = max(self.peak_tree, tree)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def repo_sources(extra: Iterable[str] = ()) -> dict[str, str]:
    """Repo files imported by this process, plus `extra` paths (files or folders: code that runs
    in a server the benchmark starts), each with its blob hash."""
    paths: set[Path] = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        try:
            rel = path.relative_to(REPO)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in _SOURCE_ROOTS and path.suffix == ".py":
            paths.add(path)
    for item in extra:
        target = REPO / item
        if target.is_dir():
            paths.update(p.resolve() for p in target.rglob("*.py"))
        elif target.is_file():
            paths.add(target.resolve())
        else:
            raise FileNotFoundError(f"measures: {item} is not a file or folder of the repo")
    return {str(p.relative_to(REPO)): blob_sha(p) for p in sorted(paths)}


class Recorder:
    """One benchmark run's figures, targets and phases; `write()` makes results/NAME.json."""

    def __init__(
        self,
        name: str,
        title: str,
        *,
        script: str,
        description: str,
        params: dict | None = None,
        measures: Iterable[str] = (),
    ) -> None:
        self.name, self.title = name, title
        self.script = str(Path(script).resolve().relative_to(REPO))
        self.description = " ".join(description.split())
        self.params = dict(params or {})
        self.measures = list(measures)
        self.figures: list[Figure] = []
        self.targets: list[Target] = []
        self.phases: list[Phase] = []
        self._load_before = [round(x, 2) for x in os.getloadavg()]
        self._date = datetime.now(UTC)
        self._commit = _git("rev-parse", "HEAD") or "unknown"
        print(f"== {title}")
        print(f"   {self._date:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({_cpu_model()})")

    def figure(
        self,
        key: str,
        value: float | int | str,
        unit: str = "",
        *,
        label: str,
        role: Role = "ours",
        note: str = "",
    ) -> float | int | str:
        if any(f.key == key for f in self.figures):
            raise ValueError(f"figure {key!r} recorded twice")
        if isinstance(value, float):
            value = float(f"{value:.6g}")
        self.figures.append(
            Figure(key=key, label=label, value=value, unit=unit, role=role, note=note)
        )
        shown = f"{value:,}" if isinstance(value, int | float) else value
        print(f"   {label:<64} {shown} {unit}".rstrip() + (f"  [{role}]" if role != "ours" else ""))
        return value

    def target(
        self, key: str, label: str, value: float, op: Op, threshold: float, unit: str = ""
    ) -> bool:
        value = float(f"{value:.6g}")
        met = bool(OPS[op](value, threshold))
        self.targets.append(
            Target(
                key=key,
                label=label,
                value=value,
                op=op,
                threshold=threshold,
                unit=unit,
                met=met,
            )
        )
        print(
            f"   target {label}: {value:g}{unit} {op} {threshold:g}{unit}: "
            f"{'met' if met else 'MISSED'}"
        )
        return met

    @contextmanager
    def phase(self, name: str, *, trace: bool = False) -> Iterator[None]:
        """Time a stretch of work and sample its memory; `trace` adds tracemalloc's peak
        (Python and NumPy allocations; slower, so off unless a phase's memory is a target)."""
        sampler = _Sampler()
        start_rss = sampler.proc.memory_info().rss
        if trace:
            tracemalloc.start()
        sampler.start()
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - began
            sampler.stop()
            traced = None
            if trace:
                traced = tracemalloc.get_traced_memory()[1] / _MB
                tracemalloc.stop()
            self.phases.append(
                Phase(
                    name=name,
                    seconds=round(seconds, 4),
                    rss_start_mb=round(start_rss / _MB, 1),
                    peak_rss_mb=round(sampler.peak_own / _MB, 1),
                    peak_tree_rss_mb=round(sampler.peak_tree / _MB, 1),
                    peak_traced_mb=None if traced is None else round(traced, 1),
                )
            )
            print(
                f"   phase {name:<58} {seconds:8.3f} s  peak RSS "
                f"{sampler.peak_own / _MB:,.0f} MB (with children {sampler.peak_tree / _MB:,.0f})"
            )

    def seconds(self, phase: str) -> float:
        return next(p.seconds for p in self.phases if p.name == phase)

    def write(self) -> Path:
        # results written earlier in the same `make bench` do not make the tree dirty; a commit
        # made while the benchmark ran does (the code measured is then not one commit's)
        dirty = self._commit != (_git("rev-parse", "HEAD") or "unknown") or bool(
            _git(
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!benchmarks/results",
                ":!benchmarks/RESULTS.md",
            )
        )
        result = Result(
            name=self.name,
            title=self.title,
            script=self.script,
            command=" ".join(
                ["python", "-m", f"benchmarks.{Path(self.script).stem}", *sys.argv[1:]]
            ),
            description=self.description,
            commit=self._commit,
            dirty=dirty,
            date=self._date.strftime("%Y-%m-%d %H:%M UTC"),
            machine=Machine(
                cores=os.cpu_count() or 0,
                cpu=_cpu_model(),
                memory_gb=round(psutil.virtual_memory().total / 1024**3, 1),
                system=f"{platform.system()} {platform.release()}",
                load_before=self._load_before,
                load_after=[round(x, 2) for x in os.getloadavg()],
            ),
            python=platform.python_version(),
            versions=_versions(),
            params=self.params,
            figures=self.figures,
            targets=self.targets,
            phases=self.phases,
            sources=repo_sources([self.script, *self.measures]),
        )
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(result.model_dump_json(indent=1) + "\n")
        print(
            f"   wrote {path.relative_to(REPO)}" + ("  (DIRTY tree: not citable)" if dirty else "")
        )
        return path

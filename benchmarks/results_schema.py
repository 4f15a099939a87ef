"""The shape of one benchmark's result file (`benchmarks/results/NAME.json`).

One schema shared by the writer (`benchmarks._results.Recorder`), the generator of RESULTS.md
(`benchmarks.report`) and the staleness test, so a figure cannot be written in a form the
report or the test would read differently.
"""

from __future__ import annotations

import hashlib
import json
import operator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).parent / "results"

Role = Literal["ours", "baseline", "reference", "check"]
Op = Literal[">=", "<=", "==", ">", "<"]
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Figure(_Strict):
    """One measured number. `role` says whose it is: ours, a baseline measured in the same run,
    a reference point (a limit, not a competitor), or a check (a count that must hold)."""

    key: str
    label: str
    value: float | int | str
    unit: str = ""
    role: Role = "ours"
    note: str = ""


class Target(_Strict):
    """A rule the benchmark is held to; `met` is derived from value, op and threshold."""

    key: str
    label: str
    value: float | int
    op: Op
    threshold: float | int
    unit: str = ""
    met: bool

    def holds(self) -> bool:
        return bool(OPS[self.op](self.value, self.threshold))


class Phase(_Strict):
    """Wall time and memory of one stretch of work, sampled while it ran."""

    name: str
    seconds: float
    rss_start_mb: float
    peak_rss_mb: float = Field(description="this process")
    peak_tree_rss_mb: float = Field(description="this process and its children (servers)")
    peak_traced_mb: float | None = Field(default=None, description="tracemalloc peak, if on")


class Machine(_Strict):
    cores: int
    cpu: str
    memory_gb: float
    system: str
    load_before: list[float]
    load_after: list[float]


class Result(_Strict):
    name: str
    title: str
    script: str
    command: str
    description: str
    commit: str
    dirty: bool
    date: str
    machine: Machine
    python: str
    versions: dict[str, str]
    params: dict[str, float | int | str | bool]
    figures: list[Figure]
    targets: list[Target]
    phases: list[Phase]
    sources: dict[str, str] = Field(description="repo path -> git blob sha1 when measured")


def blob_sha(path: Path) -> str:
    """Git's blob id of a file's content, computed without git (works in any clone)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def load(path: Path) -> Result:
    return Result.model_validate(json.loads(path.read_text()))


def load_all() -> dict[str, Result]:
    return {p.stem: load(p) for p in sorted(RESULTS_DIR.glob("*.json"))}


def stale_sources(result: Result) -> list[str]:
    """Repo files the result measured whose content changed since (or which are gone)."""
    changed = []
    for rel, sha in sorted(result.sources.items()):
        path = REPO / rel
        if not path.is_file() or blob_sha(path) != sha:
            changed.append(rel)
    return changed

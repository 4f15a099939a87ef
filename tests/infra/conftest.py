"""Fixtures of the infrastructure checks (helpers in infra_support.py)."""

from __future__ import annotations

import pytest
from infra_support import Module, load_all


@pytest.fixture(scope="session")
def modules() -> dict[str, Module]:
    """Every module by name: root, bootstrap and the five child modules."""
    return load_all()

"""Package-level contracts: one-way dependencies and a documented public API."""

from __future__ import annotations

import ast
from pathlib import Path

import analysis

PACKAGE = Path(analysis.__file__).resolve().parent
FORBIDDEN = ("lab", "synth_render", "experiments")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_analysis_never_imports_the_packages_that_depend_on_it():
    offenders = {
        path.name: sorted(imported_roots(path) & set(FORBIDDEN)) for path in PACKAGE.glob("*.py")
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_public_api_is_exported_and_documented():
    for name in analysis.__all__:
        assert hasattr(analysis, name)
    for name in ("fit_law", "bootstrap", "plot_fit", "get_law", "register_law", "n_to_reach", "run_fit"):
        assert name in analysis.__doc__

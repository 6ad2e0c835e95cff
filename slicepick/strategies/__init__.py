"""Suggestion strategies, one module per method, found by name.

Every strategy module defines ``suggest(k, ctx) -> list[int]``: the ``k`` pool sample ids to
annotate next, chosen among ``ctx.unannotated``. Optional module attributes:

``SINGLE_ROUND = True``          the method trains once (``full``) instead of round by round
``initial_selection(ctx, n)``    a round-0 set other than the shared seeded random start
``USES_MODEL = False``           ``suggest`` does not need the current segmentation model
``train_round(...)``             a method's own training step (DAL's ensemble, LL's head)
``NEEDS_GROUND_TRUTH = True``    it reads labels of unannotated samples (oracle, full): refused in annotate mode

A config block under ``methods:`` names the method; ``module:`` picks a module other than the
block's name, so ablations are config variants of one module (``ggs_z10: {module: ggs, ...}``).
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

_NOT_STRATEGIES = {"base"}


def available() -> list[str]:
    """Names of every strategy module in this package."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if m.name not in _NOT_STRATEGIES and not m.name.startswith("_"))


def module_name(method: str, method_cfg: dict | None) -> str:
    return (method_cfg or {}).get("module", method)


def get_strategy(name: str) -> ModuleType:
    """The strategy module ``name``; a typo lists the valid choices."""
    names = available()
    if name not in names:
        raise ValueError(f"unknown strategy '{name}'; available: {', '.join(names)}")
    return importlib.import_module(f"{__name__}.{name}")


def module_path(name: str) -> Path:
    """Source file of a strategy, declared as a rule input so edits rerun only that method."""
    return Path(__file__).parent / f"{name}.py"


def declared(name: str, constant: str, default=None):
    """A module-level constant of a strategy, read without importing it (no torch at DAG build)."""
    tree = ast.parse(module_path(name).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == constant for t in node.targets):
            return ast.literal_eval(node.value)
    return default

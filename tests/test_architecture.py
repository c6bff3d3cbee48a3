"""The architecture of docs/architecture.md, enforced: imports flow one way and the training path reads
on one screen. Imports inside functions count too (a lazy import that runs backwards is still backwards)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "cnnlab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the cnnlab modules it imports (anywhere in the file)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnlab"):
                for alias in node.names:  # `from cnnlab.x import y`: y may be a module itself
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("cnnlab")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_evaluation_imports_neither_engine_nor_export():
    for module, targets in _imports().items():
        if _package(module) == "evaluation":
            above = ("engine", "export", "viz", "teach", "serve", "api", "workflow")
            bad = {t for t in targets if _package(t) in above}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_runs_data_and_numpy_engine_never_import_upwards():
    upward = {"engine", "finetune", "export", "viz", "teach", "serve", "api", "workflow", "cli", "tune", "crossval"}
    for module, targets in _imports().items():
        if _package(module) in ("runs", "data", "numpy_engine", "models"):
            bad = {t for t in targets if _package(t) in upward}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_engine_never_imports_the_finetune_recipe_above_it():
    upward = {"finetune", "export", "viz", "teach", "serve", "api", "workflow", "cli", "tune", "crossval"}
    for module, targets in _imports().items():
        if _package(module) == "engine":
            bad = {t for t in targets if _package(t) in upward}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_no_import_cycle_between_modules():
    graph = _imports()
    graph.pop("cnnlab", None)  # the package's lazy name table points at everything by design
    for name, g in graph.items():
        g.discard("cnnlab")
        # a package's __init__ importing its own members (the registries: models, ...) aggregates
        # them; the arrow that counts is member -> package, so the aggregating one is dropped
        if (SRC.parent / name.replace(".", "/") / "__init__.py").is_file():
            graph[name] = {t for t in g if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_training_path_functions_fit_on_one_screen():
    """No function over 60 lines in the training path (the house model is numpy_engine/train.py)."""
    files = ["api.py", "workflow.py", "crossval.py", "engine/trainer.py", "engine/loop.py", "runs/run.py"]
    files += ["numpy_engine/train.py"]
    long = []
    for rel in files:
        tree = ast.parse((SRC / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{rel}:{node.name} ({n} lines)")
    assert not long, long


def test_plots_are_drawn_only_in_viz():
    for path in SRC.rglob("*.py"):
        if {"viz", "teach"} & set(path.relative_to(SRC).parts):  # run plots, teaching figures
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("matplotlib") for n in names), f"{path.relative_to(SRC)} plots outside viz"

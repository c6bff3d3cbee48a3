"""Built-in runs shipped inside the package: ``demo:mnist`` is a trained model you can use at minute one.

A built-in run is an ordinary run folder under ``cnnlab/demo/`` (package data), so every command
that takes a run folder takes its name too. :func:`resolve_run_path` alone turns the name into the
folder; it is called where a run is named: the CLI's RUN/MODEL arguments (``cli._options.run_path``),
:func:`~cnnlab.runs.run.open_run` / :func:`~cnnlab.runs.run.find_run`, ``api.evaluate`` and
``model.pretrained``. ``scripts/train_demo_model.py`` trains and writes it.

The installed package may be read-only (site-packages), so what a command would write beside a run
(report, plots, ``misclassified.csv``, exported files) goes to :func:`output_dir` instead: the run
folder itself for ordinary runs, ``runs/demo-mnist/`` under the current folder for ``demo:mnist``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cnnlab.errors import CnnlabError, did_you_mean

PREFIX = "demo:"
# name -> folder under cnnlab/demo/ (written by scripts/train_demo_model.py)
BUILTIN_RUNS = {"demo:mnist": "mnist"}


def builtin_root() -> Path:
    """The package folder holding the built-in runs (``cnnlab/demo``)."""
    return Path(str(resources.files("cnnlab").joinpath("demo")))


def resolve_run_path(value: str | Path) -> Path:
    """``demo:NAME`` -> the shipped run folder; any other value -> ``Path(value)`` unchanged.

    Raises CnnlabError for an unknown ``demo:`` name (listing the known ones) or a built-in run
    missing from the installed package."""
    text = str(value)
    if not text.startswith(PREFIX):
        return Path(value)
    if text not in BUILTIN_RUNS:
        raise CnnlabError(
            f"unknown built-in run {text!r};{did_you_mean(text, BUILTIN_RUNS)} built-in runs: {', '.join(BUILTIN_RUNS)}"
        )
    folder = builtin_root() / BUILTIN_RUNS[text]
    if not (folder / "model" / "model.json").is_file():
        raise CnnlabError(
            f"the built-in run {text} is missing from the installed package ({folder}); reinstall cnnlab "
            "or rebuild it with scripts/train_demo_model.py"
        )
    return folder


def builtin_name(path: str | Path) -> str | None:
    """The built-in name (``demo:mnist``) of a shipped run folder or a path inside it, else None."""
    try:
        p = Path(path).resolve()
        root = builtin_root().resolve()
    except OSError:
        return None
    for name, folder in BUILTIN_RUNS.items():
        if p.is_relative_to(root / folder):
            return name
    return None


def display_name(path: str | Path) -> str:
    """How a command names a run folder to the user: ``demo:mnist`` for the shipped run, else the path."""
    return builtin_name(path) or str(path)


def output_dir(run_dir: str | Path) -> Path:
    """Where a command writes what belongs beside a run: the run folder itself, or for a built-in run
    (inside the installed package, possibly read-only) ``runs/demo-NAME`` under the current folder."""
    name = builtin_name(run_dir)
    if name is None:
        return Path(run_dir)
    folder = Path("runs") / name.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

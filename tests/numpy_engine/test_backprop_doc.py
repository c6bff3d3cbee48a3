"""docs/learn/backprop.md links to the lines implementing each backward pass: the links must stay right."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "learn" / "backprop.md"
LINK = re.compile(r"\[`([\w.]+)`\]\(\.\./\.\./src/cnnlab/numpy_engine/(\w+\.py)#L(\d+)-L(\d+)\)")


def _span(path: Path, qualname: str) -> tuple[int, int]:
    nodes = ast.parse(path.read_text()).body
    node = None
    for part in qualname.split("."):
        node = next(n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
        nodes = node.body
    return node.lineno, node.end_lineno


def _links() -> list[tuple[str, str, int, int]]:
    return [(m[1], m[2], int(m[3]), int(m[4])) for m in LINK.finditer(DOC.read_text())]


def test_the_page_links_every_backward_pass():
    names = {name for name, *_ in _links()}
    required = {
        "conv2d_backward", "col2im", "maxpool2d_backward", "Linear.backward", "_BatchNorm.backward",
        "CrossEntropyLoss.backward", "avgpool2d_backward", "Dropout.backward", "ReLU.backward",
    }  # fmt: skip
    assert required <= names, required - names


@pytest.mark.parametrize("name,file,start,end", _links())
def test_link_points_at_the_definition(name, file, start, end):
    actual = _span(REPO / "src" / "cnnlab" / "numpy_engine" / file, name)
    assert (start, end) == actual, f"update the link to {name}: {file}#L{actual[0]}-L{actual[1]}"

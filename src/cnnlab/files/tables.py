"""CSV files cnnlab writes, with every cell safe to open in a spreadsheet.

Spreadsheet programs run a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula (some
also a leading tab or carriage return), so a class or file name such as
``=HYPERLINK("http://evil", "cat")`` in ``predictions.csv`` would execute when a user opens the file.
As OWASP advises against CSV injection, such a text cell is written with a leading single quote
(``'=HYPERLINK(...)``), which spreadsheets show as text. Numbers cnnlab formats itself (``-1.5e-03``)
are not text and pass unchanged. A text that already begins with a quote gets one more, so
:func:`unescape_cell` (the readers' side: :func:`reader`, :class:`DictReader`) gives back exactly the
text that was written, and a class named ``=x`` survives the round trip through its own files.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_RISKY_START = (*FORMULA_START, "'")  # a leading quote is escaped too, so unescaping is exact
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def escape_cell(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet runs as a formula (numbers and non-strings unchanged)."""
    if not isinstance(value, str) or not value.startswith(_RISKY_START) or _NUMBER.fullmatch(value):
        return value  # the start is tested first: most cells are plain words, and the pattern is the slow part
    return "'" + value


def unescape_cell(value: str) -> str:
    """The text :func:`escape_cell` was given."""
    return value[1:] if value.startswith("'") else value


def escape_row(row: Iterable[Any]) -> list[Any]:
    return [escape_cell(v) for v in row]


class _Writer:
    def __init__(self, f: IO[str], **kwargs: Any) -> None:
        self._w = csv.writer(f, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow(escape_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: IO[str], **kwargs: Any) -> _Writer:
    """``csv.writer`` whose text cells are escaped."""
    return _Writer(f, **kwargs)


def reader(f: IO[str], **kwargs: Any) -> Iterator[list[str]]:
    """``csv.reader`` giving back the text :func:`writer` was given."""
    for row in csv.reader(f, **kwargs):
        yield [unescape_cell(v) for v in row]


class DictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose header and text values are escaped."""

    def writeheader(self) -> Any:
        return self.writer.writerow(escape_row(self.fieldnames))

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        return super().writerow({k: escape_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[dict[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


class DictReader(csv.DictReader):
    """``csv.DictReader`` giving back the text :class:`DictWriter` was given (header included)."""

    @property
    def fieldnames(self) -> Any:
        names = super().fieldnames
        return None if names is None else [unescape_cell(n) for n in names]

    @fieldnames.setter
    def fieldnames(self, value: Any) -> None:
        csv.DictReader.fieldnames.fset(self, value)

    def __next__(self) -> dict[str, Any]:
        row = super().__next__()
        return {k: unescape_cell(v) if isinstance(v, str) else v for k, v in row.items()}

"""User-facing errors.

Everything a user can cause (a bad path, an unknown model, a wrong flag value, a broken image) is
raised as :class:`CnnlabError`. Its message names the thing that is wrong and says how to fix it;
the CLI prints that message alone, without a traceback, and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """An error the user can fix; the message says what happened and what to do."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean ...?' hint listing the closest names, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"

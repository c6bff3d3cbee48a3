"""Small text helpers shared by the commands' terminal output."""

from __future__ import annotations


def shorten(text: str, n: int, keep: str = "start") -> str:
    """``text`` cut to ``n`` characters with an ellipsis where it was cut: its start kept (names)
    or its end (file paths, whose end tells them apart)."""
    if len(text) <= n:
        return text
    return text[: n - 1] + "…" if keep == "start" else "…" + text[-(n - 1) :]

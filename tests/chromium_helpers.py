"""Headless Chromium for the browser tests: Debian's chromium driven by the playwright package.

Never `playwright install` (it downloads a browser). A test calling :func:`launch` is skipped, with
the reason, where playwright or chromium is missing; `.ci/run` installs both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

LAPTOP = {"width": 1366, "height": 768}
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def executable() -> str:
    """The chromium binary ($CNNLAB_CHROMIUM, chromium on PATH, or /usr/bin/chromium), or skip the test."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install it)")
    path = os.environ.get("CNNLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip(f"Debian's chromium is not installed at {path} (apt-get install -y chromium)")
    return path


def launch(pw):
    """A headless browser from ``sync_playwright()``'s ``pw``."""
    return pw.chromium.launch(executable_path=executable(), headless=True, args=ARGS)


@contextlib.contextmanager
def browser_page(**options):
    """A page of a fresh headless browser (``new_page(**options)``, a laptop's viewport unless given), closed
    after the ``with`` block; the test is skipped, with the reason, where playwright or chromium is missing."""
    executable()  # skips before playwright is imported where either is missing
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser.new_page(**{"viewport": LAPTOP, **options})
        finally:
            browser.close()

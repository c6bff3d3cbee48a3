"""Fixtures for the model tests: single-threaded torch (tests/single_thread.py)."""

from single_thread import one_thread  # noqa: F401 - an autouse fixture, active for every test here

"""Fine-tuning tests run single-threaded (tiny models gain nothing from more threads; the cores are shared)."""

from single_thread import one_thread  # noqa: F401 - an autouse fixture, active for every test here

"""Pausing the cyclic garbage collector over bulk passes that build many acyclic objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC, then hand what was allocated meanwhile to its oldest generation.

    A plan of 10,000 pipelines allocates millions of acyclic objects (rows, documents,
    entries); generational GC would only rescan them, again and again. Reference counting
    still frees them as usual. Without the hand-over, the first collections after the pause
    would scan every object it allocated, twice (young, then middle generation).
    freeze() + unfreeze() is the documented way to move all tracked objects to the oldest
    generation; it is skipped when someone else has frozen objects, which unfreeze() would
    release. Nested pauses are free: only the outermost one re-enables the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()

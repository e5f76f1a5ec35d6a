"""The garbage collector around scheduler batches.

A batch loads a thousand accounts and builds some hundred thousand short-lived objects (times,
cases, notices, rows), nearly all freed by reference counting as soon as the batch ends. CPython's
cycle collector, left alone, runs every 700 allocations and now and then walks the whole heap
(the policy, the modules, the web framework), which cost a quarter to a third of a batch's time
in the transitions benchmark. So:

- `settle()`, once when a process starts its loops: everything alive then (modules, policy,
  engine) lives as long as the process, and is moved out of the collector's sight
  (`gc.freeze`), so later full collections only walk what came after;
- `paused()`, around each batch: no collection while the batch runs; the collector resumes
  after it, and collects whatever cycles the batch left (there are few: the data model is made
  of immutable values).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # batches running now (the scheduler and a bulk import may overlap in `serve`)
_resume = False  # whether the collector was on when the first of them started


@contextmanager
def paused() -> Iterator[None]:
    """No cycle collection inside the block (nested and concurrent blocks share one pause);
    a collector that was off before stays off after."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def settle() -> None:
    """Collect once, then keep everything alive now out of later collections (`gc.freeze`):
    for a process about to run its loops, whose startup objects live as long as it does."""
    gc.collect()
    gc.freeze()

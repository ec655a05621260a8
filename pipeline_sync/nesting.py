"""How deeply JSON values nest, measured without recursion, and the stack room to parse or dump one."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The most levels recursion_room ever adds. The json module's C code recurses once per level,
# about 150 bytes of C stack each: 10,000 levels fit a thread's stack many times over.
MAX_ROOM = 10_000
# Frames beyond the levels themselves: the caller's stack and the call that recurses.
_HEADROOM = 200

_CONTAINERS = (dict, list, tuple)
_SCALARS = frozenset({str, int, float, bool, type(None)})

_lock = threading.Lock()
_holders = 0
_restore_to = 0


def nesting_depth(value: Any, stop_above: int = MAX_ROOM) -> int:
    """How deeply the dicts and lists (and tuples) of value nest: 0 for a scalar, 1 for {"a": 1}.

    Measured level by level, never recursing. Once the depth exceeds stop_above it stops and
    returns stop_above + 1, so a value that contains itself still gives an answer.
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level and depth <= stop_above:
        depth += 1
        below: list[Any] = []
        add = below.append
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                # Most values are scalars: a set lookup of their type rules them out fastest.
                if type(child) not in _SCALARS and isinstance(child, _CONTAINERS):
                    add(child)
        level = below
    return depth


@contextmanager
def recursion_room(levels: int) -> Iterator[None]:
    """Python's recursion limit raised by levels (at most MAX_ROOM) while the block runs.

    The limit belongs to the interpreter, not the thread: the first block in saves it, blocks
    running at the same time in other threads share the raised limit, and the last one out
    puts the saved limit back.
    """
    global _holders, _restore_to
    with _lock:
        if _holders == 0:
            _restore_to = sys.getrecursionlimit()
        _holders += 1
        wanted = _restore_to + min(max(levels, 0), MAX_ROOM) + _HEADROOM
        if sys.getrecursionlimit() < wanted:
            sys.setrecursionlimit(wanted)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                sys.setrecursionlimit(_restore_to)

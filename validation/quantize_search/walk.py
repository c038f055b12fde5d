"""The search's order and walk: which weights leave uint8 first, and where to stop.

Every unit starts in uint8. Its promotion to float16 costs one byte per number and removes (nearly all of) its
measured uint8 error, so units are promoted in order of error per byte (``promotion_order``); units whose uint8
error is 0 never move. The walk evaluates prefixes of that order (the first k units float16, the rest uint8) at
k = 0, 1, ..., STEP_LIMIT, then in growing steps up to every unit (``prefix_sizes``), and stops at the first k
whose AP on the choice images is within the budget there AND at the next ``STABLE`` prefixes: COCO AP on 20
images moves by a few 0.001 when single detections change, so one lucky prefix is not taken on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

STEP_LIMIT = 16     # prefixes 0..16 one unit at a time, then growing steps
GROWTH = 1.25       # each later prefix holds at least 25 % more units than the one before
STABLE = 2          # the accepted prefix and the next two all within the budget


@dataclass
class Step:
    k: int
    ap: float
    within: bool
    extra: dict


def promotion_order(errors: dict[str, float], counts: dict[str, int]) -> list[str]:
    """Unit keys by uint8 error per byte that float16 would add, largest first; error-free units left out."""
    keys = [k for k, e in errors.items() if e > 0]
    return sorted(keys, key=lambda k: (-errors[k] / max(counts[k], 1), k))


def prefix_sizes(n: int) -> list[int]:
    """0, 1, ..., STEP_LIMIT, then steps growing by GROWTH, always ending with n (every unit promoted)."""
    sizes = list(range(0, min(n, STEP_LIMIT) + 1))
    while sizes[-1] < n:
        sizes.append(min(n, max(sizes[-1] + 1, int(round(sizes[-1] * GROWTH)))))
    return sizes


def walk(sizes: list[int], evaluate: Callable[[int], Step], start: int = 0) -> tuple[Step | None, list[Step]]:
    """Evaluate prefixes from ``sizes[start]`` on; returns (the first step within the budget whose next STABLE
    steps are too (fewer at the end of the list), every step evaluated). None where no prefix qualifies."""
    steps: list[Step] = []
    for i in range(start, len(sizes)):
        steps.append(evaluate(sizes[i]))
        first = len(steps) - 1 - STABLE
        candidates = range(max(first, 0), len(steps)) if i == len(sizes) - 1 else [first] if first >= 0 else []
        for j in candidates:
            if all(s.within for s in steps[j:]):
                return steps[j], steps
    return None, steps

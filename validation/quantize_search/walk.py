"""The search's order and walk: which weights leave uint8 first, and where to stop.

Every unit starts in uint8. Its promotion to float16 costs one byte per number and removes (nearly all of) its
measured uint8 error, so units are promoted in order of error per byte (``promotion_order``); units whose uint8
error is 0 never move. A prefix k of that order is the mix with the first k units float16, the rest uint8.

Where to stop takes two measures of a prefix on the choice images, because one is not enough:

- **the output error per image** (``fidelity.output_error`` against float32, divided by the number of images):
  smooth, it falls as units are promoted (the units' errors add), and it does not depend on which detections
  happen to sit near a decision boundary;
- **the AP delta** to PyTorch on the choice half: what the user cares about, but on 20 images a single detection
  moves it by 0.01-0.02, up or down, at any error. Measured along the whole order on both halves
  (docs/quantization.md#how-auto-decides): mixes whose error is large score PyTorch's AP on the choice half by
  luck as often as not, while the held-back half loses 0.004-0.019; once the error per image is at most
  ``ERROR_PER_IMAGE`` the held-back half stays within the budget.

So a prefix is accepted where its error per image is within ``ERROR_PER_IMAGE`` AND its choice-half AP is within
the AP budget. The walk evaluates prefixes k = 0, 1, ..., STEP_LIMIT, then in growing steps (``prefix_sizes``)
until the error is within bound, bisects the last step to the smallest such k (the error falls with k), and from
there takes the first prefix whose AP is within the budget too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

STEP_LIMIT = 16          # prefixes 0..16 one unit at a time, then growing steps
GROWTH = 1.25            # each later prefix holds at least 25 % more units than the one before
ERROR_PER_IMAGE = 4.0    # the largest output error per image a mix may keep (fidelity.output_error units)


@dataclass
class Step:
    k: int
    ap: float
    within: bool            # the choice half's AP within the AP budget
    error: float            # output error per choice image against float32
    extra: dict

    @property
    def quiet(self) -> bool:
        """The mix moves the outputs little enough for its AP on 20 images to say something."""
        return self.error <= ERROR_PER_IMAGE


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


def first_quiet(sizes: list[int], evaluate: Callable[[int], Step]) -> int | None:
    """The smallest k whose mix is quiet: along ``sizes`` to the first quiet one, then bisecting the step before
    it (the error falls as k grows). None where not even every unit promoted is."""
    below = None
    for k in sizes:
        if evaluate(k).quiet:
            break
        below = k
    else:
        return None
    lo, hi = below, k
    while lo is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if evaluate(mid).quiet else (mid, hi)
    return hi


def walk(sizes: list[int], evaluate: Callable[[int], Step], after: int = -1) -> Step | None:
    """The first prefix beyond ``after`` (a prefix TFJS turned down) that is quiet and within the AP budget:
    the smallest quiet k, then the later ``sizes``. None where none is."""
    start = first_quiet(sizes, evaluate)
    if start is None:
        return None
    for k in [start] + [s for s in sizes if s > start]:
        if k <= after:
            continue
        step = evaluate(k)
        if step.quiet and step.within:
            return step
    return None

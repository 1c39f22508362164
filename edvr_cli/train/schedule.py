"""Learning rate as a pure function of the iteration: cosine annealing with restarts.

Same values as BasicSR's `CosineAnnealingRestartLR` as BasicSR's trainer steps it: the step with
0-based index `it` uses the scheduler position `it`, so it = 0 runs at the base lr and the last
step of a cycle (it == the cycle's cumulative end) reaches eta_min. Past the last cycle the lr
stays at eta_min (BasicSR stops with an error there).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate


def get_lr(it: int, base_lr: float, periods: tuple[int, ...], restart_weights: tuple[float, ...],
           eta_min: float) -> float:
    """Learning rate of step `it` (0-based).

    Args:
        it: optimizer steps already taken.
        base_lr: lr at the start of the first cycle.
        periods: cycle lengths in steps; cycle i covers positions (end_{i-1}, end_i], the first
            also position 0.
        restart_weights: lr multiplier of each cycle (same length as periods).
        eta_min: lr at each cycle's end.
    """
    ends = list(accumulate(periods))
    if it > ends[-1]:
        return eta_min
    cycle = bisect_left(ends, it)  # the first cycle whose end is >= it
    start = ends[cycle - 1] if cycle else 0
    progress = (it - start) / periods[cycle]
    return eta_min + restart_weights[cycle] * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))

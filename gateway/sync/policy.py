"""Retry timing for Graph requests. Pure."""

from __future__ import annotations

import random

__all__ = ["retry_delay", "MAX_DELAY"]

MAX_DELAY = 300.0


def retry_delay(attempt: int, retry_after: float | None = None, rng: random.Random | None = None,
                base: float = 2.0, cap: float = MAX_DELAY) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...).

    Graph's Retry-After wins when given (never retry sooner); otherwise
    capped exponential backoff with "full jitter" between half and all of
    the step, so that many gateways do not retry in lockstep.
    """
    if retry_after is not None:
        return max(0.0, float(retry_after))
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    r = (rng or random).random()
    return step * (0.5 + 0.5 * r)

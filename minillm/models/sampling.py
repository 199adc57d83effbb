"""Drawing the next token from a model's logits: temperature, top-k, and an exact sampler.

    next_ids = sample_next_token(logits[:, -1, :], temperature=0.8, top_k=200, generator=gen)

The draw is inverse-CDF sampling in float64: the probabilities are computed in float64, a token
removed by top-k has probability exactly 0, and one uniform number ``u`` per row picks the first
token whose cumulative probability exceeds ``u · total``. A token of probability 0 adds nothing
to the cumulative sum, so it can never be picked (a float32 cumulative sum over 50k tokens can end
7e-5 short of 1, and a draw past its end used to land on a removed token).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import backend

__all__ = ["top_k_logits", "sample_next_token"]


def top_k_logits(logits, k: int):
    """``logits`` (B, V) with every entry below the row's k-th largest set to -inf (ties with
    the k-th are kept)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k must be a positive integer, got {k!r}")
    xp = backend.get_array_module(logits)
    k = min(k, logits.shape[-1])
    kth = xp.sort(logits, axis=-1)[:, -k][:, None]
    return xp.where(logits < kth, -xp.inf, logits)


def sample_next_token(logits, temperature: float = 1.0, top_k: Optional[int] = None, generator=None):
    """One token id per row of ``logits`` (B, V), an array on the logits' device: (B,) int64.

    ``temperature`` divides the logits (< 1 sharpens, > 1 flattens; 0 takes the argmax, greedy);
    ``top_k`` keeps the k likeliest tokens of each row. ``generator``: the random generator to
    draw from (``minillm.backend.generator(device)``; by default the logits' device's).
    """
    if not 0 <= temperature < float("inf"):   # also refuses nan
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    xp = backend.get_array_module(logits)
    logits = xp.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_logits(logits, top_k)
    probs = xp.exp(logits - logits.max(axis=-1, keepdims=True))        # removed tokens: exactly 0
    cdf = xp.cumsum(probs, axis=-1)                                      # non-decreasing, float64
    total = cdf[:, -1:]
    if generator is None:
        generator = backend.generator(backend.device_of(logits))
    u = generator.random((logits.shape[0], 1), dtype=np.float64)
    # u·total < total, so some entry exceeds it; the first one has a probability > 0
    threshold = xp.minimum(u * total, xp.nextafter(total, 0))
    return (cdf <= threshold).sum(axis=-1).astype(np.int64)

"""Checks for lesson 12 (model growth). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import math

import numpy as np


def _mlp(W1, b1, W2, x):
    return np.maximum(W1 @ x.T + b1[:, None], 0.0).T @ W2.T


def exercise_1(fn):
    """Net2WiderNet on an MLP hidden layer preserves the function, for even and uneven copies."""
    rng = np.random.default_rng(0)
    W1, b1, W2 = rng.normal(size=(6, 4)), rng.normal(size=6), rng.normal(size=(3, 6))
    x = rng.normal(size=(10, 4))
    for mapping in (np.arange(12) % 6, np.concatenate([np.arange(6), [0, 0, 3]]), np.arange(6)):
        out = fn(W1.copy(), b1.copy(), W2.copy(), mapping.copy())
        assert isinstance(out, tuple) and len(out) == 3, "return a triple (W1', b1', W2')"
        W1n, b1n, W2n = (np.asarray(o) for o in out)
        h = len(mapping)
        assert W1n.shape == (h, 4) and b1n.shape == (h,) and W2n.shape == (3, h), (
            f"for {h} hidden units expected shapes W1' ({h}, 4), b1' ({h},), W2' (3, {h}); got "
            f"{W1n.shape}, {b1n.shape}, {W2n.shape}")
        err = np.abs(_mlp(W1n, b1n, W2n, x) - _mlp(W1, b1, W2, x)).max()
        assert err < 1e-10, (
            f"with mapping {mapping.tolist()} the widened MLP's outputs differ by {err:.3g}: copy the rows of W1 "
            "and b1 (incoming weights), copy the columns of W2 (outgoing) and divide each by the number of "
            "copies of its old unit (np.bincount(mapping))")


def exercise_2(fn):
    """The query scaling of wider heads keeps the attention scores."""
    rng = np.random.default_rng(1)
    for d_old, d_new in ((4, 8), (4, 6), (8, 24), (5, 5)):
        scale = np.asarray(fn(d_old, d_new), dtype=float)
        assert scale.shape == (d_new,), f"return one factor per new dimension: shape ({d_new},), got {scale.shape}"
        q, k = rng.normal(size=(7, d_old)), rng.normal(size=(7, d_old))
        g = np.arange(d_new) % d_old
        before = q @ k.T / math.sqrt(d_old)
        after = (q[:, g] * scale) @ k[:, g].T / math.sqrt(d_new)
        err = np.abs(after - before).max()
        assert err < 1e-10, (
            f"d {d_old} -> {d_new}: the scores q'·k'/√d' differ from q·k/√d by {err:.3g}. q'·k' counts old dimension "
            f"i once per copy, and the scale changes from 1/√{d_old} to 1/√{d_new}: divide by the copies and "
            "multiply by √(d_new/d_old)")


def exercise_3(fn):
    """The FLOPs formula agrees with minillm.growth.flops_per_token."""
    from minillm.growth import flops_per_token
    from minillm.models.gpt import GPTConfig
    for L, E, V, T in ((2, 64, 65, 64), (4, 128, 65, 64), (12, 768, 50304, 1024), (1, 16, 10, 8)):
        got = fn(L, E, V, T)
        want = flops_per_token(GPTConfig(n_layer=L, n_embd=E, vocab_size=V, block_size=T, n_head=1))
        assert got == want, (
            f"n_layer {L}, n_embd {E}, vocab {V}, block {T}: expected {want:,} FLOPs per token, got {got}. Per layer "
            "the matrices hold 12·E² weights (q,k,v 3E², out E², MLP 8E²), the tied head V·E; training is 6 FLOPs "
            "per weight per token, attention adds 12·n_layer·T·E")

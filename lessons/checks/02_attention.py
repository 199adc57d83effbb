"""Checks for lesson 02 (attention). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm.nn import functional as F


def exercise_1(fn):
    """The causal mask for t_q queries that are the last t_q of t_k positions."""
    first = fn(5, 5)
    for t_q, t_k in [(5, 5), (1, 1), (3, 7), (1, 6), (8, 8)]:
        got = first if (t_q, t_k) == (5, 5) else fn(t_q, t_k)
        got = got.numpy() if getattr(got, "_is_tensor", False) else np.asarray(got)
        expected = np.tri(t_q, t_k, k=t_k - t_q, dtype=bool)
        assert got.shape == (t_q, t_k), f"mask for t_q={t_q}, t_k={t_k} should have shape {(t_q, t_k)}, got {got.shape}"
        assert got.dtype == np.bool_, f"the mask should be boolean (True = allowed), got dtype {got.dtype}"
        if not np.array_equal(got, expected):
            raise AssertionError(
                f"wrong mask for t_q={t_q}, t_k={t_k}.\nexpected (1 = allowed):\n{expected.astype(int)}\n"
                f"got:\n{got.astype(int)}\nQuery i is at absolute position i + t_k - t_q and sees keys j <= that.")


def _inputs(rng, shape_q, shape_k, dv):
    q = minillm.tensor(rng.standard_normal(shape_q), dtype=minillm.float64, requires_grad=True)
    k = minillm.tensor(rng.standard_normal(shape_k), dtype=minillm.float64, requires_grad=True)
    v = minillm.tensor(rng.standard_normal(shape_k[:-1] + (dv,)), dtype=minillm.float64, requires_grad=True)
    return q, k, v


def exercise_2(fn):
    """Softmax attention forward, compared with F.scaled_dot_product_attention (outputs and gradients)."""
    rng = np.random.default_rng(0)
    q, k, v = _inputs(rng, (2, 3, 5, 8), (2, 3, 5, 8), 4)
    out = fn(q, k, v, None)
    if isinstance(out, tuple):
        raise AssertionError("return only the output tensor, not (output, weights)")
    cases = [("no mask", (q, k, v), None, out)]
    q2, k2, v2 = _inputs(rng, (2, 2, 4, 8), (2, 2, 6, 8), 3)
    kv_causal = np.tri(4, 6, k=2, dtype=bool)
    cases.append(("causal mask with t_q=4, t_k=6", (q2, k2, v2), kv_causal, None))
    q3, k3, v3 = _inputs(rng, (2, 2, 5, 8), (2, 2, 5, 8), 8)
    pad = np.ones((2, 1, 1, 5), dtype=bool)
    pad[1, ..., 3:] = False
    cases.append(("causal + padding mask", (q3, k3, v3), np.tri(5, 5, dtype=bool) & pad, None))
    for name, (a, b, c), mask, got in cases:
        if got is None:
            got = fn(a, b, c, mask)
        assert getattr(got, "_is_tensor", False), (
            f"return a minillm Tensor (built with tensor ops so autograd works), got {type(got).__name__}")
        expected = F.scaled_dot_product_attention(a, b, c, attn_mask=mask)
        assert got.shape == expected.shape, f"{name}: expected output shape {expected.shape}, got {got.shape}"
        err = np.abs(got.numpy() - expected.numpy()).max()
        if not err <= 1e-6:
            hint = " Did you divide the scores by sqrt(d), with d = q.shape[-1]?" if mask is None else \
                " Masked scores should be -inf (minillm.masked_fill(scores, ~mask, float('-inf'))) before the softmax."
            raise AssertionError(f"{name}: outputs differ from the library by {err:.2e}.{hint}")
        assert got.requires_grad, (f"{name}: the output does not require grad: use minillm tensor operations "
                                   "(@, .transpose, minillm.softmax, minillm.masked_fill), not NumPy")
        g = minillm.tensor(rng.standard_normal(got.shape), dtype=minillm.float64)
        grads = minillm.grad(got, [a, b, c], g, allow_unused=True)
        ref = minillm.grad(expected, [a, b, c], g)
        for label, gg, rr in zip("qkv", grads, ref):
            assert gg is not None, f"{name}: no gradient reaches {label}: is it used through tensor operations?"
            err = np.abs(gg.numpy() - rr.numpy()).max()
            assert err <= 1e-6, f"{name}: the gradient of {label} differs from the library's by {err:.2e}"


def exercise_3(fn):
    """(B, T, E) -> (B, H, T, E/H), head h of token t = x[b, t, h*d:(h+1)*d]."""
    b, t, e, h = 2, 5, 12, 3
    x = minillm.tensor(np.arange(b * t * e, dtype=np.float64).reshape(b, t, e))
    got = fn(x, h)
    got = got.numpy() if getattr(got, "_is_tensor", False) else np.asarray(got)
    d = e // h
    assert got.shape == (b, h, t, d), f"expected shape (B, H, T, E/H) = {(b, h, t, d)}, got {got.shape}"
    expected = x.numpy().reshape(b, t, h, d).transpose(0, 2, 1, 3)
    if not np.array_equal(got, expected):
        raise AssertionError("the shape is right but the values are scrambled: head 1 of token 0 should be "
                             f"{expected[0, 1, 0]}, got {got[0, 1, 0]}. Reshape to (B, T, H, d) first "
                             "(splitting the last axis), then swap the T and H axes")

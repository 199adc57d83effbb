"""Fused attention: the formula is ``F.scaled_dot_product_attention`` (its manual form,
``F.attention``); this is the same computation as one graph node, the softmax done in place
on the score matrix, with the backward in closed form."""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import compiled
from .base import FusedFunction
from .threads import over_rows


@functools.lru_cache(maxsize=16)
def _causal_mask(tq, tk):
    return np.tri(tq, tk, tk - tq, dtype=bool)


def causal_offset(keep, tq, tk):
    """``tk − tq`` if ``keep`` is exactly the causal mask (query i sees keys ≤ i + tk − tq, as
    ``ops.tril_mask`` builds it for ``is_causal``), else None. Checks the values (Tq·Tk booleans),
    so a hand-made causal mask takes the compiled path too."""
    if not isinstance(keep, np.ndarray) or keep.shape[-2:] != (tq, tk) or keep.size != tq * tk:
        return None
    return tk - tq if np.array_equal(keep.reshape(tq, tk), _causal_mask(tq, tk)) else None


class Attention(FusedFunction):
    """softmax(q kᵀ · scale + mask) v, with dropout on the attention probabilities.

    q: (..., Tq, d), k: (..., Tk, d), v: (..., Tk, dv) -> (..., Tq, dv). ``keep`` is a boolean
    array broadcastable to (..., Tq, Tk): False positions get exactly zero weight (a query row
    with no allowed key outputs zeros). ``drop`` is the dropout multiplier (0 or 1/(1−p)) of
    the probabilities. Backward (Vaswani et al., 2017, eq. 1, differentiated):
    dv = P̃ᵀg with P̃ the dropped-out P, dP̃ = g vᵀ, dS = P ⊙ (dP − Σ dP⊙P) with dP = dP̃⊙drop,
    dq = dS k · scale, dk = dSᵀ q · scale.
    """

    def forward(self, q, k, v, keep=None, drop=None, scale=1.0):
        return self._attend(q, k, v, keep, drop, scale)

    def _attend(self, q, k, v, keep, drop, scale):
        xp = backend.get_array_module(q)
        # the compiled causal softmax (compiled.py): one pass per row over the visible keys only,
        # with the scale applied inside its exponent (for scale > 0), so q is not scaled first
        self.causal = None
        scores = int(np.prod(np.broadcast_shapes(q.shape[:-2], k.shape[:-2]))) * q.shape[-2] * k.shape[-2]
        if scale > 0 and scores and compiled.usable(q, k, dtypes=(np.float32,), elements=scores):
            self.causal = causal_offset(keep, q.shape[-2], k.shape[-2])
        if self.causal is not None:
            s = np.ascontiguousarray(q @ k.swapaxes(-1, -2))   # matmul keeps a permuted input's memory order
            s3 = s.reshape(-1, s.shape[-2], s.shape[-1])
            loop = compiled.kernel("causal_softmax_forward")
            over_rows(lambda rows: loop(s3[rows], self.causal, scale, np.empty(s.shape[-1], np.int32)), s3)
            keep = None
        else:
            s = (q * scale) @ k.swapaxes(-1, -2)   # scaling q costs Tq·d, scaling s would cost Tq·Tk
        # an additive 0/−inf bias, broadcast in place: cheaper than a masked copy of s
        bias = None if keep is None else xp.where(keep, 0.0, -xp.inf).astype(s.dtype)

        def softmax_rows(rows):  # rows: a slice of the first (batch) axis
            sr = s[rows]
            if bias is not None:
                sr += bias if bias.ndim < s.ndim or bias.shape[0] == 1 else bias[rows]
            m = sr.max(axis=-1, keepdims=True)
            if bias is not None:
                m[~xp.isfinite(m)] = 0  # fully masked rows: avoid inf − inf, output zeros
            sr -= m
            xp.exp(sr, out=sr)
            total = sr.sum(axis=-1, keepdims=True)
            if bias is not None:
                total[total == 0] = 1
            sr *= 1.0 / total
        if s.size and self.causal is None:
            over_rows(softmax_rows, s)
        self.p = s
        self.pd = s * drop if drop is not None else s
        return self.pd @ v

    def fast_backward(self, g):
        q, k, v = (x.data for x in self.inputs[:3])
        return self._attend_backward(g, q, k, v, [self.needs_grad(i) for i in range(3)])

    def _attend_backward(self, g, q, k, v, wanted):
        scale, drop = self.options["scale"], self.options.get("drop")
        gv = self.pd.swapaxes(-1, -2) @ g if wanted[2] else None
        dp = g @ v.swapaxes(-1, -2)
        # a v with more batch entries than q and k broadcasts P in the forward, so dP is larger
        p = self.p if self.p.shape == dp.shape else backend.get_array_module(dp).broadcast_to(self.p, dp.shape)

        def softmax_backward_rows(rows):  # dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place in dp
            dr, pr = dp[rows], p[rows]
            if drop is not None:
                dr *= drop[rows] if drop.ndim == dp.ndim and drop.shape[0] == dp.shape[0] else drop
            dr -= (dr * pr).sum(axis=-1, keepdims=True)
            dr *= pr
        if dp.size and self.causal is not None and dp.dtype == self.p.dtype and dp.flags.c_contiguous:
            if drop is not None:
                dp *= drop
            dp3 = dp.reshape(-1, dp.shape[-2], dp.shape[-1])
            p3 = np.ascontiguousarray(p).reshape(dp3.shape)
            loop = compiled.kernel("causal_softmax_backward")
            over_rows(lambda rows: loop(dp3[rows], p3[rows], self.causal, scale), dp3)
            scale = 1.0   # the loop has multiplied dS by it
        elif dp.size:
            over_rows(softmax_backward_rows, dp)
        gq = gk = None
        if wanted[0]:
            gq = dp @ k
            if scale != 1.0:
                gq *= scale
        if wanted[1]:
            gk = dp.swapaxes(-1, -2) @ q
            if scale != 1.0:
                gk *= scale
        return gq, gk, gv


class PackedSelfAttention(Attention):
    """Multi-head self-attention on the packed projection ``qkv`` (B, T, 3E) (the output of one
    (E, 3E) linear layer): out (B, T, E). The formula (``F.packed_self_attention``) splits qkv
    into q, k, v, reshapes each to heads (B, H, T, E/H), attends, and merges the heads back:
    seven graph nodes, whose backward allocates a zero (B, T, 3E) gradient per split piece and
    adds the three. Here it is one node: q, k and v are strided views of qkv, and the backward
    writes the three gradients into one (B, T, 3E) array."""

    def forward(self, qkv, num_heads, keep=None, drop=None, scale=1.0):
        b, t, packed = qkv.shape
        heads = qkv.reshape(b, t, 3, num_heads, packed // (3 * num_heads))
        self.views = tuple(heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))   # (B, H, T, E/H)
        out = self._attend(*self.views, keep, drop, scale)
        return out.transpose(0, 2, 1, 3).reshape(b, t, packed // 3)

    def fast_backward(self, g):
        xp = backend.get_array_module(g)
        b, t, e = g.shape
        num_heads = self.options["num_heads"]
        g_heads = g.reshape(b, t, num_heads, e // num_heads).transpose(0, 2, 1, 3)
        grads = self._attend_backward(g_heads, *self.views, [True, True, True])
        packed = xp.empty((b, t, 3, num_heads, e // num_heads), dtype=g.dtype)
        for i, gi in enumerate(grads):
            packed[:, :, i] = gi.transpose(0, 2, 1, 3)
        return packed.reshape(b, t, 3 * e)

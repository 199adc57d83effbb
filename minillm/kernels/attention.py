"""Fused attention: the formula is ``F.scaled_dot_product_attention`` (its manual form,
``F.attention``); this is the same computation as one graph node, the softmax done in place
on the score matrix, with the backward in closed form."""
from __future__ import annotations

from .. import backend
from .base import FusedFunction
from .threads import over_rows


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
        xp = backend.get_array_module(q)
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
        if s.size:
            over_rows(softmax_rows, s)
        self.p = s
        self.pd = s * drop if drop is not None else s
        return self.pd @ v

    def fast_backward(self, g):
        q, k, v = (x.data for x in self.inputs[:3])
        scale, drop = self.options["scale"], self.options.get("drop")
        gv = self.pd.swapaxes(-1, -2) @ g if self.needs_grad(2) else None
        dp = g @ v.swapaxes(-1, -2)

        def softmax_backward_rows(rows):  # dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place in dp
            dr, pr = dp[rows], self.p[rows]
            if drop is not None:
                dr *= drop[rows] if drop.ndim == dp.ndim and drop.shape[0] == dp.shape[0] else drop
            dr -= (dr * pr).sum(axis=-1, keepdims=True)
            dr *= pr
        if dp.size:
            over_rows(softmax_backward_rows, dp)
        gq = gk = None
        if self.needs_grad(0):
            gq = dp @ k
            gq *= scale
        if self.needs_grad(1):
            gk = dp.swapaxes(-1, -2) @ q
            gk *= scale
        return gq, gk, gv

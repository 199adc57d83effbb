"""Fused layer norm: the formula is ``F.layer_norm``; this is the same normalization in one
pass per row block (threaded on large CPU arrays) with the backward in closed form."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import compiled
from .base import FusedFunction
from .gelu import as_rows
from .threads import over_rows


class LayerNorm(FusedFunction):
    """Forward: x̂ = (x − μ)/√(σ² + ε), y = x̂·w + b over the last ``len(normalized_shape)`` dims.
    Backward (Ba et al., 2016): dx = (1/√(σ² + ε))·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·w,
    dw = Σ g·x̂, db = Σ g (sums over the rows)."""

    def forward(self, x, weight, bias, normalized_shape, eps):
        xp = backend.get_array_module(x)
        d = 1
        for s in normalized_shape:
            d *= s
        x2 = as_rows(x).reshape(-1, d) if x.size else x.reshape(0, d)   # (rows, normalized features)
        w = None if weight is None else weight.reshape(d)
        b = None if bias is None else bias.reshape(d)
        self.xhat, out = xp.empty_like(x2), xp.empty_like(x2)
        self.rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)

        if x2.size and compiled.usable(x2):   # one compiled loop per row block (compiled.py)
            loop = compiled.kernel("layer_norm_forward")
            w1 = xp.ones(d, x2.dtype) if w is None else xp.ascontiguousarray(w, dtype=x2.dtype)
            b1 = xp.zeros(d, x2.dtype) if b is None else xp.ascontiguousarray(b, dtype=x2.dtype)
            over_rows(lambda rows: loop(x2[rows], w1, b1, eps, self.xhat[rows], self.rstd[rows], out[rows]), x2)
            return out.reshape(x.shape)

        def kernel(rows):
            xh, o = self.xhat[rows], out[rows]
            xp.subtract(x2[rows], x2[rows].mean(axis=1, keepdims=True), out=xh)
            xp.multiply(xh, xh, out=o)             # o as scratch for the squares
            r = self.rstd[rows]
            r[...] = 1.0 / xp.sqrt(o.mean(axis=1, keepdims=True) + eps)
            xh *= r
            if w is not None:
                xp.multiply(xh, w, out=o)
            else:
                o[...] = xh
            if b is not None:
                o += b
        if x2.size:
            over_rows(kernel, x2)
        return out.reshape(x.shape)

    def fast_backward(self, g):
        xp = backend.get_array_module(g)
        weight, bias = self.inputs[1], self.inputs[2]
        xhat = self.xhat
        g2 = as_rows(g).reshape(xhat.shape)
        w = None if weight is None else weight.data.reshape(-1)
        want_w = weight is not None and self.needs_grad(1)
        gx = xp.empty_like(g2) if self.needs_grad(0) else None
        partial_w = {}
        if g2.size and compiled.usable(g2, xhat):
            return self._compiled_backward(g, g2, w, gx, want_w)

        def kernel(rows):
            gr, xh = g2[rows], xhat[rows]
            gxh = gr * xh
            if want_w:
                partial_w[rows.start] = gxh.sum(axis=0)   # dw = Σ g·x̂, summed per block
            if gx is None:
                return
            ghat = gx[rows]
            if w is not None:
                xp.multiply(gr, w, out=ghat)
                gxh *= w
            else:
                ghat[...] = gr
            mean_g = ghat.mean(axis=1, keepdims=True)
            mean_gx = gxh.mean(axis=1, keepdims=True)
            ghat -= mean_g
            xp.multiply(xh, mean_gx, out=gxh)
            ghat -= gxh
            ghat *= self.rstd[rows]
        if g2.size:
            over_rows(kernel, g2)
        gw = gb = None
        if want_w:
            gw = sum(partial_w[k] for k in sorted(partial_w)) if partial_w else xp.zeros(weight.shape, dtype=g.dtype)
            gw = gw.reshape(weight.shape)
        if bias is not None and self.needs_grad(2):
            gb = g2.sum(axis=0).reshape(bias.shape)
        return (None if gx is None else gx.reshape(g.shape)), gw, gb

    def _compiled_backward(self, g, g2, w, gx, want_w):
        """The backward as one compiled loop per row block (``numba_loops.layer_norm_backward``);
        each block sums its own dw and db in float64, added up here."""
        weight, bias = self.inputs[1], self.inputs[2]
        xhat, d = self.xhat, self.xhat.shape[1]
        loop = compiled.kernel("layer_norm_backward")
        w1 = np.ones(d, g2.dtype) if w is None else np.ascontiguousarray(w, dtype=g2.dtype)
        gx2 = gx if gx is not None else np.empty((1, d), g2.dtype)   # unused when want_x is False
        partial = {}

        def kernel(rows):
            acc_w, acc_b = np.zeros(d), np.zeros(d)
            loop(g2[rows], xhat[rows], self.rstd[rows], w1, gx2[rows] if gx is not None else gx2,
                 acc_w, acc_b, gx is not None)
            partial[rows.start] = acc_w, acc_b
        over_rows(kernel, g2)
        blocks = [partial[start] for start in sorted(partial)]   # a fixed order: bitwise reproducible
        gw = gb = None
        if want_w:
            gw = sum(a for a, _ in blocks).astype(g2.dtype).reshape(weight.shape)
        if bias is not None and self.needs_grad(2):
            gb = sum(b for _, b in blocks).astype(g2.dtype).reshape(bias.shape)
        return (None if gx is None else gx.reshape(g.shape)), gw, gb

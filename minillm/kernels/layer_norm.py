"""Fused layer norm: the formula is ``F.layer_norm``; this is the same normalization in one
pass per row block (threaded on large CPU arrays) with the backward in closed form."""
from __future__ import annotations

from .. import backend
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
            gw = sum(partial_w.values()) if partial_w else xp.zeros(weight.shape, dtype=g.dtype)
            gw = gw.reshape(weight.shape)
        if bias is not None and self.needs_grad(2):
            gb = g2.sum(axis=0).reshape(bias.shape)
        return (None if gx is None else gx.reshape(g.shape)), gw, gb

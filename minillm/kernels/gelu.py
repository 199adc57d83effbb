"""Fused GELU: the formula is ``minillm.ops.gelu``; this is the same function in a few in-place
passes over row blocks, threaded on large CPU arrays."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from . import compiled
from .base import FusedFunction
from .threads import over_rows

GELU_TANH_K = math.sqrt(2 / math.pi)   # √(2/π) in GPT-2's tanh approximation
GELU_TANH_C = 0.044715                 # the cubic coefficient of that approximation


def as_rows(a):
    """A C-contiguous 2-D view (rows, last dim) of ``a`` (a copy only if ``a`` is not contiguous).

    The kernels below write through such views, so every output must be C-contiguous: an output
    made with ``empty_like`` of a permuted input would share the input's strides, and reshaping it
    would silently copy, so the kernel would fill the copy and return garbage.
    """
    a = backend.get_array_module(a).ascontiguousarray(a)
    if a.ndim == 0:
        return a.reshape(1, 1)
    rows = 1
    for s in a.shape[:-1]:
        rows *= s
    return a.reshape(rows, a.shape[-1])


class GELU(FusedFunction):
    """GELU x·Φ(x), exact (erf) or GPT-2's tanh form, computed as x·σ(2u),
    u = √(2/π)(x + 0.044715x³), since 0.5(1 + tanh(u)) = σ(2u) and NumPy's float32 exp is about
    twice as fast as its tanh. NumPy's passes save s = Φ(x) or σ(2u) for the backward; the
    compiled tanh loop (``numba_loops.gelu_tanh_forward``) saves only x and recomputes s."""

    def forward(self, x, approximate="none"):
        xp = backend.get_array_module(x)
        self.approximate = approximate
        self.x = x2 = as_rows(x)
        out = xp.empty_like(x2)
        if approximate == "tanh" and x2.size and compiled.usable(x2, dtypes=(np.float32,)):
            # the compiled loop keeps no s: its backward recomputes it from x (self.s None says so)
            loop, k, c = compiled.kernel("gelu_tanh_forward"), np.float32(GELU_TANH_K), np.float32(GELU_TANH_C)
            self.s = None
            over_rows(lambda rows: loop(x2[rows], k, c, out[rows]), x2)
            return out.reshape(x.shape)
        self.s = s2 = xp.empty_like(x2)

        def kernel(rows):
            xr, sr = x2[rows], s2[rows]
            if approximate == "tanh":
                xp.multiply(xr, xr, out=sr)
                sr *= GELU_TANH_C
                sr += 1
                sr *= xr
                sr *= -2 * GELU_TANH_K
                with np.errstate(over="ignore"):  # exp(+large) = inf gives σ = 1/(1+inf) = 0: exact
                    xp.exp(sr, out=sr)
                sr += 1
                xp.reciprocal(sr, out=sr)
            else:
                sr[...] = backend.erf(xr * (1 / math.sqrt(2)))
                sr += 1
                sr *= 0.5
            xp.multiply(xr, sr, out=out[rows])
        over_rows(kernel, x2)
        return out.reshape(x.shape)

    def fast_backward(self, g):
        xp = backend.get_array_module(g)
        x2, s2, g2 = self.x, self.s, as_rows(g)
        d = xp.empty_like(x2)
        if s2 is None:   # the forward ran the compiled loop: so does the backward, whatever g's dtype
            loop = compiled.kernel("gelu_tanh_backward")
            k, c, k3c = (np.float32(v) for v in (GELU_TANH_K, GELU_TANH_C, 3 * GELU_TANH_C * GELU_TANH_K))
            over_rows(lambda rows: loop(x2[rows], g2[rows], k, c, k3c, d[rows]), d)
            return d.reshape(g.shape)

        def kernel(rows):
            xr, sr, dr = x2[rows], s2[rows], d[rows]
            if self.approximate == "tanh":
                # d/dx x·σ(2u) = σ + x·σ(1−σ)·2u',  u' = k(1 + 3c·x²)
                xp.multiply(xr, xr, out=dr)
                dr *= 6 * GELU_TANH_C * GELU_TANH_K
                dr += 2 * GELU_TANH_K
                dr *= xr
                t = 1 - sr
                t *= sr
                dr *= t
            else:
                # d/dx x·Φ(x) = Φ(x) + x·φ(x),  φ(x) = exp(−x²/2)/√(2π)
                xp.multiply(xr, xr, out=dr)
                dr *= -0.5
                xp.exp(dr, out=dr)
                dr *= xr
                dr *= 1 / math.sqrt(2 * math.pi)
            dr += sr
            dr *= g2[rows]
        over_rows(kernel, d)
        return d.reshape(g.shape)

"""The compiled loops behind ``compiled.py`` (numba; imported only when first used).

Each kernel works on a 2-D C-contiguous block of rows, so ``threads.py`` can hand disjoint blocks
to its threads. The formulas they compute are ``F._layer_norm_formula`` and
``ops._gelu_formula``; the tests require the same results as NumPy's passes.
"""
from __future__ import annotations

import numba
import numpy as np

# reassociation lets the compiler vectorize the row sums; no 'nnan'/'ninf', so NaN and ±inf
# propagate as they do in NumPy
_FLAGS = {"reassoc", "contract", "nsz", "arcp"}


def _jit(fn):
    return numba.njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")(fn)


# ---------------------------------------------------------------------- layer norm
@_jit
def layer_norm_forward(x, weight, bias, eps, xhat, rstd, out):
    """Rows of x (n, d): xhat = (x − μ)·rstd with rstd = 1/√(σ² + ε), out = xhat·weight + bias.
    The variance is the mean of the centred squares, as the formula computes it; the sums are
    accumulated in float64."""
    n, d = x.shape
    for i in range(n):
        total = 0.0
        for j in range(d):
            total += x[i, j]
        mean = total / d
        sq = 0.0
        for j in range(d):
            c = x[i, j] - mean
            xhat[i, j] = c
            sq += c * c
        r = 1.0 / np.sqrt(sq / d + eps)
        rstd[i, 0] = r
        for j in range(d):
            h = xhat[i, j] * r
            xhat[i, j] = h
            out[i, j] = h * weight[j] + bias[j]


@_jit
def layer_norm_backward(g, xhat, rstd, weight, gx, gw, gb, want_x):
    """dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·weight (Ba et al., 2016, differentiated);
    adds this block's Σ g·x̂ into ``gw`` and Σ g into ``gb`` (float64 (d,) accumulators)."""
    n, d = g.shape
    for i in range(n):
        mean_g = 0.0
        mean_gx = 0.0
        for j in range(d):
            gj = g[i, j]
            hj = xhat[i, j]
            gw[j] += gj * hj
            gb[j] += gj
            ghat = gj * weight[j]
            mean_g += ghat
            mean_gx += ghat * hj
        if want_x:
            mean_g /= d
            mean_gx /= d
            r = rstd[i, 0]
            for j in range(d):
                gx[i, j] = (g[i, j] * weight[j] - mean_g - xhat[i, j] * mean_gx) * r


# ---------------------------------------------------------------------- GELU, tanh form
@numba.njit(inline="always", fastmath={"contract", "nsz"}, error_model="numpy")
def tanh32(u):
    """float32 tanh as a rational function (Eigen's ``generic_fast_tanh_float``: u·p(u²)/q(u²),
    a few ulp from tanh on |u| ≤ 7.9053, where float32 tanh is within 3 ulp of ±1). Outside that
    range, ±inf included, it is exactly ±1, so σ(2u) = ½(1 + tanh u) reaches exactly 0 and 1 as
    NumPy's float32 ``exp`` gives it. NaN stays NaN (both comparisons are False)."""
    # selects, not branches, so that the loop calling this vectorizes
    clamp = np.float32(7.90531110763549805)
    one = np.float32(1.0)
    big = u > clamp
    small = u < -clamp
    u = clamp if big else u
    u = -clamp if small else u
    u2 = u * u
    p = np.float32(-2.76076847742355e-16)
    p = p * u2 + np.float32(2.00018790482477e-13)
    p = p * u2 + np.float32(-8.60467152213735e-11)
    p = p * u2 + np.float32(5.12229709037114e-08)
    p = p * u2 + np.float32(1.48572235717979e-05)
    p = p * u2 + np.float32(6.37261928875436e-04)
    p = p * u2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * u2 + np.float32(1.18534705686654e-04)
    q = q * u2 + np.float32(2.26843463243900e-03)
    q = q * u2 + np.float32(4.89352518554385e-03)
    t = u * p / q
    t = one if big else t
    return -one if small else t


@numba.njit(inline="always", fastmath={"contract", "nsz"}, error_model="numpy")
def _sigma_2u(v, k, c):
    """s = ½(1 + tanh u) = σ(2u), u = k(v + c·v³): the factor GELU multiplies x by."""
    return np.float32(0.5) * (np.float32(1.0) + tanh32(k * (v + c * v * v * v)))


@_jit
def gelu_tanh_forward(x, k, c, out):
    """float32 rows: out = x·s with s = ½(1 + tanh u) = σ(2u), u = k(x + c·x³) (GPT-2's GELU,
    k = √(2/π), c = 0.044715). ``k`` and ``c`` are float32 scalars, so the loop stays in float32.
    s is not stored: the backward computes it again from x (as PyTorch's ``gelu_backward`` does),
    which reads and writes one array fewer each way and keeps no (rows, d) buffer between them."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            v = x[i, j]
            out[i, j] = v * _sigma_2u(v, k, c)


@_jit
def gelu_tanh_backward(x, grad, k, c, k3c, dx):
    """float32 rows: dx = grad·(s + x·2u'·s(1 − s)), u' = k + 3ck·x² (``k3c`` = 3ck), since
    d/dx σ(2u) = 2u'·σ(2u)(1 − σ(2u)); s recomputed from x exactly as the forward computed it."""
    n, d = x.shape
    one = np.float32(1.0)
    two = np.float32(2.0)
    for i in range(n):
        for j in range(d):
            v = x[i, j]
            sv = _sigma_2u(v, k, c)
            du = two * (k + k3c * v * v)
            dx[i, j] = grad[i, j] * (sv + v * du * sv * (one - sv))


# ---------------------------------------------------------------------- causal softmax (attention)
# Cephes' expf: exp(x) = 2^n · e^r with n = round(x·log2 e), r = x − n·ln 2 (ln 2 split in two
# parts so that r is exact), e^r by a degree-7 polynomial, 2^n built in the float32 exponent bits.
# Written with selects and integer bit patterns so that the loop vectorizes (numba's own exp is
# a scalar libm call, ~10× slower than NumPy's float32 exp). Within 2 ulp of exp on [−87.3, 0].
_EXP_LOW = -87.33654   # below this e^x underflows float32's normal range: the result is 0


@numba.njit(inline="always", fastmath={"contract", "nsz"}, error_model="numpy")
def _exp32_mantissa(x):
    """For x ≤ 0 (float32): (e^r, n) with e^x = e^r·2^n; x < −87.34 (and −inf) give n = −127,
    whose 2^n bit pattern is 0, so e^x = 0 exactly. NaN stays NaN through e^r."""
    under = x < np.float32(_EXP_LOW)
    x = np.float32(_EXP_LOW) if under else x
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    n = np.float32(-127.0) if under else n
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    y = np.float32(1.9875691500e-4)
    y = y * r + np.float32(1.3981999507e-3)
    y = y * r + np.float32(8.3334519073e-3)
    y = y * r + np.float32(4.1665795894e-2)
    y = y * r + np.float32(1.6666665459e-1)
    y = y * r + np.float32(5.0000001201e-1)
    y = y * r * r + r + np.float32(1.0)
    return y, n


_LANES = 8   # independent running maxima: a max carried through one variable cannot vectorize


@numba.njit(inline="always", fastmath={"contract", "nsz"}, error_model="numpy")
def _row_max(row, keys, lanes):
    """max(row[:keys]) for keys ≥ 1, NaN entries ignored (NumPy gives NaN there; the row still
    becomes NaN through exp(NaN − max)). ``lanes``: a scratch array of ``_LANES`` entries."""
    top = row[0]
    j = 0
    if keys >= _LANES:
        for lane in range(_LANES):
            lanes[lane] = row[lane]
        j = _LANES
        while j + _LANES <= keys:
            for lane in range(_LANES):
                v = row[j + lane]
                lanes[lane] = v if v > lanes[lane] else lanes[lane]
            j += _LANES
        for lane in range(_LANES):
            top = lanes[lane] if lanes[lane] > top else top
    while j < keys:
        v = row[j]
        top = v if v > top else top
        j += 1
    return top


@_jit
def causal_softmax_forward(s, offset, scale, bits):
    """In place on float32 scores s (N, Tq, Tk) = q kᵀ (unscaled): row i becomes
    softmax(scale · s_i) over keys j ≤ i + offset, and 0 past them. ``scale`` > 0 is applied
    inside the exponent, exp(scale·(s_ij − max_j s_ij)), which saves a pass over q. A row with no
    key, or whose visible scores are all −inf, is all 0 (as NumPy's path gives). ``bits`` is an
    int32 scratch row of length Tk."""
    n_blocks, tq, tk = s.shape
    zero = np.float32(0.0)
    scale = np.float32(scale)
    scale2 = bits.view(np.float32)   # the 2^n factors, as float32 bit patterns
    lanes = np.empty(_LANES, s.dtype)
    for n in range(n_blocks):
        for i in range(tq):
            keys = min(max(i + offset + 1, 0), tk)
            for j in range(keys, tk):
                s[n, i, j] = zero
            if keys == 0:
                continue
            top = _row_max(s[n, i], keys, lanes)
            if top == -np.inf:   # every visible score is −inf: no allowed key, as a masked row
                for j in range(keys):
                    s[n, i, j] = zero
                continue
            for j in range(keys):
                y, e = _exp32_mantissa((s[n, i, j] - top) * scale)
                s[n, i, j] = y
                bits[j] = np.int32((e + np.float32(127.0)) * np.float32(8388608.0))   # (n + 127) << 23
            total = 0.0   # float64: a long row's sum keeps its accuracy
            for j in range(keys):
                v = s[n, i, j] * scale2[j]
                s[n, i, j] = v
                total += v
            inv = np.float32(1.0 / total)
            for j in range(keys):
                s[n, i, j] *= inv


@_jit
def causal_softmax_backward(dp, p, offset, scale):
    """In place on dP (N, Tq, Tk) = g vᵀ: dS_ij = scale · P_ij(dP_ij − Σ_l dP_il P_il) over the
    kept keys, 0 past them: the softmax's Jacobian-vector product (Vaswani et al., 2017, eq. 1)
    times the forward's ``scale``, so that dq = dS k and dk = dSᵀ q need no further pass."""
    n_blocks, tq, tk = dp.shape
    scale = np.float32(scale)
    for n in range(n_blocks):
        for i in range(tq):
            keys = min(max(i + offset + 1, 0), tk)
            row_dot = 0.0   # float64, as the forward's row sum
            for j in range(keys):
                row_dot += dp[n, i, j] * p[n, i, j]
            for j in range(keys):
                dp[n, i, j] = scale * p[n, i, j] * (dp[n, i, j] - row_dot)
            for j in range(keys, tk):
                dp[n, i, j] = np.float32(0.0)


# ---------------------------------------------------------------------- Adam / AdamW
@_jit
def adam_update(p, g, m, v, sign, l2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, eps_hat):
    """One Adam/AdamW step in place on the flat arrays θ (``p``), m, v, gradient ``g``; the same
    equations as the CUDA kernel in ``adam.py``: g ← sign·g + l2·θ; θ ← θ·decay; m ← β₁m + (1 − β₁)g;
    v ← β₂v + (1 − β₂)g²; θ ← θ − step_size·m/(√v + ε̂). One pass, where NumPy's in-place form
    makes about ten. The scalars come in θ's dtype (1 − β too, so that no integer 1 promotes the
    arithmetic), so a float32 step stays in float32."""
    for i in range(p.shape[0]):
        grad = sign * g[i] + l2 * p[i]
        theta = p[i] * decay
        mi = beta1 * m[i] + one_minus_beta1 * grad
        vi = beta2 * v[i] + one_minus_beta2 * grad * grad
        m[i] = mi
        v[i] = vi
        p[i] = theta - step_size * mi / (np.sqrt(vi) + eps_hat)

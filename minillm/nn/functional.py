"""``minillm.nn.functional`` (imported as ``F``): layers and losses as functions, with the
signatures of ``torch.nn.functional``.

The hot ops of a transformer are fused (``FusedFunction``): one graph node each, a backward in
closed form on raw arrays, and a ``composite`` reference in plain tensor ops that the tests
compare against and that ``create_graph=True`` differentiates.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..ops import gelu as _gelu, log_softmax, softmax  # noqa: F401  (re-exported)
from ..tensor import Function, FusedFunction, Tensor


def _xp(*xs):
    return backend.get_array_module(*xs)


def _data(x):
    return x.data if getattr(x, "_is_tensor", False) else x


# ================================================================ activations
def gelu(input, approximate: str = "none"):
    """GELU, exact (``"none"``, erf) or GPT-2's tanh approximation (``"tanh"``)."""
    return _gelu(input, approximate=approximate)


def relu(input):
    return ops.relu(input)


def tanh(input):
    return ops.tanh(input)


def sigmoid(input):
    return ops.sigmoid(input)


# ================================================================ linear
class _Linear(Function):
    """y = x Wᵀ + b over the last dim; the leading dims are flattened into one matrix product
    so a (B, T, C) input costs one BLAS call, and the weight gradient is one more."""

    def forward(self, x, weight, bias=None):
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the weight "
                             f"expects {weight.shape[1]} (weight shape {weight.shape})")
        y = x.reshape(-1, x.shape[-1]) @ weight.T
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, g):
        x, weight, bias = (self.inputs + (None,))[:3]
        g2 = g.reshape(-1, g.shape[-1])
        gx = (g2 @ weight).reshape(x.shape) if self.needs_grad(0) else None
        gw = g2.transpose(0, 1) @ x.reshape(-1, x.shape[-1]) if self.needs_grad(1) else None
        gb = g2.sum(0) if bias is not None and self.needs_grad(2) else None
        return gx, gw, gb


def linear(input, weight, bias=None):
    """(..., in_features) @ weight(out, in).T + bias(out) -> (..., out_features)."""
    return _Linear.apply(input, weight, bias) if bias is not None else _Linear.apply(input, weight)


# ================================================================ normalization
class _LayerNorm(FusedFunction):
    """Layer normalization (Ba et al., 2016) over the last ``len(normalized_shape)`` dims.

    Forward: x̂ = (x − μ)/√(σ² + ε), y = x̂·w + b. Backward in closed form:
    dx = (1/σ̂)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·w, dw = Σ g·x̂, db = Σ g.
    """

    def forward(self, x, weight, bias, normalized_shape, eps):
        xp = _xp(x)
        d = int(np.prod(normalized_shape))
        x2 = x.reshape(-1, d)                      # (rows, normalized features)
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
        _rows(kernel, x2)
        return out.reshape(x.shape)

    def composite(self, x, weight, bias, normalized_shape, eps):
        dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
        centered = x - x.mean(dims, keepdim=True)
        var = (centered * centered).mean(dims, keepdim=True)
        out = centered / ops.sqrt(var + eps)
        if weight is not None:
            out = out * weight
        return out + bias if bias is not None else out

    def fast_backward(self, g):
        xp = _xp(g)
        weight, bias = self.inputs[1], self.inputs[2]
        xhat = self.xhat
        g2 = g.reshape(xhat.shape)
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
            xp.multiply(gr, w, out=ghat) if w is not None else ghat.__setitem__(Ellipsis, gr)
            mean_g = ghat.mean(axis=1, keepdims=True)
            mean_gx = (gxh * w).mean(axis=1, keepdims=True) if w is not None else gxh.mean(axis=1, keepdims=True)
            ghat -= mean_g
            xp.multiply(xh, mean_gx, out=gxh)
            ghat -= gxh
            ghat *= self.rstd[rows]
        _rows(kernel, g2)
        gw = sum(partial_w.values()).reshape(weight.shape) if want_w else None
        gb = g2.sum(axis=0).reshape(bias.shape) if bias is not None and self.needs_grad(2) else None
        return (None if gx is None else gx.reshape(g.shape)), gw, gb


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input shape {input.shape} does not end with normalized_shape {normalized_shape}")
    return _LayerNorm.apply(input, weight, bias, normalized_shape=normalized_shape, eps=eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalization (Ioffe & Szegedy, 2015) of (N, C) or (N, C, L) inputs over every
    dim but C. In training, the batch statistics normalize and the running ones are updated
    in place: r ← (1 − momentum)·r + momentum·stat, with the unbiased variance, as PyTorch."""
    if input.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected (N, C) or (N, C, L) input, got shape {input.shape}")
    dims = (0,) if input.ndim == 2 else (0, 2)
    shape = (1, input.shape[1]) + ((1,) if input.ndim == 3 else ())
    if training:
        n = int(np.prod([input.shape[d] for d in dims]))
        if n < 2:
            raise ValueError(f"batch_norm: need more than one value per channel in training, got shape {input.shape}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if running_mean is not None:
            m = momentum
            running_mean.data *= (1 - m)
            running_mean.data += m * mean.data.reshape(-1)
            running_var.data *= (1 - m)
            running_var.data += m * var.data.reshape(-1) * (n / (n - 1))
        out = centered / ops.sqrt(var + eps)
    else:
        if running_mean is None:
            raise ValueError("batch_norm: eval mode needs running statistics")
        out = (input - running_mean.reshape(shape)) / ops.sqrt(running_var.reshape(shape) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


# ================================================================ embedding and dropout
def embedding(input, weight):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input`` (any shape):
    output shape input.shape + (dim,). The gradient adds up rows of repeated indices."""
    idx = _data(input)
    if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got "
                        f"{getattr(idx, 'dtype', type(idx).__name__)}")
    n = weight.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        bad = int(idx.max()) if int(idx.max()) >= n else int(idx.min())
        raise IndexError(f"embedding: index {bad} is out of range for {n} embeddings")
    return ops.getitem(weight, idx)


def dropout(input, p: float = 0.5, training: bool = True):
    """Inverted dropout (Srivastava et al., 2014): zero each element with probability ``p`` and
    scale the rest by 1/(1−p), so the expected value is unchanged and eval is the identity."""
    if not 0 <= p < 1:
        if p == 1 and training:
            return input * 0.0
        if not 0 <= p <= 1:
            raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    return input * Tensor(dropout_mask(input.shape, p, input.dtype, input.device))


def dropout_mask(shape, p, dtype, device):
    """An array of 0 and 1/(1−p) (kept with probability 1 − p), from the device's generator."""
    gen = backend.generator(device)
    with backend.device_context(device):
        keep = gen.random(shape, dtype=np.float32) >= p
        mask = keep.astype(dtype)
    mask *= 1.0 / (1.0 - p)
    return mask


# ================================================================ attention
def _rows(kernel, array):
    """Run ``kernel(rows)`` over slices of ``array``'s first axis, threaded for big CPU arrays."""
    if _xp(array) is np and array.ndim >= 2:
        backend.parallel_rows(kernel, array.shape[0], array.size)
    else:
        kernel(slice(None))


class _Attention(FusedFunction):
    """softmax(q kᵀ · scale + mask) v, with dropout on the attention probabilities.

    q: (..., Tq, d), k: (..., Tk, d), v: (..., Tk, dv) -> (..., Tq, dv). ``keep`` is a boolean
    array broadcastable to (..., Tq, Tk): False positions get exactly zero weight (a query row
    with no allowed key outputs zeros). Backward in closed form (Vaswani et al., 2017, eq. 1):
    dv = Pᵀg, dP = g vᵀ, dS = P ⊙ (dP − Σ dP⊙P), dq = dS k · scale, dk = dSᵀ q · scale.
    """

    def forward(self, q, k, v, keep=None, drop=None, scale=1.0):
        xp = _xp(q)
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
        _rows(softmax_rows, s)
        self.p = s
        self.pd = s * drop if drop is not None else s
        return self.pd @ v

    def composite(self, q, k, v, keep=None, drop=None, scale=1.0):
        s = (q @ k.transpose(-1, -2)) * scale
        if keep is not None:
            s = ops.where(keep, s, -1e30 if s.dtype == np.float64 else -1e9)
        p = ops.softmax(s, -1)
        if keep is not None:
            p = ops.where(keep, p, 0.0)
        if drop is not None:
            p = p * Tensor(drop)
        return p @ v

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
        _rows(softmax_backward_rows, dp)
        gq = gk = None
        if self.needs_grad(0):
            gq = dp @ k
            gq *= scale
        if self.needs_grad(1):
            gk = dp.swapaxes(-1, -2) @ q
            gk *= scale
        return gq, gk, gv


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, training: bool = True):
    """Attention as ``torch.nn.functional.scaled_dot_product_attention``.

    query (..., Tq, d), key (..., Tk, d), value (..., Tk, dv) -> (..., Tq, dv).
    ``attn_mask``: boolean, True where a query may attend to a key (broadcastable to
    (..., Tq, Tk)). ``is_causal``: query i sees keys ≤ i. ``scale`` defaults to 1/√d.
    """
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"attention: shapes q {query.shape}, k {key.shape}, v {value.shape} do not fit")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    keep = _data(attn_mask)
    if keep is not None and keep.dtype != np.bool_:
        raise TypeError(f"attention: attn_mask must be boolean (True = attend), got dtype {keep.dtype}")
    if is_causal:
        tq, tk = query.shape[-2], key.shape[-2]
        causal = ops.tril_mask(tq, tk, diagonal=tk - tq, device=query.device)
        keep = causal if keep is None else (keep & causal)
    drop = None
    if training and dropout_p > 0:
        shape = query.shape[:-1] + (key.shape[-2],)
        drop = dropout_mask(shape, dropout_p, query.dtype, query.device)
    return _Attention.apply(query, key, value, keep=keep, drop=drop, scale=scale)


def attention_weights(query, key, attn_mask=None, is_causal=False, scale=None):
    """The attention probabilities softmax(q kᵀ·scale + mask), shape (..., Tq, Tk) (for
    inspection and plots; masked positions are exactly 0)."""
    tk = key.shape[-2]
    eye = ops.eye(tk, dtype=query.dtype, device=query.device)
    return scaled_dot_product_attention(query, key, eye, attn_mask, 0.0, is_causal, scale, training=False)


# ================================================================ losses
def _reduce(loss, reduction, count=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() * (1.0 / max(count if count is not None else loss.size, 1))
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _CrossEntropy(FusedFunction):
    """Softmax cross-entropy on (N, C) logits and (N,) integer targets, fused and stable.

    With label smoothing ε (Szegedy et al., 2016) the target distribution is
    q = (1 − ε)·onehot(t) + ε/C, and loss_i = −Σ_c q_c log p_ic. Rows whose target is
    ``ignore_index`` contribute nothing. The gradient is (p − q) ⊙ g_i: no log or division
    in the backward, and no overflow since log p = z − max − log Σ exp(z − max).
    """

    def forward(self, logits, target, ignore_index=-100, label_smoothing=0.0):
        xp = _xp(logits)
        n, c = logits.shape
        self.valid = target != ignore_index
        safe_target = xp.where(self.valid, target, 0)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        logp_target = shifted[xp.arange(n), safe_target] - xp.log(total[:, 0])
        loss = -(1 - label_smoothing) * logp_target
        if label_smoothing:
            mean_logp = shifted.mean(axis=1) - xp.log(total[:, 0])
            loss -= label_smoothing * mean_logp
        e /= total
        self.p, self.safe_target = e, safe_target
        return xp.where(self.valid, loss, 0).astype(logits.dtype)

    def composite(self, logits, target, ignore_index=-100, label_smoothing=0.0):
        logp = ops.log_softmax(logits, -1)
        safe_target = _xp(target).where(target != ignore_index, target, 0)
        nll = -ops.gather(logp, 1, Tensor(safe_target[:, None])).reshape(-1)
        loss = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1) if label_smoothing else nll
        return ops.where(target != ignore_index, loss, 0.0)

    def fast_backward(self, g):
        xp = _xp(g)
        eps = self.options.get("label_smoothing", 0.0)
        n, c = self.p.shape
        grad = self.p.copy()  # the saved p stays intact for a retain_graph second backward
        if eps:
            grad -= eps / c
        grad[xp.arange(n), self.safe_target] -= 1 - eps
        grad *= xp.where(self.valid, g, 0)[:, None]
        return grad, None


def cross_entropy(input, target, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Cross-entropy between logits ``input`` (..., C) — or (N, C, d1, ...) as PyTorch — and
    integer class ``target`` (...). ``mean`` averages over the targets that are not
    ``ignore_index``."""
    tgt = _data(target)
    if not hasattr(tgt, "dtype") or tgt.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer tensor of class indices, got "
                        f"{getattr(tgt, 'dtype', type(tgt).__name__)}")
    logits = input
    # (..., C) is the layout minillm uses; PyTorch's (N, C, d...) is accepted when targets only fit it
    if logits.ndim >= 3 and tuple(tgt.shape) != tuple(logits.shape[:-1]) and \
            tuple(tgt.shape) == (logits.shape[0],) + tuple(logits.shape[2:]):
        logits = ops.transpose(logits, 1, -1) if logits.ndim == 3 else ops.permute(
            logits, (0,) + tuple(range(2, logits.ndim)) + (1,))  # PyTorch's (N, C, d...) layout
    if tuple(tgt.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"cross_entropy: target shape {tuple(tgt.shape)} does not match logits shape "
                         f"{logits.shape} (expected {logits.shape[:-1]})")
    c = logits.shape[-1]
    flat_t = tgt.reshape(-1)
    valid = flat_t != ignore_index
    if flat_t.size and valid.any():
        bad = (flat_t < 0) | (flat_t >= c)
        bad &= valid
        if bad.any():
            raise IndexError(f"cross_entropy: target value {int(flat_t[bad][0])} is out of range for {c} classes")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    loss = _CrossEntropy.apply(logits.reshape(-1, c), flat_t, ignore_index=ignore_index,
                               label_smoothing=label_smoothing)
    if reduction == "none":
        return loss.reshape(tgt.shape)
    return _reduce(loss, reduction, int(valid.sum()))


def nll_loss(input, target, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C) at integer ``target`` (N,)."""
    tgt = _data(target)
    safe = _xp(tgt).where(tgt != ignore_index, tgt, 0)
    picked = -ops.gather(input, -1, Tensor(safe[..., None])).squeeze(-1)
    picked = ops.where(tgt != ignore_index, picked, 0.0)
    return _reduce(picked, reduction, int((tgt != ignore_index).sum()))


def mse_loss(input, target, reduction: str = "mean"):
    """Mean squared error (input − target)²."""
    if getattr(target, "_is_tensor", False) and tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    diff = input - target
    return _reduce(diff * diff, reduction)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable expression:
    max(x, 0) − x·y + log(1 + exp(−|x|)), weighted by ``pos_weight`` on positives as PyTorch."""
    if tuple(_data(target).shape) != tuple(input.shape):
        raise ValueError(f"binary_cross_entropy_with_logits: input shape {input.shape} and target "
                         f"shape {tuple(_data(target).shape)} differ")
    softplus_neg = ops.log(1 + ops.exp(-ops.abs(input))) + ops.maximum(-input, 0.0)  # log(1+e^{−x})
    if pos_weight is None:
        loss = (1 - target) * input + softplus_neg
    else:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * softplus_neg
    return _reduce(loss, reduction)


def one_hot(tensor, num_classes: int):
    """Integer tensor (...) -> float32 one-hot (..., num_classes) (not differentiable)."""
    idx = _data(tensor)
    xp = _xp(idx)
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(np.float32))

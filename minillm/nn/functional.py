"""``minillm.nn.functional`` (imported as ``F``): layers and losses as functions, with the
signatures of ``torch.nn.functional``.

Each function reads as its formula, in plain tensor ops. The four hot ops of a transformer
(``layer_norm``, ``gelu``, ``scaled_dot_product_attention``, ``cross_entropy``) also have a fused
kernel in ``minillm/kernels/`` that computes the same thing faster; ``minillm.kernels.is_enabled()``
picks it (the default; ``MINILLM_FUSED=0`` runs the formulas), as nanoGPT picks flash attention
over its manual attention. The tests check that both paths agree on every memory layout.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, kernels, ops
from ..ops import gelu as _gelu, log_softmax, softmax  # noqa: F401  (re-exported)
from ..tensor import Function, Tensor

IGNORE_INDEX = -100  # the target that cross_entropy skips (PyTorch's default ignore_index)


def _xp(*xs):
    return backend.get_array_module(*xs)


def _data(x):
    return x.data if getattr(x, "_is_tensor", False) else x


# ================================================================ activations
def gelu(input, approximate: str = "none"):
    """GELU (Hendrycks & Gimpel, 2016): x·Φ(x), exact (``"none"``, with erf) or GPT-2's tanh
    approximation (``"tanh"``). Shape unchanged. The formula is in ``minillm.ops.gelu``."""
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
def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization (Ba et al., 2016, eq. 4) over the trailing ``normalized_shape`` dims:
    y = (x − μ)/√(σ² + ε) · weight + bias, with μ and σ² (biased) the mean and variance of each
    row. Shape unchanged; ``weight`` and ``bias`` have shape ``normalized_shape``."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input shape {input.shape} does not end with normalized_shape {normalized_shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {tuple(p.shape)}, expected {normalized_shape}")
    if kernels.is_enabled():
        return kernels.LayerNorm.apply(input, weight, bias, normalized_shape=normalized_shape, eps=eps,
                                       reference=_layer_norm_formula)
    return _layer_norm_formula(input, weight, bias, normalized_shape, eps)


def _layer_norm_formula(x, weight, bias, normalized_shape, eps):
    dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered / ops.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    return out + bias if bias is not None else out


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
    _check_class_range("embedding", idx, weight.shape[0], "embeddings")
    return ops.getitem(weight, idx)


def _check_class_range(op, idx, n, what, ignore_index=None, item="index"):
    """Raise IndexError if an entry of ``idx`` (other than ``ignore_index``) is outside [0, n).

    Only on the CPU: on the GPU reading the answer back would stall the training step on a
    host synchronization every call, so there (as with PyTorch's asynchronous device asserts)
    out-of-range indices are the caller's responsibility."""
    if not isinstance(idx, np.ndarray) or not idx.size:
        return
    bad = (idx < 0) | (idx >= n)
    if ignore_index is not None:
        bad &= idx != ignore_index
    if bad.any():
        raise IndexError(f"{op}: {item} {int(idx[bad].flat[0])} is out of range for {n} {what}")


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
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, training: bool = True):
    """Attention as ``torch.nn.functional.scaled_dot_product_attention`` (Vaswani et al., 2017,
    eq. 1): softmax(q kᵀ · scale, masked) v, with dropout on the attention probabilities.

    query (..., Tq, d), key (..., Tk, d), value (..., Tk, dv) -> (..., Tq, dv).
    ``attn_mask``: boolean, True where a query may attend to a key (broadcastable to
    (..., Tq, Tk)). ``is_causal``: query i sees keys ≤ i (+ Tk − Tq). ``scale`` defaults to 1/√d.
    A query with no key to attend to outputs zeros.
    """
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"attention: shapes q {query.shape}, k {key.shape}, v {value.shape} do not fit")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    keep, drop = _attention_keep_and_drop(query.shape[:-1], key.shape[-2], query.dtype, query.device, attn_mask,
                                          dropout_p, is_causal, training)
    if kernels.is_enabled():
        return kernels.Attention.apply(query, key, value, keep=keep, drop=drop, scale=scale, reference=attention)
    return attention(query, key, value, keep, drop, scale)


def _attention_keep_and_drop(query_rows, tk, dtype, device, attn_mask, dropout_p, is_causal, training):
    """The boolean ``keep`` array (attn_mask, and the causal mask if ``is_causal``) and the
    dropout multipliers of the attention probabilities, shape ``query_rows`` (..., Tq) + (Tk,)
    (None when not training or p = 0)."""
    keep = _data(attn_mask)
    if keep is not None and keep.dtype != np.bool_:
        raise TypeError(f"attention: attn_mask must be boolean (True = attend), got dtype {keep.dtype}")
    if keep is not None and backend.device_of(keep) != device:
        raise backend.DeviceError(f"attention: attn_mask is on {backend.device_of(keep)} but the query is on "
                                  f"{device}; move it with .to(device)")
    if is_causal:
        tq = query_rows[-1]
        causal = ops.tril_mask(tq, tk, diagonal=tk - tq, device=device)
        keep = causal if keep is None else (keep & causal)
    drop = None
    if training and dropout_p > 0:
        drop = dropout_mask(tuple(query_rows) + (tk,), dropout_p, dtype, device)
    return keep, drop


def packed_self_attention(qkv, num_heads: int, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
                          scale=None, training: bool = True):
    """Multi-head self-attention on a packed projection: ``qkv`` (B, T, 3E) holds q, k and v side
    by side (the output of one (E, 3E) linear layer); returns (B, T, E), the heads merged.

    The same as splitting qkv into three (B, T, E) pieces, viewing each as ``num_heads`` heads
    (B, H, T, E/H), ``scaled_dot_product_attention`` and merging the heads (the formula below); the
    fused kernel (``kernels.PackedSelfAttention``) does it as one graph node without the copies.
    ``attn_mask``, ``dropout_p``, ``is_causal``, ``scale``: as in ``scaled_dot_product_attention``.
    """
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"packed_self_attention: expected qkv (B, T, 3·E) with E divisible by num_heads "
                         f"{num_heads}, got shape {qkv.shape}")
    b, t, packed = qkv.shape
    scale = 1.0 / math.sqrt(packed // (3 * num_heads)) if scale is None else float(scale)
    keep, drop = _attention_keep_and_drop((b, num_heads, t), t, qkv.dtype, qkv.device, attn_mask, dropout_p,
                                          is_causal, training)
    if kernels.is_enabled():
        return kernels.PackedSelfAttention.apply(qkv, num_heads=num_heads, keep=keep, drop=drop, scale=scale,
                                                 reference=_packed_self_attention_formula)
    return _packed_self_attention_formula(qkv, num_heads, keep, drop, scale)


def _packed_self_attention_formula(qkv, num_heads, keep=None, drop=None, scale=1.0):
    b, t, packed = qkv.shape
    q, k, v = (x.reshape(b, t, num_heads, -1).transpose(1, 2) for x in qkv.split(packed // 3, dim=-1))
    return attention(q, k, v, keep, drop, scale).transpose(1, 2).reshape(b, t, packed // 3)


def attention(q, k, v, keep=None, drop=None, scale=1.0):
    """The manual attention (what the fused kernel computes): S = q kᵀ·scale; S = −∞ where
    ``keep`` (a boolean array) is False; P = softmax(S) over the keys (rows with no allowed key
    give zeros); P = P ⊙ ``drop`` (the dropout multipliers, if any); out = P v."""
    s = (q @ k.transpose(-1, -2)) * scale
    if keep is not None:
        # a large negative number rather than −∞ keeps fully masked rows finite (they are zeroed below)
        s = ops.where(keep, s, float(np.finfo(s.dtype).min))
    p = ops.softmax(s, -1)
    if keep is not None:
        p = ops.where(keep, p, 0.0)
    if drop is not None:
        p = p * Tensor(drop)
    return p @ v


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


def cross_entropy(input, target, ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Cross-entropy between logits and integer class targets, as ``torch.nn.functional.cross_entropy``.

    ``input`` (N, C) with ``target`` (N,), or (N, C, d1, ...) with target (N, d1, ...): the
    class dim is dim 1, exactly as PyTorch (so a (B, T, V) language-model output is passed as
    ``logits.reshape(-1, V)``, ``targets.reshape(-1)``, as nanoGPT does). (C,) with a 0-d target
    is one example. loss_i = −Σ_c q_c log softmax(x_i)_c with q the one-hot target, or with label
    smoothing ε (Szegedy et al., 2016) q = (1 − ε)·onehot + ε/C. Targets equal to
    ``ignore_index`` contribute nothing; ``"mean"`` divides by the number of the others.
    """
    tgt = _data(target)
    if not hasattr(tgt, "dtype") or tgt.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer tensor of class indices, got "
                        f"{getattr(tgt, 'dtype', type(tgt).__name__)}")
    if backend.device_of(tgt) != input.device:
        raise backend.DeviceError(f"cross_entropy: target is on {backend.device_of(tgt)} but the input is on "
                                  f"{input.device}; move it with .to(device)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input needs a class dim, got a 0-d tensor")
    logits = input.reshape(1, -1) if input.ndim == 1 else input
    expected = (logits.shape[0],) + tuple(logits.shape[2:]) if input.ndim > 1 else ()
    if tuple(tgt.shape) != expected:
        raise ValueError(f"cross_entropy: target shape {tuple(tgt.shape)} does not fit input shape {input.shape} "
                         f"(expected {expected}: the class dim of the input is dim 1, as in PyTorch)")
    c = logits.shape[1]
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N·d1·..., C)
        logits = ops.permute(logits, (0,) + tuple(range(2, logits.ndim)) + (1,)).reshape(-1, c)
    flat_target = tgt.reshape(-1)
    _check_class_range("cross_entropy", flat_target, c, "classes", ignore_index, item="target value")
    if kernels.is_enabled():
        loss = kernels.CrossEntropy.apply(logits, flat_target, ignore_index=ignore_index,
                                          label_smoothing=label_smoothing, reference=_cross_entropy_formula)
    else:
        loss = _cross_entropy_formula(logits, flat_target, ignore_index, label_smoothing)
    if reduction == "none":
        return loss.reshape(tgt.shape)
    if reduction == "mean":  # over the counted targets; a tensor division, so no host synchronization
        count = (flat_target != ignore_index).sum()
        xp = _xp(count)
        return loss.sum() / Tensor(xp.maximum(count, 1).astype(loss.dtype))
    return _reduce(loss, reduction)


def _cross_entropy_formula(logits, target, ignore_index, label_smoothing=0.0):
    """Per-row loss of (N, C) logits and (N,) targets: −(1 − ε)·log p_target − ε·mean_c log p_c."""
    logp = ops.log_softmax(logits, -1)
    counted = target != ignore_index
    safe_target = _xp(target).where(counted, target, 0)
    nll = -ops.gather(logp, 1, Tensor(safe_target[:, None])).reshape(-1)
    loss = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1) if label_smoothing else nll
    return ops.where(counted, loss, 0.0)


def nll_loss(input, target, ignore_index: int = IGNORE_INDEX, reduction: str = "mean"):
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

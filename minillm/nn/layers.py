"""Layers: Linear, Embedding, LayerNorm, BatchNorm1d, Dropout, activations, attention and the
pre-LN transformer block that the GPT, BERT-style and T5-style models share."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..tensor import Tensor
from . import functional as F
from .module import Module, ModuleList, Parameter


def _check_sizes(layer: str, **sizes) -> None:
    """Refuse sizes that are not positive integers, naming the layer and the argument."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")


def _uniform(shape, bound, device=None):
    gen = backend.generator(backend.normalize_device(device))
    return (gen.random(shape, dtype=np.float32) * (2 * bound) - bound).astype(np.float32)


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x Wᵀ + b. weight (out_features, in_features), bias (out_features); input
    (..., in_features) -> (..., out_features). Initialized U(−1/√in, 1/√in) as PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        _check_sizes("Linear", in_features=in_features, out_features=out_features)
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(Tensor(_uniform((out_features, in_features), bound), device=device))
        self.bias = Parameter(Tensor(_uniform((out_features,), bound), device=device)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``; integer input (...) ->
    (..., embedding_dim). Initialized N(0, 1) as PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None):
        _check_sizes("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(ops.randn(num_embeddings, embedding_dim, device=device))

    def forward(self, idx):
        return F.embedding(idx, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalize the last dims to zero mean and unit variance, then scale (1) and shift (0)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(ops.ones(self.normalized_shape, device=device)) if elementwise_affine else None
        self.bias = Parameter(ops.zeros(self.normalized_shape, device=device)) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class BatchNorm1d(Module):
    """Batch normalization of (N, C) or (N, C, L) inputs per channel C, with running statistics
    (updated with ``momentum`` in training, used in eval)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(ops.ones(num_features, device=device)) if affine else None
        self.bias = Parameter(ops.zeros(num_features, device=device)) if affine else None
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", ops.zeros(num_features, device=device))
            self.register_buffer("running_var", ops.ones(num_features, device=device))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected input (N, {self.num_features}[, L]), "
                             f"got shape {x.shape}")
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; the identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017, §3.2.2).

    ``forward(x, context=None, key_padding_mask=None, attn_mask=None, is_causal=False)``:
    x (B, Tq, E) attends to itself, or to ``context`` (B, Tk, E) for cross-attention.
    ``key_padding_mask`` (B, Tk) is True at padding keys (PyTorch's convention), which get zero
    weight. ``attn_mask`` (Tq, Tk) or broadcastable is True where attention is allowed.
    Returns (B, Tq, E). One (E, 3E) projection makes q, k and v; cross-attention uses its first
    third on x and the rest on the context.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 is_causal: bool = False, device=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout, self.is_causal = embed_dim, num_heads, dropout, is_causal
        self.in_proj = Linear(embed_dim, 3 * embed_dim, bias=bias, device=device)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device)

    def _heads(self, t):
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, -1).transpose(1, 2)   # (B, H, T, head_dim)

    def _project(self, x, context):
        if context is None:
            q, k, v = self.in_proj(x).split(self.embed_dim, dim=-1)
        else:
            w, b, e = self.in_proj.weight, self.in_proj.bias, self.embed_dim
            q = F.linear(x, w[:e], None if b is None else b[:e])
            k, v = F.linear(context, w[e:], None if b is None else b[e:]).split(e, dim=-1)
        return self._heads(q), self._heads(k), self._heads(v)

    def _mask(self, key_padding_mask, attn_mask):
        keep = None
        if key_padding_mask is not None:
            pad = key_padding_mask.data if getattr(key_padding_mask, "_is_tensor", False) else key_padding_mask
            keep = ~pad.astype(bool)[:, None, None, :]          # (B, 1, 1, Tk)
        if attn_mask is not None:
            allowed = attn_mask.data if getattr(attn_mask, "_is_tensor", False) else attn_mask
            keep = allowed if keep is None else keep & allowed
        return keep

    def forward(self, x, context=None, key_padding_mask=None, attn_mask=None, is_causal=None):
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: expected input (B, T, {self.embed_dim}), got {x.shape}")
        causal = self.is_causal if is_causal is None else is_causal
        keep = self._mask(key_padding_mask, attn_mask)
        if context is None:   # self-attention: split the packed projection into heads, attend, merge
            return self.out_proj(F.packed_self_attention(self.in_proj(x), self.num_heads, keep, self.dropout,
                                                         causal, training=self.training))
        q, k, v = self._project(x, context)
        y = F.scaled_dot_product_attention(q, k, v, keep, self.dropout, causal, training=self.training)
        b, h, t, d = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, t, h * d))

    def attention_weights(self, x, context=None, key_padding_mask=None, attn_mask=None, is_causal=None):
        """The attention probabilities (B, H, Tq, Tk) this layer would use (for plots/tests)."""
        q, k, _ = self._project(x, context)
        causal = self.is_causal if is_causal is None else is_causal
        return F.attention_weights(q, k, self._mask(key_padding_mask, attn_mask), causal)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, " \
               f"is_causal={self.is_causal}"


class MLP(Module):
    """The transformer's position-wise feed-forward net: Linear(E, 4E) → GELU → Linear(4E, E) → Dropout."""

    def __init__(self, embed_dim: int, hidden_dim: int | None = None, dropout: float = 0.0, bias: bool = True,
                 approximate: str = "tanh", device=None):
        super().__init__()
        hidden_dim = hidden_dim or 4 * embed_dim
        self.fc = Linear(embed_dim, hidden_dim, bias=bias, device=device)
        self.proj = Linear(hidden_dim, embed_dim, bias=bias, device=device)
        self.approximate = approximate
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x), self.approximate)))


class TransformerBlock(Module):
    """A pre-LN transformer block (GPT-2; Xiong et al., 2020):
    x ← x + Dropout(Attn(LN(x)));  [x ← x + CrossAttn(LN(x), context)];  x ← x + MLP(LN(x)).

    ``causal=True`` for decoders (GPT, the T5-style decoder), False for encoders (BERT-style).
    ``cross_attention=True`` adds the encoder-decoder attention sub-layer.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = True, cross_attention: bool = False, approximate: str = "tanh", device=None):
        super().__init__()
        self.ln_1 = LayerNorm(embed_dim, bias=bias, device=device)
        self.attn = MultiHeadAttention(embed_dim, num_heads, dropout, bias, is_causal=causal, device=device)
        self.resid_dropout = Dropout(dropout)
        if cross_attention:
            self.ln_cross = LayerNorm(embed_dim, bias=bias, device=device)
            self.cross_attn = MultiHeadAttention(embed_dim, num_heads, dropout, bias, is_causal=False, device=device)
        else:
            self.cross_attn = None
        self.ln_2 = LayerNorm(embed_dim, bias=bias, device=device)
        self.mlp = MLP(embed_dim, dropout=dropout, bias=bias, approximate=approximate, device=device)

    def forward(self, x, key_padding_mask=None, context=None, context_padding_mask=None):
        x = x + self.resid_dropout(self.attn(self.ln_1(x), key_padding_mask=key_padding_mask))
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("TransformerBlock with cross_attention needs a `context` (the encoder output)")
            x = x + self.resid_dropout(self.cross_attn(self.ln_cross(x), context=context,
                                                       key_padding_mask=context_padding_mask))
        return x + self.mlp(self.ln_2(x))


__all__ = ["Identity", "Linear", "Embedding", "LayerNorm", "BatchNorm1d", "Dropout", "GELU", "ReLU", "Tanh",
           "MultiHeadAttention", "MLP", "TransformerBlock", "ModuleList"]

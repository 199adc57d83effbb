"""LoReFT: low-rank linear subspace representation fine-tuning (Wu et al. 2024, "ReFT").

Instead of changing weights, ReFT edits hidden representations. LoReFT (eq. 2) replaces a hidden
state h (d) at chosen layers and positions by

    Φ(h) = h + Rᵀ (W h + b − R h)          R (r, d) with orthonormal rows, W (r, d), b (r)

i.e. it sets the projection of h onto the r-dimensional subspace spanned by R's rows to the
learned value W h + b, leaving the orthogonal complement alone. Names follow pyreft:
``rotate_layer.weight`` is Rᵀ, a (d, r) matrix with orthonormal columns, and ``learned_source``
is ``Linear(d, r)`` (W, b). pyreft keeps R orthonormal with torch's orthogonal parametrization;
here ``rotate_layer.weight`` is likewise computed from an unconstrained trainable matrix
(``rotate_layer.parametrizations.weight.original``, torch's name) as a product of r Householder
reflections applied to the first r columns of the identity (torch's "householder" map for
non-square matrices),

    Q = H₁ H₂ ⋯ H_r I[:, :r],   H_i = I − 2 v_i v_iᵀ / ‖v_i‖²,   v_i = column i of the original,
                                 with its entries above row i set to zero,

so RRᵀ = I holds exactly (to rounding) whatever optimizer updates the original. Interventions
are attached to the outputs of chosen transformer blocks by forward hooks, at the first and/or
last positions (pyreft's ``"f1+l1"``) or at every position; the base model stays frozen.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np

from .. import backend, nn
from ..nn.module import Parameter
from ..tensor import Tensor

__all__ = ["ReftConfig", "LoreftIntervention", "LowRankRotateLayer", "parse_positions", "householder_orthonormal"]


def householder_orthonormal(original):
    """(d, r) Tensor -> (d, r) Tensor with orthonormal columns: H₁⋯H_r I[:, :r] (module docstring)."""
    d, r = original.shape
    xp = backend.get_array_module(original.data)
    dtype = original.data.dtype
    lower = Tensor(xp.tril(xp.ones((d, r), dtype=dtype)))     # v_i: rows ≥ i of column i
    v_all = original * lower
    q = Tensor(xp.eye(d, r, dtype=dtype))
    for i in reversed(range(r)):                              # apply H_r first, H₁ last
        v = v_all[:, i:i + 1]                                 # (d, 1)
        q = q - v @ (v.mT @ q) * (2.0 / (v * v).sum())
    return q


class _Holder(nn.Module):
    """Holds ``original`` so that its name reads ``parametrizations.weight.original`` (torch's)."""

    def __init__(self, original):
        super().__init__()
        self.original = original


class _Parametrizations(nn.Module):
    def __init__(self, original):
        super().__init__()
        self.weight = _Holder(original)


class LowRankRotateLayer(nn.Module):
    """pyreft's ``LowRankRotateLayer``: x (..., d) -> x @ weight (..., r), ``weight`` (d, r) with
    orthonormal columns (the Householder parametrization of the module docstring)."""

    def __init__(self, n: int, m: int, device=None, dtype=None):
        super().__init__()
        if not 0 < m <= n:
            raise ValueError(f"LowRankRotateLayer: low_rank_dimension must be in [1, {n}], got {m}")
        gen = backend.generator(backend.normalize_device(device))
        init = backend.to_numpy(gen.standard_normal((n, m), dtype=np.float32))   # v_i ≠ 0 almost surely
        t = Tensor(init.astype(dtype or np.float32), device=device)
        self.parametrizations = _Parametrizations(Parameter(t))

    @property
    def weight(self):
        return householder_orthonormal(self.parametrizations.weight.original)

    def forward(self, x):
        return x @ self.weight


class LoreftIntervention(nn.Module):
    """``LoreftIntervention(embed_dim, low_rank_dimension)``: h (..., d) -> h + (W h + b − R h) R
    (eq. 2 of Wu et al. 2024, written for row vectors: R h is ``h @ rotate_layer.weight``)."""

    def __init__(self, embed_dim: int, low_rank_dimension: int, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        if isinstance(low_rank_dimension, bool) or not isinstance(low_rank_dimension, (int, np.integer)) \
                or not 0 < low_rank_dimension <= embed_dim:
            raise ValueError(f"LoreftIntervention: low_rank_dimension must be in [1, {embed_dim}], "
                             f"got {low_rank_dimension!r}")
        self.embed_dim, self.low_rank_dimension = embed_dim, int(low_rank_dimension)
        self.rotate_layer = LowRankRotateLayer(embed_dim, low_rank_dimension, device=device, dtype=dtype)
        self.learned_source = nn.Linear(embed_dim, low_rank_dimension, device=device)
        if dtype is not None:
            self.learned_source.to(dtype=dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h):
        r = self.rotate_layer.weight                                   # Rᵀ (d, r)
        return self.dropout(h + (self.learned_source(h) - h @ r) @ r.mT)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, low_rank_dimension={self.low_rank_dimension}"


_POS_RE = re.compile(r"^(?:f(\d+))?(?:\+?l(\d+))?$")


def parse_positions(positions: str):
    """pyreft's position string -> (first_n, last_n): ``"f1+l1"``, ``"l3"``, ``"f5"``; ``"all"``
    -> (None, None)."""
    if positions == "all":
        return None, None
    m = _POS_RE.match(positions or "")
    if not positions or m is None or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"ReftConfig: positions must look like 'f1+l1', 'f3', 'l2' or 'all', got {positions!r}")
    first, last = int(m.group(1) or 0), int(m.group(2) or 0)
    if first + last == 0:
        raise ValueError(f"ReftConfig: positions {positions!r} selects no position")
    return first, last


@dataclass
class ReftConfig:
    """Which blocks get a LoReFT intervention on their output (``layers``: block indices, None:
    every block), its rank ``low_rank_dimension``, and at which ``positions`` ("f1+l1": the first
    and the last real token, as pyreft; "all": every position)."""
    low_rank_dimension: int = 4
    layers: Optional[List[int]] = None
    positions: str = "f1+l1"
    dropout: float = 0.0
    modules_to_save: Optional[List[str]] = None
    peft_type: str = field(default="LOREFT", init=False)

    def __post_init__(self):
        if isinstance(self.low_rank_dimension, bool) or not isinstance(self.low_rank_dimension, int) \
                or self.low_rank_dimension <= 0:
            raise ValueError(f"ReftConfig: low_rank_dimension must be a positive integer, "
                             f"got {self.low_rank_dimension!r}")
        parse_positions(self.positions)
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)

    def to_dict(self) -> dict:
        return asdict(self)


def position_mask(shape, positions: str, padding_mask, xp, dtype):
    """(B, T, 1) array: 1 at the intervened positions. With a padding mask (B, T), True at
    padding, "last" means the last real tokens of each row."""
    b, t = shape[0], shape[1]
    first, last = parse_positions(positions)
    if first is None:
        return None
    idx = xp.arange(t)[None, :]
    if padding_mask is not None:
        pad = padding_mask.data if getattr(padding_mask, "_is_tensor", False) else padding_mask
        lengths = (~xp.asarray(pad).astype(bool)).sum(axis=1)[:, None]
    else:
        lengths = xp.full((b, 1), t)
    keep = (idx < first) | ((idx >= lengths - last) & (idx < lengths))
    return keep.astype(dtype)[:, :, None]

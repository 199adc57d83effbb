"""LoRA: low-rank adaptation of a frozen linear layer (Hu et al. 2021).

For a frozen weight W (out, in) and bias b, a LoRA layer computes (Hu et al. 2021, eq. 3, with
the α/r scaling of §4.1)

    h = W x + b + (α / r) · B A dropout(x)        A (r, in), B (out, r), r ≪ min(in, out)

with A Kaiming-uniform and B zero, so at initialization B A = 0 and the layer is exactly the base
layer. Only A and B train: r·(in + out) parameters instead of in·out. Merging folds the update
into the weight, W' = W + (α/r)·B A, after which the layer is an ordinary Linear again and costs
nothing at inference.

The fused attention input projection of ``nn.MultiHeadAttention`` (``in_proj``: E → 3E, q, k and
v stacked) can be adapted per slice, as loralib's ``MergedLinear`` does: with slices q and v,
``lora_A`` is (2r, E) and ``lora_B`` (2E, r); slice j uses rows j·r:(j+1)·r of A and rows
j·E:(j+1)·E of B, and the k rows of W get no update. PEFT users name these slices like the
separate projections of Llama-style models: ``target_modules=["q_proj", "v_proj"]``. (Cross-attention,
T5's decoder only, reads ``in_proj.weight`` directly and so does not see the LoRA branch of a fused
``in_proj``; its ``out_proj`` and the MLPs adapt as usual.)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Union

import numpy as np

from .. import backend, nn
from ..nn import functional as F
from ..nn.module import Parameter
from ..tensor import Tensor

__all__ = ["LoraConfig", "LoraLinear", "FUSED_SLICES"]

#: the virtual names of the three slices of a fused (E, 3E) attention input projection
FUSED_SLICES = ("q_proj", "k_proj", "v_proj")


@dataclass
class LoraConfig:
    """PEFT's ``LoraConfig``: rank ``r``, scale ``lora_alpha / r``, the module names to adapt
    (``target_modules``: a list of name suffixes, or one string taken as a regular expression
    that must match a whole module name, as PEFT; None: ``["q_proj", "v_proj"]``, the q and v
    slices of every attention's fused input projection, as in Hu et al. §7.1), dropout on the
    LoRA branch's input, and ``modules_to_save`` (modules trained in full, e.g. a task head)."""
    r: int = 8
    lora_alpha: float = 8
    target_modules: Optional[Union[List[str], str]] = None
    lora_dropout: float = 0.0
    modules_to_save: Optional[List[str]] = None
    peft_type: str = field(default="LORA", init=False)

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) or self.r <= 0:
            raise ValueError(f"LoraConfig: r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.target_modules is None:
            self.target_modules = ["q_proj", "v_proj"]
        elif not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)
            if not self.target_modules:
                raise ValueError("LoraConfig: target_modules is empty")
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def to_dict(self) -> dict:
        return asdict(self)


class LoraLinear(nn.Linear):
    """An ``nn.Linear`` with a LoRA branch: ``weight`` and ``bias`` are the base layer's own
    Parameters (frozen), ``lora_A`` (n·r, in) and ``lora_B`` (n·out/k, r) the trainable update,
    where ``slices`` (e.g. ``("q_proj", "v_proj")`` of a fused (E, 3E) projection, k = 3) picks
    the n row-blocks of W that are adapted; ``slices=None`` adapts the whole matrix.

    forward: x (..., in) -> (..., out) = x Wᵀ + b + (α/r)·dropout(x) Aᵀ Bᵀ (per slice)."""

    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 slices: Optional[Sequence[str]] = None, name: str = ""):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad = False
        if self.bias is not None:
            self.bias.requires_grad = False
        self.slices = tuple(s for s in FUSED_SLICES if s in slices) if slices else None
        rows = self.out_features // len(FUSED_SLICES) if self.slices else self.out_features
        n = len(self.slices) if self.slices else 1
        if r > min(self.in_features, rows):
            raise ValueError(f"LoRA: r = {r} is larger than the layer {name or 'Linear'!s} "
                             f"({rows} x {self.in_features}{' per slice' if self.slices else ''}); "
                             f"choose r <= {min(self.in_features, rows)}")
        self.r, self.lora_alpha, self.scaling = int(r), lora_alpha, lora_alpha / r
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        xp = backend.get_array_module(self.weight.data)
        dtype = self.weight.data.dtype
        self.lora_A = Parameter(Tensor(xp.zeros((n * r, self.in_features), dtype=dtype)))
        self.lora_B = Parameter(Tensor(xp.zeros((n * rows, r), dtype=dtype)))
        # PEFT's init (reset_lora_parameters): A ~ Kaiming-uniform(a=√5), B = 0, so B A = 0 at init
        for j in range(n):   # each slice's A has fan-in `in_features`, as a separate layer would
            block = Parameter(Tensor(xp.zeros((r, self.in_features), dtype=dtype)))
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
            self.lora_A.data[j * r:(j + 1) * r] = block.data
        self.merged = False

    def _row_blocks(self):
        """(rows of W, rows of A, rows of B) for each adapted block."""
        if not self.slices:
            return [(slice(None), slice(None), slice(None))]
        e, r = self.out_features // len(FUSED_SLICES), self.r
        return [(slice(FUSED_SLICES.index(s) * e, (FUSED_SLICES.index(s) + 1) * e),
                 slice(j * r, (j + 1) * r), slice(j * e, (j + 1) * e)) for j, s in enumerate(self.slices)]

    def delta_weight(self):
        """ΔW = (α/r)·B A (out, in) as an array (zero rows where no slice is adapted)."""
        xp = backend.get_array_module(self.weight.data)
        delta = xp.zeros_like(self.weight.data)
        for w_rows, a_rows, b_rows in self._row_blocks():
            delta[w_rows] = self.scaling * (self.lora_B.data[b_rows] @ self.lora_A.data[a_rows])
        return delta

    def forward(self, x):
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        z = F.linear(self.lora_dropout(x), self.lora_A)                  # (..., n·r)
        if not self.slices:
            return out + F.linear(z, self.lora_B) * self.scaling
        e, r = self.out_features // len(FUSED_SLICES), self.r
        parts = []
        zero = None
        for s in FUSED_SLICES:
            if s in self.slices:
                j = self.slices.index(s)
                parts.append(F.linear(z[..., j * r:(j + 1) * r], self.lora_B[j * e:(j + 1) * e]) * self.scaling)
            else:
                if zero is None:
                    xp = backend.get_array_module(out.data)
                    zero = Tensor(xp.zeros(out.shape[:-1] + (e,), dtype=out.data.dtype))
                parts.append(zero)
        from ..ops import cat
        return out + cat(parts, dim=-1)

    def to_linear(self, merge: bool) -> nn.Linear:
        """The plain ``nn.Linear`` holding this layer's weight (with ΔW added when ``merge``)."""
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight, lin.bias = self.weight, self.bias
        if merge:
            self.weight.data[...] = self.weight.data + self.delta_weight()   # W' = W + (α/r)·B A
        lin.training = self.training
        return lin

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha}" + (f", slices={self.slices}" if self.slices else ""))

"""Houlsby adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP").

A bottleneck module inserted twice in every transformer block, after the attention sub-layer's
output projection and after the feed-forward sub-layer, before each residual addition (§2.1,
Fig. 2):

    Adapter(h) = h + W_up · f(W_down · h + b_down) + b_up     W_down (m, d), W_up (d, m), m ≪ d

so a pre-LN block becomes  x ← x + Adapter(Attn(LN(x)));  x ← x + Adapter(MLP(LN(x))).
The weights are drawn near zero (N(0, init_std²), biases zero), so each adapter starts as nearly
the identity and the adapted network starts as nearly the pre-trained one (§2.1: "near-identity
initialization"). Houlsby et al. also train the layer normalizations (``train_layer_norms``).
Per block: 2·(2·d·m + d + m) parameters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional

from .. import nn
from ..nn import functional as F

__all__ = ["AdapterConfig", "HoulsbyAdapter"]


@dataclass
class AdapterConfig:
    """``bottleneck`` m; ``init_std`` of the near-identity init; ``non_linearity`` f ("gelu" or
    "relu"); ``train_layer_norms`` as Houlsby et al.; ``modules_to_save`` as in LoraConfig."""
    bottleneck: int = 16
    init_std: float = 1e-2
    non_linearity: str = "gelu"
    train_layer_norms: bool = True
    modules_to_save: Optional[List[str]] = None
    peft_type: str = field(default="HOULSBY_ADAPTER", init=False)

    def __post_init__(self):
        if isinstance(self.bottleneck, bool) or not isinstance(self.bottleneck, int) or self.bottleneck <= 0:
            raise ValueError(f"AdapterConfig: bottleneck must be a positive integer, got {self.bottleneck!r}")
        if self.non_linearity not in ("gelu", "relu"):
            raise ValueError(f"AdapterConfig: non_linearity must be 'gelu' or 'relu', got {self.non_linearity!r}")
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)

    def to_dict(self) -> dict:
        return asdict(self)


class HoulsbyAdapter(nn.Module):
    """h (..., d) -> h + up(f(down(h))) (..., d); ``down`` Linear(d, m), ``up`` Linear(m, d)."""

    def __init__(self, embed_dim: int, bottleneck: int, init_std: float = 1e-2, non_linearity: str = "gelu",
                 device=None, dtype=None):
        super().__init__()
        if bottleneck > embed_dim:
            raise ValueError(f"HoulsbyAdapter: bottleneck {bottleneck} is larger than the width {embed_dim}")
        self.down = nn.Linear(embed_dim, bottleneck, device=device)
        self.up = nn.Linear(bottleneck, embed_dim, device=device)
        self.non_linearity = non_linearity
        for lin in (self.down, self.up):
            nn.init.normal_(lin.weight, 0.0, init_std)
            nn.init.zeros_(lin.bias)
        if dtype is not None:
            self.to(dtype=dtype)

    def forward(self, h):
        z = self.down(h)
        z = F.gelu(z, "tanh") if self.non_linearity == "gelu" else F.relu(z)
        return h + self.up(z)

    def extra_repr(self):
        return f"bottleneck={self.down.out_features}"

"""The PyTorch reference of minillm's GPT (same architecture, same init, same config) for the
speed benchmark. Benchmarks and tests may import torch; the library never does."""
from __future__ import annotations

import math

import torch
import torch.nn as tnn
import torch.nn.functional as TF


# minillm's block keeps attention and MLP in sub-modules; this one has their layers directly
_RENAME = {"attn.in_proj": "in_proj", "attn.out_proj": "out_proj", "mlp.fc": "fc", "mlp.proj": "proj"}


def torch_name(minillm_name: str) -> str:
    """The name in :class:`TorchGPT` of the minillm GPT parameter ``minillm_name``."""
    for a, b in _RENAME.items():
        minillm_name = minillm_name.replace(a, b)
    return minillm_name


class Block(tnn.Module):
    def __init__(self, c, sdpa: bool):
        super().__init__()
        self.n_head, self.sdpa, self.dropout = c.n_head, sdpa, c.dropout
        self.ln_1 = tnn.LayerNorm(c.n_embd, bias=c.bias)
        self.in_proj = tnn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.out_proj = tnn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.ln_2 = tnn.LayerNorm(c.n_embd, bias=c.bias)
        self.fc = tnn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.proj = tnn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.attn_drop, self.resid_drop = tnn.Dropout(c.dropout), tnn.Dropout(c.dropout)
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size, dtype=torch.bool)))
        self.gelu = c.gelu

    def attention(self, x):
        b, t, e = x.shape
        q, k, v = self.in_proj(x).split(e, dim=2)
        q, k, v = (z.view(b, t, self.n_head, e // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:  # PyTorch's fused kernel (flash attention on CPU)
            y = TF.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                                is_causal=True)
        else:          # the same algorithm as minillm's: materialized attention matrix
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = self.attn_drop(TF.softmax(att, dim=-1)) @ v
        return self.out_proj(y.transpose(1, 2).contiguous().view(b, t, e))

    def forward(self, x):
        x = x + self.resid_drop(self.attention(self.ln_1(x)))
        return x + self.resid_drop(self.proj(TF.gelu(self.fc(self.ln_2(x)), approximate=self.gelu)))


class TorchGPT(tnn.Module):
    def __init__(self, c, sdpa: bool = False):
        super().__init__()
        self.config = c
        self.wte = tnn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = tnn.Embedding(c.block_size, c.n_embd)
        self.drop = tnn.Dropout(c.dropout)
        self.blocks = tnn.ModuleList(Block(c, sdpa) for _ in range(c.n_layer))
        self.ln_f = tnn.LayerNorm(c.n_embd, bias=c.bias)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return logits, TF.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def load_from_minillm(self, model):
        """Copy minillm GPT weights in (names differ only in the block's sub-module paths)."""
        mine = {torch_name(k): torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
        missing, unexpected = self.load_state_dict(mine, strict=False)
        assert not unexpected and all(m.endswith("mask") for m in missing), (missing, unexpected)

"""Fused kernels: the fast versions of a few hot ops, kept apart from their formulas.

A student reads ``F.layer_norm``, ``F.gelu``, ``F.scaled_dot_product_attention``,
``F.cross_entropy`` and ``optim.AdamW`` as the formulas they are, written with plain tensor
ops. Those formulas build many graph nodes and temporary arrays; each op here computes the same
thing as one graph node with a backward in closed form, in place on raw arrays, split between
threads on the CPU (``threads.py``) and as one CUDA kernel where CuPy offers one. Like
nanoGPT's flash-vs-manual attention, one switch picks the path:

    minillm.kernels.set_enabled(False)        # or MINILLM_FUSED=0: the plain formulas everywhere
    with minillm.kernels.enabled_if(False):   # ... inside a block only
        ...

The tests run every fused op against its formula on every memory layout (contiguous,
permuted, sliced, broadcast, empty), in float32 and float64, so the two paths agree.

Files: ``gelu.py``, ``layer_norm.py``, ``attention.py`` (also ``PackedSelfAttention``: split
a packed (B, T, 3E) projection into heads, attend, merge, as one node), ``cross_entropy.py`` (a
``FusedFunction`` each), ``adam.py`` (the in-place and the CUDA AdamW update), ``threads.py``
(the CPU thread pool, safe across ``fork``), ``compiled.py`` and ``numba_loops.py`` (with the
``[fast]`` extra: one compiled loop per row for layer norm, tanh GELU and the causal softmax;
a second switch, ``MINILLM_COMPILED=0``, keeps NumPy's passes).
"""
from .base import FusedFunction, enabled_if, is_enabled, set_enabled
from .attention import Attention, PackedSelfAttention
from .cross_entropy import CrossEntropy
from .gelu import GELU
from .layer_norm import LayerNorm

__all__ = ["is_enabled", "set_enabled", "enabled_if", "FusedFunction", "Attention", "PackedSelfAttention", "CrossEntropy", "GELU",
           "LayerNorm"]

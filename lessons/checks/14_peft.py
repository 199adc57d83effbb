"""Checks for lesson 14 (parameter-efficient fine-tuning). Each calls the student's function first,
so an unfinished stub raises NotImplementedError before any assertion."""
import numpy as np


def _case(seed=0, n=5, d_in=12, d_out=10, r=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out),
            rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r)))


def exercise_1(fn):
    """LoRA's forward pass xWᵀ + b + (α/r)·x Aᵀ Bᵀ agrees with minillm.peft's LoraLinear."""
    from minillm import nn
    from minillm.peft.lora import LoraLinear
    from minillm.tensor import Tensor, no_grad
    for seed, alpha, r in ((0, 6.0, 3), (1, 1.0, 1), (2, 16.0, 4)):
        x, W, b, A, B = _case(seed, r=r)
        got = np.asarray(fn(x.copy(), W.copy(), b.copy(), A.copy(), B.copy(), alpha), dtype=float)
        lin = nn.Linear(12, 10).to(dtype=np.float64)
        lin.weight.data[...], lin.bias.data[...] = W, b
        layer = LoraLinear(lin, r, alpha)
        layer.lora_A.data[...], layer.lora_B.data[...] = A, B
        with no_grad():
            want = layer(Tensor(x)).numpy()
        assert got.shape == want.shape, f"expected an output of shape {want.shape}, got {got.shape}"
        err = np.abs(got - want).max()
        assert err < 1e-9, (f"r = {r}, alpha = {alpha}: your output differs by {err:.3g}. The update is scaled by "
                            "alpha / r, where r = A.shape[0], and x goes through A first: (x @ A.T) @ B.T")


def exercise_2(fn):
    """The merged weight W + (α/r)·B A computes the same as the LoRA layer."""
    for seed, alpha, r in ((0, 6.0, 3), (3, 2.0, 2)):
        x, W, b, A, B = _case(seed, r=r)
        merged = np.asarray(fn(W.copy(), A.copy(), B.copy(), alpha), dtype=float)
        assert merged.shape == W.shape, f"the merged weight has W's shape {W.shape}, got {merged.shape}"
        want = x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T
        err = np.abs(x @ merged.T + b - want).max()
        assert err < 1e-9, (f"x @ W'.T + b differs from the LoRA output by {err:.3g}: W' = W + (alpha / r) · B @ A "
                            "(shape (d_out, d_in), like W)")


def exercise_3(fn):
    """LoReFT's Φ(h) = h + Rᵀ(W h + b − R h) agrees with minillm.peft's LoreftIntervention, and R Φ(h) = W h + b."""
    import minillm as mm
    from minillm.peft import LoreftIntervention
    from minillm.tensor import Tensor, no_grad
    rng = np.random.default_rng(0)
    for d, r in ((8, 3), (6, 1)):
        mm.manual_seed(r)
        iv = LoreftIntervention(d, r).to(dtype=np.float64)
        R = iv.rotate_layer.weight.numpy().T.copy()          # (r, d), orthonormal rows
        W, b = iv.learned_source.weight.numpy().copy(), iv.learned_source.bias.numpy().copy()
        h = rng.normal(size=(4, d))
        got = np.asarray(fn(h.copy(), R.copy(), W.copy(), b.copy()), dtype=float)
        with no_grad():
            want = iv(Tensor(h)).numpy()
        assert got.shape == h.shape, f"Φ(h) has h's shape {h.shape}, got {got.shape}"
        err = np.abs(got - want).max()
        assert err < 1e-9, (f"d = {d}, r = {r}: Φ(h) differs by {err:.3g}. For row vectors: "
                            "h + (h @ W.T + b - h @ R.T) @ R")
        assert np.abs(got @ R.T - (h @ W.T + b)).max() < 1e-9

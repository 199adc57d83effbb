"""Checks for lesson 06 (normalization). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm.nn import functional as F


def exercise_1(fn):
    """Batch-norm forward in training mode matches F.batch_norm."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5)) * 3 + 2
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    got = np.asarray(fn(x.copy(), gamma.copy(), beta.copy(), 1e-5), dtype=np.float64)
    assert got.shape == x.shape, f"expected shape {x.shape}, got {got.shape}"
    t = lambda a: minillm.tensor(a, dtype=minillm.float64)  # noqa: E731
    want = F.batch_norm(t(x), None, None, t(gamma), t(beta), training=True, eps=1e-5).numpy()
    if np.allclose(got, want, atol=1e-3) and not np.allclose(got, want, atol=1e-8):
        raise AssertionError("almost: normalize with the BIASED variance of the batch (x.var(axis=0), divide by N); "
                             "the unbiased one (N − 1) is only for the running estimate")
    norm_rows = np.allclose((got - beta) / gamma, (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5))
    assert not norm_rows, "you normalized each ROW (example), which is layer norm; batch norm normalizes each column over the batch (axis=0)"
    assert np.allclose(got, want, atol=1e-8), (
        f"differs from F.batch_norm (max error {np.abs(got - want).max():.2e}): y = γ·(x − mean)/√(var + ε) + β "
        "with the mean and variance of each column (axis=0)")


def exercise_2(fn):
    """The running statistics after one batch match BatchNorm1d's update."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4)) * 2 + 1
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5
    got = fn(rm.copy(), rv.copy(), x.copy(), 0.1)
    assert isinstance(got, tuple) and len(got) == 2, "return a pair (new running mean, new running var)"
    new_mean, new_var = (np.asarray(a, dtype=np.float64) for a in got)
    lib_m, lib_v = minillm.tensor(rm, dtype=minillm.float64), minillm.tensor(rv, dtype=minillm.float64)
    F.batch_norm(minillm.tensor(x, dtype=minillm.float64), lib_m, lib_v, training=True, momentum=0.1)
    assert np.allclose(new_mean, lib_m.numpy()), (
        "the running mean is wrong: r ← (1 − momentum)·r + momentum·(batch mean). Note PyTorch's momentum is "
        "the weight of the NEW value")
    if np.allclose(new_var, 0.9 * rv + 0.1 * x.var(0)):
        raise AssertionError("almost: the running variance uses the UNBIASED batch variance, var·N/(N − 1)")
    assert np.allclose(new_var, lib_v.numpy()), (
        "the running variance is wrong: r ← (1 − momentum)·r + momentum·var_unbiased, var_unbiased = x.var(0)·N/(N − 1)")


def exercise_3(fn):
    """Closed-form layer-norm backward: gradcheck, and agreement with autograd."""
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((3, 6)) * 2 + 0.5
    gamma = rng.standard_normal(6)
    dy0 = rng.standard_normal((3, 6))
    got = np.asarray(fn(x0.copy(), gamma.copy(), dy0.copy(), 1e-5), dtype=np.float64)
    assert got.shape == x0.shape, f"dx has the shape of x {x0.shape}, got {got.shape}"

    class LayerNormYourBackward(minillm.Function):
        """Layer norm over the last dim (scale γ, no shift), with YOUR backward for x."""
        def forward(self, x):
            self.x = x
            mu = x.mean(-1, keepdims=True)
            return gamma * (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)

        def backward(self, grad):
            dx = fn(self.x.copy(), gamma.copy(), grad.numpy().copy(), 1e-5)
            return minillm.tensor(np.asarray(dx, dtype=np.float64), dtype=minillm.float64)

    x = minillm.tensor(x0, dtype=minillm.float64, requires_grad=True)
    try:
        minillm.gradcheck(LayerNormYourBackward.apply, [x])
    except minillm.GradcheckError as err:
        raise AssertionError(f"your backward disagrees with finite differences ({err}). With x̂ = (x − μ)/σ and "
                             "g = dy·γ: dx = (g − mean(g) − x̂·mean(g·x̂))/σ, means over the last dim") from None
    xt = minillm.tensor(x0, dtype=minillm.float64, requires_grad=True)
    y = F.layer_norm(xt, (6,), minillm.tensor(gamma, dtype=minillm.float64), None, 1e-5)
    y.backward(minillm.tensor(dy0, dtype=minillm.float64))
    assert np.allclose(got, xt.grad.numpy(), atol=1e-8), "your dx differs from autograd through F.layer_norm"

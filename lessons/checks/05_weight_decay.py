"""Checks for lesson 05 (weight decay). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm.regularizers import l2_penalty


def exercise_1(fn):
    """The gradient of (λ/2)·Σw², checked with minillm.gradcheck."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    lam = 0.3
    g = np.asarray(fn(w0.copy(), lam), dtype=np.float64)
    assert g.shape == w0.shape, f"the gradient has one entry per weight: expected shape {w0.shape}, got {g.shape}"

    class L2Penalty(minillm.Function):
        """(λ/2)·Σw² with YOUR gradient as its backward."""
        def forward(self, w, lam):
            self.w, self.lam = w, lam
            return np.asarray(0.5 * lam * (w * w).sum())

        def backward(self, grad):
            return grad * minillm.tensor(np.asarray(fn(self.w.copy(), self.lam), dtype=np.float64),
                                         dtype=minillm.float64), None

    w = minillm.tensor(w0, dtype=minillm.float64, requires_grad=True)
    try:
        minillm.gradcheck(lambda t: L2Penalty.apply(t, lam), [w])
    except minillm.GradcheckError as err:
        raise AssertionError(f"your gradient disagrees with finite differences of (λ/2)·Σw² ({err}). "
                             "Differentiate one term: d/dw (λ/2)·w² = λ·w (the ½ cancels the 2)") from None
    # and it is what the library's penalty gives through autograd
    p = minillm.tensor(w0, dtype=minillm.float64, requires_grad=True)
    l2_penalty([p], lam).backward()
    assert np.allclose(g, p.grad.numpy()), "your gradient differs from autograd on minillm.regularizers.l2_penalty (λ/2)·Σw²"


def _library_step(cls, w, grad, m, v, t, lr, wd):
    p = minillm.nn.Parameter(minillm.tensor(w, dtype=minillm.float64))
    opt = cls([p], lr=lr, weight_decay=wd)
    opt.state[p] = {"step": t - 1, "exp_avg": m.copy(), "exp_avg_sq": v.copy()}
    p.grad = minillm.tensor(grad, dtype=minillm.float64)
    opt.step()
    return p.numpy(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


def exercise_2(fn):
    """One AdamW step equals minillm.optim.AdamW's, and differs from Adam with L2."""
    rng = np.random.default_rng(0)
    w, grad = rng.standard_normal(6), rng.standard_normal(6) * 0.1
    m, v = rng.standard_normal(6) * 0.01, rng.random(6) * 1e-3
    t, lr, wd = 5, 0.01, 0.5
    got = fn(w.copy(), grad.copy(), m.copy(), v.copy(), t, lr, wd)
    assert isinstance(got, tuple) and len(got) == 3, "return a tuple (new w, new m, new v)"
    w_new, m_new, v_new = (np.asarray(a, dtype=np.float64) for a in got)
    want_w, want_m, want_v = _library_step(minillm.optim.AdamW, w, grad, m, v, t, lr, wd)
    assert np.allclose(m_new, want_m) and np.allclose(v_new, want_v), (
        "the moments are wrong: m ← β₁m + (1 − β₁)g and v ← β₂v + (1 − β₂)g², with the PLAIN gradient g "
        "(in AdamW the decay never enters m and v)")
    adam_w, _, _ = _library_step(minillm.optim.Adam, w, grad, m, v, t, lr, wd)
    if np.allclose(w_new, adam_w, rtol=1e-6, atol=1e-9):
        raise AssertionError("your step equals Adam with L2 (the decay added to the gradient); AdamW applies "
                             "w ← w·(1 − lr·λ) separately, outside the adaptive step")
    assert np.allclose(w_new, want_w, rtol=1e-6, atol=1e-9), (
        f"the new weights differ from minillm.optim.AdamW's (max error {np.abs(w_new - want_w).max():.2e}): "
        "decay w by (1 − lr·λ), then subtract lr·m̂/(√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)")


def exercise_3(fn):
    """The L1 proximal step (soft-thresholding) makes exact zeros."""
    w = np.array([0.5, -0.5, 0.02, -0.015, 0.0, 1.0])
    grad = np.array([0.1, -0.1, 0.0, 0.0, 0.3, -2.0])
    lr, lam = 0.1, 0.35
    got = np.asarray(fn(w.copy(), grad.copy(), lr, lam), dtype=np.float64)
    assert got.shape == w.shape, f"expected shape {w.shape}, got {got.shape}"
    z = w - lr * grad
    want = np.sign(z) * np.maximum(np.abs(z) - lr * lam, 0.0)
    assert np.allclose(got, want), (
        f"expected {want}, got {got}: take the gradient step z = w − lr·grad, then shrink every |z| by "
        "lr·λ and clip at zero: sign(z)·max(|z| − lr·λ, 0)")
    assert np.sum(got == 0) == 3, "three of these weights should land on exactly 0"

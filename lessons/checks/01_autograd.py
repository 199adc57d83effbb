"""Checks for lesson 01 (autograd). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm.nn import functional as F


def _as_numpy(a):
    return a.numpy() if getattr(a, "_is_tensor", False) else np.asarray(a)


def exercise_1(fn):
    """Softplus as a minillm.Function: forward values, stability, gradcheck, gradgradcheck."""
    x = minillm.tensor(np.linspace(-5.0, 5.0, 11), dtype=minillm.float64, requires_grad=True)
    y = fn(x)
    assert getattr(y, "_is_tensor", False), f"exercise_1 should return a minillm Tensor, got {type(y).__name__}"
    assert y.shape == x.shape, f"softplus is elementwise: expected shape {x.shape}, got {y.shape}"
    ctx = y._ctx
    assert isinstance(ctx, minillm.Function) and len(ctx.inputs) >= 1 and ctx.inputs[0] is x, (
        "the output should come straight from your Function applied to x (return Softplus.apply(x)), "
        "not from a composition of library ops")
    expected = np.logaddexp(0.0, x.numpy())
    assert np.allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12), (
        f"forward is wrong: softplus({x.numpy()[:3]}) should be {expected[:3]}, got {y.numpy()[:3]}")
    with np.errstate(over="ignore", invalid="ignore"):
        big = fn(minillm.tensor([-800.0, 0.0, 800.0], dtype=minillm.float64)).numpy()
    assert np.all(np.isfinite(big)) and np.allclose(big, [0.0, np.log(2.0), 800.0]), (
        f"softplus([-800, 0, 800]) should be [0, log 2, 800], got {big}: log(1 + exp(a)) overflows "
        "for large a; use np.logaddexp(0, a)")
    try:
        minillm.gradcheck(fn, [x])
    except minillm.GradcheckError as err:
        raise AssertionError(f"backward disagrees with finite differences ({err}). The derivative of "
                             "softplus is sigmoid(x): return g * minillm.sigmoid(self.inputs[0])") from None
    try:
        minillm.gradgradcheck(fn, [x])
    except (minillm.GradcheckError, RuntimeError, TypeError) as err:
        raise AssertionError(f"first derivatives are right, but second derivatives are not ({err}). "
                             "Write backward with Tensor operations (g * minillm.sigmoid(x) with "
                             "x = self.inputs[0]), not NumPy arrays, so create_graph=True can record it") from None


def exercise_2(fn):
    """The gradient of the mean cross-entropy with respect to the logits, derived by hand."""
    rng = np.random.default_rng(1)
    n, c = 6, 5
    logits = rng.standard_normal((n, c)) * 2.0
    targets = rng.integers(0, c, size=n)
    try:
        with minillm.no_grad():   # a hand-derived formula needs no graph
            got = fn(logits.copy(), targets.copy())
    except NotImplementedError:
        raise                     # (a subclass of RuntimeError) an unfinished stub
    except RuntimeError as err:
        raise AssertionError(f"your function raised {err!r}: derive the formula and use NumPy, "
                             "not autograd") from None
    got = _as_numpy(got)
    assert got.shape == (n, c), f"expected a gradient of shape {(n, c)} (one per logit), got {got.shape}"
    z = minillm.tensor(logits, dtype=minillm.float64, requires_grad=True)
    F.cross_entropy(z, minillm.tensor(targets)).backward()
    expected = z.grad.numpy()
    if not np.allclose(got, expected, atol=1e-8):
        hint = ""
        if np.allclose(got, expected * n, atol=1e-8):
            hint = " You are off by a factor N: L is the MEAN over the N rows."
        elif not np.allclose(got.sum(axis=1), 0, atol=1e-8):
            hint = " Each row of the true gradient sums to zero (a softmax minus a one-hot, over N)."
        raise AssertionError(f"row 0 should be {np.round(expected[0], 5)}, got {np.round(got[0], 5)}.{hint}")


def exercise_3(fn):
    """First and second derivatives of x·sigmoid(x) with create_graph=True."""
    xs = np.linspace(-4.0, 4.0, 17)
    x = minillm.tensor(xs, dtype=minillm.float64, requires_grad=True)
    out = fn(x)
    assert isinstance(out, (tuple, list)) and len(out) == 2, "exercise_3 should return a pair (f1, f2)"
    f1, f2 = (_as_numpy(o) for o in out)
    s = 1.0 / (1.0 + np.exp(-xs))
    d1 = s + xs * s * (1 - s)
    d2 = s * (1 - s) * (2 + xs * (1 - 2 * s))
    assert f1.shape == xs.shape and f2.shape == xs.shape, (
        f"f1 and f2 should have the shape of x {xs.shape}, got {f1.shape} and {f2.shape}")
    assert np.allclose(f1, d1, atol=1e-8), (
        f"f1 = f'(x) is wrong: at x = {xs[:3]} expected {d1[:3]}, got {f1[:3]}. Hint: (f1,) = "
        "minillm.grad((x * minillm.sigmoid(x)).sum(), [x], create_graph=True)")
    assert np.allclose(f2, d2, atol=1e-8), (
        f"f2 = f''(x) is wrong: at x = {xs[:3]} expected {d2[:3]}, got {f2[:3]}. To differentiate f1 "
        "again, the first gradient must itself be part of a graph: what does the first call need for that?")

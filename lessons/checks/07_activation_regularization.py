"""Checks for lesson 07 (activation regularization: AR and TAR). Each calls the student's
function first, so an unfinished stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm.regularizers import ar_penalty, tar_penalty


def _as_numpy(a):
    return a.numpy() if getattr(a, "_is_tensor", False) else np.asarray(a)


def exercise_1(fn):
    """AR and TAR by hand with NumPy, compared with minillm.regularizers."""
    rng = np.random.default_rng(7)
    h = rng.standard_normal((3, 5, 4))
    mask = (rng.random((3, 5, 4)) >= 0.25) / 0.75          # an inverted-dropout mask, p = 0.25
    out = fn(h.copy(), mask.copy(), 2.0, 1.0)
    assert isinstance(out, (tuple, list)) and len(out) == 2, "exercise_1 should return a pair (ar, tar)"
    ar, tar = (float(_as_numpy(v)) for v in out)
    ht = minillm.tensor(h, dtype=minillm.float64)
    want_ar = ar_penalty(ht, 2.0, mask=mask).item()
    want_tar = tar_penalty(ht, 1.0).item()
    if not np.isclose(ar, want_ar, rtol=1e-6):
        hint = ""
        if np.isclose(ar, 2.0 * np.mean(h ** 2), rtol=1e-6):
            hint = " You forgot the dropout mask: AR penalizes m ⊙ h."
        elif np.isclose(ar, 2.0 * np.sum((mask * h) ** 2), rtol=1e-6):
            hint = " Use the MEAN over all elements, not the sum."
        raise AssertionError(f"AR should be {want_ar:.6f}, got {ar:.6f}.{hint}")
    if not np.isclose(tar, want_tar, rtol=1e-6):
        hint = ""
        if np.isclose(tar, np.mean((h[1:] - h[:-1]) ** 2), rtol=1e-6):
            hint = " The time axis is axis 1 of (B, T, C), not axis 0 (the batch)."
        elif np.isclose(tar, np.mean(((mask * h)[:, 1:] - (mask * h)[:, :-1]) ** 2), rtol=1e-6):
            hint = " TAR uses the outputs WITHOUT the dropout mask."
        raise AssertionError(f"TAR should be {want_tar:.6f}, got {tar:.6f}.{hint}")
    # scale: alpha and beta multiply
    ar3, tar3 = (float(_as_numpy(v)) for v in fn(h.copy(), mask.copy(), 6.0, 3.0))
    assert np.isclose(ar3, 3 * want_ar) and np.isclose(tar3, 3 * want_tar), (
        "AR should be proportional to alpha and TAR to beta")


def exercise_2(fn):
    """TAR written with minillm Tensor operations: same value as the library, passes gradcheck."""
    rng = np.random.default_rng(3)
    h = minillm.tensor(rng.standard_normal((2, 6, 3)), dtype=minillm.float64, requires_grad=True)
    out = fn(h, 0.5)
    assert getattr(out, "_is_tensor", False), (
        f"return a minillm Tensor (built from h with Tensor operations), got {type(out).__name__}")
    assert out.size == 1, f"TAR is a scalar, got shape {out.shape}"
    want = tar_penalty(h, 0.5).item()
    assert np.isclose(out.item(), want, rtol=1e-8), f"value should be {want:.8f}, got {out.item():.8f}"
    try:
        minillm.gradcheck(lambda x: fn(x, 0.5), [h])
    except minillm.GradcheckError as err:
        raise AssertionError(f"the gradient disagrees with finite differences: {err}") from None
    except (RuntimeError, TypeError, AttributeError) as err:
        raise AssertionError(f"gradcheck could not differentiate your function ({err!r}): build TAR from h "
                             "with Tensor operations (slicing, -, *, .mean()), not NumPy arrays") from None


def exercise_3(fn):
    """The gradient of TAR with respect to h, derived by hand (NumPy), against autograd."""
    rng = np.random.default_rng(5)
    h = rng.standard_normal((2, 5, 3))
    got = _as_numpy(fn(h.copy(), 1.5))
    assert got.shape == h.shape, f"the gradient has the shape of h, {h.shape}; got {got.shape}"
    ht = minillm.tensor(h, dtype=minillm.float64, requires_grad=True)
    tar_penalty(ht, 1.5).backward()
    want = ht.grad.numpy()
    if not np.allclose(got, want, atol=1e-10):
        hint = ""
        if np.allclose(got[:, 1:-1], want[:, 1:-1], atol=1e-10):
            hint = " The interior is right; the first and last time steps have only ONE neighbour."
        elif np.allclose(got, want * (h.shape[0] * (h.shape[1] - 1) * h.shape[2]), atol=1e-8):
            hint = " Divide by the number of differences, B·(T−1)·C (TAR is a mean)."
        raise AssertionError(f"at [0, :, 0] expected {np.round(want[0, :, 0], 5)}, got "
                             f"{np.round(got[0, :, 0], 5)}.{hint}")

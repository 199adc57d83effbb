"""Checks for lesson 15 (robust fine-tuning, WiSE-FT). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion."""
import numpy as np


def exercise_1(fn):
    """θ_α = (1 − α)·θ0 + α·θ1 per key, endpoints exact."""
    rng = np.random.default_rng(0)
    s0 = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4) * 1e-9 + 0.1}
    s1 = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4) * 1e7}
    for alpha in (0.0, 1.0, 0.3):
        out = fn({k: v.copy() for k, v in s0.items()}, {k: v.copy() for k, v in s1.items()}, alpha)
        assert set(out) == set(s0), f"return a dict with the same keys {sorted(s0)}, got {sorted(out)}"
        for k in s0:
            want = s0[k] if alpha == 0 else s1[k] if alpha == 1 else (1 - alpha) * s0[k] + alpha * s1[k]
            got = np.asarray(out[k])
            if alpha in (0.0, 1.0):
                assert np.array_equal(got, want), (
                    f"alpha = {alpha}: {k!r} is not exactly the endpoint. θ0 + α(θ1 − θ0) rounds at α = 1; "
                    "(1 − α)·θ0 + α·θ1 gives both endpoints exactly")
            else:
                assert np.allclose(got, want, rtol=1e-12, atol=0), f"alpha = {alpha}: {k!r} is not (1-α)θ0 + αθ1"


def exercise_2(fn, alphas=None, id_loss=None):
    """The smallest α whose ID loss is within tol of the curve's best."""
    cases = [(np.round(np.linspace(0, 1, 11), 1), np.array([3.0, 2.6, 2.3, 2.1, 2.0, 1.95, 1.92, 1.91, 1.905, 1.9, 1.9]),
              0.02, 0.6),
             (np.array([0.0, 0.5, 1.0]), np.array([2.0, 1.0, 1.5]), 0.0, 0.5)]
    if alphas is not None:
        a, l = np.asarray(alphas, dtype=float), np.asarray(id_loss, dtype=float)
        cases.append((a, l, 0.01, float(a[np.flatnonzero(l <= l.min() + 0.01)].min())))
    for a, l, tol, want in cases:
        got = fn(a.copy(), l.copy(), tol)
        assert abs(float(got) - want) < 1e-12, (
            f"for ID losses {np.round(l, 3).tolist()} at α {a.tolist()} and tol {tol}: expected α = {want}, got {got}. "
            "Keep the α whose ID loss is ≤ min(ID loss) + tol, then take the smallest")


def exercise_3(fn):
    """For a linear model the weight-space and output-space ensembles agree."""
    rng = np.random.default_rng(2)
    W0, b0, W1, b1 = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(3, 5)), rng.normal(size=3)
    x = rng.normal(size=(7, 5))
    for alpha in (0.0, 0.25, 1.0):
        out = fn(W0.copy(), b0.copy(), W1.copy(), b1.copy(), x.copy(), alpha)
        assert isinstance(out, tuple) and len(out) == 2, "return a pair (weight_space, output_space)"
        ws, os_ = (np.asarray(o) for o in out)
        want = (1 - alpha) * (x @ W0.T + b0) + alpha * (x @ W1.T + b1)
        assert ws.shape == (7, 3) and os_.shape == (7, 3), f"both outputs are (N, d_out) = (7, 3); got {ws.shape}, {os_.shape}"
        assert np.allclose(os_, want), "output_space: (1 − α)·f0(x) + α·f1(x)"
        assert np.allclose(ws, want), "weight_space: interpolate W and b first, then apply the one model to x"

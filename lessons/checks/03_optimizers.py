"""Checks for lesson 03 (optimizers). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import numpy as np

import minillm
from minillm import nn, optim


def _library_steps(make_optimizer, start, grads):
    """Parameter values after each step of a minillm optimizer fed the given gradients."""
    p = nn.Parameter(minillm.tensor(start, dtype=minillm.float64))
    opt = make_optimizer([p])
    out = []
    for g in grads:
        p.grad = minillm.tensor(g, dtype=minillm.float64)
        opt.step()
        out.append(p.numpy().copy())
    return out


def exercise_1(fn):
    """SGD with momentum, PyTorch convention (first buffer = gradient), against optim.SGD."""
    rng = np.random.default_rng(0)
    start = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    lr, mu = 0.1, 0.9
    param, buf = start.copy(), None
    first = fn(param.copy(), grads[0].copy(), None, lr, mu)
    assert isinstance(first, (tuple, list)) and len(first) == 2, "exercise_1 should return (new_param, new_buf)"
    expected = _library_steps(lambda ps: optim.SGD(ps, lr=lr, momentum=mu), start, grads)
    for t, g in enumerate(grads):
        param, buf = first if t == 0 else fn(param.copy(), g.copy(), None if buf is None else np.array(buf),
                                              lr, mu)
        param, buf = np.asarray(param, dtype=np.float64), np.asarray(buf, dtype=np.float64)
        if not np.allclose(param, expected[t], rtol=1e-10, atol=1e-12):
            hint = (" On the first step the buffer is the gradient itself (b = g), then θ ← θ − lr·b."
                    if t == 0 else " After the first step: b ← μ·b + g, then θ ← θ − lr·b.")
            raise AssertionError(f"after step {t + 1} the parameter is {np.round(param, 6)}, the library gives "
                                 f"{np.round(expected[t], 6)}.{hint}")


def exercise_2(fn):
    """Adam with bias correction, against optim.Adam."""
    rng = np.random.default_rng(1)
    start = rng.standard_normal(6)
    grads = [rng.standard_normal(6) * 0.1 for _ in range(5)]
    # beta2 = 0.999 (the default): with beta2 = 0.99, (1 - beta1) = sqrt(1 - beta2) and step 1 would come out
    # the same without bias correction, hiding the mistake this check is for
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    param, m, v = start.copy(), np.zeros(6), np.zeros(6)
    first = fn(param.copy(), grads[0].copy(), m.copy(), v.copy(), 1, lr, b1, b2, eps)
    assert isinstance(first, (tuple, list)) and len(first) == 3, "exercise_2 should return (param, m, v)"
    expected = _library_steps(lambda ps: optim.Adam(ps, lr=lr, betas=(b1, b2), eps=eps), start, grads)
    for t, g in enumerate(grads, start=1):
        out = first if t == 1 else fn(param.copy(), g.copy(), m.copy(), v.copy(), t, lr, b1, b2, eps)
        param, m, v = (np.asarray(a, dtype=np.float64) for a in out)
        if not np.allclose(param, expected[t - 1], rtol=1e-8, atol=1e-10):
            hint = ""
            if t == 1:
                moved = np.abs(param - start) / lr
                hint = (f" On step 1 Adam moves every coordinate by about lr, whatever the gradient's size; yours "
                        f"moved them by {moved.min():.2f} to {moved.max():.2f} times lr. m and v start at 0: what "
                        "does that do to them in the first steps, and what undoes it?")
            raise AssertionError(f"after step {t} the parameter is {np.round(param, 6)}, the library gives "
                                 f"{np.round(expected[t - 1], 6)}.{hint}")
        expected_m = sum((1 - b1) * b1 ** (t - 1 - i) * grads[i] for i in range(t))
        assert np.allclose(m, expected_m, rtol=1e-8), (f"after step {t}, m should be the (uncorrected) running "
                                                       f"average β₁·m + (1 − β₁)·g = {np.round(expected_m, 6)}")


def exercise_3(fn):
    """Global-norm clipping, against nn.utils.clip_grad_norm_."""
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5) * 3, rng.standard_normal((2, 2))]
    for max_norm in (1.0, 100.0):
        out = fn([g.copy() for g in grads], max_norm)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "exercise_3 should return (clipped_list, total_norm)"
        clipped, total = out
        params = []
        for g in grads:
            p = nn.Parameter(minillm.tensor(np.zeros_like(g), dtype=minillm.float64))
            p.grad = minillm.tensor(g.copy(), dtype=minillm.float64)
            params.append(p)
        expected_total = float(optim.clip_grad_norm_(params, max_norm))
        assert abs(float(total) - expected_total) <= 1e-9 * expected_total, (
            f"the total norm should be {expected_total:.6f} (the square root of the sum of ALL squared entries "
            f"of ALL arrays), got {float(total):.6f}")
        assert len(clipped) == len(grads), f"return one clipped array per gradient ({len(grads)}), got {len(clipped)}"
        for i, (c, p) in enumerate(zip(clipped, params)):
            c = np.asarray(c, dtype=np.float64)
            assert np.allclose(c, p.grad.numpy(), rtol=1e-5, atol=1e-9), (
                f"max_norm={max_norm}: clipped gradient {i} is wrong. Scale every array by the SAME factor "
                "min(1, max_norm / total_norm); leave them unchanged when the norm is already below max_norm")

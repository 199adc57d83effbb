"""Tests for minillm.optim: optimizers against torch.optim, convergence, parameter groups,
state_dict round trips (through .npz + JSON), the device rule, schedules, gradient clipping."""
import io
import json
import math

import numpy as np
import pytest

import minillm
from minillm import nn, optim
from minillm.nn import functional as F
from minillm.nn import Parameter
from minillm.tensor import Tensor

# --------------------------------------------------------------------------- the problem
# Multi-output least squares: Y ≈ X Wᵀ + b, loss = mean((X Wᵀ + b − Y)²). Convex (a quadratic
# in W and b), with a weight matrix and a bias, so every optimizer option has something to do.
N, D_IN, D_OUT = 32, 5, 3


def make_data(seed=0, dtype=np.float64, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D_IN))
    W_true, b_true = rng.normal(size=(D_OUT, D_IN)), rng.normal(size=D_OUT)
    Y = X @ W_true.T + b_true + noise * rng.normal(size=(N, D_OUT))
    W0, b0 = 0.5 * rng.normal(size=(D_OUT, D_IN)), 0.5 * rng.normal(size=D_OUT)
    return tuple(a.astype(dtype) for a in (X, Y, W0, b0))


class Regression(nn.Module):
    def __init__(self, W0, b0):
        super().__init__()
        self.weight = Parameter(np.array(W0))
        self.bias = Parameter(np.array(b0))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def loss_of(model, X, Y):
    return F.mse_loss(model(Tensor(X)), Tensor(Y))


def train(model, opt, X, Y, steps, scheduler=None):
    """Run ``steps`` optimizer steps; return the parameters (copies) after each step."""
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, X, Y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        history.append([minillm.to_numpy(p.data).copy() for p in model.parameters()])
    return history


def optimal_loss(X, Y):
    """The least-squares minimum, from lstsq on [X, 1]."""
    A = np.hstack([X, np.ones((len(X), 1))]).astype(np.float64)
    coef = np.linalg.lstsq(A, Y.astype(np.float64), rcond=None)[0]
    return float(np.mean((A @ coef - Y) ** 2))


# Every optimizer and option, with the same keyword arguments for minillm and torch.
CASES = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "sgd_nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    "sgd_dampening": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    "sgd_nesterov_wd_maximize": ("SGD", dict(lr=0.01, momentum=0.5, nesterov=True, weight_decay=0.1,
                                             maximize=True)),
    "sgd_dampening_wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    "adam": ("Adam", dict(lr=0.05)),
    "adam_weight_decay": ("Adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    "adam_amsgrad": ("Adam", dict(lr=0.05, betas=(0.9, 0.95), amsgrad=True)),
    "adam_amsgrad_weight_decay": ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True, eps=1e-6)),
    "adam_maximize": ("Adam", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    "adamw": ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    "adamw_default_decay": ("AdamW", dict(lr=0.05)),
    "adamw_amsgrad": ("AdamW", dict(lr=0.05, betas=(0.9, 0.95), weight_decay=0.1, amsgrad=True)),
    "rmsprop": ("RMSprop", dict(lr=0.01)),
    "rmsprop_momentum": ("RMSprop", dict(lr=0.01, momentum=0.9)),
    "rmsprop_centered": ("RMSprop", dict(lr=0.01, centered=True)),
    "rmsprop_centered_momentum_wd": ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                                     weight_decay=0.1)),
}


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    """torch's OpenMP threads and NumPy's BLAS threads fight on small machines (a 3x5 matmul then
    takes ~20 ms): run torch on one thread here, and restore its setting afterwards."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_trajectory(name, kwargs, X, Y, W0, b0, steps, groups=None):
    torch = pytest.importorskip("torch")
    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    params = [W, b] if groups is None else [dict(g, params=[W] if g["params"] == "weight" else [b]) for g in groups]
    opt = getattr(torch.optim, name)(params, **kwargs)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(Xt @ W.T + b, Yt).backward()
        opt.step()
        history.append([W.detach().numpy().copy(), b.detach().numpy().copy()])
    return history


def max_deviation(history_a, history_b):
    return max(float(np.abs(a - b).max()) for step_a, step_b in zip(history_a, history_b)
               for a, b in zip(step_a, step_b))


# --------------------------------------------------------------------------- against torch.optim
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_trajectory(case):
    name, kwargs = CASES[case]
    X, Y, W0, b0 = make_data()
    expected = torch_trajectory(name, kwargs, X, Y, W0, b0, steps=20)
    model = Regression(W0, b0)
    got = train(model, getattr(optim, name)(model.parameters(), **kwargs), X, Y, steps=20)
    assert got[-1][0].dtype == np.float64
    assert max(np.abs(e[0] - W0).max() for e in expected) > 1e-3  # the parameters really move
    assert max_deviation(got, expected) < 1e-10


def test_amsgrad_cases_exercise_the_max():
    """The amsgrad cases above only test something if v̂ = max(v̂, v) ≠ v on this problem."""
    X, Y, W0, b0 = make_data()
    for case in ("adam_amsgrad", "adamw_amsgrad"):
        name, kwargs = CASES[case]
        with_max, without = (train(m, getattr(optim, name)(m.parameters(), **dict(kwargs, amsgrad=flag)), X, Y, 20)
                             for m, flag in ((Regression(W0, b0), True), (Regression(W0, b0), False)))
        assert max_deviation(with_max, without) > 1e-3


@pytest.mark.parametrize("name,kwargs", [("AdamW", dict(lr=0.05)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                         ("RMSprop", dict(lr=0.01, centered=True))])
def test_matches_torch_with_parameter_groups(name, kwargs):
    groups = [{"params": "weight", "weight_decay": 0.2, "lr": 0.02}, {"params": "bias", "weight_decay": 0.0}]
    X, Y, W0, b0 = make_data(1)
    expected = torch_trajectory(name, kwargs, X, Y, W0, b0, steps=20, groups=groups)
    model = Regression(W0, b0)
    mine = [dict(g, params=[model.weight] if g["params"] == "weight" else [model.bias]) for g in groups]
    got = train(model, getattr(optim, name)(mine, **kwargs), X, Y, steps=20)
    assert max_deviation(got, expected) < 1e-10


# --------------------------------------------------------------------------- convergence
# Each optimizer must bring the float32 loss within 1e-3 of the least-squares optimum
# (computed exactly with lstsq): the initial excess loss is about 6.5, so that is a reduction by
# almost four orders of magnitude, and 1e-3 is 10% of the optimum itself (≈ noise² = 0.01), well
# above float32 rounding (~1e-7 relative) yet far below where a broken update would stall. A
# StepLR anneals the lr, since adaptive methods otherwise hover at a distance of order lr.
# (Observed excess after 600 steps: 6e-5 for plain SGD, below 1e-8 for the others.)
@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=1e-4)),
    ("RMSprop", dict(lr=0.03)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
])
def test_converges_float32(name, kwargs):
    X, Y, W0, b0 = make_data(2, dtype=np.float32)
    model = Regression(W0, b0)
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    scheduler = optim.StepLR(opt, step_size=150, gamma=0.3)
    initial = float(loss_of(model, X, Y).item())
    train(model, opt, X, Y, steps=600, scheduler=scheduler)
    final, best = float(loss_of(model, X, Y).item()), optimal_loss(X, Y)
    assert initial - best > 1.0
    assert final - best < 1e-3, (final, best)
    for p in model.parameters():  # no float64 upcast anywhere
        assert p.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state.get(p, {}).values() if isinstance(v, np.ndarray))


# --------------------------------------------------------------------------- basics
def test_zero_grad_and_skipping_params_without_grad():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = Tensor(np.full(3, 2.0))
    opt.step()
    assert np.all(a.data < 1) and np.array_equal(b.data, np.ones(2))
    assert b not in opt.state and opt.state[a]["step"] == 1
    opt.zero_grad(set_to_none=False)
    assert np.array_equal(a.grad.data, np.zeros(3)) and b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_step_runs_without_recording_a_graph_and_returns_the_closure_loss():
    X, Y, W0, b0 = make_data()
    model = Regression(W0, b0)
    opt = optim.SGD(model.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        loss = loss_of(model, X, Y)
        loss.backward()
        return loss
    with minillm.no_grad():  # the closure still gets gradients
        loss = opt.step(closure)
    assert loss.item() > 0 and model.weight.grad is not None
    assert model.weight.is_leaf and minillm.is_grad_enabled()


def test_constructor_errors():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)  # a bare tensor, not an iterable of them
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="beta"):
        optim.AdamW([p], betas=(0.9, 1.0))


# --------------------------------------------------------------------------- parameter groups
@pytest.mark.parametrize("name", ["SGD", "AdamW", "Adam"])
def test_weight_decay_applies_to_group_one_only(name):
    decayed, plain = Parameter(np.full((2, 3), 2.0)), Parameter(np.full(3, 2.0))
    opt = getattr(optim, name)([{"params": [decayed], "weight_decay": 0.1}, {"params": [plain], "weight_decay": 0.0}],
                               lr=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]  # defaults fill the groups
    for p in (decayed, plain):
        p.grad = Tensor(np.zeros(p.shape))  # no gradient signal: only weight decay can move them
    opt.step()
    assert np.array_equal(plain.data, np.full(3, 2.0))
    if name == "AdamW":  # decoupled: θ ← θ(1 − lr·λ), then the Adam step of a zero gradient is 0
        np.testing.assert_allclose(decayed.data, 2.0 * (1 - 0.5 * 0.1), rtol=1e-15)
    elif name == "SGD":  # L2: g = λθ, θ ← θ − lr·λθ
        np.testing.assert_allclose(decayed.data, 2.0 - 0.5 * 0.1 * 2.0, rtol=1e-15)
    else:  # Adam L2: g = λθ, m̂/√v̂ = sign(g) on the first step, so θ ← θ − lr (up to ε)
        np.testing.assert_allclose(decayed.data, 2.0 - 0.5, rtol=1e-7)


def test_add_param_group_and_group_lr():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [a]})
    a.grad, b.grad = Tensor(np.ones(2)), Tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.99)


# --------------------------------------------------------------------------- state_dict
def checkpoint_roundtrip(state_dict):
    """What a checkpoint does: arrays to .npz, everything else to JSON; no pickle."""
    arrays, meta = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, entry in state_dict["state"].items():
        meta["state"][index] = {}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[f"{index}/{name}"] = value
            else:
                assert isinstance(value, (int, float, bool)), (name, type(value))
                meta["state"][index][name] = value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    meta = json.loads(json.dumps(meta))  # index keys become strings, tuples lists
    with np.load(buffer, allow_pickle=False) as npz:
        for key in npz.files:
            index, name = key.split("/")
            meta["state"][index][name] = npz[key]
    return meta


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_roundtrip_continues_identically(case):
    name, kwargs = CASES[case]
    X, Y, W0, b0 = make_data(3)
    model_a = Regression(W0, b0)
    opt_a = getattr(optim, name)(model_a.parameters(), **kwargs)
    train(model_a, opt_a, X, Y, steps=5)
    saved = opt_a.state_dict()
    snapshot = {i: {k: np.copy(v) for k, v in e.items()} for i, e in saved["state"].items()}
    restored = checkpoint_roundtrip(saved)

    model_b = Regression(model_a.weight.numpy(), model_a.bias.numpy())
    opt_b = getattr(optim, name)(model_b.parameters(), lr=123.0)  # hyperparameters come from the state dict
    opt_b.load_state_dict(restored)
    assert opt_b.param_groups[0]["lr"] == kwargs["lr"]
    if "betas" in opt_b.param_groups[0]:
        assert isinstance(opt_b.param_groups[0]["betas"], tuple)
    history_a = train(model_a, opt_a, X, Y, steps=5)
    history_b = train(model_b, opt_b, X, Y, steps=5)
    assert max_deviation(history_a, history_b) == 0.0
    for i, entry in saved["state"].items():  # the state dict is a snapshot, not a view
        for k, v in entry.items():
            np.testing.assert_array_equal(v, snapshot[i][k])


def test_load_state_dict_casts_to_parameter_dtype():
    p = Parameter(np.ones(4, dtype=np.float32))
    opt = optim.Adam([p])
    p.grad = Tensor(np.ones(4, dtype=np.float32))
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].astype(np.float64)
    opt.load_state_dict(sd)
    assert opt.state[p]["exp_avg"].dtype == np.float32


def test_load_state_dict_shape_and_size_mismatch():
    a, b = Parameter(np.ones((3, 5))), Parameter(np.ones(3))
    opt = optim.Adam([a, b])
    a.grad, b.grad = Tensor(np.ones((3, 5))), Tensor(np.ones(3))
    opt.step()
    saved = opt.state_dict()

    other = optim.Adam([Parameter(np.ones((3, 5))), Parameter(np.ones(4))])
    with pytest.raises(ValueError, match=r"parameter 1 has shape \(3,\) but the parameter has shape \(4,\)"):
        other.load_state_dict(saved)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameter"):
        optim.Adam([Parameter(np.ones((3, 5)))]).load_state_dict(saved)
    with pytest.raises(ValueError, match="1 parameter group"):
        optim.Adam([{"params": [Parameter(np.ones((3, 5)))]}, {"params": [Parameter(np.ones(3))]}]).load_state_dict(saved)


# --------------------------------------------------------------------------- the device rule
@pytest.mark.gpu
@pytest.mark.skipif(not minillm.is_cuda_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("case", ["adamw", "adam_weight_decay", "adam_maximize", "adamw_amsgrad",
                                  "sgd_nesterov_wd_maximize", "rmsprop_centered_momentum_wd"])
def test_state_follows_the_model_to_cuda(case):
    name, kwargs = CASES[case]
    X, Y, W0, b0 = make_data(4)
    cpu_model = Regression(W0, b0)
    expected = train(cpu_model, getattr(optim, name)(cpu_model.parameters(), **kwargs), X, Y, steps=6)

    model = Regression(W0, b0)
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    train(model, opt, X, Y, steps=3)
    assert all(minillm.backend.device_of(v) == "cpu" for s in opt.state.values() for v in s.values()
               if hasattr(v, "shape"))
    model.to("cuda")
    Xc, Yc = Tensor(X, device="cuda"), Tensor(Y, device="cuda")
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(Xc), Yc).backward()
        opt.step()
    arrays = [v for s in opt.state.values() for v in s.values() if hasattr(v, "shape")]
    assert arrays and all(minillm.backend.device_of(v).startswith("cuda") for v in arrays)
    for got, want in zip(model.parameters(), expected[-1]):
        assert got.device.startswith("cuda")
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)

    # and a CPU state dict loads straight onto the GPU parameters
    fresh = getattr(optim, name)(model.parameters(), **kwargs)
    fresh.load_state_dict(opt.state_dict())
    assert all(minillm.backend.device_of(v).startswith("cuda") for s in fresh.state.values() for v in s.values()
               if hasattr(v, "shape"))


# --------------------------------------------------------------------------- schedules
def nanogpt_get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """nanoGPT's train.py get_lr, verbatim."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_cosine_with_warmup_lr_values():
    max_lr, min_lr, warmup, decay = 6e-4, 6e-5, 10, 110
    f = lambda it: optim.cosine_with_warmup_lr(it, max_lr, min_lr, warmup, decay)  # noqa: E731
    assert f(0) == pytest.approx(max_lr / 11, rel=1e-15)                 # warmup starts above 0
    assert f(warmup - 1) == pytest.approx(max_lr * 10 / 11, rel=1e-15)   # last warmup step
    assert f(warmup) == pytest.approx(max_lr, rel=1e-15)                 # cosine starts at max
    assert f(60) == pytest.approx((max_lr + min_lr) / 2, rel=1e-12)      # halfway: cos(π/2) = 0
    assert f(decay) == pytest.approx(min_lr, rel=1e-12)                  # decay end
    assert f(decay + 1) == f(10**6) == min_lr                            # and beyond
    assert all(f(i) == nanogpt_get_lr(i, max_lr, min_lr, warmup, decay) for i in range(200))
    assert all(f(i) > f(i + 1) for i in range(warmup, decay))            # monotone decay
    assert optim.cosine_with_warmup_lr(0, 1.0, 0.1, 0, 10) == 1.0        # no warmup


def test_cosine_with_warmup_scheduler_scales_each_group():
    a, b = Parameter(np.ones(1)), Parameter(np.ones(1))
    opt = optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 2e-3}])
    sched = optim.CosineWithWarmup(opt, warmup_iters=5, lr_decay_iters=20, min_lr=[1e-4, 2e-4])
    assert [g["initial_lr"] for g in opt.param_groups] == [1e-3, 2e-3]
    for it in range(30):
        want = [nanogpt_get_lr(it, 1e-3, 1e-4, 5, 20), nanogpt_get_lr(it, 2e-3, 2e-4, 5, 20)]
        assert [g["lr"] for g in opt.param_groups] == want == sched.get_last_lr()
        opt.step()
        sched.step()


def test_scheduler_state_dict_roundtrip():
    opt = optim.SGD([Parameter(np.ones(1))], lr=1.0)
    sched = optim.CosineWithWarmup(opt, warmup_iters=3, lr_decay_iters=12, min_lr=0.1)
    for _ in range(7):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    opt2 = optim.SGD([Parameter(np.ones(1))], lr=1.0)
    sched2 = optim.CosineWithWarmup(opt2, warmup_iters=3, lr_decay_iters=12, min_lr=0.1)
    sched2.load_state_dict(saved)
    for _ in range(8):
        sched.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def _torch_schedule(torch_cls, sched_kwargs, lrs, steps):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs])
    sched = torch_cls(opt, **sched_kwargs)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return out


def _mine_schedule(cls, sched_kwargs, lrs, steps):
    opt = optim.SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs])
    sched = cls(opt, **sched_kwargs)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return out


def test_step_lr_matches_torch():
    torch = pytest.importorskip("torch")
    kwargs = dict(step_size=3, gamma=0.5)
    want = _torch_schedule(torch.optim.lr_scheduler.StepLR, kwargs, [0.1, 0.03], 25)
    got = _mine_schedule(optim.StepLR, kwargs, [0.1, 0.03], 25)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert got[2] == [0.1, 0.03] and got[3] == pytest.approx([0.05, 0.015])


def test_lambda_lr_matches_torch():
    torch = pytest.importorskip("torch")
    kwargs = dict(lr_lambda=[lambda e: 0.9 ** e, lambda e: 1.0 / (e + 1)])
    want = _torch_schedule(torch.optim.lr_scheduler.LambdaLR, kwargs, [0.1, 0.03], 15)
    got = _mine_schedule(optim.LambdaLR, kwargs, [0.1, 0.03], 15)
    np.testing.assert_allclose(got, want, rtol=1e-15)


# --------------------------------------------------------------------------- gradient clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    grads = [rng.normal(size=(4, 3)), rng.normal(size=7), rng.normal(size=(2, 2, 2))]
    mine = [Parameter(np.zeros_like(g)) for g in grads] + [Parameter(np.zeros(2))]  # last: no grad
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, q, g in zip(mine, theirs, grads):
        p.grad, q.grad = Tensor(g.copy()), torch.tensor(g)
    norm = optim.clip_grad_norm_(mine, max_norm, norm_type=norm_type)
    torch_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(norm, Tensor) and norm.shape == ()   # a 0-d tensor, as PyTorch: no host sync
    assert float(norm) == pytest.approx(float(torch_norm), rel=1e-12)
    for p, q, g in zip(mine, theirs, grads):
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-12)
    clipped = [p.grad.data for p in mine[:3]]
    if norm_type == 2.0:
        after = math.sqrt(sum(float((c ** 2).sum()) for c in clipped))
    elif norm_type == 1.0:
        after = sum(float(np.abs(c).sum()) for c in clipped)
    else:
        after = max(float(np.abs(c).max()) for c in clipped)
    norm = float(norm)
    assert after == pytest.approx(min(norm, max_norm), rel=1e-5)  # clipped to max_norm (within its 1e-6)
    if max_norm > norm:
        assert all(np.array_equal(c, g) for c, g in zip(clipped, grads))  # untouched

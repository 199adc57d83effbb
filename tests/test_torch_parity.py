"""Parity with PyTorch, in float64, forward and backward.

A wrong forward that agrees with its own wrong backward passes a gradcheck; comparing with an
independent implementation catches it. Every case runs the same function on minillm tensors
and on torch tensors (same inputs, same random output gradient) and compares outputs and input
gradients to ~1e-10. Layers get their weights copied into the torch module. minillm runs on
each ``device``; torch runs on the CPU. Skipped when torch is not installed.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = torch.nn.functional

import minillm as mm  # noqa: E402
from minillm import nn  # noqa: E402
from minillm.nn import functional as F  # noqa: E402

RTOL = ATOL = 1e-10


class _Lib:
    """``L.exp``, ``L.F.gelu``, ...: the same spelling for both libraries (where names differ,
    the overrides give one name to both)."""

    def __init__(self, lib, functional, **overrides):
        self._lib, self.F, self._over = lib, functional, overrides

    def __getattr__(self, name):
        return self._over[name] if name in self._over else getattr(self._lib, name)


MM = _Lib(mm, F, amax=mm.max, amin=mm.min)
TT = _Lib(torch, TF, amax=torch.amax, amin=torch.amin)

# constants shared by the cases (NumPy; converted for each library)
_rng = np.random.default_rng(1234)
C = {
    "mask23": np.array([[True, False, True], [False, False, True]]),
    "mask3": np.array([True, False, True]),
    "col_mask": np.array([[True], [False]]),
    "rows": np.array([0, 2, 2, 0, 2]),
    "rows_neg": np.array([0, -1, 2, 2]),
    "rows2d": np.array([[1, 1], [0, 2]]),
    "cols": np.array([2, 2, 0]),
    "rows_b": np.array([1, 2, 1]),
    "rows_c": np.array([1, 0, 1]),
    "gidx1": np.array([[0, 0, 2], [1, 2, 1]]),
    "gidx0": np.array([[1, 0, 1, 1], [1, 1, 0, 0]]),
    "emb_idx": np.array([[1, 3, 1], [0, 1, 1]]),
    "attn_mask": np.array([[True, False, True, True], [False, True, True, False], [True, True, False, False]]),
    "t3": np.array([0, 2, 1]),
    "t4": np.array([0, 2, 1, 2]),
    "t4_ign": np.array([0, -100, 1, 2]),
    "t4_ign1": np.array([0, 1, 1, 2]),
    "t_ncd": np.array([[0, 2], [1, 1]]),
    "t_btc": np.array([[0, 3], [2, -100], [1, 1]]),
    "y23": _rng.uniform(0, 1, (2, 3)),
    "y_bin": np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
    "pos_weight": np.array([2.0, 0.5, 1.5]),
    "rm3": _rng.standard_normal(3),
    "rv3": _rng.uniform(0.5, 2, 3),
    "zeros3": np.zeros(3),
    "ones3": np.ones(3),
}

A, P, NZ, AW = "any", "pos", "nonzero", "away"


def x(*shape, domain=A):
    return (shape, domain)


# name: (fn(L, c, *inputs), [input specs]) or (mm_fn, torch_fn, specs) where the two differ
CASES = {
    # arithmetic
    "add": (lambda L, c, a, b: a + b, [x(3, 4), x(4)]),
    "add_scalar": (lambda L, c, a: 2.5 + a + 1, [x(3)]),
    "sub": (lambda L, c, a, b: a - b, [x(2, 1, 3), x(4, 1)]),
    "rsub": (lambda L, c, a: 1.0 - a, [x(3)]),
    "mul": (lambda L, c, a, b: a * b, [x(3, 1), x(1, 4)]),
    "div": (lambda L, c, a, b: a / b, [x(3, 4), x(4, domain=NZ)]),
    "rdiv": (lambda L, c, a: 2.0 / a, [x(4, domain=NZ)]),
    "pow_tensor": (lambda L, c, a, b: a ** b, [x(3, 2, domain=P), x(2)]),
    "pow_2": (lambda L, c, a: a ** 2, [x(4)]),
    "pow_3": (lambda L, c, a: a ** 3, [x(4)]),
    "pow_half": (lambda L, c, a: a ** 0.5, [x(4, domain=P)]),
    "pow_minus_1": (lambda L, c, a: a ** -1, [x(4, domain=NZ)]),
    "pow_2.5": (lambda L, c, a: a ** 2.5, [x(4, domain=P)]),
    "rpow": (lambda L, c, a: 2.0 ** a, [x(4)]),
    "neg": (lambda L, c, a: -a, [x(2, 3)]),
    # matmul
    "matmul_2d": (lambda L, c, a, b: a @ b, [x(3, 4), x(4, 2)]),
    "matmul_1d_2d": (lambda L, c, a, b: a @ b, [x(4), x(4, 2)]),
    "matmul_2d_1d": (lambda L, c, a, b: a @ b, [x(3, 4), x(4)]),
    "matmul_1d_1d": (lambda L, c, a, b: L.matmul(a, b), [x(4), x(4)]),
    "matmul_batched": (lambda L, c, a, b: a @ b, [x(2, 3, 4), x(2, 4, 2)]),
    "matmul_broadcast": (lambda L, c, a, b: a @ b, [x(2, 1, 2, 3), x(3, 3, 2)]),
    "matmul_batched_1d": (lambda L, c, a, b: a @ b, [x(2, 3, 4), x(4)]),
    "matmul_1d_batched": (lambda L, c, a, b: a @ b, [x(3), x(2, 3, 2)]),
    # elementwise
    "exp": (lambda L, c, a: L.exp(a), [x(2, 3)]),
    "log": (lambda L, c, a: L.log(a), [x(2, 3, domain=P)]),
    "sqrt": (lambda L, c, a: L.sqrt(a), [x(2, 3, domain=P)]),
    "tanh": (lambda L, c, a: L.tanh(a), [x(2, 3)]),
    "sigmoid": (lambda L, c, a: L.sigmoid(a), [x(2, 3)]),
    "sigmoid_extreme": (lambda L, c, a: L.sigmoid(a * 40), [x(2, 3)]),
    "relu": (lambda L, c, a: L.relu(a), [x(2, 3, domain=AW)]),
    "gelu_none": (lambda L, c, a: L.F.gelu(a * 2, approximate="none"), [x(2, 4)]),
    "gelu_tanh": (lambda L, c, a: L.F.gelu(a * 2, approximate="tanh"), [x(2, 4)]),
    "erf": (lambda L, c, a: L.erf(a), [x(2, 3)]),
    "abs": (lambda L, c, a: L.abs(a), [x(2, 3, domain=AW)]),
    "clamp": (lambda L, c, a: L.clamp(a * 0.8, -0.5, 0.5), [x(2, 4, domain=AW)]),
    "clamp_min": (lambda L, c, a: a.clamp(min=0.1), [x(4)]),
    "clamp_max": (lambda L, c, a: a.clamp(max=0.1), [x(4)]),
    "maximum": (lambda L, c, a, b: L.maximum(a, b), [x(3, 4), x(4)]),
    "minimum": (lambda L, c, a, b: L.minimum(a, b), [x(3, 4), x(3, 1)]),
    "where": (lambda L, c, a, b: L.where(c["mask23"], a, b), [x(2, 3), x(3)]),
    "where_broadcast_cond": (lambda L, c, a, b: L.where(c["mask3"], a, b), [x(2, 1), x(2, 3)]),
    "masked_fill": (lambda L, c, a: a.masked_fill(c["col_mask"], -3.0), [x(2, 3)]),
    # reductions
    "sum_all": (lambda L, c, a: a.sum(), [x(2, 3)]),
    "sum_dim": (lambda L, c, a: a.sum(1), [x(2, 3, 2)]),
    "sum_keepdim": (lambda L, c, a: a.sum(-1, keepdim=True), [x(2, 3)]),
    "sum_tuple": (lambda L, c, a: a.sum((0, 2)), [x(2, 3, 2)]),
    "mean_all": (lambda L, c, a: a.mean(), [x(2, 3)]),
    "mean_tuple_keepdim": (lambda L, c, a: a.mean((1, 2), keepdim=True), [x(2, 3, 2)]),
    "var_all": (lambda L, c, a: a.var(), [x(2, 3)]),
    "var_dim": (lambda L, c, a: a.var(1), [x(2, 3)]),
    "var_pop_tuple": (lambda L, c, a: a.var((0, 2), keepdim=True, correction=0), [x(2, 3, 2)]),
    "amax_all": (lambda L, c, a: L.amax(a), [x(2, 3)]),
    "amax_dim": (lambda L, c, a: L.amax(a, 1), [x(3, 4)]),
    "amax_tuple_keepdim": (lambda L, c, a: L.amax(a, (0, 2), keepdim=True), [x(2, 3, 2)]),
    "amin_dim": (lambda L, c, a: L.amin(a, 0), [x(3, 4)]),
    "amin_tuple": (lambda L, c, a: L.amin(a, (1, 2)), [x(2, 3, 2)]),
    "logsumexp": (lambda L, c, a: L.logsumexp(a * 3, 1), [x(2, 3)]),
    "logsumexp_tuple": (lambda L, c, a: L.logsumexp(a, (0, 2), keepdim=True), [x(2, 3, 2)]),
    # shapes
    "reshape": (lambda L, c, a: a.reshape(3, 2), [x(2, 3)]),
    "view": (lambda L, c, a: a.view(-1, 4), [x(2, 2, 2)]),
    "flatten": (lambda L, c, a: a.flatten(), [x(2, 3, 2)]),
    "flatten_start": (lambda L, c, a: L.flatten(a, 1), [x(2, 3, 2)]),
    "transpose": (lambda L, c, a: a.transpose(0, 2), [x(2, 3, 4)]),
    "T": (lambda L, c, a: a.T, [x(2, 3)]),
    "permute": (lambda L, c, a: a.permute(2, 0, 1), [x(2, 3, 4)]),
    "squeeze": (lambda L, c, a: a.squeeze(), [x(2, 1, 3, 1)]),
    "squeeze_dim": (lambda L, c, a: a.squeeze(1), [x(2, 1, 3, 1)]),
    "unsqueeze": (lambda L, c, a: a.unsqueeze(-1), [x(2, 3)]),
    "expand": (lambda L, c, a: a.expand(2, 3, 4), [x(3, 1)]),
    "expand_minus1": (lambda L, c, a: a.expand(2, -1, 3), [x(4, 1)]),
    "broadcast_to": (lambda L, c, a: a.broadcast_to((2, 3)), [x(3)]),
    "cat": (lambda L, c, a, b, d: L.cat([a, b, d], 0), [x(1, 3), x(2, 3), x(1, 3)]),
    "cat_last": (lambda L, c, a, b: L.cat([a, b], dim=-1), [x(2, 1), x(2, 3)]),
    "stack": (lambda L, c, a, b: L.stack([a, b]), [x(2, 3), x(2, 3)]),
    "stack_last": (lambda L, c, a, b: L.stack([a, b], dim=-1), [x(2, 3), x(2, 3)]),
    "split": (lambda L, c, a: tuple(a.split(2, dim=1)), [x(2, 5)]),
    "split_sections": (lambda L, c, a: tuple(L.split(a, [1, 3], dim=-1)), [x(2, 4)]),
    "chunk": (lambda L, c, a: tuple(a.chunk(3, 0)), [x(5, 2)]),
    "chunk_uneven": (lambda L, c, a: tuple(a.chunk(4, 1)), [x(2, 6)]),
    # indexing (torch has no negative slice steps: those are gradchecked in test_ops.py)
    "getitem_int": (lambda L, c, a: a[1], [x(3, 4)]),
    "getitem_neg_int": (lambda L, c, a: a[-1, 2], [x(3, 4)]),
    "getitem_slices": (lambda L, c, a: a[1:, :3:2], [x(3, 4)]),
    "getitem_none_ellipsis": (lambda L, c, a: a[None, ..., 1], [x(2, 3, 4)]),
    "getitem_int_array": (lambda L, c, a: a[c["rows"]], [x(3, 2)]),
    "getitem_int_array_negative": (lambda L, c, a: a[c["rows_neg"]], [x(3, 2)]),
    "getitem_int_array_2d": (lambda L, c, a: a[c["rows2d"]], [x(3, 2)]),
    "getitem_bool_mask": (lambda L, c, a: a[c["mask23"]], [x(2, 3)]),
    "getitem_bool_rows": (lambda L, c, a: a[c["mask3"]], [x(3, 2)]),
    "getitem_array_slice": (lambda L, c, a: a[c["cols"], 1:], [x(3, 4)]),
    "getitem_slice_array": (lambda L, c, a: a[1:, c["cols"]], [x(3, 4)]),
    "getitem_two_arrays": (lambda L, c, a: a[c["rows_b"], c["cols"]], [x(3, 4)]),
    "getitem_arrays_apart": (lambda L, c, a: a[c["rows_c"], :, c["cols"]], [x(2, 3, 4)]),
    "getitem_mix": (lambda L, c, a: a[None, ..., c["cols"], 1:], [x(2, 3, 4)]),
    "gather_dim1": (lambda L, c, a: a.gather(1, c["gidx1"]), [x(2, 3)]),
    "gather_dim0": (lambda L, c, a: L.gather(a, 0, c["gidx0"]), [x(2, 4)]),
    "tril": (lambda L, c, a: L.tril(a), [x(3, 4)]),
    "tril_diag": (lambda L, c, a: L.tril(a, -1), [x(2, 3, 3)]),
    "triu": (lambda L, c, a: L.triu(a), [x(3, 4)]),
    "triu_diag": (lambda L, c, a: L.triu(a, 1), [x(2, 3, 3)]),
    "softmax": (lambda L, c, a: L.softmax(a, -1), [x(2, 4)]),
    "softmax_dim0": (lambda L, c, a: L.softmax(a * 5, 0), [x(3, 2, 2)]),
    "log_softmax": (lambda L, c, a: L.log_softmax(a, -1), [x(2, 4)]),
    "log_softmax_dim1": (lambda L, c, a: L.log_softmax(a * 5, 1), [x(2, 3, 2)]),
    # nn.functional
    "linear": (lambda L, c, a, w, b: L.F.linear(a, w, b), [x(2, 3), x(4, 3), x(4)]),
    "linear_3d_no_bias": (lambda L, c, a, w: L.F.linear(a, w), [x(2, 2, 3), x(4, 3)]),
    "layer_norm": (lambda L, c, a, w, b: L.F.layer_norm(a, (4,), w, b), [x(2, 3, 4), x(4), x(4)]),
    "layer_norm_plain": (lambda L, c, a: L.F.layer_norm(a, (4,)), [x(3, 4)]),
    "layer_norm_2d_shape": (lambda L, c, a, w: L.F.layer_norm(a, (2, 3), w, eps=1e-3), [x(2, 2, 3), x(2, 3)]),
    "batch_norm_train_2d": (lambda L, c, a, w, b: L.F.batch_norm(a, None, None, w, b, training=True),
                            [x(4, 3), x(3), x(3)]),
    "batch_norm_train_3d": (lambda L, c, a, w, b: L.F.batch_norm(a, c["zeros3"] * 0, c["ones3"] * 1, w, b,
                                                                 training=True, momentum=0.3),
                            [x(2, 3, 4), x(3), x(3)]),
    "batch_norm_eval": (lambda L, c, a, w, b: L.F.batch_norm(a, c["rm3"], c["rv3"], w, b, training=False),
                        [x(4, 3), x(3), x(3)]),
    "embedding": (lambda L, c, w: L.F.embedding(c["emb_idx"], w), [x(4, 3)]),
    "dropout_p0": (lambda L, c, a: L.F.dropout(a, 0.0), [x(3)]),
    "dropout_eval": (lambda L, c, a: L.F.dropout(a, 0.5, training=False), [x(3)]),
    "sdpa": (lambda L, c, q, k, v: L.F.scaled_dot_product_attention(q, k, v), [x(2, 3, 4), x(2, 3, 4), x(2, 3, 2)]),
    "sdpa_causal": (lambda L, c, q, k, v: L.F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    [x(2, 2, 3, 2), x(2, 2, 3, 2), x(2, 2, 3, 2)]),
    "sdpa_bool_mask_cross": (lambda L, c, q, k, v: L.F.scaled_dot_product_attention(q, k, v, attn_mask=c["attn_mask"]),
                             [x(2, 3, 2), x(2, 4, 2), x(2, 4, 3)]),
    "sdpa_cross_lengths_scale": (lambda L, c, q, k, v: L.F.scaled_dot_product_attention(q, k, v, scale=0.3),
                                 [x(1, 2, 2, 3), x(1, 2, 4, 3), x(1, 2, 4, 2)]),
    "cross_entropy_mean": (lambda L, c, a: L.F.cross_entropy(a, c["t4"]), [x(4, 3)]),
    "cross_entropy_sum": (lambda L, c, a: L.F.cross_entropy(a, c["t3"], reduction="sum"), [x(3, 4)]),
    "cross_entropy_none": (lambda L, c, a: L.F.cross_entropy(a, c["t3"], reduction="none"), [x(3, 4)]),
    "cross_entropy_ignore": (lambda L, c, a: L.F.cross_entropy(a, c["t4_ign"]), [x(4, 3)]),
    "cross_entropy_ignore_custom": (lambda L, c, a: L.F.cross_entropy(a, c["t4_ign1"], ignore_index=1),
                                    [x(4, 3)]),
    "cross_entropy_smoothing": (lambda L, c, a: L.F.cross_entropy(a, c["t3"], label_smoothing=0.2), [x(3, 3)]),
    "cross_entropy_smoothing_ignore": (lambda L, c, a: L.F.cross_entropy(a, c["t4_ign"], label_smoothing=0.1),
                                       [x(4, 3)]),
    "cross_entropy_smoothing_ignore_none": (
        lambda L, c, a: L.F.cross_entropy(a, c["t4_ign"], label_smoothing=0.3, reduction="none"), [x(4, 3)]),
    "cross_entropy_NCd": (lambda L, c, a: L.F.cross_entropy(a, c["t_ncd"]), [x(2, 3, 2)]),
    "cross_entropy_NCd_smoothing": (lambda L, c, a: L.F.cross_entropy(a, c["t_btc"], label_smoothing=0.1),
                                    [x(3, 4, 2)]),
    "nll_loss": (lambda L, c, a: L.F.nll_loss(a, c["t3"]), [x(3, 4)]),
    "nll_loss_ignore_sum": (lambda L, c, a: L.F.nll_loss(L.log_softmax(a, -1), c["t4_ign"], reduction="sum"),
                            [x(4, 3)]),
    "nll_loss_ignore_mean": (lambda L, c, a: L.F.nll_loss(a, c["t4_ign"]), [x(4, 3)]),
    "nll_loss_none": (lambda L, c, a: L.F.nll_loss(a, c["t3"], reduction="none"), [x(3, 4)]),
    "mse_loss": (lambda L, c, a, b: L.F.mse_loss(a, b), [x(2, 3), x(2, 3)]),
    "mse_loss_sum": (lambda L, c, a, b: L.F.mse_loss(a, b, reduction="sum"), [x(2, 3), x(2, 3)]),
    "mse_loss_none": (lambda L, c, a, b: L.F.mse_loss(a, b, reduction="none"), [x(4), x(4)]),
    "bce_with_logits": (lambda L, c, a, y: L.F.binary_cross_entropy_with_logits(a * 3, y), [x(2, 3), x(2, 3, domain=P)]),
    "bce_with_logits_const_target": (lambda L, c, a: L.F.binary_cross_entropy_with_logits(a * 3, c["y23"]), [x(2, 3)]),
    "bce_with_logits_pos_weight": (
        lambda L, c, a: L.F.binary_cross_entropy_with_logits(a * 3, c["y_bin"], reduction="sum",
                                                             pos_weight=c["pos_weight"]), [x(2, 3)]),
    "bce_with_logits_none": (lambda L, c, a: L.F.binary_cross_entropy_with_logits(a, c["y23"], reduction="none"),
                             [x(2, 3)]),
}


def _inputs(specs, seed):
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, domain in specs:
        if domain == A:
            a = rng.standard_normal(shape)
        elif domain == P:
            a = rng.uniform(0.5, 2.0, shape)
        elif domain == NZ:
            a = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
        else:  # away from 0
            a = rng.standard_normal(shape)
            a = np.where(np.abs(a) < 0.2, np.sign(a + 1e-12) * 0.2 + a, a)
        arrays.append(a)
    return arrays


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _compare(ours, theirs, what):
    ours = np.asarray(mm.to_numpy(ours)) if ours is not None else None
    theirs = theirs.detach().numpy() if theirs is not None else None
    if ours is None or theirs is None:  # an unused input: the other side must be zero too
        other = ours if theirs is None else theirs
        assert other is None or not np.any(other), what
        return
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


def _run_parity(mm_fn, torch_fn, arrays, device, seed=0):
    c_mm = {k: mm.tensor(v, device=device) for k, v in C.items()}
    c_t = {k: torch.from_numpy(v.copy()) for k, v in C.items()}
    xs_mm = [mm.tensor(a, requires_grad=True, device=device) for a in arrays]
    xs_t = [torch.tensor(a, requires_grad=True) for a in arrays]
    outs_mm = _tuple(mm_fn(MM, c_mm, *xs_mm))
    outs_t = _tuple(torch_fn(TT, c_t, *xs_t))
    assert len(outs_mm) == len(outs_t)
    rng = np.random.default_rng(seed + 99)
    grads = [rng.standard_normal(tuple(o.shape)) for o in outs_t]
    for i, (a, b) in enumerate(zip(outs_mm, outs_t)):
        assert a.dtype == mm.float64, f"output {i} has dtype {a.dtype}"
        _compare(a, b, f"forward output {i}")
    g_mm = mm.grad(list(outs_mm), xs_mm, [mm.tensor(g, device=device) for g in grads], allow_unused=True)
    g_t = torch.autograd.grad(outs_t, xs_t, [torch.from_numpy(g) for g in grads], allow_unused=True)
    for i, (a, b) in enumerate(zip(g_mm, g_t)):
        _compare(a, b, f"gradient of input {i}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_parity(name, device):
    case = CASES[name]
    mm_fn, torch_fn, specs = case if len(case) == 3 else (case[0], case[0], case[1])
    _run_parity(mm_fn, torch_fn, _inputs(specs, seed=sum(map(ord, name))), device)


def test_dropout_fixed_seed_is_inverted_dropout(device):
    """No torch mask to copy: check against the mask minillm drew (same seed twice)."""
    a = np.random.default_rng(0).standard_normal((4, 5))
    mm.manual_seed(3)
    out = F.dropout(mm.tensor(a, device=device), 0.4).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] / 0.6, rtol=1e-14)
    assert 0 < kept.sum() < a.size


# ------------------------------------------------------------ layers
def _copy(pairs):
    """Copy minillm parameters into torch parameters: [(ours, theirs), ...]."""
    with torch.no_grad():
        for ours, theirs in pairs:
            assert tuple(ours.shape) == tuple(theirs.shape), (ours.shape, theirs.shape)
            theirs.copy_(torch.from_numpy(mm.to_numpy(ours).copy()))
    return pairs


def _module_parity(ours, theirs, arrays, pairs, device, call_ours=None, call_theirs=None, seed=0):
    """Forward, input gradients and parameter gradients of a module, against torch."""
    call_ours = call_ours or ours
    call_theirs = call_theirs or theirs
    xs_mm = [mm.tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in arrays]
    xs_t = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out_mm, out_t = call_ours(*xs_mm), call_theirs(*xs_t)
    _compare(out_mm, out_t, "forward")
    g = np.random.default_rng(seed).standard_normal(tuple(out_t.shape))
    out_mm.backward(mm.tensor(g, device=device))
    out_t.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(xs_mm, xs_t)):
        if b.requires_grad:
            _compare(a.grad, b.grad, f"gradient of input {i}")
    named = {id(p): n for n, p in ours.named_parameters()}
    for p_mm, p_t in pairs:
        _compare(p_mm.grad, p_t.grad, f"gradient of {named.get(id(p_mm), '?')}")


def _ours(module, device, seed=0):
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    return module.to(device, dtype=mm.float64)


def _torch_mha(ours):
    e, h = ours.embed_dim, ours.num_heads
    theirs = torch.nn.MultiheadAttention(e, h, bias=ours.in_proj.bias is not None, batch_first=True,
                                         dtype=torch.float64)
    pairs = [(ours.in_proj.weight, theirs.in_proj_weight), (ours.out_proj.weight, theirs.out_proj.weight)]
    if ours.in_proj.bias is not None:
        pairs += [(ours.in_proj.bias, theirs.in_proj_bias), (ours.out_proj.bias, theirs.out_proj.bias)]
    return theirs, _copy(pairs)


def _torch_linear(ours):
    theirs = torch.nn.Linear(ours.in_features, ours.out_features, bias=ours.bias is not None, dtype=torch.float64)
    pairs = [(ours.weight, theirs.weight)] + ([(ours.bias, theirs.bias)] if ours.bias is not None else [])
    return theirs, _copy(pairs)


def _torch_layer_norm(ours):
    theirs = torch.nn.LayerNorm(ours.normalized_shape, eps=ours.eps, dtype=torch.float64)
    return theirs, _copy([(ours.weight, theirs.weight), (ours.bias, theirs.bias)])


def _torch_mlp(ours):
    fc, pairs_fc = _torch_linear(ours.fc)
    proj, pairs_proj = _torch_linear(ours.proj)
    return (lambda h: proj(TF.gelu(fc(h), approximate=ours.approximate))), pairs_fc + pairs_proj


def test_linear_parity(device):
    for bias in (True, False):
        ours = _ours(nn.Linear(3, 4, bias=bias), device)
        theirs, pairs = _torch_linear(ours)
        _module_parity(ours, theirs, [np.random.default_rng(1).standard_normal((2, 2, 3))], pairs, device)


def test_embedding_parity(device):
    ours = _ours(nn.Embedding(5, 3), device)
    theirs = torch.nn.Embedding(5, 3, dtype=torch.float64)
    pairs = _copy([(ours.weight, theirs.weight)])
    _module_parity(ours, theirs, [np.array([[1, 4, 1], [0, 4, 4]])], pairs, device)


def test_layer_norm_parity(device):
    ours = _ours(nn.LayerNorm(4), device)
    theirs, pairs = _torch_layer_norm(ours)
    _module_parity(ours, theirs, [np.random.default_rng(2).standard_normal((2, 3, 4)) * 3 + 1], pairs, device)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 4)])
def test_batch_norm_parity(device, shape):
    ours = _ours(nn.BatchNorm1d(3, momentum=0.2), device)
    theirs = torch.nn.BatchNorm1d(3, momentum=0.2, dtype=torch.float64)
    pairs = _copy([(ours.weight, theirs.weight), (ours.bias, theirs.bias)])
    rng = np.random.default_rng(3)
    _module_parity(ours, theirs, [rng.standard_normal(shape) * 2 + 1], pairs, device)
    _compare(ours.running_mean, theirs.running_mean, "running_mean")
    _compare(ours.running_var, theirs.running_var, "running_var")
    ours.zero_grad(), theirs.zero_grad()
    ours.eval(), theirs.eval()
    _module_parity(ours, theirs, [rng.standard_normal(shape)], pairs, device, seed=1)


@pytest.mark.parametrize("variant", ["self", "causal", "padding", "causal_padding", "cross", "no_bias"])
def test_mha_parity(device, variant):
    ours = _ours(nn.MultiHeadAttention(6, 2, bias=variant != "no_bias"), device)
    theirs, pairs = _torch_mha(ours)
    rng = np.random.default_rng(4)
    x_np, ctx_np = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 5, 6))
    pad = np.array([[False, False, True, True], [False, False, False, True]])
    ctx_pad = np.array([[False, False, False, False, True], [False, True, False, True, True]])
    causal = np.tril(np.ones((4, 4), dtype=bool))
    use_pad = "padding" in variant
    is_causal = "causal" in variant
    mm_pad = mm.tensor(pad, device=device) if use_pad else None

    if variant == "cross":
        def call_ours(x, ctx):
            return ours(x, context=ctx, key_padding_mask=mm.tensor(ctx_pad, device=device))

        def call_theirs(x, ctx):
            return theirs(x, ctx, ctx, key_padding_mask=torch.from_numpy(ctx_pad), need_weights=False)[0]
        arrays = [x_np, ctx_np]
    else:
        def call_ours(x):
            return ours(x, key_padding_mask=mm_pad, is_causal=is_causal)

        def call_theirs(x):
            return theirs(x, x, x, key_padding_mask=torch.from_numpy(pad) if use_pad else None,
                          attn_mask=torch.from_numpy(~causal) if is_causal else None, need_weights=False)[0]
        arrays = [x_np]
    _module_parity(ours, theirs, arrays, pairs, device, call_ours, call_theirs)

    # the attention probabilities too (torch: per head, not averaged)
    xs = [mm.tensor(a, device=device) for a in arrays]
    xt = [torch.from_numpy(a) for a in arrays]
    with mm.no_grad(), torch.no_grad():
        if variant == "cross":
            w_mm = ours.attention_weights(xs[0], context=xs[1], key_padding_mask=mm.tensor(ctx_pad, device=device))
            w_t = theirs(xt[0], xt[1], xt[1], key_padding_mask=torch.from_numpy(ctx_pad),
                         average_attn_weights=False)[1]
        else:
            w_mm = ours.attention_weights(xs[0], key_padding_mask=mm_pad, is_causal=is_causal)
            w_t = theirs(xt[0], xt[0], xt[0], key_padding_mask=torch.from_numpy(pad) if use_pad else None,
                         attn_mask=torch.from_numpy(~causal) if is_causal else None, average_attn_weights=False)[1]
    _compare(w_mm, w_t, "attention weights")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_mlp_parity(device, approximate):
    ours = _ours(nn.MLP(4, hidden_dim=6, approximate=approximate), device)
    theirs, pairs = _torch_mlp(ours)
    _module_parity(ours, theirs, [np.random.default_rng(5).standard_normal((2, 3, 4))], pairs, device)


@pytest.mark.parametrize("cross", [False, True])
def test_transformer_block_parity(device, cross):
    e, h, t, s = 8, 2, 4, 3
    ours = _ours(nn.TransformerBlock(e, h, causal=True, cross_attention=cross), device)
    ln_1, p1 = _torch_layer_norm(ours.ln_1)
    attn, p2 = _torch_mha(ours.attn)
    ln_2, p3 = _torch_layer_norm(ours.ln_2)
    mlp, p4 = _torch_mlp(ours.mlp)
    pairs = p1 + p2 + p3 + p4
    if cross:
        ln_c, p5 = _torch_layer_norm(ours.ln_cross)
        cross_attn, p6 = _torch_mha(ours.cross_attn)
        pairs += p5 + p6
    assert len(pairs) == len(list(ours.parameters()))
    pad = np.array([[False, False, False, True], [False, False, False, False]])
    ctx_pad = np.array([[False, False, True], [False, False, False]])
    causal_masked = torch.from_numpy(np.triu(np.ones((t, t), dtype=bool), 1))

    def theirs(x, ctx=None):
        a = ln_1(x)
        x = x + attn(a, a, a, key_padding_mask=torch.from_numpy(pad), attn_mask=causal_masked, need_weights=False)[0]
        if cross:
            a = ln_c(x)
            x = x + cross_attn(a, ctx, ctx, key_padding_mask=torch.from_numpy(ctx_pad), need_weights=False)[0]
        return x + mlp(ln_2(x))

    def call_ours(x, ctx=None):
        return ours(x, key_padding_mask=mm.tensor(pad, device=device), context=ctx,
                    context_padding_mask=mm.tensor(ctx_pad, device=device) if cross else None)

    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal((2, t, e))] + ([rng.standard_normal((2, s, e))] if cross else [])
    _module_parity(ours, theirs, arrays, pairs, device, call_ours, theirs)


def test_parity_catches_what_gradcheck_cannot(monkeypatch):
    """A wrong constant in GELU's tanh form (0.05 for 0.044715) is used by its forward, its fast
    backward and its composite alike: a consistent wrong op. gradcheck passes; parity fails."""
    from minillm import gradcheck, kernels, ops
    monkeypatch.setattr(ops, "GELU_TANH_C", 0.05)              # the formula
    monkeypatch.setattr(kernels.gelu, "GELU_TANH_C", 0.05)     # and the fused kernel
    a = np.random.default_rng(0).standard_normal((2, 4)) * 2
    assert gradcheck(lambda t: F.gelu(t, approximate="tanh"), (mm.tensor(a, requires_grad=True),))
    fn = CASES["gelu_tanh"][0]
    with pytest.raises(AssertionError, match="forward output 0"):
        _run_parity(fn, fn, [a], "cpu")

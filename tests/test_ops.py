"""Gradcheck of every differentiable op (float64, random output gradient), on every device.

Each case is ``build(mk) -> (fn, inputs)``: ``mk`` makes float64 tensors on the test's device
(see conftest.Maker), constants (indices, masks, targets) are made on the same device with
``mk.const``. Inputs stay away from kinks (relu/abs at 0, ties in max, clamp bounds).
The functional ops of ``nn.functional`` are here too; layers are in test_nn.py.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minillm as mm
from minillm import gradcheck
from minillm.nn import functional as F


def _fixed(mk, values, shape):
    """A float64 leaf with given values (for ops with kinks at known places)."""
    return mm.tensor(np.asarray(values, dtype=np.float64).reshape(shape), dtype=mm.float64,
                     device=mk.device, requires_grad=True)


# A random permutation of well separated values: no ties anywhere (max/min), every |x| ≥ 0.1.
def _distinct(mk, *shape):
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * 0.37
    return _fixed(mk, mk.rng.permutation(values), shape)


CASES = {
    # ------------------------------------------------------------ arithmetic
    "add": lambda mk: (lambda a, b: a + b, (mk(3, 4), mk(4))),
    "add_scalar": lambda mk: (lambda a: a + 2.5, (mk(3),)),
    "radd_scalar": lambda mk: (lambda a: 2.5 + a, (mk(3),)),
    "sub": lambda mk: (lambda a, b: a - b, (mk(2, 1, 3), mk(4, 1))),
    "rsub_scalar": lambda mk: (lambda a: 1.0 - a, (mk(3),)),
    "mul": lambda mk: (lambda a, b: a * b, (mk(3, 1), mk(1, 4))),
    "mul_scalar": lambda mk: (lambda a: a * 3.0, (mk(3),)),
    "mul_same_input": lambda mk: (lambda a: a * a, (mk(5),)),
    "div": lambda mk: (lambda a, b: a / b, (mk(3, 4), mk(4, domain="nonzero"))),
    "rdiv_scalar": lambda mk: (lambda a: 2.0 / a, (mk(4, domain="nonzero"),)),
    "pow_tensor": lambda mk: (lambda a, b: a ** b, (mk(3, 2, domain="pos"), mk(2))),
    "pow_2": lambda mk: (lambda a: a ** 2, (mk(4),)),
    "pow_3": lambda mk: (lambda a: a ** 3, (mk(4),)),
    "pow_half": lambda mk: (lambda a: a ** 0.5, (mk(4, domain="pos"),)),
    "pow_minus_1": lambda mk: (lambda a: a ** -1, (mk(4, domain="nonzero"),)),
    "pow_2.5": lambda mk: (lambda a: a ** 2.5, (mk(4, domain="pos"),)),
    "pow_1": lambda mk: (lambda a: a ** 1, (mk(4),)),
    "rpow_scalar_base": lambda mk: (lambda a: 2.0 ** a, (mk(4),)),
    "neg": lambda mk: (lambda a: -a, (mk(2, 3),)),
    # ------------------------------------------------------------ matmul
    "matmul_2d": lambda mk: (lambda a, b: a @ b, (mk(3, 4), mk(4, 2))),
    "matmul_1d_2d": lambda mk: (lambda a, b: a @ b, (mk(4), mk(4, 2))),
    "matmul_2d_1d": lambda mk: (lambda a, b: a @ b, (mk(3, 4), mk(4))),
    "matmul_1d_1d": lambda mk: (lambda a, b: mm.matmul(a, b), (mk(4), mk(4))),
    "matmul_batched": lambda mk: (lambda a, b: a @ b, (mk(2, 3, 4), mk(2, 4, 2))),
    "matmul_broadcast": lambda mk: (lambda a, b: a @ b, (mk(2, 1, 2, 3), mk(3, 3, 2))),
    "matmul_batched_1d": lambda mk: (lambda a, b: a @ b, (mk(2, 3, 4), mk(4))),
    "matmul_1d_batched": lambda mk: (lambda a, b: a @ b, (mk(3), mk(2, 3, 2))),
    # ------------------------------------------------------------ elementwise functions
    "exp": lambda mk: (mm.exp, (mk(2, 3),)),
    "log": lambda mk: (mm.log, (mk(2, 3, domain="pos"),)),
    "sqrt": lambda mk: (mm.sqrt, (mk(2, 3, domain="pos"),)),
    "tanh": lambda mk: (mm.tanh, (mk(2, 3),)),
    "sigmoid": lambda mk: (mm.sigmoid, (mk(2, 3),)),
    "relu": lambda mk: (mm.relu, (mk(2, 3, domain="away"),)),
    "gelu_none": lambda mk: (lambda x: F.gelu(x, approximate="none"), (mk(2, 4) * 2,)),
    "gelu_tanh": lambda mk: (lambda x: F.gelu(x, approximate="tanh"), (mk(2, 4) * 2,)),
    "erf": lambda mk: (mm.erf, (mk(2, 3),)),
    "abs": lambda mk: (mm.abs, (mk(2, 3, domain="away"),)),
    "clamp": lambda mk: (lambda x: mm.clamp(x, -0.5, 0.5),
                         (_fixed(mk, [-1.2, -0.7, -0.3, 0.0, 0.2, 0.45, 0.6, 1.5], (2, 4)),)),
    "clamp_min": lambda mk: (lambda x: x.clamp(min=0.1), (_fixed(mk, [-1.0, -0.2, 0.3, 0.9], (4,)),)),
    "clamp_max": lambda mk: (lambda x: mm.clip(x, max=0.1), (_fixed(mk, [-1.0, -0.2, 0.3, 0.9], (4,)),)),
    "maximum": lambda mk: (mm.maximum, (mk(3, 4), mk(4))),
    "minimum": lambda mk: (mm.minimum, (mk(3, 4), mk(3, 1))),
    "maximum_scalar": lambda mk: (lambda a: mm.maximum(a, 0.0), (mk(2, 3, domain="away"),)),
    "where": lambda mk: (lambda a, b: mm.where(mk.const([[True, False, True], [False, False, True]]), a, b),
                         (mk(2, 3), mk(3))),
    "where_scalar": lambda mk: (lambda a: mm.where(mk.const([True, False, True]), a, 0.0), (mk(2, 3),)),
    # ------------------------------------------------------------ reductions
    "sum_all": lambda mk: (lambda x: x.sum(), (mk(2, 3),)),
    "sum_dim": lambda mk: (lambda x: x.sum(1), (mk(2, 3, 2),)),
    "sum_neg_keepdim": lambda mk: (lambda x: x.sum(-1, keepdim=True), (mk(2, 3),)),
    "sum_tuple": lambda mk: (lambda x: mm.sum(x, (0, 2)), (mk(2, 3, 2),)),
    "sum_tuple_keepdim": lambda mk: (lambda x: x.sum((0, -1), keepdim=True), (mk(2, 3, 2),)),
    "mean_all": lambda mk: (lambda x: x.mean(), (mk(2, 3),)),
    "mean_dim": lambda mk: (lambda x: mm.mean(x, 0), (mk(2, 3),)),
    "mean_tuple_keepdim": lambda mk: (lambda x: x.mean((1, 2), keepdim=True), (mk(2, 3, 2),)),
    "var_all": lambda mk: (lambda x: x.var(), (mk(2, 3),)),
    "var_dim": lambda mk: (lambda x: mm.var(x, 1), (mk(2, 3),)),
    "var_tuple_keepdim_pop": lambda mk: (lambda x: x.var((0, 2), keepdim=True, correction=0), (mk(2, 3, 2),)),
    "max_all": lambda mk: (lambda x: x.max(), (_distinct(mk, 2, 3),)),
    "max_dim": lambda mk: (lambda x: mm.max(x, 1), (_distinct(mk, 3, 4),)),
    "max_keepdim": lambda mk: (lambda x: x.max(-1, keepdim=True), (_distinct(mk, 3, 4),)),
    "max_tuple": lambda mk: (lambda x: x.max((0, 2)), (_distinct(mk, 2, 3, 2),)),
    "min_all": lambda mk: (lambda x: x.min(), (_distinct(mk, 2, 3),)),
    "min_dim_keepdim": lambda mk: (lambda x: mm.min(x, 0, keepdim=True), (_distinct(mk, 3, 4),)),
    "min_tuple": lambda mk: (lambda x: x.min((1, 2)), (_distinct(mk, 2, 3, 2),)),
    "logsumexp": lambda mk: (lambda x: mm.logsumexp(x, 1), (mk(2, 3) * 3,)),
    "logsumexp_tuple_keepdim": lambda mk: (lambda x: x.logsumexp((0, 2), keepdim=True), (mk(2, 3, 2),)),
    # ------------------------------------------------------------ shapes
    "reshape": lambda mk: (lambda x: x.reshape(3, 2), (mk(2, 3),)),
    "reshape_minus1": lambda mk: (lambda x: mm.reshape(x, (-1, 4)), (mk(2, 2, 2),)),
    "view": lambda mk: (lambda x: x.view(6), (mk(2, 3),)),
    "flatten": lambda mk: (lambda x: x.flatten(), (mk(2, 3, 2),)),
    "flatten_start": lambda mk: (lambda x: mm.flatten(x, 1), (mk(2, 3, 2),)),
    "transpose": lambda mk: (lambda x: x.transpose(0, 2), (mk(2, 3, 4),)),
    "T": lambda mk: (lambda x: x.T, (mk(2, 3),)),
    "permute": lambda mk: (lambda x: x.permute(2, 0, 1), (mk(2, 3, 4),)),
    "squeeze_all": lambda mk: (lambda x: x.squeeze(), (mk(2, 1, 3, 1),)),
    "squeeze_dim": lambda mk: (lambda x: mm.squeeze(x, 1), (mk(2, 1, 3, 1),)),
    "unsqueeze": lambda mk: (lambda x: x.unsqueeze(-1), (mk(2, 3),)),
    "unsqueeze_0": lambda mk: (lambda x: mm.unsqueeze(x, 0), (mk(2, 3),)),
    "expand": lambda mk: (lambda x: x.expand(2, 3, 4), (mk(3, 1),)),
    "expand_minus1": lambda mk: (lambda x: mm.expand(x, (2, -1, 3)), (mk(4, 1),)),
    "broadcast_to": lambda mk: (lambda x: x.broadcast_to((2, 3)), (mk(3),)),
    "cat": lambda mk: (lambda a, b, c: mm.cat([a, b, c], 0), (mk(1, 3), mk(2, 3), mk(1, 3))),
    "cat_last": lambda mk: (lambda a, b: mm.cat([a, b], dim=-1), (mk(2, 1), mk(2, 3))),
    "stack": lambda mk: (lambda a, b: mm.stack([a, b]), (mk(2, 3), mk(2, 3))),
    "stack_last": lambda mk: (lambda a, b: mm.stack([a, b], dim=-1), (mk(2, 3), mk(2, 3))),
    "split": lambda mk: (lambda x: tuple(x.split(2, dim=1)), (mk(2, 5),)),
    "split_sections": lambda mk: (lambda x: tuple(mm.split(x, [1, 3], dim=-1)), (mk(2, 4),)),
    "chunk": lambda mk: (lambda x: tuple(x.chunk(3, 0)), (mk(5, 2),)),
    # ------------------------------------------------------------ indexing
    "getitem_int": lambda mk: (lambda x: x[1], (mk(3, 4),)),
    "getitem_neg_int": lambda mk: (lambda x: x[-1, 2], (mk(3, 4),)),
    "getitem_slice": lambda mk: (lambda x: x[1:, :3], (mk(3, 4),)),
    "getitem_neg_step": lambda mk: (lambda x: x[::-2, ::-1], (mk(5, 3),)),
    "getitem_none": lambda mk: (lambda x: x[None, :, None], (mk(3, 2),)),
    "getitem_ellipsis": lambda mk: (lambda x: x[..., 1], (mk(2, 3, 4),)),
    "getitem_int_array_repeats": lambda mk: (lambda x: x[mk.const([0, 2, 2, 0, 2])], (mk(3, 2),)),
    "getitem_int_array_negative": lambda mk: (lambda x: x[mk.const([0, -1, 2, 2])], (mk(3, 2),)),
    "getitem_int_array_2d": lambda mk: (lambda x: x[mk.const([[1, 1], [0, 2]])], (mk(3, 2),)),
    "getitem_list": lambda mk: (lambda x: x[[1, 1, 0]], (mk(3, 2),)),
    "getitem_bool_mask": lambda mk: (lambda x: x[mk.const([[True, False, True], [False, True, True]])],
                                     (mk(2, 3),)),
    "getitem_bool_rows": lambda mk: (lambda x: x[mk.const([True, False, True])], (mk(3, 2),)),
    "getitem_tuple_array_slice": lambda mk: (lambda x: x[mk.const([1, 1, 0]), 1:], (mk(3, 4),)),
    "getitem_tuple_two_arrays": lambda mk: (lambda x: x[mk.const([0, 1, 1]), mk.const([2, 2, 0])], (mk(3, 4),)),
    "getitem_tuple_mix": lambda mk: (lambda x: x[None, ..., mk.const([1, 1, -1]), ::-1], (mk(2, 3, 4),)),
    "getitem_tuple_int_slice_none": lambda mk: (lambda x: x[1, None, ::2, -1], (mk(2, 5, 3),)),
    "gather_dim1": lambda mk: (lambda x: x.gather(1, mk.const([[0, 0, 2], [1, 2, 1]])), (mk(2, 3),)),
    "gather_dim0": lambda mk: (lambda x: mm.gather(x, 0, mk.const([[1, 0, 1, 1], [1, 1, 0, 0]])), (mk(2, 4),)),
    "masked_fill": lambda mk: (lambda x: x.masked_fill(mk.const([[True], [False]]), -3.0), (mk(2, 3),)),
    "masked_fill_broadcast": lambda mk: (lambda x: mm.masked_fill(x, mk.const([True, False, True]), 0.0),
                                         (mk(2, 3),)),
    "tril": lambda mk: (lambda x: x.tril(), (mk(3, 4),)),
    "tril_diag": lambda mk: (lambda x: mm.tril(x, -1), (mk(2, 3, 3),)),
    "triu": lambda mk: (lambda x: mm.triu(x), (mk(3, 4),)),
    "triu_diag": lambda mk: (lambda x: x.triu(1), (mk(2, 3, 3),)),
    # ------------------------------------------------------------ probabilities
    "softmax": lambda mk: (lambda x: x.softmax(-1), (mk(2, 4),)),
    "softmax_dim0": lambda mk: (lambda x: mm.softmax(x, 0), (mk(3, 2, 2),)),
    "log_softmax": lambda mk: (lambda x: x.log_softmax(-1), (mk(2, 4),)),
    "log_softmax_dim1": lambda mk: (lambda x: mm.log_softmax(x, 1), (mk(2, 3, 2),)),
    # ------------------------------------------------------------ dtype/device/copies
    "clone": lambda mk: (lambda x: x.clone() * 2, (mk(3),)),
    "to_same_device": lambda mk: (lambda x: x.to(mk.device) * 2, (mk(3),)),
}


# nn.functional: the fused ops and the losses
def _ce_targets(mk, *values):
    return mk.const(np.asarray(values, dtype=np.int64))


FUNCTIONAL_CASES = {
    "linear": lambda mk: (F.linear, (mk(2, 3), mk(4, 3), mk(4))),
    "linear_3d_no_bias": lambda mk: (lambda x, w: F.linear(x, w), (mk(2, 2, 3), mk(4, 3))),
    "layer_norm": lambda mk: (lambda x, w, b: F.layer_norm(x, (4,), w, b), (mk(2, 3, 4), mk(4), mk(4))),
    "layer_norm_no_affine": lambda mk: (lambda x: F.layer_norm(x, 4), (mk(3, 4),)),
    "layer_norm_2d_shape": lambda mk: (lambda x, w: F.layer_norm(x, (2, 3), w, eps=1e-3), (mk(2, 2, 3), mk(2, 3))),
    "batch_norm_train_2d": lambda mk: (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (mk(4, 3), mk(3), mk(3))),
    "batch_norm_train_3d_running": lambda mk: (
        lambda x, w, b: F.batch_norm(x, mm.zeros(3, dtype=mm.float64, device=mk.device),
                                     mm.ones(3, dtype=mm.float64, device=mk.device), w, b, training=True),
        (mk(2, 3, 4), mk(3), mk(3))),
    "batch_norm_eval": lambda mk: (
        lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=False),
        (mk(4, 3), mk(3), mk(3), mk(3, requires_grad=False), mk(3, domain="pos", requires_grad=False))),
    "embedding": lambda mk: (lambda w: F.embedding(_ce_targets(mk, [1, 3, 1], [0, 1, 1]), w), (mk(4, 3),)),
    "dropout_fixed_seed": lambda mk: (lambda x: (mm.manual_seed(7), F.dropout(x, 0.4))[1], (mk(4, 5),)),
    "dropout_eval": lambda mk: (lambda x: F.dropout(x, 0.4, training=False), (mk(4),)),
    "sdpa": lambda mk: (F.scaled_dot_product_attention, (mk(2, 3, 4), mk(2, 3, 4), mk(2, 3, 2))),
    "sdpa_causal": lambda mk: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               (mk(2, 3, 2), mk(2, 3, 2), mk(2, 3, 2))),
    "sdpa_bool_mask": lambda mk: (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mk.const(
            [[True, False, True, True], [False, True, True, False], [True, True, False, False]])),
        (mk(2, 3, 2), mk(2, 4, 2), mk(2, 4, 3))),
    "sdpa_cross_lengths": lambda mk: (F.scaled_dot_product_attention, (mk(1, 2, 2, 3), mk(1, 2, 4, 3), mk(1, 2, 4, 2))),
    "sdpa_cross_causal": lambda mk: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                     (mk(2, 2, 3), mk(2, 4, 3), mk(2, 4, 2))),
    "sdpa_broadcast_kv": lambda mk: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.7),
                                     (mk(2, 3, 2), mk(1, 3, 2), mk(3, 2))),
    "sdpa_dropout_fixed_seed": lambda mk: (
        lambda q, k, v: (mm.manual_seed(3), F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True))[1],
        (mk(2, 3, 2), mk(2, 3, 2), mk(2, 3, 2))),
    "packed_self_attention": lambda mk: (lambda qkv: F.packed_self_attention(qkv, 2), (mk(2, 3, 12),)),
    "packed_self_attention_causal": lambda mk: (lambda qkv: F.packed_self_attention(qkv, 2, is_causal=True),
                                                (mk(2, 4, 12),)),
    "packed_self_attention_padding_mask": lambda mk: (
        lambda qkv: F.packed_self_attention(qkv, 1, attn_mask=mk.const(np.array([[[[True, True, False]]]]))),
        (mk(2, 3, 6),)),
    "packed_self_attention_dropout_fixed_seed": lambda mk: (
        lambda qkv: (mm.manual_seed(3), F.packed_self_attention(qkv, 2, dropout_p=0.3, is_causal=True))[1],
        (mk(2, 3, 12),)),
    "cross_entropy_mean": lambda mk: (lambda x: F.cross_entropy(x, _ce_targets(mk, 0, 2, 1, 2)), (mk(4, 3),)),
    "cross_entropy_sum": lambda mk: (lambda x: F.cross_entropy(x, _ce_targets(mk, 0, 2, 1), reduction="sum"),
                                     (mk(3, 4),)),
    "cross_entropy_none": lambda mk: (lambda x: F.cross_entropy(x, _ce_targets(mk, 0, 2, 1), reduction="none"),
                                      (mk(3, 4),)),
    "cross_entropy_ignore_index": lambda mk: (
        lambda x: F.cross_entropy(x, _ce_targets(mk, 0, -100, 1, 2)), (mk(4, 3),)),
    "cross_entropy_ignore_custom": lambda mk: (
        lambda x: F.cross_entropy(x, _ce_targets(mk, 0, 1, 1, 2), ignore_index=1, reduction="sum"), (mk(4, 3),)),
    "cross_entropy_smoothing": lambda mk: (
        lambda x: F.cross_entropy(x, _ce_targets(mk, 0, 2, 1), label_smoothing=0.2), (mk(3, 3),)),
    "cross_entropy_smoothing_ignore_none": lambda mk: (
        lambda x: F.cross_entropy(x, _ce_targets(mk, 0, -100, 1), label_smoothing=0.1, reduction="none"),
        (mk(3, 3),)),
    "cross_entropy_NCd": lambda mk: (
        lambda x: F.cross_entropy(x, _ce_targets(mk, [0, 2], [1, 1])), (mk(2, 3, 2),)),
    "cross_entropy_NCd_ignore": lambda mk: (   # PyTorch's layout: the class dim is dim 1
        lambda x: F.cross_entropy(x, _ce_targets(mk, [0, 3], [2, -100], [1, 1])), (mk(3, 4, 2),)),
    "nll_loss": lambda mk: (lambda x: F.nll_loss(x, _ce_targets(mk, 0, 2, 1)), (mk(3, 4),)),
    "nll_loss_ignore_sum": lambda mk: (
        lambda x: F.nll_loss(x.log_softmax(-1), _ce_targets(mk, 0, -100, 1), reduction="sum"), (mk(3, 4),)),
    "nll_loss_none": lambda mk: (lambda x: F.nll_loss(x, _ce_targets(mk, 3, 1), reduction="none"), (mk(2, 4),)),
    "mse_loss": lambda mk: (F.mse_loss, (mk(2, 3), mk(2, 3))),
    "mse_loss_sum": lambda mk: (lambda a, b: F.mse_loss(a, b, reduction="sum"), (mk(2, 3), mk(2, 3))),
    "mse_loss_none": lambda mk: (lambda a, b: F.mse_loss(a, b, reduction="none"), (mk(4), mk(4))),
    "bce_with_logits": lambda mk: (
        F.binary_cross_entropy_with_logits,
        (mk(2, 3, domain="away") * 2, mm.tensor(mk.rng.uniform(0, 1, (2, 3)), dtype=mm.float64,
                                                device=mk.device, requires_grad=True))),
    "bce_with_logits_pos_weight_sum": lambda mk: (
        lambda x: F.binary_cross_entropy_with_logits(
            x, mk.const(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])), reduction="sum",
            pos_weight=mk.const(np.array([2.0, 0.5, 1.5]))),
        (mk(2, 3, domain="away"),)),
    "bce_with_logits_none": lambda mk: (
        lambda x: F.binary_cross_entropy_with_logits(x, mk.const(np.array([1.0, 0.0, 0.3])), reduction="none"),
        (mk(3, domain="away"),)),
}


def _leaves(inputs):
    """Tensors built with arithmetic (``mk(...) * 2``) are not leaves: make them leaves again."""
    out = []
    for x in inputs:
        if getattr(x, "_is_tensor", False) and not x.is_leaf:
            x = mm.tensor(x.data, dtype=x.dtype, device=x.device, requires_grad=True)
        out.append(x)
    return tuple(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_op(name, mk):
    fn, inputs = CASES[name](mk)
    assert gradcheck(fn, _leaves(inputs))


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_CASES))
def test_gradcheck_functional(name, mk):
    fn, inputs = FUNCTIONAL_CASES[name](mk)
    assert gradcheck(fn, _leaves(inputs))


def test_every_exported_op_is_covered():
    """A new differentiable op in ``ops.__all__`` must get a gradcheck case here."""
    from minillm import ops
    not_differentiable = {"argmax", "zeros", "ones", "zeros_like", "ones_like", "full", "arange", "randn",
                          "rand", "randint", "empty", "tril_mask", "triu_mask", "eye", "cast"}
    covered_elsewhere = {"sum_to", "cast",  # test_sum_to_and_cast
                         "to_device",       # test_tensor.py::test_to_device_is_differentiable (gpu)
                         "concat", "clip"}  # aliases of cat and clamp
    names = set(CASES) | {n.split("_")[0] for n in CASES}
    missing = [op for op in ops.__all__ if op not in not_differentiable and op not in covered_elsewhere
               and op not in names]
    assert not missing, f"ops without a gradcheck case: {missing}"


def test_sum_to_and_cast(mk):
    from minillm import ops
    assert gradcheck(lambda x: ops.sum_to(x, (3, 1)), (mk(2, 3, 4),))
    assert gradcheck(lambda x: ops.cast(x * 1.0, mm.float64) * 2, (mk(3),))
    # float64 -> float32 -> float64 round trip: the gradient comes back as float64
    x = mk(3)
    y = x.float()
    assert y.dtype == mm.float32
    (y.double() * 3).sum().backward()
    assert x.grad.dtype == mm.float64
    np.testing.assert_allclose(x.grad.numpy(), 3.0)


# ------------------------------------------------------------ hypothesis: broadcast shapes
BINARY = {
    "add": (lambda a, b: a + b, "any", "any"),
    "sub": (lambda a, b: a - b, "any", "any"),
    "mul": (lambda a, b: a * b, "any", "any"),
    "div": (lambda a, b: a / b, "any", "nonzero"),
    "pow": (lambda a, b: a ** b, "pos", "any"),
    "maximum": (mm.maximum, "any", "any"),
    "minimum": (mm.minimum, "any", "any"),
}
_settings = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", sorted(BINARY))
@_settings
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**16))
def test_binary_broadcast_gradcheck(name, mk, shapes, seed):
    fn, da, db = BINARY[name]
    mk.rng = np.random.default_rng(seed)
    a, b = mk(*shapes.input_shapes[0], domain=da), mk(*shapes.input_shapes[1], domain=db)
    out = fn(a, b)
    assert out.shape == shapes.result_shape
    assert gradcheck(fn, (a, b))


@_settings
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**16))
def test_where_broadcast_gradcheck(mk, shapes, seed):
    mk.rng = np.random.default_rng(seed)
    cond_shape, a_shape, b_shape = shapes.input_shapes
    cond = mk.const(mk.rng.random(cond_shape) < 0.5)
    a, b = mk(*a_shape), mk(*b_shape)
    out = mm.where(cond, a, b)
    assert out.shape == shapes.result_shape
    assert gradcheck(lambda a, b: mm.where(cond, a, b), (a, b))


# ------------------------------------------------------------ forward values (NumPy reference)
def test_forward_values_match_numpy(mk):
    """Spot checks of forwards against NumPy (torch parity covers the rest, when installed)."""
    a = mk(3, 4, requires_grad=False)
    x = a.numpy()
    close = np.testing.assert_allclose
    close(mm.softmax(a, -1).numpy(), np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-12)
    close(mm.log_softmax(a, 0).numpy(), x - np.log(np.exp(x).sum(0, keepdims=True)), rtol=1e-12, atol=1e-14)
    close(mm.logsumexp(a, 1).numpy(), np.log(np.exp(x).sum(1)), rtol=1e-12)
    close(a.var(1).numpy(), x.var(1, ddof=1), rtol=1e-12)
    close(a.var(correction=0).numpy(), x.var(), rtol=1e-12)
    close(mm.sigmoid(a).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    close(a.max((0, 1)).numpy(), x.max())
    close(a.min(1, keepdim=True).numpy(), x.min(1, keepdims=True))
    close(a[::-1, None, 1:3].numpy(), x[::-1, None, 1:3])
    close(mm.tril(a, 1).numpy(), np.tril(x, 1))
    close(mm.triu(a, -1).numpy(), np.triu(x, -1))
    close(mm.clamp(a, -0.5, 0.5).numpy(), np.clip(x, -0.5, 0.5))
    pieces = a.chunk(3, 1)
    assert [p.shape for p in pieces] == [(3, 2), (3, 2)]
    assert [p.shape for p in mm.split(a, 3, 1)] == [(3, 3), (3, 1)]
    # logsumexp of an all -inf row is -inf, not nan
    ninf = mk.const(np.array([[-np.inf, -np.inf], [0.0, 1.0]]))
    with np.errstate(divide="ignore"):  # log(0) = -inf is the intended answer
        out = mm.logsumexp(ninf, 1).numpy()
    assert out[0] == -np.inf and np.isfinite(out[1])


def test_max_ties_share_the_gradient(mk):
    """Ties in max split the gradient evenly (torch.amax), so the total is still the upstream one."""
    x = mk.const(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    x.requires_grad_()
    x.max(1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    y = mk.const(np.array([1.0, 2.0, 3.0]))
    y.requires_grad_()
    z = mk.const(np.array([1.0, 0.0, 3.0]))
    z.requires_grad_()
    mm.maximum(y, z).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.5, 1, 0.5])
    np.testing.assert_allclose(z.grad.numpy(), [0.5, 0, 0.5])

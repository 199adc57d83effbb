"""Layers: gradcheck with respect to the input and every parameter (float64), and behaviour
beyond gradients: causality, padding masks, dropout statistics, batch-norm running stats,
ignore_index, state_dict round trips, Module plumbing (to, train/eval, names, hooks, freezing)."""
import numpy as np
import pytest

import minillm as mm
from minillm import backend, gradcheck, nn
from minillm.nn import functional as F


def _randomize(module, seed=0):
    """Random parameters (LayerNorm starts at 1/0, which would hide a wrong weight gradient)."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = backend.to_device(rng.standard_normal(p.shape) * 0.5, p.device)
    return module


def _prepare(module, device):
    return _randomize(module).to(device, dtype=mm.float64)


def _check_layer(module, inputs, call=None):
    """gradcheck w.r.t. every differentiable input and every parameter."""
    params = list(module.parameters())
    assert params and all(p.dtype == mm.float64 for p in params)
    call = call or module
    n = len(inputs)
    assert gradcheck(lambda *args: call(*args[:n]), tuple(inputs) + tuple(params))


# ------------------------------------------------------------ gradchecks
def test_linear(mk, device):
    _check_layer(_prepare(nn.Linear(3, 2), device), [mk(2, 3)])
    _check_layer(_prepare(nn.Linear(3, 2, bias=False), device), [mk(2, 2, 3)])


def test_embedding(mk, device):
    emb = _prepare(nn.Embedding(5, 3), device)
    idx = mk.const([[1, 4, 1], [0, 4, 4]])
    _check_layer(emb, [idx])
    assert emb(idx).shape == (2, 3, 3)


def test_layer_norm(mk, device):
    _check_layer(_prepare(nn.LayerNorm(4), device), [mk(2, 3, 4)])
    _check_layer(_prepare(nn.LayerNorm((2, 3), bias=False, eps=1e-3), device), [mk(2, 2, 3)])


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4)])
def test_batch_norm_training(mk, device, shape):
    bn = _prepare(nn.BatchNorm1d(3, momentum=0.3), device)
    _check_layer(bn, [mk(*shape)])


def test_batch_norm_eval(mk, device):
    bn = _prepare(nn.BatchNorm1d(3), device)
    bn(mk(5, 3, requires_grad=False) * 2 + 1)   # move the running stats off 0/1
    bn.eval()
    _check_layer(bn, [mk(4, 3)])


def test_mha_self(mk, device):
    _check_layer(_prepare(nn.MultiHeadAttention(4, 2), device), [mk(2, 3, 4)])


def test_mha_causal(mk, device):
    _check_layer(_prepare(nn.MultiHeadAttention(4, 2, is_causal=True), device), [mk(1, 3, 4)])


def test_mha_key_padding_mask(mk, device):
    mha = _prepare(nn.MultiHeadAttention(4, 2), device)
    pad = mk.const([[False, False, True], [False, False, False]])
    _check_layer(mha, [mk(2, 3, 4)], call=lambda x: mha(x, key_padding_mask=pad))


def test_mha_attn_mask_and_no_bias(mk, device):
    mha = _prepare(nn.MultiHeadAttention(4, 1, bias=False), device)
    allowed = mk.const([[True, False, True], [True, True, False], [False, True, True]])
    _check_layer(mha, [mk(1, 3, 4)], call=lambda x: mha(x, attn_mask=allowed))


def test_mha_cross_attention(mk, device):
    mha = _prepare(nn.MultiHeadAttention(4, 2), device)
    pad = mk.const([[False, False, False, True], [False, True, False, False]])
    _check_layer(mha, [mk(2, 2, 4), mk(2, 4, 4)],
                 call=lambda x, ctx: mha(x, context=ctx, key_padding_mask=pad))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_mlp(mk, device, approximate):
    _check_layer(_prepare(nn.MLP(3, hidden_dim=5, approximate=approximate), device), [mk(2, 3)])


def test_transformer_block(mk, device):
    block = _prepare(nn.TransformerBlock(4, 2), device)
    pad = mk.const([[False, False, True]])
    _check_layer(block, [mk(1, 3, 4)], call=lambda x: block(x, key_padding_mask=pad))


def test_transformer_block_cross_attention_and_dropout(mk, device):
    block = _prepare(nn.TransformerBlock(4, 2, dropout=0.2, causal=True, cross_attention=True,
                                         approximate="none"), device)

    def call(x, ctx):
        mm.manual_seed(11)  # the same dropout masks in every forward of the check
        return block(x, context=ctx, context_padding_mask=mk.const([[False, True]]))
    _check_layer(block, [mk(1, 2, 4), mk(1, 2, 4)], call=call)


def test_activation_and_container_layers(mk, device):
    seq = _prepare(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.GELU("tanh"),
                                 nn.Linear(4, 2), nn.ReLU(), nn.Identity(), nn.Dropout(0.0)), device)
    _check_layer(seq, [mk(2, 3) * 3])


# ------------------------------------------------------------ attention behaviour
def test_attention_is_causal(device):
    mm.manual_seed(0)
    mha = nn.MultiHeadAttention(8, 2, is_causal=True).to(device, dtype=mm.float64)
    block = nn.TransformerBlock(8, 2, causal=True).to(device, dtype=mm.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 8))
    for layer in (mha, block):
        y = layer(mm.tensor(x, device=device)).numpy()
        for t in range(5):
            x2 = x.copy()
            x2[:, t + 1:] = rng.standard_normal(x2[:, t + 1:].shape)   # change the future of t
            y2 = layer(mm.tensor(x2, device=device)).numpy()
            np.testing.assert_allclose(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-12)
            assert not np.allclose(y2[:, t + 1], y[:, t + 1])


def test_padded_keys_get_exactly_zero_weight(device):
    mm.manual_seed(1)
    mha = nn.MultiHeadAttention(8, 2).to(device, dtype=mm.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 8))
    pad = np.array([[False, False, False, True, True], [False, True, False, False, False]])
    pad_t = mm.tensor(pad, device=device)
    w = mha.attention_weights(mm.tensor(x, device=device), key_padding_mask=pad_t).numpy()
    assert w.shape == (2, 2, 5, 5)
    assert (w[0, :, :, 3:] == 0.0).all() and (w[1, :, :, 1] == 0.0).all()
    assert (w[0, :, :, :3] > 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    # the values at padded positions cannot reach the other positions' outputs
    y = mha(mm.tensor(x, device=device), key_padding_mask=pad_t).numpy()
    x2 = x.copy()
    x2[0, 3:] = 100.0
    y2 = mha(mm.tensor(x2, device=device), key_padding_mask=pad_t).numpy()
    np.testing.assert_allclose(y2[0, :3], y[0, :3], atol=1e-12)
    np.testing.assert_allclose(y2[1], y[1], atol=1e-12)
    # causal + padding combine
    wc = mha.attention_weights(mm.tensor(x, device=device), key_padding_mask=pad_t, is_causal=True).numpy()
    assert (np.triu(np.ones((5, 5)), 1).astype(bool) <= (wc[1, 0] == 0)).all()
    assert (wc[1, :, :, 1] == 0).all()


def test_functional_attention_weights_mask():
    rng = np.random.default_rng(2)
    q, k = (mm.tensor(rng.standard_normal(s)) for s in [(3, 4), (5, 4)])
    allowed = np.array([[True, False, True, True, False]] * 3)
    w = F.attention_weights(q, k, attn_mask=allowed).numpy()
    assert (w[:, [1, 4]] == 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    # bottom-right-aligned causal mask when Tq < Tk (query i is key Tk − Tq + i)
    w = F.attention_weights(q, k, is_causal=True).numpy()
    assert (w[0, 3:] == 0).all() and (w[1, 4:] == 0).all() and (w[2] > 0).all()


# ------------------------------------------------------------ dropout
def test_dropout_statistics(device):
    mm.manual_seed(0)
    x = mm.ones(200, 300, device=device) * 2.0
    for p in (0.1, 0.5):
        y = F.dropout(x, p).numpy()
        zeroed = (y == 0).mean()
        assert abs(zeroed - p) < 0.01
        values = np.unique(y)
        assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(2.0 / (1 - p))
        assert abs(y.mean() - 2.0) < 0.03
    drop = nn.Dropout(0.5)
    draws = np.mean([drop(x[:10, :10]).numpy() for _ in range(400)], axis=0)
    np.testing.assert_allclose(draws, 2.0, atol=0.35)       # each element's mean ≈ input
    assert abs(draws.mean() - 2.0) < 0.03
    drop.eval()
    assert drop(x) is x                                     # identity in eval
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.7, training=False) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_same_mask(device):
    mm.manual_seed(5)
    x = mm.randn(50, device=device, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    kept = y.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 2.0, 0.0))


# ------------------------------------------------------------ batch norm
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batch_norm_running_stats_formula(device, shape):
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, momentum=0.2).to(device, dtype=mm.float64)
    mean, var = np.zeros(3), np.ones(3)
    axes = (0,) if len(shape) == 2 else (0, 2)
    for step in range(4):
        x = rng.standard_normal(shape) * (step + 1) + step
        bn(mm.tensor(x, device=device))
        mean = 0.8 * mean + 0.2 * x.mean(axes)
        var = 0.8 * var + 0.2 * x.var(axes, ddof=1)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-12)
    bn.eval()
    x = rng.standard_normal(shape)
    y = bn(mm.tensor(x, device=device)).numpy()
    expand = (slice(None),) + ((None,) if len(shape) == 3 else ())
    expected = (x - mean[expand]) / np.sqrt(var[expand] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-12)   # eval: unchanged


def test_batch_norm_running_stats_match_torch(torch):
    rng = np.random.default_rng(3)
    ours = nn.BatchNorm1d(4, momentum=0.3).to(dtype=mm.float64)
    theirs = torch.nn.BatchNorm1d(4, momentum=0.3).double()
    for shape in [(5, 4), (3, 4, 6), (8, 4)]:
        x = rng.standard_normal(shape) * 2 + 1
        y = ours(mm.tensor(x)).numpy()
        y_t = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(y, y_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-12)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(ours(mm.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10)


# ------------------------------------------------------------ losses
def test_cross_entropy_ignore_index_ignores_rows(device):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4))
    target = np.array([1, -100, 3, 0, -100, 2])
    keep = target != -100
    for smoothing in (0.0, 0.2):
        x = mm.tensor(logits, requires_grad=True, device=device)
        loss = F.cross_entropy(x, mm.tensor(target, device=device), label_smoothing=smoothing)
        loss.backward()
        x2 = mm.tensor(logits[keep], requires_grad=True, device=device)
        loss2 = F.cross_entropy(x2, mm.tensor(target[keep], device=device), label_smoothing=smoothing)
        loss2.backward()
        assert loss.item() == pytest.approx(loss2.item(), rel=1e-12)
        np.testing.assert_array_equal(x.grad.numpy()[~keep], 0.0)
        np.testing.assert_allclose(x.grad.numpy()[keep], x2.grad.numpy(), rtol=1e-12)
    # every target ignored: mean of nothing is 0, not nan
    all_ignored = F.cross_entropy(mm.tensor(logits, device=device), mm.tensor(np.full(6, -100), device=device))
    assert all_ignored.item() == 0.0


def test_cross_entropy_value():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
    target = np.array([0, 2])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -logp[[0, 1], target].mean()
    assert F.cross_entropy(mm.tensor(logits), mm.tensor(target)).item() == pytest.approx(expected, rel=1e-12)
    smooth = (0.9 * -logp[[0, 1], target] + 0.1 * -logp.mean(1)).sum()
    got = F.cross_entropy(mm.tensor(logits), mm.tensor(target), label_smoothing=0.1, reduction="sum")
    assert got.item() == pytest.approx(smooth, rel=1e-12)


# ------------------------------------------------------------ Module plumbing
class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(6, 4)
        self.blocks = nn.ModuleList([nn.TransformerBlock(4, 2) for _ in range(2)])
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.emb.weight       # tied

    def forward(self, idx):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def test_named_parameters_and_tied_weights():
    model = TiedLM()
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "emb.weight"
    assert "head.weight" not in names                     # tied: listed once, under its first name
    assert len(names) == len(set(names))
    assert "blocks.0.attn.in_proj.weight" in names and "blocks.1.mlp.proj.bias" in names
    assert "blocks.1.ln_2.weight" in names and "norm.bias" in names
    assert model.num_parameters() == sum(p.size for p in model.parameters())
    assert model.num_parameters() == 6 * 4 + 2 * sum(p.size for p in model.blocks[0].parameters()) + 8
    block_names = [n for n, _ in nn.TransformerBlock(4, 2, cross_attention=True).named_parameters()]
    assert block_names[:2] == ["ln_1.weight", "ln_1.bias"]
    assert "cross_attn.out_proj.weight" in block_names
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU)
    bn = nn.BatchNorm1d(3)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var"]
    # the tied weight gets the gradient of both uses
    idx = mm.tensor([[0, 1, 2]])
    model(idx).sum().backward()
    assert model.emb.weight.grad is not None and model.head.weight.grad is model.emb.weight.grad


def test_state_dict_round_trip():
    mm.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    x = mm.randn(5, 3)
    a(x)                                          # running stats move
    state = a.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias",
                           "1.running_mean", "1.running_var"]
    mm.manual_seed(1)
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert not np.allclose(b[0].weight.numpy(), a[0].weight.numpy())
    weight_before = b[0].weight
    missing, unexpected = b.load_state_dict(state)
    assert missing == [] and unexpected == []
    assert b[0].weight is weight_before                  # loaded in place: identity kept
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k].numpy())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    b[0].weight.data[...] = 0                            # copies, not aliases
    assert not (a[0].weight.numpy() == 0).all()
    # NumPy arrays are accepted; strict=False reports what did not match
    arrays = {k: v.numpy() * 2 for k, v in state.items() if k != "2.bias"}
    arrays["extra"] = np.zeros(1)
    missing, unexpected = b.load_state_dict(arrays, strict=False)
    assert missing == ["2.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(b[0].weight.numpy(), a[0].weight.numpy() * 2)


def test_module_to_dtype_keeps_identity():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    w = model[0].weight
    model(mm.randn(4, 3)).sum().backward()
    model.to(dtype=mm.float64)
    assert model[0].weight is w and w.dtype == mm.float64 and w.grad.dtype == mm.float64
    assert model[1].running_mean.dtype == mm.float64
    assert model(mm.randn(4, 3).double()).dtype == mm.float64
    assert model.device == "cpu"
    model.to(dtype=mm.float32)
    assert w.dtype == mm.float32


def test_train_eval_recursion():
    model = TiedLM()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert not model.blocks[1].attn.out_proj.training
    model.train()
    assert all(m.training for m in model.modules())
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "TiedLM" and "MultiHeadAttention" in seen


def test_repr_is_readable():
    text = repr(nn.TransformerBlock(4, 2, cross_attention=True))
    assert text.startswith("TransformerBlock(\n")
    assert "(ln_1): LayerNorm((4,), eps=1e-05)" in text
    assert "(attn): MultiHeadAttention(embed_dim=4, num_heads=2, dropout=0.0, is_causal=True" in text
    assert "(in_proj): Linear(in_features=4, out_features=12, bias=True)" in text
    assert "(cross_attn): MultiHeadAttention(" in text
    assert "(fc): Linear(in_features=4, out_features=16, bias=True)" in text
    assert repr(nn.Embedding(10, 3)) == "Embedding(10, 3)"
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"
    assert "Parameter containing" in repr(nn.Linear(2, 2).weight)


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    handle = lin.register_forward_hook(lambda m, inputs, out: calls.append((m, inputs[0].shape, out.shape)))
    x = mm.randn(3, 2)
    lin(x)
    assert calls == [(lin, (3, 2), (3, 2))]
    double = lin.register_forward_hook(lambda m, inputs, out: out * 2)   # a hook may replace the output
    with mm.no_grad():
        np.testing.assert_allclose(lin(x).numpy(), 2 * F.linear(x, lin.weight, lin.bias).numpy(), rtol=1e-6)
    handle.remove()
    double.remove()
    lin(x)
    assert len(calls) == 2
    handle.remove()   # removing twice is harmless


def test_requires_grad_false_freezes():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    x = mm.randn(2, 3, requires_grad=True)
    model(x).sum().backward()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert model[2].weight.grad is not None and x.grad is not None
    model.zero_grad()
    assert model[2].weight.grad is None
    model(x).sum().backward()
    model.zero_grad(set_to_none=False)
    assert (model[2].weight.grad.numpy() == 0).all()
    model.requires_grad_(True)
    assert all(p.requires_grad for p in model.parameters())


def test_linear_init_and_module_list():
    mm.manual_seed(0)
    lin = nn.Linear(16, 8)
    bound = 1 / 4
    assert lin.weight.shape == (8, 16) and lin.bias.shape == (8,)
    assert np.abs(lin.weight.numpy()).max() <= bound and np.abs(lin.weight.numpy()).max() > 0.8 * bound
    assert lin.weight.dtype == mm.float32
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    assert len(ml) == 2 and ml[-1].out_features == 3 and len(ml[0:1]) == 1
    with pytest.raises(IndexError, match="out of range"):
        ml[2]
    with pytest.raises(ValueError, match="not divisible"):
        nn.MultiHeadAttention(5, 2)

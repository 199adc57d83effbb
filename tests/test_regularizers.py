"""Tests for minillm.regularizers: penalties (values, gradients, the SGD/Adam equivalences), the
decay / no-decay split, the dropout variants, AR/TAR and their hook, early stopping and
ensembles. Every expected value is computed by hand with NumPy."""

import numpy as np
import pytest

import minillm
from minillm import nn
from minillm.nn import Parameter
from minillm.nn import functional as F
from minillm.regularizers import (ActivationRegularizer, AttentionDropout, EarlyStopping, EmbeddingDropout, Ensemble,
                                  ResidualDropout, ar_penalty, combine_outputs, copy_state_dict,
                                  decay_parameter_names, decay_parameters, embedding_dropout, evaluate_members,
                                  l1_penalty, l2_penalty, no_decay_parameters, param_groups, snapshot_ensemble,
                                  tar_penalty, word_dropout)


def f64(a, requires_grad=True):
    return minillm.tensor(np.asarray(a, dtype=np.float64), dtype=minillm.float64, requires_grad=requires_grad)


# =========================================================================== penalties
def test_l1_l2_values_and_gradients():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=5)
    pa, pb = Parameter(a.copy()), Parameter(b.copy())
    lam = 0.3

    l1 = l1_penalty([pa, pb], weight=lam)
    assert l1.shape == ()
    assert l1.item() == pytest.approx(lam * (np.abs(a).sum() + np.abs(b).sum()), rel=1e-12)
    l1.backward()
    np.testing.assert_allclose(pa.grad.numpy(), lam * np.sign(a))
    np.testing.assert_allclose(pb.grad.numpy(), lam * np.sign(b))

    pa.grad = pb.grad = None
    l2 = l2_penalty([pa, pb], weight=lam)
    assert l2.item() == pytest.approx(lam / 2 * ((a ** 2).sum() + (b ** 2).sum()), rel=1e-12)
    l2.backward()
    np.testing.assert_allclose(pa.grad.numpy(), lam * a, rtol=1e-12)   # the ½ convention: ∇ = λ·w
    np.testing.assert_allclose(pb.grad.numpy(), lam * b, rtol=1e-12)


def test_penalties_gradcheck_float64():
    rng = np.random.default_rng(1)
    w1 = f64(np.where(np.abs(a := rng.normal(size=(3, 2))) < 0.2, 0.5, a))  # |w| away from the kink
    w2 = f64(rng.normal(size=4) + 1.0)
    assert minillm.gradcheck(lambda x, y: l2_penalty([x, y], weight=0.7), (w1, w2))
    assert minillm.gradcheck(lambda x, y: l1_penalty([x, y], weight=0.7), (w1, w2))
    assert minillm.gradgradcheck(lambda x: l2_penalty(x, weight=0.7), (w1,))


def test_penalty_inputs_module_tensor_iterable_empty():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    w0, w2 = model[0].weight.numpy(), model[2].weight.numpy()
    # a Module means its weight matrices only (no biases, no LayerNorm)
    expected = 0.5 * 0.1 * ((w0 ** 2).sum() + (w2 ** 2).sum())
    assert l2_penalty(model, 0.1).item() == pytest.approx(expected, rel=1e-5)
    # an iterable means exactly those tensors
    everything = sum((p.numpy().astype(np.float64) ** 2).sum() for p in model.parameters())
    assert l2_penalty(model.parameters(), 0.1).item() == pytest.approx(0.05 * everything, rel=1e-5)
    # a single tensor
    assert l1_penalty(model[0].weight, 2.0).item() == pytest.approx(2.0 * np.abs(w0).sum(), rel=1e-5)
    # nothing to penalize: a constant 0 that can still join a loss
    zero = l1_penalty([], 1.0)
    assert zero.item() == 0.0 and not zero.requires_grad


def test_l2_penalty_with_sgd_equals_weight_decay_but_not_with_adam():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    w0 = rng.normal(size=(2, 3))
    lam, lr = 0.1, 0.05

    def run(opt_cls, use_penalty, weight_decay, steps=5, **kw):
        w = Parameter(w0.copy())
        opt = opt_cls([w], lr=lr, weight_decay=weight_decay, **kw)
        for _ in range(steps):
            loss = ((minillm.tensor(X) @ w.T - minillm.tensor(Y)) ** 2).mean()
            if use_penalty:
                loss = loss + l2_penalty([w], lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return w.numpy()

    opt = minillm.optim
    np.testing.assert_allclose(run(opt.SGD, True, 0.0), run(opt.SGD, False, lam), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run(opt.SGD, True, 0.0, momentum=0.9), run(opt.SGD, False, lam, momentum=0.9),
                               rtol=1e-10, atol=1e-12)
    # Adam's weight_decay is the coupled L2 form: the same as the penalty ...
    np.testing.assert_allclose(run(opt.Adam, True, 0.0), run(opt.Adam, False, lam), rtol=1e-8, atol=1e-10)
    # ... and decoupled decay (AdamW) is a different update (Loshchilov & Hutter, 2019)
    assert np.abs(run(opt.Adam, True, 0.0) - run(opt.AdamW, False, lam)).max() > 1e-4


# =========================================================================== decay / no decay
class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 16)
        self.ln = nn.LayerNorm(16)
        self.proj = nn.Linear(16, 16)
        self.block = nn.TransformerBlock(16, 2)
        self.head = nn.Linear(16, 11, bias=False)

    def forward(self, idx):
        return self.head(self.block(self.proj(self.ln(self.emb(idx)))))


DECAY_NAMES = ["proj.weight", "block.attn.in_proj.weight", "block.attn.out_proj.weight",
               "block.mlp.fc.weight", "block.mlp.proj.weight", "head.weight"]


def test_decay_split_lists_exactly_the_matrices():
    model = TinyTransformer()
    decay, no_decay = decay_parameter_names(model)
    assert decay == DECAY_NAMES
    assert sorted(no_decay) == sorted(["emb.weight", "ln.weight", "ln.bias", "proj.bias",
                                       "block.ln_1.weight", "block.ln_1.bias", "block.attn.in_proj.bias",
                                       "block.attn.out_proj.bias", "block.ln_2.weight", "block.ln_2.bias",
                                       "block.mlp.fc.bias", "block.mlp.proj.bias"])
    named = dict(model.named_parameters())
    assert [id(p) for p in decay_parameters(model)] == [id(named[n]) for n in DECAY_NAMES]
    assert {id(p) for p in no_decay_parameters(model)} == {id(named[n]) for n in no_decay}

    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [id(p) for p in groups[0]["params"]] == [id(named[n]) for n in DECAY_NAMES]
    assert {id(p) for p in groups[1]["params"]} == {id(named[n]) for n in no_decay}
    # every parameter once, in one group
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(named)
    # usable as optimizer groups
    opt = minillm.optim.AdamW(groups, lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_decay_rule_by_module_type_and_name():
    class RMSNorm(nn.Module):          # a norm layer minillm does not define: matched by class name
        def __init__(self):
            super().__init__()
            self.weight = Parameter(np.ones((2, 4)))

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embedding = Parameter(np.zeros((8, 4)))   # raw parameter named like an embedding
            self.kernel = Parameter(np.zeros((4, 4)))          # a matrix: decayed
            self.gain = Parameter(np.ones(4))                  # 1-D: never decayed
            self.bn = nn.BatchNorm1d(4)
            self.norm = RMSNorm()

    decay, no_decay = decay_parameter_names(Custom())
    assert decay == ["kernel"]
    assert sorted(no_decay) == ["bn.bias", "bn.weight", "gain", "norm.weight", "pos_embedding"]


def test_tied_weight_listed_once_under_its_embedding_name():
    from minillm.models.gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8))
    decay, no_decay = decay_parameter_names(model)
    assert "wte.weight" in no_decay and "wpe.weight" in no_decay
    assert all(n.endswith("weight") and "ln" not in n for n in decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


# =========================================================================== dropout variants
def test_embedding_dropout_drops_whole_rows_and_keeps_expectation():
    minillm.manual_seed(0)
    V, C, p = 20, 5, 0.4
    weight = Parameter(np.random.default_rng(3).normal(size=(V, C)).astype(np.float32))
    idx = minillm.tensor(np.random.default_rng(4).integers(0, V, size=(6, 30)))
    out = embedding_dropout(weight, idx, p, training=True)
    assert out.shape == (6, 30, C)
    W, ix, y = weight.numpy(), idx.numpy(), out.numpy()
    dropped = set()
    for word in np.unique(ix):
        rows = y[ix == word]                           # every occurrence of this word in the batch
        if np.all(rows == 0):
            dropped.add(int(word))
        else:                                          # kept everywhere, scaled by 1/(1 − p)
            np.testing.assert_allclose(rows, np.broadcast_to(W[word] / (1 - p), rows.shape), rtol=1e-6)
    assert 0 < len(dropped) < len(np.unique(ix))

    # gradient: only kept rows, scaled by 1/(1 − p) per occurrence
    out.sum().backward()
    counts = np.bincount(ix.reshape(-1), minlength=V)
    expected = np.where(np.isin(np.arange(V), list(dropped)), 0.0, counts / (1 - p))[:, None] * np.ones(C)
    np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=1e-6)

    # expectation: averaged over many masks, the lookup equals the plain lookup
    single = minillm.tensor(np.arange(V))
    mean = np.mean([embedding_dropout(weight, single, p).numpy() for _ in range(3000)], axis=0)
    np.testing.assert_allclose(mean, W, atol=0.12 * np.abs(W).max())
    # eval mode (and p = 0) is the plain lookup; p = 1 drops everything
    np.testing.assert_array_equal(embedding_dropout(weight, idx, p, training=False).numpy(), W[ix])
    np.testing.assert_array_equal(embedding_dropout(weight, idx, 0.0).numpy(), W[ix])
    assert np.all(embedding_dropout(weight, idx, 1.0).numpy() == 0)


def test_embedding_dropout_given_mask_and_module():
    weight = Parameter(np.arange(12, dtype=np.float32).reshape(4, 3))
    mask = np.array([2.0, 0.0, 2.0, 0.0], dtype=np.float32)   # p = 0.5: words 1 and 3 dropped
    idx = np.array([0, 1, 3, 2, 1])
    out = embedding_dropout(weight, minillm.tensor(idx), 0.5, mask=mask).numpy()
    np.testing.assert_array_equal(out, weight.numpy()[idx] * mask[idx][:, None])

    emb = nn.Embedding(4, 3)
    wrapped = EmbeddingDropout(emb, p=0.5)
    assert [n for n, _ in wrapped.named_parameters()] == ["embedding.weight"]
    assert wrapped.weight is emb.weight
    wrapped.eval()
    np.testing.assert_array_equal(wrapped(minillm.tensor(idx)).numpy(), emb.weight.numpy()[idx])


def test_word_dropout():
    minillm.manual_seed(1)
    idx = minillm.tensor(np.random.default_rng(5).integers(1, 50, size=(40, 50)))
    before = idx.numpy().copy()
    out = word_dropout(idx, 0.3, replacement=0)
    y = out.numpy()
    np.testing.assert_array_equal(idx.numpy(), before)                 # not in place
    replaced = y != before
    assert np.all(y[replaced] == 0)
    assert abs(replaced.mean() - 0.3) < 0.03
    # protected ids are never replaced, per id or per position
    y2 = word_dropout(idx, 0.9, 0, protect=[7, 8]).numpy()
    assert np.all(y2[np.isin(before, [7, 8])] == before[np.isin(before, [7, 8])])
    protect = np.zeros(before.shape, dtype=bool)
    protect[:, 0] = True
    y3 = word_dropout(idx, 0.9, 0, protect=protect).numpy()
    np.testing.assert_array_equal(y3[:, 0], before[:, 0])
    # eval and p = 0: unchanged
    np.testing.assert_array_equal(word_dropout(idx, 0.3, 0, training=False).numpy(), before)
    with pytest.raises(TypeError):
        word_dropout(minillm.tensor([0.5, 1.5]), 0.1, 0)


def test_residual_and_attention_dropout():
    minillm.manual_seed(2)
    f = nn.Linear(6, 6)
    block = ResidualDropout(f, p=0.5)
    x = minillm.tensor(np.random.default_rng(6).normal(size=(4, 6)).astype(np.float32))
    fx = f(x).numpy()
    block.eval()
    np.testing.assert_allclose(block(x).numpy(), x.numpy() + fx, rtol=1e-6)
    block.train()
    delta = block(x).numpy() - x.numpy()            # the residual path is never dropped
    kept = np.isclose(delta, 2 * fx, rtol=1e-5, atol=1e-6)
    zeroed = delta == 0
    assert np.all(kept | zeroed) and kept.any() and zeroed.any()

    probs = F.softmax(minillm.tensor(np.random.default_rng(7).normal(size=(2, 5, 5)).astype(np.float32)), -1)
    drop = AttentionDropout(0.25)
    d = drop(probs).numpy()
    assert np.all(np.isclose(d, 0) | np.isclose(d, probs.numpy() / 0.75, rtol=1e-6))
    drop.eval()
    assert drop(probs) is probs


# =========================================================================== AR / TAR
def test_ar_tar_against_numpy():
    rng = np.random.default_rng(8)
    h = rng.normal(size=(2, 5, 3))
    m = (rng.random(size=h.shape) > 0.3) / 0.7
    ht = f64(h)
    assert ar_penalty(ht, 2.0).item() == pytest.approx(2.0 * np.mean(h ** 2), rel=1e-12)
    assert ar_penalty(ht, 2.0, mask=m).item() == pytest.approx(2.0 * np.mean((m * h) ** 2), rel=1e-12)
    pad = rng.random(size=(2, 5)) > 0.5            # a (B, T) mask applies to every feature
    assert ar_penalty(ht, 1.0, mask=pad).item() == pytest.approx(np.mean((pad[..., None] * h) ** 2), rel=1e-12)
    assert tar_penalty(ht, 0.5).item() == pytest.approx(0.5 * np.mean((h[:, 1:] - h[:, :-1]) ** 2), rel=1e-12)
    assert tar_penalty(ht, 0.5, dim=0).item() == pytest.approx(0.5 * np.mean((h[1:] - h[:-1]) ** 2), rel=1e-12)
    assert tar_penalty(f64(h[:, :1]), 1.0).item() == 0.0           # one step: nothing to compare

    # hand gradients: ∂AR/∂h = 2α·m²·h / N, ∂TAR/∂h_t = 2β/N·((h_t − h_{t−1}) − (h_{t+1} − h_t))
    ar_penalty(ht, 2.0, mask=m).backward()
    np.testing.assert_allclose(ht.grad.numpy(), 2 * 2.0 * m ** 2 * h / h.size, rtol=1e-12)
    ht.grad = None
    tar_penalty(ht, 0.5).backward()
    d = h[:, 1:] - h[:, :-1]
    n = d.size
    g = np.zeros_like(h)
    g[:, 1:] += 2 * 0.5 * d / n
    g[:, :-1] -= 2 * 0.5 * d / n
    np.testing.assert_allclose(ht.grad.numpy(), g, rtol=1e-12, atol=1e-15)

    hs = f64(rng.normal(size=(2, 3, 2)))
    assert minillm.gradcheck(lambda x: ar_penalty(x, 1.5, mask=m[:, :3, :2]) + tar_penalty(x, 0.7), (hs,))


def test_activation_regularizer_hook_captures_and_removes():
    minillm.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x = minillm.tensor(np.random.default_rng(9).normal(size=(2, 5, 4)).astype(np.float32))
    plain = model(x).numpy()
    reg = ActivationRegularizer(model[1], alpha=2.0, beta=1.0)
    out = model(x)
    np.testing.assert_array_equal(out.numpy(), plain)         # the hook does not change the output
    assert len(reg.outputs) == 1
    h = reg.outputs[0].numpy().astype(np.float64)
    expected = 2.0 * np.mean(h ** 2) + 1.0 * np.mean((h[:, 1:] - h[:, :-1]) ** 2)
    pen = reg.penalty()
    assert pen.item() == pytest.approx(expected, rel=1e-5)
    assert reg.outputs == []                                  # cleared
    assert reg.penalty().item() == 0.0
    # the penalty reaches the weights of the layers before the hooked module
    model(x)
    pen = reg.penalty()
    pen.backward()
    assert model[0].weight.grad is not None and np.abs(model[0].weight.grad.numpy()).sum() > 0
    assert model[2].weight.grad is None
    # evaluation passes (eval mode or no_grad) are not recorded
    model.eval()
    model(x)
    model.train()
    with minillm.no_grad():
        model(x)
    assert reg.outputs == []
    # two forward passes: both counted
    model(x), model(x)
    assert reg.penalty().item() == pytest.approx(2 * expected, rel=1e-5)
    # remove(): nothing recorded any more
    reg.remove()
    model(x)
    assert reg.outputs == [] and reg.penalty().item() == 0.0


def test_activation_regularizer_ar_on_dropout_output():
    minillm.manual_seed(4)
    lin, drop = nn.Linear(3, 4), nn.Dropout(0.5)
    with ActivationRegularizer(lin, alpha=1.0, beta=0.0, ar_module=drop) as reg:
        x = minillm.tensor(np.random.default_rng(10).normal(size=(2, 3, 3)).astype(np.float32))
        dropped = drop(lin(x)).numpy()
        assert reg.penalty().item() == pytest.approx(np.mean(dropped.astype(np.float64) ** 2), rel=1e-5)
    assert not lin._forward_hooks and not drop._forward_hooks


# =========================================================================== early stopping
def test_early_stopping_scripted_sequence():
    es = EarlyStopping(patience=2)
    losses = [5.0, 4.0, 3.0, 3.5, 2.9, 3.1, 3.2, 1.0]
    stops = [es.step(v) for v in losses[:7]]
    assert stops == [False, False, False, False, False, False, True]
    assert es.best == 2.9 and es.best_step == 5 and es.num_bad_steps == 2 and es.num_steps == 7

    # min_delta: an improvement must beat the best by more than min_delta
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert [es.step(v) for v in [1.0, 0.95, 0.92]] == [False, False, True]
    assert es.best == 1.0 and es.best_step == 1
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert [es.step(v) for v in [1.0, 0.95, 0.85, 0.8, 0.79]] == [False, False, False, False, True]
    assert es.best == 0.85 and es.best_step == 3

    # mode="max" (accuracy), patience=0, NaN never improves
    es = EarlyStopping(patience=1, mode="max")
    assert [es.step(v) for v in [0.5, 0.6, 0.55]] == [False, False, True]
    es = EarlyStopping(patience=0)
    assert [es.step(v) for v in [1.0, 0.5, 0.7]] == [False, False, True]
    es = EarlyStopping(patience=3)
    assert [es.step(v) for v in [1.0, float("nan"), 0.9]] == [False, False, False]
    assert es.best == 0.9 and es.num_bad_steps == 0
    es.step(minillm.tensor(0.5))                       # a scalar Tensor is fine too
    assert es.best == 0.5
    with pytest.raises(ValueError):
        EarlyStopping(mode="maximum")


def test_early_stopping_restores_best_weights_exactly():
    rng = np.random.default_rng(11)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    es = EarlyStopping(patience=2)
    snapshots = {}
    for step, value in enumerate([3.0, 2.0, 2.5, 2.6], start=1):
        for p in model.parameters():                   # an "optimizer step", in place
            p.data += rng.normal(size=p.shape).astype(p.dtype)
        model[1].running_mean.data += 1.0
        snapshots[step] = {k: v.copy() for k, v in copy_state_dict(model).items()}
        if step == 2:
            best_weight_array = model[0].weight.data
        stop = es.step(value, model)
        if step == 2:
            # the snapshot is a copy, not a view of the live weights
            assert es.best_state["0.weight"] is not best_weight_array
            assert not np.shares_memory(es.best_state["0.weight"], best_weight_array)
    assert stop and es.best_step == 2
    # the stop restored step 2's weights and buffers, bit for bit, in the same arrays
    assert model[0].weight.data is best_weight_array
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), snapshots[2][k])
    # the snapshot did not follow later in-place updates
    for p in model.parameters():
        p.data *= 0
    for k, v in es.best_state.items():
        np.testing.assert_array_equal(v, snapshots[2][k])
    es.restore(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), snapshots[2][k])


def test_early_stopping_with_a_real_training_loop():
    """Overfit a small regression with SGD; the restored weights give the best val loss seen."""
    rng = np.random.default_rng(12)
    Xtr, Xva = rng.normal(size=(8, 10)), rng.normal(size=(32, 10))
    w_true = rng.normal(size=(10, 1))
    ytr = Xtr @ w_true + 1.0 * rng.normal(size=(8, 1))
    yva = Xva @ w_true
    minillm.manual_seed(0)
    model = nn.Linear(10, 1)
    model.to(dtype=np.float64)
    opt = minillm.optim.SGD(model.parameters(), lr=0.05)
    es = EarlyStopping(patience=5)
    history = []
    for _ in range(500):
        loss = F.mse_loss(model(minillm.tensor(Xtr)), minillm.tensor(ytr))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with minillm.no_grad():
            val = F.mse_loss(model(minillm.tensor(Xva)), minillm.tensor(yva)).item()
        history.append(val)
        if es.step(val, model):
            break
    assert es.should_stop and len(history) < 500
    assert es.best == min(history) and es.best_step == int(np.argmin(history)) + 1
    with minillm.no_grad():
        restored = F.mse_loss(model(minillm.tensor(Xva)), minillm.tensor(yva)).item()
    assert restored == pytest.approx(es.best, rel=1e-12)


def test_early_stopping_state_dict_round_trip():
    es = EarlyStopping(patience=3)
    for v in [1.0, 0.5, 0.7]:
        es.step(v)
    state = es.state_dict()
    assert state == {"best": 0.5, "best_step": 2, "num_bad_steps": 1, "num_steps": 3, "should_stop": False}
    other = EarlyStopping(patience=3)
    other.load_state_dict(state)
    assert [other.step(v) for v in [0.6, 0.6]] == [False, True]
    with pytest.raises(RuntimeError):
        other.restore(nn.Linear(2, 2))                 # no snapshot was taken


# =========================================================================== ensembles
def make_members(k=3, seed=0):
    minillm.manual_seed(seed)
    return [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 5)) for _ in range(k)]


def softmax_np(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_ensemble_equals_manual_average_and_runs_in_eval_mode():
    members = make_members()
    x = minillm.tensor(np.random.default_rng(13).normal(size=(6, 4)).astype(np.float32))
    for m in members:
        m.eval()
    logits = [m(x).numpy().astype(np.float64) for m in members]
    for m in members:
        m.train()                                      # the ensemble must switch dropout off itself

    ens = Ensemble(members)
    out = ens(x)
    assert not out.requires_grad                       # prediction: no graph
    np.testing.assert_allclose(out.numpy(), np.mean([softmax_np(z) for z in logits], axis=0), rtol=1e-5)
    np.testing.assert_allclose(ens.probs(x).numpy().sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ens.log_probs(x).numpy(), np.log(out.numpy()), rtol=1e-5)
    assert all(m.training for m in members) and all(m[2].training for m in members)  # modes restored

    ens_logit = Ensemble(members, combine="mean_logit")
    np.testing.assert_allclose(ens_logit(x).numpy(), np.mean(logits, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ens_logit.probs(x).numpy(), softmax_np(np.mean(logits, axis=0)), rtol=1e-5)
    # the members' parameters are the ensemble's
    assert len(list(ens.parameters())) == sum(len(list(m.parameters())) for m in members)
    with pytest.raises(ValueError):
        Ensemble(members, combine="median")


def test_ensemble_nll_at_most_mean_member_nll_and_report():
    members = make_members(k=4, seed=5)
    rng = np.random.default_rng(14)
    x = minillm.tensor(rng.normal(size=(20, 4)).astype(np.float32))
    y = rng.integers(0, 5, size=20)
    y[3] = -100                                        # an ignored target
    report = evaluate_members(members, x, minillm.tensor(y))

    for m in members:
        m.eval()
    probs = [softmax_np(m(x).numpy().astype(np.float64)) for m in members]
    valid = y != -100
    yv = y[valid]
    for entry, p in zip(report["members"], probs):
        pv = p[valid]
        assert set(entry) == {"loss", "accuracy"}
        assert entry["loss"] == pytest.approx(-np.log(pv[np.arange(yv.size), yv]).mean(), rel=1e-5)
        assert entry["accuracy"] == pytest.approx((pv.argmax(-1) == yv).mean())
    avg = np.mean(probs, axis=0)[valid]
    assert report["ensemble"]["loss"] == pytest.approx(-np.log(avg[np.arange(yv.size), yv]).mean(), rel=1e-5)
    assert report["ensemble"]["accuracy"] == pytest.approx((avg.argmax(-1) == yv).mean())
    assert report["mean_member_loss"] == pytest.approx(np.mean([e["loss"] for e in report["members"]]))
    assert report["mean_member_accuracy"] == pytest.approx(np.mean([e["accuracy"] for e in report["members"]]))
    # Jensen: −log of an average ≤ the average of −log, per example and so on average
    assert report["ensemble"]["loss"] <= report["mean_member_loss"]
    per_example_ens = -np.log(avg[np.arange(yv.size), yv])
    per_example_mean = np.mean([-np.log(p[valid][np.arange(yv.size), yv]) for p in probs], axis=0)
    assert np.all(per_example_ens <= per_example_mean + 1e-12)
    # an Ensemble can be passed instead of the list; mean_logit also reports an NLL
    assert evaluate_members(Ensemble(members), x, y)["ensemble"]["loss"] == pytest.approx(
        report["ensemble"]["loss"], rel=1e-6)
    logit_report = evaluate_members(members, (x,), y, combine="mean_logit")
    zbar = np.mean([m(x).numpy().astype(np.float64) for m in members], axis=0)
    pz = softmax_np(zbar)[valid]
    assert logit_report["ensemble"]["loss"] == pytest.approx(-np.log(pz[np.arange(yv.size), yv]).mean(), rel=1e-5)


def test_combine_outputs_and_sequence_models():
    z = [minillm.tensor(np.random.default_rng(s).normal(size=(2, 3, 4)).astype(np.float32)) for s in range(2)]
    np.testing.assert_allclose(combine_outputs(z, "mean_logit").numpy(), (z[0].numpy() + z[1].numpy()) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(combine_outputs(z).numpy(),
                               (softmax_np(z[0].numpy()) + softmax_np(z[1].numpy())) / 2, rtol=1e-5)
    # (B, T, C) logits and (B, T) targets, and models returning (logits, loss) tuples
    from minillm.models.gpt import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=8)
    minillm.manual_seed(0)
    gpts = [GPT(cfg) for _ in range(2)]
    idx = minillm.tensor(np.random.default_rng(15).integers(0, 7, size=(2, 6)))
    report = evaluate_members(gpts, idx, idx)
    assert len(report["members"]) == 2 and report["ensemble"]["loss"] <= report["mean_member_loss"]
    assert Ensemble(gpts)(idx).shape == (2, 6, 7)


def test_snapshot_ensemble_from_state_dicts_and_checkpoints(tmp_path):
    from minillm.checkpoint import save_checkpoint

    def factory():
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 5))

    minillm.manual_seed(6)
    model = factory()
    snaps = []
    rng = np.random.default_rng(16)
    for _ in range(3):                                 # "training": in-place updates between snapshots
        for p in model.parameters():
            p.data += rng.normal(size=p.shape).astype(p.dtype)
        snaps.append(copy_state_dict(model))
    x = minillm.tensor(rng.normal(size=(5, 4)).astype(np.float32))

    ens = snapshot_ensemble(factory, snaps)
    assert len(ens) == 3
    expected = []
    for snap in snaps:
        model.load_state_dict(snap)
        expected.append(softmax_np(model(x).numpy()))
    np.testing.assert_allclose(ens(x).numpy(), np.mean(expected, axis=0), rtol=1e-5)

    paths = []
    for i, snap in enumerate(snaps):
        model.load_state_dict(snap)
        paths.append(save_checkpoint(tmp_path / f"snap{i}.npz", model))
    np.testing.assert_allclose(snapshot_ensemble(factory, paths)(x).numpy(), ens(x).numpy(), rtol=1e-6)


# =========================================================================== devices
def test_regularizers_on_device(device):
    """The random masks, the zero penalties and the ensemble stay on the tensors' device."""
    minillm.manual_seed(7)
    device = minillm.backend.normalize_device(device)   # "cuda" -> "cuda:0"
    emb = nn.Embedding(10, 4).to(device)
    idx = minillm.tensor(np.arange(10).reshape(2, 5), device=device)
    out = embedding_dropout(emb.weight, idx, 0.5)
    assert out.device == device
    y, w = out.numpy(), emb.weight.numpy()
    for row, word in zip(y.reshape(-1, 4), range(10)):
        assert np.all(row == 0) or np.allclose(row, 2 * w[word], rtol=1e-6)
    out.sum().backward()
    assert emb.weight.grad.device == device
    assert word_dropout(idx, 0.5, 0, protect=[3]).device == device

    lin = nn.Linear(4, 4).to(device)
    reg = ActivationRegularizer(lin, alpha=1.0, beta=1.0)
    assert reg.penalty().device == device              # nothing recorded: a zero on the device
    h = lin(F.embedding(idx, emb.weight))
    loss = h.sum() + reg.penalty() + l2_penalty(lin, 0.1) + tar_penalty(h[:, :1], 1.0)
    loss.backward()
    assert loss.device == device and lin.weight.grad.device == device

    members = [nn.Linear(4, 3).to(device) for _ in range(2)]
    x = minillm.tensor(np.ones((2, 4), dtype=np.float32), device=device)
    report = evaluate_members(members, x, minillm.tensor([0, 2], device=device))
    assert report["ensemble"]["loss"] <= report["mean_member_loss"] + 1e-6
    es = EarlyStopping(patience=1)
    es.step(1.0, lin)
    assert es.best_state["weight"] is not lin.weight.data
    es.step(2.0, lin)
    assert es.should_stop

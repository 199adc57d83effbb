"""minillm.growth: Net2Net function preservation (float64), stacking/interleaving, symmetry breaking,
LiGO (trains, materializes), the FLOPs formula, bad input, and `minillm grow` end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minillm import backend
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.growth import LiGO, expansion_maps, flops_per_step, flops_per_token, grow, train_ligo
from minillm.models.bert import BERT, BERTConfig
from minillm.models.gpt import GPT, GPTConfig
from minillm.tensor import Tensor, no_grad

V, T = 13, 8


def tiny(cls=GPT, n_layer=2, n_embd=8, n_head=2, perturb=0.3, seed=0):
    """A float64 model whose every parameter (LN gains, biases included) is perturbed, so that
    zero biases or unit gains cannot hide a wrong map."""
    backend.manual_seed(seed)
    ccls = GPTConfig if cls is GPT else BERTConfig
    m = cls(ccls(vocab_size=V, block_size=T, n_layer=n_layer, n_head=n_head, n_embd=n_embd))
    m.to(dtype=np.float64)
    rng = np.random.default_rng(seed)
    for _, p in m.named_parameters():
        p.data = p.data + rng.normal(0.0, perturb, p.shape)
    return m


def idx(seed=1, b=3):
    return Tensor(np.random.default_rng(seed).integers(0, V, (b, T)))


def logits(model, x):
    model.eval()
    with no_grad():
        return model(x).data


EXACT = [dict(n_embd=16), dict(n_embd=16, n_head=4), dict(n_layer=4), dict(n_layer=4, n_embd=16),
         dict(n_layer=4, n_embd=16, n_head=4), dict(n_layer=3, n_embd=24, n_head=3)]


@pytest.mark.parametrize("cls", [GPT, BERT], ids=["gpt", "bert"])
@pytest.mark.parametrize("size", EXACT, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items()))
def test_net2net_preserves_the_function_exactly(cls, size):
    small, x = tiny(cls), idx()
    before = {k: v.data.copy() for k, v in small.named_parameters()}
    ref = logits(small, x)
    big = grow(small, method="net2net", **size)
    assert type(big) is cls and big.config.n_layer == size.get("n_layer", 2)
    assert big.config.n_embd == size.get("n_embd", 8) and big.config.n_head == size.get("n_head", 2)
    assert next(iter(big.parameters())).dtype == np.float64
    np.testing.assert_allclose(logits(big, x), ref, rtol=0, atol=1e-10)
    for k, v in small.named_parameters():           # the original is untouched
        np.testing.assert_array_equal(v.data, before[k])


def test_width_growth_pieces():
    """Each hard part separately: LN exact for an even copy, tied head via ln_f/c, q scaled by √(d'/d)/c."""
    old, new = GPTConfig(n_embd=8, n_head=2), GPTConfig(n_embd=16, n_head=2)
    m = expansion_maps(old, new)
    x = np.random.default_rng(0).normal(size=8)
    xw = m["r_out"] @ x                               # every unit copied twice: same mean and variance
    assert np.isclose(xw.mean(), x.mean()) and np.isclose(xw.var(), x.var())
    np.testing.assert_allclose(m["r_in"].T @ m["r_out"], np.eye(8))   # the consumers see the same sum
    assert np.allclose(m["q"][m["q"] != 0], np.sqrt(2) / 2)          # head size 4 -> 8: √2 / 2 copies
    # more heads, same head size: q untouched, out_proj divided by the 2 copies of each head
    m2 = expansion_maps(old, GPTConfig(n_embd=16, n_head=4))
    assert np.allclose(m2["q"][m2["q"] != 0], 1.0) and np.allclose(m2["o_in"][m2["o_in"] != 0], 0.5)


def test_tied_head_and_positions_are_grown():
    small = tiny()
    big = grow(small, n_embd=16)
    assert big.wte.weight.shape == (V, 16) and big.wpe.weight.shape == (T, 16)
    np.testing.assert_array_equal(big.wte.weight.data[:, 8:], small.wte.weight.data)   # columns copied
    np.testing.assert_allclose(big.ln_f.weight.data[:8], small.ln_f.weight.data / 2)    # head LN divided
    np.testing.assert_allclose(big.ln_f.bias.data[:8], small.ln_f.bias.data / 2)


def test_uneven_width_is_not_exact_and_the_deviation_is_measured():
    """128 -> 192 style (here 8 -> 12): half the units copied twice, half once; LayerNorm's mean and
    variance change, so no copy-and-divide map is exact. Measured: small but nonzero."""
    for perturb, bound in ((0.0, 0.05), (0.3, 5.0)):
        small, x = tiny(perturb=perturb), idx()
        ref = logits(small, x)
        dev = np.abs(logits(grow(small, n_embd=12), x) - ref).max()
        print(f"uneven 8 -> 12, perturb {perturb}: max |Δlogit| = {dev:.3g} (logit std {ref.std():.3g})")
        assert 1e-8 < dev < bound
    # everything but the LayerNorms is exact: with the LNs' statistics matched (even copies), exact
    np.testing.assert_allclose(logits(grow(tiny(), n_embd=16), idx()), logits(tiny(), idx()), atol=1e-10)


@pytest.mark.parametrize("method,order", [("stack", [0, 1, 0, 1]), ("interleave", [0, 0, 1, 1])])
def test_stack_and_interleave_copy_layers(method, order):
    small = tiny()
    big = grow(small, n_layer=4, method=method)
    for j, src in enumerate(order):
        np.testing.assert_array_equal(big.blocks[j].mlp.fc.weight.data, small.blocks[src].mlp.fc.weight.data)
    # not function preserving in depth (each copy adds its update again)...
    assert np.abs(logits(big, idx()) - logits(small, idx())).max() > 1e-3
    # ...but exact in width
    np.testing.assert_allclose(logits(grow(small, n_embd=16, method=method), idx()), logits(small, idx()), atol=1e-10)


def test_net2net_new_blocks_are_identity():
    big = grow(tiny(), n_layer=4)
    for j in (1, 3):
        b = big.blocks[j]
        for p in (b.attn.out_proj.weight, b.attn.out_proj.bias, b.mlp.proj.weight, b.mlp.proj.bias):
            assert not p.data.any()


def _grads(model):
    model.train()
    model.zero_grad()
    x = idx(2, b=4)
    y = Tensor(np.random.default_rng(3).integers(0, V, (4, T)))
    _, loss = model(x, y)
    loss.backward()
    return model


def test_duplicates_keep_identical_gradients_without_noise_and_differ_with_noise():
    E = 8
    big = _grads(grow(tiny(), n_embd=16, noise=0.0))
    fc = big.blocks[0].mlp.fc.weight.grad.data            # hidden unit j and its copy j + 4E
    np.testing.assert_allclose(fc[:4 * E], fc[4 * E:], atol=1e-12)
    wte = big.wte.weight.grad.data                        # residual unit j and its copy j + E
    np.testing.assert_allclose(wte[:, :E], wte[:, E:], atol=1e-12)
    noisy = _grads(grow(tiny(), n_embd=16, noise=0.05, seed=0))
    fc = noisy.blocks[0].mlp.fc.weight.grad.data
    assert np.abs(fc[:4 * E] - fc[4 * E:]).max() > 1e-6
    wte = noisy.wte.weight.grad.data
    assert np.abs(wte[:, :E] - wte[:, E:]).max() > 1e-6
    # and the noise costs exactness only by a little
    dev = np.abs(logits(grow(tiny(), n_embd=16, noise=0.01, seed=0), idx()) - logits(tiny(), idx())).max()
    assert 0 < dev < 0.5


def test_float32_model_stays_float32():
    backend.manual_seed(0)
    small = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8))
    big = grow(small, n_layer=2, n_embd=16)
    assert all(p.dtype == np.float32 for p in big.parameters())
    np.testing.assert_allclose(logits(big, idx()), logits(small, idx()), atol=1e-5)


# ------------------------------------------------------------------ LiGO
@pytest.mark.parametrize("cls", [GPT, BERT], ids=["gpt", "bert"])
def test_ligo_starts_as_stacking_trains_and_materializes(cls):
    small = tiny(cls, perturb=0.0)
    before = {k: v.data.copy() for k, v in small.named_parameters()}
    ccls = GPTConfig if cls is GPT else BERTConfig
    ligo = LiGO(small, ccls(vocab_size=V, block_size=T, n_layer=4, n_head=4, n_embd=16))
    x = idx()
    stacked = grow(small, n_layer=4, n_embd=16, n_head=4, method="stack")
    np.testing.assert_allclose(logits(ligo.materialize(), x), logits(stacked, x), atol=1e-10)
    names = {n.split(".")[0] for n, _ in ligo.named_parameters()}
    assert names == {"width", "layers", "depth"}          # only the operator trains
    rng = np.random.default_rng(0)
    data = np.tile(np.arange(V), 40)                       # a learnable sequence

    def batches():
        while True:
            i = rng.integers(0, len(data) - T - 1, 4)
            ix = i[:, None] + np.arange(T)
            yield data[ix], data[ix + 1]
    if cls is BERT:                                        # BERT: predict the token itself
        def batches():                                     # noqa: F811
            while True:
                i = rng.integers(0, len(data) - T - 1, 4)
                ix = i[:, None] + np.arange(T)
                yield data[ix], data[ix]
    losses = train_ligo(ligo, batches(), 8, lr=1e-2)
    assert losses[-1] < losses[0]
    plain = ligo.materialize()
    assert type(plain) is cls and plain.config.n_embd == 16
    ligo.eval()
    with no_grad():
        np.testing.assert_allclose(plain.eval()(x).data, ligo(x).data, atol=1e-10)
    for k, v in small.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])
    assert ligo.flops_per_step(4) > flops_per_step(plain.config, 4)


def test_ligo_bad_configs_name_the_sizes():
    small = tiny()
    with pytest.raises(ValueError, match="vocab_size: small 13, large 50"):
        LiGO(small, GPTConfig(vocab_size=50, block_size=T, n_layer=4, n_embd=16))
    with pytest.raises(ValueError, match="n_embd 4 is smaller than the model's 8"):
        LiGO(small, GPTConfig(vocab_size=V, block_size=T, n_layer=4, n_embd=4, n_head=2))
    with pytest.raises(TypeError, match="GPTConfig"):
        LiGO(small, BERTConfig(vocab_size=V, block_size=T, n_layer=4, n_embd=16))


# ------------------------------------------------------------------ FLOPs
def test_flops_formula_matches_a_hand_count():
    c = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)
    E, T_, V_ = 64, 32, 65
    # forward multiply-adds per token, layer by layer, counted by hand (2 FLOPs each)
    per_layer = (E * 3 * E      # in_proj: q, k, v
                 + T_ * E       # q·kᵀ against T keys (all heads together: T·E)
                 + T_ * E       # attention-weighted sum of v
                 + E * E        # out_proj
                 + E * 4 * E    # mlp.fc
                 + 4 * E * E)   # mlp.proj
    forward = 2 * (2 * per_layer + E * V_)                # + the tied head
    assert flops_per_token(c) == 3 * forward == 6 * (2 * 12 * E * E + V_ * E) + 12 * 2 * T_ * E
    assert flops_per_step(c, batch_size=5) == 5 * 32 * flops_per_token(c)
    assert flops_per_token(BERTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)) \
        == flops_per_token(c) + 6 * E * E


# ------------------------------------------------------------------ bad input
def test_bad_growth_targets_are_clear_errors():
    small = tiny()
    with pytest.raises(ValueError, match="n_layer 1 is smaller than the model's 2"):
        grow(small, n_layer=1)
    with pytest.raises(ValueError, match="n_embd 4 is smaller than the model's 8"):
        grow(small, n_embd=4, n_head=2)
    with pytest.raises(ValueError, match="n_layer 2, n_embd 8, n_head 2.*nothing to grow"):
        grow(small, n_layer=2, n_embd=8)
    with pytest.raises(ValueError, match="n_embd 18 is not divisible by n_head 4"):
        grow(small, n_embd=18, n_head=4)
    with pytest.raises(ValueError, match="n_head 1 is smaller than the model's 2"):
        grow(small, n_embd=16, n_head=1)
    with pytest.raises(ValueError, match="head size 2"):
        grow(small, n_embd=16, n_head=8)
    with pytest.raises(ValueError, match="method"):
        grow(small, n_layer=4, method="ligo")
    from minillm.nn import Linear
    with pytest.raises(TypeError, match="expected a minillm GPT or BERT model, got Linear"):
        grow(Linear(2, 2), n_layer=2)


# ------------------------------------------------------------------ the CLI
def run_cli(*args, cwd, **kw):
    env = dict(os.environ, MINILLM_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", "minillm", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=180)


def test_grow_cli_writes_a_checkpoint_that_train_continues(tmp_path):
    lines = ["ROMEO: But soft, what light through yonder window breaks?",
             "JULIET: O Romeo, Romeo, wherefore art thou Romeo?"]
    (tmp_path / "corpus.txt").write_text("\n".join(lines[i % 2] for i in range(200)) + "\n")
    tiny_flags = ["--batch-size", "4", "--eval-iters", "2", "--eval-interval", "2", "--sample-tokens", "0",
                  "--warmup-iters", "1", "--data", "corpus.txt"]
    r = run_cli("train", "--max-iters", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                "--block-size", "16", *tiny_flags, "--out-dir", "small", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("grow", "--init-from", "small", "--n-layer", "2", "--n-embd", "32", "--method", "net2net",
                "--out-dir", "big", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(tmp_path / "big" / "last.npz")
    assert ck.model_config["n_layer"] == 2 and ck.model_config["n_embd"] == 32 and ck.iter_num == 0
    # the grown checkpoint computes the small model's function (float32)
    small_ck = load_checkpoint(tmp_path / "small" / "ckpt.npz")
    small, big = GPT(GPTConfig.from_dict(small_ck.model_config)), GPT(GPTConfig.from_dict(ck.model_config))
    small.load_state_dict(small_ck.model_state)
    big.load_state_dict(ck.model_state)
    x = Tensor(np.random.default_rng(0).integers(0, small.config.vocab_size, (2, 16)))
    np.testing.assert_allclose(logits(big, x), logits(small, x), atol=1e-4)

    r = run_cli("train", "--resume", "--out-dir", "big", "--max-iters", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "big" / "config.json").read_text())["n_embd"] == 32
    r = run_cli("train", "--init-from", "big", "--max-iters", "2", *tiny_flags, "--out-dir", "big2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "big2" / "config.json").read_text())
    assert config["n_layer"] == 2 and config["n_embd"] == 32

    r = run_cli("grow", "--init-from", "small", "--n-layer", "2", "--method", "ligo", "--ligo-steps", "2",
                "--out-dir", "big_ligo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(tmp_path / "big_ligo" / "last.npz")["growth"]["ligo"]["steps"] == 2

    r = run_cli("grow", "--init-from", "small", "--n-embd", "8", "--out-dir", "x", cwd=tmp_path)
    assert r.returncode == 1 and "n_embd 8 is smaller than the model's 16" in r.stderr
    backend.manual_seed(0)
    bert = BERT(BERTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8))
    (tmp_path / "bert").mkdir()
    save_checkpoint(tmp_path / "bert" / "ckpt.npz", bert, model_config=bert.config.to_dict(),
                    train_config={"objective": "mlm"})
    r = run_cli("grow", "--init-from", "bert", "--n-layer", "2", "--out-dir", "x", cwd=tmp_path)
    assert r.returncode == 1 and "not a GPT checkpoint" in r.stderr


def test_grow_and_ligo_keep_the_device(device):
    backend.manual_seed(0)
    small = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8))
    small.to(device)
    x = Tensor(backend.to_device(np.random.default_rng(0).integers(0, V, (2, T)), device))
    big = grow(small, n_layer=2, n_embd=16)
    assert all(p.device == small.wte.weight.device for p in big.parameters())
    np.testing.assert_allclose(backend.to_numpy(logits(big, x)), backend.to_numpy(logits(small, x)), atol=1e-5)
    ligo = LiGO(small, big.config)
    plain = ligo.materialize()
    assert all(p.device == small.wte.weight.device for p in plain.parameters())
    ligo.eval()
    with no_grad():
        np.testing.assert_allclose(backend.to_numpy(ligo(x).data), backend.to_numpy(logits(plain, x)), atol=1e-5)

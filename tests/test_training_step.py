"""The one training step (minillm/training_step.py) that the trainer, pre-training and fine-tuning
share; the one weight-decay policy; and the import structure (the trainer does not pull in
pre-training or experiment code)."""
import subprocess
import sys

import numpy as np
import pytest

import minillm
from minillm import nn
from minillm.nn import functional as F
from minillm.training_step import (StepResult, TrainingDivergedError, TrainingStep, estimate_loss, make_optimizer)


def test_importing_the_trainer_imports_neither_pretraining_nor_experiments():
    code = ("import sys, minillm.train; "
            "print(sorted(m for m in sys.modules if m.startswith(('minillm.pretrain', 'minillm.finetune', "
            "'pretrain_finetune', 'benchmarks'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # and the objectives do not import the trainer (no cycle): the registry is theirs
    code = "import sys, minillm.objectives; print('minillm.train' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def _tiny_mlp():
    minillm.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3))


def test_training_step_sets_the_lr_steps_and_reports():
    model = _tiny_mlp()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    x, y = minillm.randn(5, 4), minillm.tensor(np.array([0, 1, 2, 0, 1]))
    step = TrainingStep(model, opt, lambda a, b: F.cross_entropy(model(a), b), lambda it: 0.5 ** it, grad_clip=1.0)
    before = [p.numpy().copy() for p in model.parameters()]
    result = step(3, (x, y))
    assert isinstance(result, StepResult) and result.lr == 0.125 and np.isfinite(result.loss)
    assert result.grad_norm is not None and result.grad_norm > 0
    assert all(g["lr"] == 0.125 for g in opt.param_groups)
    assert any(not np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("what", ["loss", "grad"])
def test_training_step_stops_on_nan_before_touching_the_weights(what):
    model = _tiny_mlp()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    x, y = minillm.randn(5, 4), minillm.tensor(np.array([0, 1, 2, 0, 1]))
    if what == "loss":
        def loss_fn(a, b):
            return F.cross_entropy(model(a), b) * float("nan")
    else:   # a finite loss whose gradient is infinite: sqrt at 0
        def loss_fn(a, b):
            return F.cross_entropy(model(a), b) + (model[0].weight * 0.0).sum().sqrt()
    step = TrainingStep(model, opt, loss_fn, lambda it: 1e-2, grad_clip=1.0)
    before = [p.numpy().copy() for p in model.parameters()]
    with pytest.raises(TrainingDivergedError, match="at iteration 7") as info:
        step(7, (x, y))
    assert info.value.iteration == 7 and ("loss" if what == "loss" else "gradient norm") in str(info.value)
    assert all(np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters()))


def test_estimate_loss_is_eval_mode_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    x, y = minillm.randn(5, 4), minillm.tensor(np.array([0, 1, 2, 0, 1]))
    a = estimate_loss(model, lambda a, b: F.cross_entropy(model(a), b), lambda: (x, y), 3)
    b = estimate_loss(model, lambda a, b: F.cross_entropy(model(a), b), lambda: (x, y), 3)
    assert a == b and model.training                 # no dropout noise; train mode is back


def test_every_training_loop_uses_the_one_weight_decay_policy(tmp_path, monkeypatch):
    """The trainer, pretrain() and finetune() all build their AdamW from param_groups, which never
    decays embeddings, biases or norms."""
    from minillm import pretrain as P
    from minillm.finetune import finetune
    from minillm.regularizers import penalties
    from minillm.train import Trainer
    from minillm.train_config import TrainConfig
    calls = []
    real = penalties.param_groups

    def spy(module, weight_decay):
        calls.append(type(module).__name__)
        return real(module, weight_decay)
    monkeypatch.setattr(penalties, "param_groups", spy)
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path / "cache"))

    trainer = Trainer(TrainConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=2, max_iters=1,
                                  eval_interval=1, eval_iters=1, sample_tokens=0, progress=False,
                                  out_dir=str(tmp_path / "run")), log=None)
    no_decay = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(trainer.model.wte.weight) in no_decay and id(trainer.model.wpe.weight) in no_decay

    data = np.random.default_rng(0).integers(0, 20, 200)
    model = P.build_model("gpt", 20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    P.pretrain(model, "causal", data, None, steps=1, batch_size=2, log=None)
    seqs, labels = [np.array([1, 2, 3]), np.array([4, 5])], [0, 1]
    finetune(model, seqs, labels, seqs, labels, num_classes=2, pad_id=0, steps=1, batch_size=2)
    assert calls == ["GPT", "GPT", "SequenceClassifier"]


def test_pretrain_raises_training_diverged_error():
    from minillm import pretrain as P
    data = np.random.default_rng(0).integers(0, 20, 200)
    model = P.build_model("gpt", 20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(TrainingDivergedError, match="iteration"):
        with np.errstate(all="ignore"):
            P.pretrain(model, "causal", data, None, steps=30, batch_size=2, lr=1e9, warmup=0, grad_clip=0.0,
                       log=None)

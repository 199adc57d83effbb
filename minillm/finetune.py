"""Fine-tuning a pre-trained backbone (GPT, BERT or T5's encoder) for sequence classification.

    seqs = encode_examples(texts, tokenizer, max_len=128)
    result = finetune(backbone, seqs, labels, val_seqs, val_labels, num_classes=6, pad_id=pad, steps=500)

:func:`finetune` puts a fresh :class:`~minillm.models.classifier.SequenceClassifier` head on the
backbone and trains every weight with the step every loop shares
(``minillm.training_step.TrainingStep``) on shuffled, right-padded mini-batches; then it measures
accuracy and balanced accuracy once, at the end (:func:`evaluate_classifier`).

Which weights train (``method``; the same names as ``minillm finetune --method``):

* ``"full"`` — every weight;
* ``"freeze"`` — :func:`freeze`: the embeddings and the lowest ``freeze_blocks`` blocks are fixed;
* ``"linear-probe"`` — only the head (the backbone is a fixed feature extractor);
* ``"lp-ft"`` — Kumar et al. 2022: a linear probe first, then every weight from that head. A
  randomly initialized head sends large, random gradients into the pre-trained features early in
  fine-tuning and distorts them; starting from a trained head avoids it (their Thm 3.3);
* ``"lora"``, ``"adapter"``, ``"reft"`` — :mod:`minillm.peft` with the head in ``modules_to_save``.

Also here: ULMFiT's (Howard & Ruder 2018) discriminative learning rates
(:func:`layerwise_param_groups`) and gradual unfreezing (:class:`GradualUnfreezing`), WiSE-FT's
weight-space ensembles (:func:`interpolate`, Wortsman et al. 2022), :func:`finetune_lm` (the same
methods for a language model) and weak supervision (:func:`apply_labeling_functions`,
:func:`self_training`).
"""
from __future__ import annotations

import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import backend
from .tensor import no_grad, tensor
from .training_step import FINETUNE_ORDER_STREAM, TrainingStep, make_optimizer

__all__ = ["encode_examples", "pad_batch", "evaluate_classifier", "balanced_accuracy", "finetune", "METHODS",
           "freeze", "layer_groups", "layerwise_param_groups", "GradualUnfreezing", "interpolate", "trainable_groups",
           "prepare_model", "finetune_lm", "count_parameters", "ABSTAIN", "apply_labeling_functions", "majority_vote",
           "self_training"]

#: the fine-tuning methods of :func:`finetune`, :func:`finetune_lm` and ``minillm finetune --method``
METHODS = ("full", "freeze", "linear-probe", "lp-ft", "lora", "adapter", "reft")


def encode_examples(texts: Sequence[str], tokenizer, max_len: int, cls_id: Optional[int] = None) -> List[np.ndarray]:
    """Each text as an int64 array of at most ``max_len`` tokens (truncated at the end), with
    ``cls_id`` first when given."""
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        if cls_id is not None:
            ids = [cls_id] + ids
        out.append(np.asarray(ids[:max_len], dtype=np.int64))
    return out


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest: ``(ids (B, T), padding_mask (B, T), True at padding)``."""
    lengths = np.array([len(s) for s in seqs])
    ids = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    return ids, np.arange(ids.shape[1])[None, :] >= lengths[:, None]


def classifier_logits(clf, seqs, pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The logits (N, C) of ``clf`` for every sequence, in their order, as a NumPy array (eval
    mode, no grad; the model's mode is restored); sequences are batched by length so little
    padding is computed."""
    device = next(clf.parameters()).device
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = None
    was_training = clf.training
    clf.eval()
    try:
        with no_grad():
            for i in range(0, len(order), batch_size):
                chunk = order[i:i + batch_size]
                ids, mask = pad_batch([seqs[j] for j in chunk], pad_id)
                logits = backend.to_numpy(clf(tensor(ids, device=device), tensor(mask, device=device)).data)
                if out is None:
                    out = np.empty((len(seqs), logits.shape[1]), dtype=logits.dtype)
                out[chunk] = logits
    finally:
        clf.train(was_training)
    return out


def evaluate_classifier(clf, seqs, labels, pad_id: int, batch_size: int = 64) -> dict:
    """Accuracy, balanced accuracy (the mean over classes of the share of that class predicted
    right, so 1/C for a constant prediction however unbalanced the labels) and predictions of
    ``clf`` (eval mode, no grad)."""
    preds = classifier_logits(clf, seqs, pad_id, batch_size).argmax(-1)
    labels = np.asarray(labels)
    return {"accuracy": float((preds == labels).mean()), "balanced_accuracy": balanced_accuracy(preds, labels),
            "predictions": preds}


def balanced_accuracy(predictions, labels) -> float:
    """Mean over the classes present in ``labels`` of the recall (correct / members)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float(np.mean([(predictions[labels == c] == c).mean() for c in np.unique(labels)]))


def finetune(backbone, train_seqs, train_labels, val_seqs, val_labels, *, num_classes: int, pad_id: int,
             steps: int, batch_size: int = 32, lr: float = 5e-4, weight_decay: float = 0.01,
             warmup: Optional[int] = None, dropout: float = 0.1, pooling: str = "mean", grad_clip: float = 1.0,
             seed: int = 0, eval_batch_size: int = 64, log: Optional[Callable] = None, method: str = "full",
             freeze_blocks: int = 0, peft_config=None, probe_steps: Optional[int] = None,
             probe_lr: Optional[float] = None, layerwise_decay: Optional[float] = None,
             unfreeze_every: Optional[int] = None) -> dict:
    """Fine-tune ``backbone`` with a fresh :class:`SequenceClassifier` head for ``steps`` AdamW
    steps (warmup then cosine decay to ``lr / 10``) on shuffled mini-batches (epochs without
    replacement) of the int64 sequences ``train_seqs`` with integer labels, then measure
    validation accuracy once, at the end (no model selection on the validation set).

    ``method`` (one of :data:`METHODS`) picks the weights that train (module docstring);
    ``freeze_blocks`` is ``"freeze"``'s depth, ``peft_config`` the LoRA/adapter/ReFT config
    (the head is added to its ``modules_to_save``); ``"lp-ft"`` first trains the head alone for
    ``probe_steps`` (default ``steps``) steps at ``probe_lr`` (default ``10·lr``).
    ``layerwise_decay`` (e.g. 2.6) gives ULMFiT's discriminative rates, ``unfreeze_every`` its
    gradual unfreezing (one more layer group from the top every that many steps).

    Returns ``{"accuracy", "balanced_accuracy", "train_loss" (per step), "seconds",
    "predictions", "ms_per_step", "trainable_params", "total_params", "classifier"}``
    (``classifier``: the trained model, a PeftModel for the PEFT methods).
    """
    from .models.classifier import SequenceClassifier
    if method not in METHODS:
        raise ValueError(f"finetune: unknown method {method!r}; choose one of {METHODS}")
    if unfreeze_every and method != "full":
        raise ValueError(f"finetune: gradual unfreezing (unfreeze_every) ends with every weight training; it goes "
                         f"with method='full', not {method!r}")
    backend.manual_seed(seed)
    clf = SequenceClassifier(backbone, num_classes, pooling=pooling, dropout=dropout)
    device = clf.head.weight.device
    model = prepare_model(clf, "linear-probe" if method == "lp-ft" else method, freeze_blocks=freeze_blocks,
                          peft_config=peft_config)
    rng = np.random.default_rng([seed, FINETUNE_ORDER_STREAM])
    labels = np.asarray(train_labels, dtype=np.int64)
    n = len(train_seqs)
    bs = min(batch_size, n)
    state = {"order": rng.permutation(n), "pos": 0}

    def make_batch():
        if state["pos"] + bs > n:
            state["order"], state["pos"] = rng.permutation(n), 0
        idx = state["order"][state["pos"]:state["pos"] + bs]
        state["pos"] += bs
        ids, mask = pad_batch([train_seqs[i] for i in idx], pad_id)
        return tensor(ids, device=device), tensor(mask, device=device), tensor(labels[idx], device=device)

    def loss_fn(ids, padding_mask, labels):
        return model(ids, padding_mask, labels)[1]

    t0 = time.perf_counter()
    losses, ms = [], []
    if method == "lp-ft":   # Kumar et al. 2022: a linear probe first ...
        out = _train(model, loss_fn, make_batch, probe_steps or steps, probe_lr or 10 * lr, 0.0, warmup,
                     grad_clip, log)
        losses += out["losses"]
        clf.requires_grad_(True)   # ... then fine-tune everything from the probed head
    trainable, total = count_parameters(model)
    out = _train(model, loss_fn, make_batch, steps, lr, weight_decay, warmup, grad_clip, log,
                 layerwise_decay=layerwise_decay, unfreeze_every=unfreeze_every)
    losses += out["losses"]
    result = evaluate_classifier(clf, val_seqs, val_labels, pad_id, eval_batch_size)
    result.update(train_loss=losses, seconds=time.perf_counter() - t0, ms_per_step=out["ms_per_step"],
                  trainable_params=trainable, total_params=total, classifier=model)
    return result


# ---------------------------------------------------------------------------------------------
# which weights train

def _unwrap(model):
    from .peft import PeftModel
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _backbone(model):
    model = _unwrap(model)
    return getattr(model, "backbone", model)


def _blocks(backbone) -> list:
    for attr in ("blocks", "encoder"):
        if hasattr(backbone, attr):
            return list(getattr(backbone, attr))
    raise TypeError(f"{type(backbone).__name__} has no transformer blocks (.blocks or .encoder)")


def layer_groups(model) -> List[Tuple[str, list]]:
    """The parameters of a GPT/BERT/T5 (or a classifier on one) as layers, bottom to top:
    ``("embeddings", ...)``, ``("blocks.0", ...)``, ..., ``("top", ...)`` (the final LayerNorm,
    the head and anything else). A tied embedding/head counts once, as an embedding."""
    backbone = _backbone(model)
    groups, seen = [], set()

    def take(name, modules):
        params = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        groups.append((name, params))
    take("embeddings", [getattr(backbone, a) for a in ("wte", "wpe", "enc_wpe") if hasattr(backbone, a)])
    for i, block in enumerate(_blocks(backbone)):
        take(f"blocks.{i}", [block])
    take("top", [_unwrap(model)])
    return groups


def freeze(model, n_blocks: int):
    """Freeze (``requires_grad = False``) the embeddings and the lowest ``n_blocks`` transformer
    blocks of ``model`` (a GPT/BERT/T5 or a classifier on one); the rest is left as it is.
    With GPT's tied embeddings the output layer is frozen with them. Returns ``model``."""
    blocks = _blocks(_backbone(model))
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) or not 0 <= n_blocks <= len(blocks):
        raise ValueError(f"freeze: n_blocks must be an integer in [0, {len(blocks)}] (the model has "
                         f"{len(blocks)} blocks), got {n_blocks!r}")
    for _, params in layer_groups(model)[:1 + n_blocks]:
        for p in params:
            p.requires_grad = False
    return model


def layerwise_param_groups(model, lr: float, decay: float = 2.6, weight_decay: float = 0.0) -> list:
    """ULMFiT's discriminative fine-tuning (Howard & Ruder 2018, eq. 2 and §3.2): the top layer
    group gets ``lr`` and each group below it the rate of the one above divided by ``decay``,
    η^(l−1) = η^l / 2.6, so layer group l (0 = embeddings, L = top) gets lr / decay^(L − l).

    Returns optimizer parameter groups (the trainable parameters only), each with ``"lr"``,
    ``"lr_scale"`` (what :func:`minillm.training_step.set_lr` multiplies a schedule's rate by),
    ``"weight_decay"`` (minillm's policy: weight matrices only) and ``"name"``."""
    from .regularizers.penalties import decay_parameters
    if not lr > 0:
        raise ValueError(f"layerwise_param_groups: lr must be > 0, got {lr}")
    if not decay > 0:
        raise ValueError(f"layerwise_param_groups: decay must be > 0, got {decay}")
    decayed = {id(p) for p in decay_parameters(_unwrap(model))}
    groups = layer_groups(model)
    out = []
    for depth, (name, params) in enumerate(reversed(groups)):
        scale = float(decay) ** -depth
        trainable = [p for p in params if p.requires_grad]
        for wd, members in ((weight_decay, [p for p in trainable if id(p) in decayed]),
                            (0.0, [p for p in trainable if id(p) not in decayed])):
            if members:
                out.append({"params": members, "lr": lr * scale, "lr_scale": scale, "weight_decay": wd,
                            "name": name})
    if not out:
        raise ValueError("layerwise_param_groups: the model has no trainable parameter")
    return out


class GradualUnfreezing:
    """ULMFiT's gradual unfreezing (Howard & Ruder 2018, §3.3): start with only the top layer
    group trainable and unfreeze the next group down every ``steps_per_stage`` steps.
    ``step(iteration)`` sets ``requires_grad`` for that iteration and returns how many groups
    train. Build the optimizer over every parameter: a frozen one simply gets no gradient."""

    def __init__(self, model, steps_per_stage: int):
        if isinstance(steps_per_stage, bool) or not isinstance(steps_per_stage, (int, np.integer)) \
                or steps_per_stage < 1:
            raise ValueError(f"GradualUnfreezing: steps_per_stage must be a positive integer, got {steps_per_stage!r}")
        self.groups = list(reversed(layer_groups(model)))     # top first
        self.steps_per_stage = int(steps_per_stage)
        self.step(0)

    def step(self, iteration: int) -> int:
        k = min(len(self.groups), 1 + iteration // self.steps_per_stage)
        for i, (_, params) in enumerate(self.groups):
            for p in params:
                p.requires_grad = i < k
        return k


def count_parameters(model) -> Tuple[int, int]:
    """(trainable parameters, all parameters)."""
    params = list(model.parameters())
    return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)


def trainable_groups(model, weight_decay: float) -> list:
    """minillm's weight-decay groups (:func:`minillm.regularizers.param_groups`) restricted to
    the parameters with ``requires_grad``; ValueError when nothing would train."""
    from .regularizers.penalties import param_groups
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in param_groups(_unwrap(model),
                                                                                               weight_decay)]
    if not any(g["params"] for g in groups):
        raise ValueError("nothing to train: every parameter has requires_grad=False")
    return [g for g in groups if g["params"]]


def _head_modules(model):
    """The head a linear probe trains: a classifier's ``head``; a GPT's final LayerNorm and its
    (tied) output embedding."""
    model = _unwrap(model)
    if hasattr(model, "head"):
        return [model.head]
    if hasattr(model, "ln_f") and hasattr(model, "wte"):
        return [model.ln_f, model.wte]
    raise TypeError(f"linear probe: do not know the head of a {type(model).__name__}")


def prepare_model(model, method: str, *, freeze_blocks: int = 0, peft_config=None):
    """Set which weights of ``model`` train for ``method`` (see the module docstring) and return
    the model to train: ``model`` itself, or a :class:`minillm.peft.PeftModel` wrapping it for
    "lora", "adapter" and "reft" (default configs: ``LoraConfig(r=8, lora_alpha=16)``,
    ``AdapterConfig()``, ``ReftConfig()``; a classifier's ``head`` joins ``modules_to_save``).
    "lp-ft" prepares its first stage, the linear probe."""
    from . import peft
    if method not in METHODS:
        raise ValueError(f"unknown fine-tuning method {method!r}; choose one of {METHODS}")
    if method == "full":
        model.requires_grad_(True)
    elif method == "freeze":
        model.requires_grad_(True)
        freeze(model, freeze_blocks)
    elif method in ("linear-probe", "lp-ft"):
        model.requires_grad_(False)
        for m in _head_modules(model):
            m.requires_grad_(True)
    else:
        kinds = {"lora": peft.LoraConfig, "adapter": peft.AdapterConfig, "reft": peft.ReftConfig}
        if peft_config is None:
            peft_config = peft.LoraConfig(r=8, lora_alpha=16) if method == "lora" else kinds[method]()
        if not isinstance(peft_config, kinds[method]):
            raise TypeError(f"method {method!r} needs a {kinds[method].__name__}, got {type(peft_config).__name__}")
        if hasattr(model, "head"):
            import copy
            peft_config = copy.copy(peft_config)
            peft_config.modules_to_save = sorted(set(peft_config.modules_to_save or []) | {"head"})
        return peft.get_peft_model(model, peft_config)
    return model


def _train(model, loss_fn, make_batch, steps, lr, weight_decay, warmup, grad_clip, log=None,
           layerwise_decay=None, unfreeze_every=None) -> dict:
    """``steps`` AdamW steps of warmup + cosine decay (to lr / 10) on ``make_batch()`` batches."""
    from .optim import AdamW, cosine_with_warmup_lr
    if steps < 1:
        raise ValueError(f"fine-tuning needs steps >= 1, got {steps}")
    unfreezer = None
    if unfreeze_every:
        model.requires_grad_(True)
        unfreezer = GradualUnfreezing(model, unfreeze_every)
        model.requires_grad_(True)   # the optimizer holds every group; the unfreezer gates gradients
    if layerwise_decay:
        groups = layerwise_param_groups(model, lr, layerwise_decay, weight_decay)
    else:
        groups = trainable_groups(model, weight_decay)
    optimizer = AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    if unfreezer is not None:
        unfreezer.step(0)
    warmup = max(1, steps // 10) if warmup is None else warmup
    step = TrainingStep(model, optimizer, loss_fn, lambda it: cosine_with_warmup_lr(it, lr, lr / 10, warmup, steps),
                        grad_clip)
    losses = []
    model.train()
    t0 = time.perf_counter()
    for it in range(steps):
        if unfreezer is not None:
            unfreezer.step(it)
        losses.append(step(it, make_batch()).loss)
        if log and (it + 1) % 50 == 0:
            log(f"  finetune step {it + 1}/{steps}: loss {np.mean(losses[-50:]):.3f}")
    if unfreezer is not None:
        model.requires_grad_(True)
    return {"losses": losses, "ms_per_step": 1000 * (time.perf_counter() - t0) / steps}


def finetune_lm(model, train_data, *, method: str = "full", steps: int = 200, batch_size: int = 16,
                block_size: Optional[int] = None, lr: float = 1e-3, weight_decay: float = 0.0,
                warmup: Optional[int] = None, grad_clip: float = 1.0, seed: int = 0, freeze_blocks: int = 0,
                peft_config=None, probe_steps: Optional[int] = None, probe_lr: Optional[float] = None,
                layerwise_decay: Optional[float] = None, log: Optional[Callable] = None) -> dict:
    """Continue training the language model ``model`` (a GPT, changed in place) on the 1-D token
    array ``train_data`` with ``method`` (one of :data:`METHODS`; "linear-probe" trains the final
    LayerNorm and the tied output embedding). Random windows of ``block_size`` tokens, next-token
    cross-entropy. Returns ``{"model" (the GPT or its PeftModel), "train_loss", "ms_per_step",
    "trainable_params", "total_params", "seconds"}``."""
    from .data import get_batch
    if method not in METHODS:
        raise ValueError(f"finetune_lm: unknown method {method!r}; choose one of {METHODS}")
    backend.manual_seed(seed)
    device = model.wte.weight.device
    block_size = block_size or model.config.block_size
    if len(train_data) <= block_size:
        raise ValueError(f"finetune_lm: {len(train_data)} tokens of training data, need more than block_size "
                         f"{block_size}")
    rng = np.random.default_rng([seed, FINETUNE_ORDER_STREAM])
    if method == "reft" and peft_config is None:
        from .peft import ReftConfig
        peft_config = ReftConfig(positions="all")   # a language model predicts at every position
    peft_model = prepare_model(model, "linear-probe" if method == "lp-ft" else method,
                               freeze_blocks=freeze_blocks, peft_config=peft_config)

    def make_batch():
        x, y = get_batch(train_data, batch_size, block_size, rng)
        return tensor(x, device=device), tensor(y, device=device)

    def loss_fn(x, y):
        return peft_model(x, y)[1]

    t0 = time.perf_counter()
    losses = []
    if method == "lp-ft":
        losses += _train(peft_model, loss_fn, make_batch, probe_steps or steps, probe_lr or lr, 0.0, warmup,
                         grad_clip, log)["losses"]
        model.requires_grad_(True)
    trainable, total = count_parameters(peft_model)
    out = _train(peft_model, loss_fn, make_batch, steps, lr, weight_decay, warmup, grad_clip, log,
                 layerwise_decay=layerwise_decay)
    peft_model.eval()
    return {"model": peft_model, "train_loss": losses + out["losses"], "ms_per_step": out["ms_per_step"],
            "trainable_params": trainable, "total_params": total, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# WiSE-FT

def interpolate(model_0, model_1, alpha: float):
    """WiSE-FT's weight-space ensemble (Wortsman et al. 2022, eq. 1):
    θ_α = (1 − α)·θ₀ + α·θ₁ for every parameter and floating-point buffer.

    Returns a new model (a deep copy of ``model_0`` with the interpolated weights): α = 0 is
    ``model_0`` exactly, α = 1 ``model_1`` exactly. Both must have the same architecture (same
    class, parameter names and shapes), else ValueError naming the first difference; merge or
    unload PEFT models first."""
    import copy
    import math
    from .peft import PeftModel
    for m in (model_0, model_1):
        if isinstance(m, PeftModel):
            raise TypeError("interpolate: got a PeftModel; call merge_and_unload() (LoRA) first so that both "
                            "models are plain models of the same architecture")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not math.isfinite(alpha):
        raise ValueError(f"interpolate: alpha must be a finite number, got {alpha!r}")
    if type(model_0) is not type(model_1):
        raise ValueError(f"interpolate: different architectures ({type(model_0).__name__} vs "
                         f"{type(model_1).__name__})")
    s0, s1 = model_0.state_dict(), model_1.state_dict()
    if list(s0) != list(s1):
        only0, only1 = [k for k in s0 if k not in s1], [k for k in s1 if k not in s0]
        raise ValueError(f"interpolate: different architectures: parameters only in model_0 {only0[:5]}, "
                         f"only in model_1 {only1[:5]}")
    for k in s0:
        if s0[k].shape != s1[k].shape:
            raise ValueError(f"interpolate: different architectures: {k!r} is {s0[k].shape} in model_0 and "
                             f"{s1[k].shape} in model_1")
    out = copy.deepcopy(model_0)
    alpha = float(alpha)
    state = {}
    for k in s0:
        a, b = s0[k].data, backend.to_device(s1[k].data, backend.device_of(s0[k].data))
        if a.dtype.kind != "f" or alpha == 0.0:
            state[k] = a
        elif alpha == 1.0:
            state[k] = b
        else:
            state[k] = (1.0 - alpha) * a + alpha * b
    out.load_state_dict(state)
    return out


# ---------------------------------------------------------------------------------------------
# weak supervision

#: what a labeling function returns when it has no opinion
ABSTAIN = -1


def apply_labeling_functions(texts: Sequence[str], lfs: Sequence[Callable[[str], int]]) -> np.ndarray:
    """The (N, L) int64 matrix of votes of ``lfs`` (each ``text -> label or ABSTAIN``) on ``texts``
    (Ratner et al. 2017, Snorkel's label matrix)."""
    if not lfs:
        raise ValueError("apply_labeling_functions: no labeling function")
    return np.array([[int(lf(t)) for lf in lfs] for t in texts], dtype=np.int64).reshape(len(texts), len(lfs))


def majority_vote(votes: np.ndarray, num_classes: int) -> np.ndarray:
    """One weak label per row of ``votes`` (N, L): the class with the most non-abstaining votes,
    ABSTAIN where every function abstains or the top classes tie."""
    votes = np.asarray(votes)
    out = np.full(len(votes), ABSTAIN, dtype=np.int64)
    for i, row in enumerate(votes):
        row = row[row != ABSTAIN]
        if len(row) == 0:
            continue
        counts = np.bincount(row, minlength=num_classes)
        top = np.flatnonzero(counts == counts.max())
        if len(top) == 1:
            out[i] = top[0]
    return out


def predict_proba(clf, seqs, pad_id: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, C) of a classifier (eval mode, no grad): the softmax of its
    logits, computed in float64."""
    logits = classifier_logits(clf, seqs, pad_id, batch_size).astype(np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def self_training(make_backbone: Callable, train_seqs, weak_labels, val_seqs, val_labels, *, num_classes: int,
                  pad_id: int, rounds: int = 1, threshold: float = 0.9, **finetune_kwargs) -> dict:
    """Fine-tune on the weakly labelled examples (``weak_labels`` != ABSTAIN), then ``rounds``
    times: label every training example the model is confident about (max probability ≥
    ``threshold``) with its own prediction, keep the weak labels elsewhere, and fine-tune a fresh
    backbone (``make_backbone()``) on the union (self-training; Yarowsky 1995, Lee 2013).
    Returns the last :func:`finetune` result plus ``coverage`` (labelled share per round)."""
    weak = np.asarray(weak_labels, dtype=np.int64)
    labels = weak.copy()
    coverage = []
    result = None
    for r in range(rounds + 1):
        keep = np.flatnonzero(labels != ABSTAIN)
        if len(keep) == 0:
            raise ValueError("self_training: no example has a label (every labeling function abstained)")
        coverage.append(len(keep) / len(labels))
        result = finetune(make_backbone(), [train_seqs[i] for i in keep], labels[keep], val_seqs, val_labels,
                          num_classes=num_classes, pad_id=pad_id, **finetune_kwargs)
        if r == rounds:
            break
        probs = predict_proba(result["classifier"], train_seqs, pad_id)
        confident = probs.max(1) >= threshold
        labels = np.where(confident, probs.argmax(1), weak)
    result["coverage"] = coverage
    return result

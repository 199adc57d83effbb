"""Shared code for the text lessons (07 activation regularization, 08 data augmentation,
10 ensembles): a bag-of-words genre classifier for Shakespeare's speeches, and a small
character-level language-model training loop.

Two controlled experiments on real text, both built from minillm only (no PyTorch):

* **Genre classification** (lesson 08). ``load_speeches`` gives speeches labelled with their
  play's genre (comedy, history, ...); the validation speeches come from *other plays*. A
  speech becomes a TF-IDF vector over a fixed vocabulary (one weight per word it contains),
  and a small MLP on top of it predicts the genre::

      vocab = Vocabulary.fit(train_texts, max_size=4000)
      X = vocab.bow(texts)                  # (N, V) TF-IDF rows of unit length
      model = BagOfWordsClassifier(len(vocab), num_classes=6)

  ``Linear(V, E, bias=False)`` applied to such a row is a weighted sum of the speech's word
  embeddings (the columns of the weight): an "embedding bag" (as in fastText, Joulin et al.
  2017), here written as one matrix product.

* **Character-level language modelling** (lesson 07). A slice of the corpus becomes an array
  of character ids; :func:`train_char_lm` trains a ``GPT`` on random windows of it with Adam and
  records the training and validation loss as it goes; an optional ``penalty()`` callback adds
  a regularization term (AR/TAR) to every step's loss.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from typing import Callable, Optional, Sequence

import numpy as np

import minillm
from minillm import nn
from minillm.nn import functional as F

# --------------------------------------------------------------------------- words

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list:
    """Lower-cased words of ``text`` (letters, with inner apostrophes: ``know't``)."""
    return _WORD_RE.findall(text.lower())


class Vocabulary:
    """The ``max_size`` most frequent words of some texts (seen at least ``min_count`` times),
    with their inverse document frequencies for TF-IDF features.

    Out-of-vocabulary words are simply ignored by :meth:`bow`: a bag of words has no slot for
    them, and counting them would only add noise.
    """

    def __init__(self, itos: Sequence[str], idf: Optional[np.ndarray] = None):
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.idf = np.ones(len(self.itos), dtype=np.float32) if idf is None else np.asarray(idf, np.float32)

    @classmethod
    def fit(cls, texts: Sequence[str], max_size: int = 4000, min_count: int = 1) -> "Vocabulary":
        """Keep the most frequent words of ``texts``; idf(w) = log((1 + N) / (1 + df(w))) + 1,
        with df(w) the number of texts that contain w (scikit-learn's smoothed idf)."""
        counts, df = Counter(), Counter()
        for t in texts:
            ws = words(t)
            counts.update(ws)
            df.update(set(ws))
        # most_common breaks ties by first appearance: deterministic for a given input
        itos = [w for w, c in counts.most_common(max_size) if c >= min_count]
        idf = np.array([np.log((1 + len(texts)) / (1 + df[w])) + 1 for w in itos], dtype=np.float32)
        return cls(itos, idf)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list:
        """Word ids of the in-vocabulary words of ``text``, in order."""
        return [self.stoi[w] for w in words(text) if w in self.stoi]

    def bow(self, texts: Sequence[str]) -> np.ndarray:
        """(N, V) float32 TF-IDF matrix: x[n, w] = (1 + log count) · idf(w) for the words of
        text n, each row scaled to unit length. The log damps words repeated within a speech,
        the idf down-weights words every speech uses ("the", "and"), and the unit length
        makes long and short speeches comparable."""
        X = np.zeros((len(texts), len(self)), dtype=np.float32)
        for n, t in enumerate(texts):
            ids, cnt = np.unique(self.encode(t), return_counts=True)
            if len(ids):
                v = (1.0 + np.log(cnt)) * self.idf[ids]
                X[n, ids] = v / np.linalg.norm(v)
        return X


class BagOfWordsClassifier(nn.Module):
    """Embedding bag + MLP: x (N, V) TF-IDF rows -> logits (N, num_classes).

        e = x E            a weighted sum of the text's word embeddings  (E: V × embed_dim)
        h = ReLU(e W₁ + b₁)
        logits = Dropout(h) W₂ + b₂
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Linear(vocab_size, embed_dim, bias=False)  # column j = embedding of word j
        self.hidden = nn.Linear(embed_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)
        # The embeddings keep Linear's default init U(±1/√V), i.e. tiny: the network starts
        # close to a linear model and grows features slowly. (With N(0, 1) embeddings, as
        # nn.Embedding would give, e is a big random projection of the input and the MLP
        # memorizes the training speeches within two epochs, at a much worse val accuracy.)

    def forward(self, x):
        h = F.relu(self.hidden(self.embed(x)))
        return self.out(self.drop(h))


def text_dataset(train_texts, y_train, val_texts, y_val, vocab: Vocabulary) -> dict:
    """The dict that ``lesson_utils.train_classifier`` expects, from texts and labels."""
    return {"X_train": vocab.bow(train_texts), "y_train": np.asarray(y_train, dtype=np.int64),
            "X_val": vocab.bow(val_texts), "y_val": np.asarray(y_val, dtype=np.int64)}


def predict_proba(model, X: np.ndarray, batch_size: int = 1024, training: bool = False) -> np.ndarray:
    """Class probabilities (N, C) of ``model`` on ``X``, without a graph; in eval mode, or in
    training mode (dropout on: one random mask per call) with ``training=True``.

    The softmax is taken in float64 on the model's logits: an overconfident model can give the
    true class a probability below float32's smallest number (~1e-45), which would round to 0
    and make its log-loss infinite."""
    was_training = model.training
    model.train(training)
    with minillm.no_grad():
        logits = np.concatenate([model(minillm.tensor(X[i:i + batch_size])).numpy()
                                 for i in range(0, len(X), batch_size)])
        probs = F.softmax(minillm.tensor(logits, dtype=minillm.float64), dim=-1).numpy()
    model.train(was_training)
    return probs


# --------------------------------------------------------------------------- characters

def char_data(n_train: int = 20_000, n_val: int = 20_000, offset: int = 0):
    """A small slice of the Shakespeare corpus as character ids.

    Returns ``(tokenizer, train_ids, val_ids)``: the first ``n_train`` characters of the
    training plays after ``offset``, and the first ``n_val`` characters of the held-out plays
    (other plays, so the validation text is genuinely unseen). The tokenizer knows every
    character of the whole corpus, so both slices encode.
    """
    from minillm.data import CharTokenizer, load_corpus

    train_text, val_text = load_corpus()
    tok = CharTokenizer.from_text(train_text + val_text)
    train_ids = tok.encode_array(train_text[offset:offset + n_train]).astype(np.int64)
    val_ids = tok.encode_array(val_text[:n_val]).astype(np.int64)
    return tok, train_ids, val_ids


def lm_loss(model, ids: np.ndarray, block_size: int, batch_size: int = 64,
            max_batches: Optional[int] = None) -> float:
    """Mean next-character cross-entropy (nats) of ``model`` on ``ids``: non-overlapping windows
    in order (deterministic), eval mode (dropout off), no graph. Restores the mode after."""
    from minillm.data import sequential_batches

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with minillm.no_grad():
        for b, (x, y) in enumerate(sequential_batches(ids, batch_size, block_size)):
            if max_batches is not None and b >= max_batches:
                break
            _, loss = model(minillm.tensor(x), minillm.tensor(y))
            total += loss.item() * y.size
            count += y.size
    model.train(was_training)
    return total / count


def train_char_lm(model, train_ids: np.ndarray, val_ids: np.ndarray, steps: int, batch_size: int = 32,
                  lr: float = 3e-3, eval_every: int = 50, eval_batches: Optional[int] = 8, seed: int = 0,
                  penalty: Optional[Callable[[], object]] = None, weight_decay: float = 0.0,
                  verbose: bool = False) -> dict:
    """Train a character-level ``GPT`` with Adam on random windows of ``train_ids``.

    Every step draws ``batch_size`` random windows (``get_batch`` with a generator seeded by
    ``seed``: runs with the same seed see the same batches), computes the cross-entropy, adds
    ``penalty()`` if given (a scalar Tensor computed from the forward pass that just ran, e.g.
    an ``ActivationRegularizer``'s AR/TAR term), and takes one Adam step.

    Every ``eval_every`` steps (and at the end) it measures the loss on the first
    ``eval_batches`` batches of training and of validation windows with :func:`lm_loss`.

    Returns a history dict: lists ``step``, ``train_loss``, ``val_loss`` (evaluations),
    ``penalty`` (mean penalty over the last ``eval_every`` steps, 0 without one) and ``seconds``.
    """
    from minillm.data import get_batch

    block_size = model.config.block_size
    rng = np.random.default_rng(seed)
    opt = minillm.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    hist = {"step": [], "train_loss": [], "val_loss": [], "penalty": []}
    pen_sum, pen_n = 0.0, 0
    start = time.perf_counter()
    model.train()

    def evaluate(step):
        hist["step"].append(step)
        hist["train_loss"].append(lm_loss(model, train_ids, block_size, max_batches=eval_batches))
        hist["val_loss"].append(lm_loss(model, val_ids, block_size, max_batches=eval_batches))
        hist["penalty"].append(pen_sum / max(pen_n, 1))
        if verbose:
            print(f"step {step:5d}  train {hist['train_loss'][-1]:.4f}  val {hist['val_loss'][-1]:.4f}")

    for step in range(1, steps + 1):
        x, y = get_batch(train_ids, batch_size, block_size, rng)
        _, loss = model(minillm.tensor(x), minillm.tensor(y))
        if penalty is not None:
            p = penalty()
            pen_sum, pen_n = pen_sum + float(p.item()), pen_n + 1
            loss = loss + p
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            evaluate(step)
            pen_sum, pen_n = 0.0, 0
    hist["seconds"] = time.perf_counter() - start
    return hist

"""Teacher's solutions for lesson 08 (text data augmentation, EDA)."""
import numpy as np

from minillm.augment import eda


def exercise_1(words, n, seed):
    """Random swap: n times, swap two distinct random positions."""
    rng = np.random.default_rng(seed)
    new = list(words)
    if len(new) < 2:
        return new
    for _ in range(n):
        i, j = rng.choice(len(new), size=2, replace=False)
        new[i], new[j] = new[j], new[i]
    return new


def exercise_2(words, p, seed):
    """Random deletion with probability p; if every word goes, keep one at random."""
    rng = np.random.default_rng(seed)
    if len(words) <= 1:
        return list(words)
    keep = rng.random(len(words)) >= p
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return [w for w, k in zip(words, keep) if k]


def exercise_3(texts, labels, num_aug, seed):
    """Each original followed by num_aug EDA copies, all with the original's label."""
    rng = np.random.default_rng(seed)
    out_texts, out_labels = [], []
    for text, label in zip(texts, labels):
        copies = eda(text, synonyms=None, alpha_sr=0, alpha_ri=0, num_aug=num_aug, seed=rng)
        out_texts += [text] + copies
        out_labels += [label] * (1 + len(copies))
    return out_texts, out_labels

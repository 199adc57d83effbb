"""Regularization: everything that trades a little training fit for better generalization.

One small file per idea, each with its equations and paper:

* ``penalties.py`` — L1 (λ·Σ|w|) and L2 ((λ/2)·Σw²) penalties added to the loss, and the
  decay / no-decay split of a model's parameters for an optimizer's parameter groups
  (``param_groups(model, weight_decay)``: weight matrices only). L2 under SGD is weight decay;
  under Adam it is not — use AdamW (Loshchilov & Hutter, 2019).
* ``dropout.py`` — the transformer's dropout variants: attention-probability dropout,
  residual dropout, embedding (whole-word) dropout, word/token dropout.
* ``activation.py`` — AR and TAR, penalties on a layer's activations (Merity et al., 2017),
  attachable to any module with a forward hook (``ActivationRegularizer``).
* ``early_stopping.py`` — ``EarlyStopping``: stop when validation stops improving and restore
  the best weights.
* ``ensemble.py`` — ``Ensemble``, ``evaluate_members``, ``snapshot_ensemble``: average the
  predictions of several models (or of several checkpoints of one run).

Two regularizers live elsewhere because they belong to the loss and the optimizer step:

* **label smoothing** (Szegedy et al., 2016): ``F.cross_entropy(logits, y, label_smoothing=ε)``
  trains against (1 − ε)·onehot(y) + ε/C instead of the one-hot target, so the model is never
  pushed towards infinitely confident logits.
* **gradient clipping** (Pascanu et al., 2013): ``nn.utils.clip_grad_norm_(params, max_norm)``
  (also ``minillm.optim.clip_grad_norm_``) rescales the gradients when their joint norm is too
  large, right before ``optimizer.step()``; it stabilizes training rather than shrinking
  weights, but one bad batch can no longer undo many good ones.

Plain dropout is ``nn.Dropout`` / ``F.dropout``; weight decay itself is the optimizers'
``weight_decay`` (``SGD``, ``Adam``: coupled L2; ``AdamW``: decoupled).
"""
from .activation import ActivationRegularizer, ar_penalty, tar_penalty
from .dropout import (AttentionDropout, EmbeddingDropout, ResidualDropout, embedding_dropout, embedding_row_mask,
                      word_dropout)
from .early_stopping import EarlyStopping, copy_state_dict
from .ensemble import Ensemble, combine_outputs, evaluate_members, snapshot_ensemble
from .penalties import (decay_parameter_names, decay_parameters, l1_penalty, l2_penalty, no_decay_parameters,
                        param_groups)

__all__ = ["l1_penalty", "l2_penalty", "decay_parameters", "no_decay_parameters", "decay_parameter_names",
           "param_groups", "AttentionDropout", "ResidualDropout", "embedding_dropout", "embedding_row_mask",
           "EmbeddingDropout", "word_dropout", "ar_penalty", "tar_penalty", "ActivationRegularizer",
           "EarlyStopping", "copy_state_dict", "Ensemble", "combine_outputs", "evaluate_members",
           "snapshot_ensemble"]

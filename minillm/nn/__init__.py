"""Neural-network building blocks, named as in ``torch.nn``."""
from . import functional, init
from .layers import (GELU, MLP, BatchNorm1d, Dropout, Embedding, Identity, LayerNorm, Linear,
                     MultiHeadAttention, ReLU, Tanh, TransformerBlock)
from .module import Module, ModuleList, Parameter, Sequential
from .utils import clip_grad_norm_, clip_grad_value_

__all__ = ["functional", "init", "Module", "ModuleList", "Parameter", "Sequential", "Identity", "Linear",
           "Embedding", "LayerNorm", "BatchNorm1d", "Dropout", "GELU", "ReLU", "Tanh", "MultiHeadAttention",
           "MLP", "TransformerBlock", "clip_grad_norm_", "clip_grad_value_"]

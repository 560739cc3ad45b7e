""" Model sizes as the paper's Table 1 counts them. """
from typing import Any

import torch
import torch.nn as nn

__all__ = ['state_dict_mb', 'paper_size_mb']


def state_dict_mb(model: nn.Module) -> float:
    """Float32 state-dict size in decimal MB: parameters and BN running statistics (not the batch counters)."""
    numel = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith('num_batches_tracked'))
    return numel * 4 / 1e6


def paper_size_mb(model_name: str, **kwargs: Any) -> float:
    """A zoo model's size in Table 1's convention: the paper's 128-d head and a 625-way (MARS) classifier.

    The model is built on the meta device: nothing is allocated or initialised.
    """
    from ._factory import create_model
    kwargs = dict(dict(head='paper', embed_dim=128, num_classes=625), **kwargs)
    with torch.device('meta'):
        model = create_model(model_name, pretrained=False, **kwargs)
    return state_dict_mb(model)

""" Inflation of 2D ImageNet ResNet weights into the video ResNets.

The video ResNets keep torchvision's parameter names, so inflation is a per-key reshape: a 2D kernel (O, I, kh, kw)
becomes (O, I, kt, kh, kw). 'center' puts it at the middle tap with zeros around (the 3D net computes what the 2D net
did on each frame); 'mean' repeats it over kt taps divided by kt (I3D's "boring video" inflation).

Only the parameters that have no 2D counterpart keep their initial values: temporal kernels, attention layers and the
ReID head. Anything else that does not line up is an error naming the keys, never a silent partial load.
"""
import re
from typing import Dict, List

import torch
import torch.nn as nn

__all__ = ['inflate_kernel', 'inflate_state_dict', 'is_new_key', 'PretrainedMismatchError']

# Parameters new to the video model (no 2D counterpart); they keep their initial values.
_NEW_KEY = re.compile(r'^stem_temporal\.|(^|\.)temporal\.|^ral\d+\.|^head\.')
# ImageNet classifier of the 2D source; the ReID head replaces it.
_DROPPED_2D_KEY = re.compile(r'^(fc|head\.fc|classifier)\.')


class PretrainedMismatchError(RuntimeError):
    """A 2D checkpoint does not fit the video model it is inflated into."""


def is_new_key(key: str) -> bool:
    """Whether a video-model parameter has no 2D counterpart (temporal, attention or head)."""
    return bool(_NEW_KEY.search(key))


def inflate_kernel(weight: torch.Tensor, time_dim: int, inflation: str = 'center') -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, time_dim, kh, kw)."""
    if inflation == 'center':
        out = weight.new_zeros(weight.shape[:2] + (time_dim,) + weight.shape[2:])
        out[:, :, time_dim // 2] = weight
        return out
    if inflation == 'mean':
        return weight.unsqueeze(2).repeat(1, 1, time_dim, 1, 1) / time_dim
    raise ValueError(f"Unknown inflation '{inflation}', expected 'center' or 'mean'.")


def _fmt(keys: List[str], limit: int = 8) -> str:
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def inflate_state_dict(
        state_dict: Dict[str, torch.Tensor],
        model: nn.Module,
        inflation: str = 'center',
) -> Dict[str, torch.Tensor]:
    """Build a complete state dict for `model` from a 2D ResNet state dict.

    Args:
        state_dict: 2D ResNet weights with torchvision/timm names (conv1, bn1, layer1.0.conv1, ..., fc).
        model: The video model; its own values fill the keys new to it.
        inflation: 'center' or 'mean'.

    Returns:
        A state dict with every key of `model`, loadable with `strict=True`.

    Raises:
        PretrainedMismatchError: a backbone key missing from the 2D weights, a 2D key the model has no place for, or
            a shape that does not inflate to the model's.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}
    target = model.state_dict()
    out, used = {}, set()
    missing, mismatched = [], []
    for key, value in target.items():
        if is_new_key(key):
            out[key] = value
            continue
        if key not in state_dict:
            if key.endswith('num_batches_tracked'):
                out[key] = value  # a counter, not a weight; many 2D checkpoints drop it
            else:
                missing.append(key)
            continue
        weight = state_dict[key]
        used.add(key)
        if weight.ndim == 4 and value.ndim == 5:
            weight = inflate_kernel(weight, value.shape[2], inflation)
        if weight.shape != value.shape:
            mismatched.append(f'{key}: checkpoint {tuple(weight.shape)} vs model {tuple(value.shape)}')
            continue
        out[key] = weight.to(value.dtype)
    unexpected = [k for k in state_dict if k not in used and not _DROPPED_2D_KEY.match(k)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f'{len(missing)} backbone keys missing from the checkpoint: {_fmt(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} checkpoint keys with no place in the model: {_fmt(unexpected)}')
        if mismatched:
            parts.append(f'{len(mismatched)} shapes that do not fit: {_fmt(mismatched)}')
        raise PretrainedMismatchError(
            f'The 2D checkpoint does not fit {type(model).__name__}: ' + '; '.join(parts) + '. Pass the 2D ImageNet '
            'ResNet of the same depth (torchvision/timm parameter names); a trained m3d_zoo model loads with '
            'create_model("local-dir:PATH") or create_model("hf-hub:ORG/NAME").')
    return out


def inflate_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm `pretrained_filter_fn`: inflate with the model's own `inflation` setting.

    A state dict that is already a video model's (timm's own `hf-hub:` path for a saved zoo model) passes unchanged;
    `m3d_zoo.create_model` is the path that also verifies its sha256.
    """
    if any(v.ndim == 5 for v in state_dict.values()):
        return state_dict
    if hasattr(model, 'inflate_pretrained'):
        return model.inflate_pretrained(state_dict)
    return inflate_state_dict(state_dict, model, getattr(model, 'inflation', 'center'))

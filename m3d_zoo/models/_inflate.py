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
from timm.models import clean_state_dict

__all__ = ['inflate_kernel', 'inflate_state_dict', 'is_new_key', 'PretrainedMismatchError', 'PretrainedFileError']

# Parameters new to the video model (no 2D counterpart); they keep their initial values.
_NEW_KEY = re.compile(r'^stem_temporal\.|(^|\.)temporal\.|^ral\d+\.|^head\.')
# ImageNet classifier of the 2D source; the ReID head replaces it.
_DROPPED_2D_KEY = re.compile(r'^(fc|head\.fc|classifier)\.')


class PretrainedMismatchError(RuntimeError):
    """A checkpoint does not fit the video model it is loaded (or inflated) into."""


class PretrainedFileError(ValueError):
    """A pretrained file that cannot be read as a state dict (empty, truncated, or not a checkpoint at all)."""


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
    # a checkpoint saved from DDP or torch.compile; twice, because older timm strips 'module.' before '_orig_mod.'
    # and so leaves the 'module.' of a compiled DDP model ('_orig_mod.module.')
    state_dict = clean_state_dict(clean_state_dict(state_dict))
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
        parts = _mismatch_parts('backbone keys', missing, unexpected, mismatched)
        raise PretrainedMismatchError(
            f'The 2D checkpoint does not fit {type(model).__name__}: ' + '; '.join(parts) + '. Pass the 2D ImageNet '
            'ResNet of the same depth (torchvision/timm parameter names); a trained m3d_zoo model loads with '
            'create_model("local-dir:PATH") or create_model("hf-hub:ORG/NAME").')
    return out


def _mismatch_parts(what_missing: str, missing: List[str], unexpected: List[str], shapes: List[str]) -> List[str]:
    """The clauses of a mismatch message: missing keys, keys with no place in the model, shapes that do not fit."""
    parts = []
    if missing:
        parts.append(f'{len(missing)} {what_missing} missing from the checkpoint: {_fmt(missing)}')
    if unexpected:
        parts.append(f'{len(unexpected)} checkpoint keys with no place in the model: {_fmt(unexpected)}')
    if shapes:
        parts.append(f'{len(shapes)} shapes that do not fit: {_fmt(shapes)}')
    return parts


def check_video_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    """Check that a video model's state dict (5-D kernels), which loads as it is, is this model's key for key.

    timm drops the checkpoint's classifier when `num_classes` differs from the pretrained cfg's, so the classifier
    is compared only when it is kept.

    Raises:
        PretrainedMismatchError: keys missing, unexpected or of another shape, all named.
    """
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    classifiers = cfg.get('classifier') or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    dropped = getattr(model, 'num_classes', None) != cfg.get('num_classes')

    def compared(key: str) -> bool:
        return not (dropped and any(key.startswith(c + '.') for c in classifiers))

    target = model.state_dict()
    missing = [k for k in target if k not in state_dict and compared(k) and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state_dict if k not in target and compared(k)]
    mismatched = [k for k in target if k in state_dict and compared(k) and state_dict[k].shape != target[k].shape]
    if not (missing or unexpected or mismatched):
        return
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(target[k].shape)}' for k in mismatched]
    parts = _mismatch_parts('keys of the model', missing, unexpected, shapes)
    hint = ''
    heads = [k for k in mismatched if any(k.startswith(c + '.') for c in classifiers)]
    if heads:
        n = state_dict[heads[0]].shape[0]
        hint = f' Its classifier has {n} classes: pass num_classes={n} (or num_classes=0 for the embedding model).'
    arch = cfg.get('architecture') or type(model).__name__
    raise PretrainedMismatchError(
        f'The checkpoint holds a video model (5-D kernels), not a 2D ResNet, and it does not fit {arch}: '
        + '; '.join(parts) + f'.{hint} A model saved by m3d_zoo loads with its own architecture and arguments: '
        'create_model("local-dir:FOLDER", pretrained=True) for the folder save_pretrained wrote, or '
        'create_model("hf-hub:ORG/NAME", pretrained=True); pretrained_file takes a 2D ImageNet ResNet of the same '
        'depth, to inflate.')


def inflate_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm `pretrained_filter_fn`: inflate with the model's own `inflation` setting, and record the source.

    A state dict that is already a video model's (timm's own `hf-hub:` path for a saved zoo model) loads as it is,
    once `check_video_state_dict` has found it to be this model's; `m3d_zoo.create_model` is the path that also
    verifies its sha256.
    """
    from ..hub.provenance import pretrained_source, record_weights_source
    video = any(v.ndim == 5 for v in state_dict.values())
    if video:
        check_video_state_dict(state_dict, model)
    elif hasattr(model, 'inflate_pretrained'):
        state_dict = model.inflate_pretrained(state_dict)
    else:
        state_dict = inflate_state_dict(state_dict, model, getattr(model, 'inflation', 'center'))
    # timm calls this filter on every pretrained load, whichever create_model it came through: the one place that
    # knows both where the weights came from (the resolved pretrained_cfg) and whether they were inflated.
    record_weights_source(model, pretrained_source(model.pretrained_cfg, inflated=not video), snapshot=False)
    return state_dict

""" What a model's weights were loaded from: recorded when they are loaded, written by `save_pretrained`.

The record is kept on the model with a fingerprint of the weights, so that weights changed afterwards (trained, or
replaced with load_state_dict) are not passed off as what was loaded.
"""
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from .._io import file_sha256

__all__ = ['RANDOM_INIT', 'pretrained_source', 'record_weights_source', 'recorded_weights_source', 'weights_source']

RANDOM_INIT = 'none (randomly initialised)'
_WEIGHTS_SOURCE = '_m3d_zoo_weights_source'  # model attribute: (source, fingerprint or None)
_FINGERPRINT_VALUES = 16


def pretrained_source(cfg: Dict[str, Any], inflated: Optional[bool] = None) -> str:
    """Where timm loads pretrained weights from, read from a model's resolved pretrained_cfg in timm's order of
    precedence (a state dict, a file, the Hub, a URL).

    Local files are named without their folder, which is no one else's business once the card is public; their
    sha256 says which file it was.

    Args:
        cfg: The model's pretrained_cfg, overlays applied.
        inflated: Whether the weights were 2D and inflated.
    """
    file = cfg.get('file')
    if cfg.get('source') == 'hf-hub' and cfg.get('hf_hub_id'):
        where = f"hf-hub:{cfg['hf_hub_id']}"
    elif cfg.get('source') == 'local-dir' and file:
        where = f'local-dir:{Path(file).name}'
    elif cfg.get('state_dict') is not None:
        where = 'a state dict given in pretrained_cfg'
    elif file:
        where = f'file {Path(file).name}' + (f' (sha256 {file_sha256(file)})' if Path(file).is_file() else '')
    elif cfg.get('hf_hub_id'):
        where = cfg['hf_hub_id'] + (f"/{cfg['hf_hub_filename']}" if cfg.get('hf_hub_filename') else '')
    elif cfg.get('url'):
        where = cfg['url']
    else:
        where = 'pretrained weights of unknown origin'
    return f'{where}, 2D ResNet weights inflated to 3D' if inflated else where


def _fingerprint(model: nn.Module) -> Dict[str, torch.Tensor]:
    """A few evenly spaced values of every floating point tensor of the state dict, as float64 on the CPU.

    Training, load_state_dict or a dtype conversion changes them; moving the model between devices does not.
    """
    out = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.numel() and not value.is_meta:
            flat = value.detach().reshape(-1)
            index = torch.linspace(0, flat.numel() - 1, min(flat.numel(), _FINGERPRINT_VALUES)).round().long()
            out[key] = flat[index.to(flat.device)].to('cpu', torch.float64)
    return out


def record_weights_source(model: nn.Module, source: str, snapshot: bool = True) -> None:
    """Record what the model's weights were loaded from, for the provenance that `save_pretrained` writes.

    Args:
        model: The model, just built or just loaded.
        source: What was loaded, e.g. `RANDOM_INIT`, ``'hf-hub:org/name@<commit>'``.
        snapshot: Also keep a fingerprint of the weights, so that weights changed afterwards (trained, or replaced
            with load_state_dict) are not passed off as `source`.
    """
    object.__setattr__(model, _WEIGHTS_SOURCE, (source, _fingerprint(model) if snapshot else None))


def recorded_weights_source(model: nn.Module) -> Optional[str]:
    """The source recorded by `record_weights_source`, as recorded (None if none was)."""
    record = getattr(model, _WEIGHTS_SOURCE, None)
    return record[0] if record is not None else None


def weights_source(model: nn.Module) -> str:
    """What the model's weights were loaded from, and whether they changed since; 'unknown ...' if not recorded."""
    record = getattr(model, _WEIGHTS_SOURCE, None)
    if record is None:
        return 'unknown (not recorded: the model was not built by m3d_zoo.create_model)'
    source, before = record
    if before is not None:
        now = _fingerprint(model)
        # Keys present in both: a classifier reset or fuse() adds and drops tensors without changing the others.
        if any(not torch.equal(before[k], now[k]) for k in before.keys() & now.keys()):
            return f'{source}, changed since (trained, converted, or other weights loaded into it)'
    return source

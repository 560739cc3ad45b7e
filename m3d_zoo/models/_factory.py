""" The zoo's public entry points, on top of timm's registry.

Zoo models are registered in timm's global registry (so `timm.create_model('m3d_resnet50')` works after
`import m3d_zoo`); these functions list and build only the zoo's, and fail with suggestions on an unknown name.
"""
import difflib
import os
from typing import Any, List, Optional, Union

import torch.nn as nn
import timm
from timm.models import parse_model_name, split_model_name_tag

__all__ = ['create_model', 'list_models', 'list_pretrained', 'is_model', 'UnknownModelError', 'ZOO_MODULES']

# Module (file) names of the model families; timm's registry groups models by them.
ZOO_MODULES = ('c2d', 'i3d', 'p3d', 'm3d', 'two_stream')


class UnknownModelError(ValueError):
    """A model name (or pretrained tag) that the zoo does not have."""


def list_models(filter: Union[str, List[str]] = '', pretrained: bool = False, **kwargs) -> List[str]:
    """Names of the zoo's models, optionally filtered by wildcard (e.g. 'm3d_*') and to those with pretrained tags."""
    return timm.list_models(filter, module=list(ZOO_MODULES), pretrained=pretrained, **kwargs)


def list_pretrained(filter: Union[str, List[str]] = '') -> List[str]:
    """`name.tag` of every zoo model with pretrained weights (ImageNet inflation sources and ReID-trained weights)."""
    return timm.list_models(filter, module=list(ZOO_MODULES), pretrained=True, include_tags=True)


def is_model(model_name: str) -> bool:
    """Whether `model_name` (optionally with a `.tag`) is a zoo model."""
    return split_model_name_tag(model_name)[0] in list_models()


def _check_name(model_name: str) -> None:
    base, tag = split_model_name_tag(model_name)
    names = list_models()
    if base not in names:
        near = difflib.get_close_matches(base, names, n=3, cutoff=0.6)
        hint = f' Did you mean {", ".join(repr(n) for n in near)}?' if near else ''
        raise UnknownModelError(
            f"Unknown m3d_zoo model '{base}'.{hint} See m3d_zoo.list_models() (or `m3d-zoo list`) for the "
            f"{len(names)} models.")
    if tag:
        tags = [n.split('.', 1)[1] for n in list_pretrained(base) if n.split('.', 1)[0] == base]
        if tag not in tags:
            raise UnknownModelError(
                f"Model '{base}' has no pretrained tag '{tag}'; available: {', '.join(tags)}.")


def create_model(
        model_name: str,
        pretrained: bool = False,
        pretrained_file: Optional[Union[str, os.PathLike]] = None,
        **kwargs: Any,
) -> nn.Module:
    """Create a zoo model.

    Args:
        model_name: A registered name with an optional pretrained tag ('m3d_resnet50', 'm3d_resnet50.a1_in1k'), or a
            saved zoo model: 'hf-hub:ORG/NAME[@REVISION]' or 'local-dir:PATH'.
        pretrained: Inflate the 2D ImageNet ResNet named by the tag (default tv_in1k, the paper's), fetched through
            timm from the Hugging Face Hub; for 'hf-hub:'/'local-dir:' names, load the saved weights.
        pretrained_file: A local 2D ResNet checkpoint (safetensors, or a torch file loaded with weights_only=True) to
            inflate instead of the Hub weights; implies `pretrained=True`.
        **kwargs: Model arguments: num_frames, temporal_strides, m3d_branches, last_stride, inflation, head,
            embed_dim, num_classes, drop_rate, ...; and timm's (pretrained_cfg_overlay, cache_dir, ...).

    Returns:
        The model, in train mode like timm's.
    """
    source, name = parse_model_name(model_name)
    if source is not None:
        from ._hub import create_model_from_source
        return create_model_from_source(model_name, pretrained=pretrained, **kwargs)
    _check_name(name)
    if pretrained_file is not None:
        path = os.fspath(pretrained_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'pretrained_file {path!r} does not exist or is not a file.')
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
        overlay['file'] = path
        kwargs['pretrained_cfg_overlay'] = overlay
        pretrained = True
    if not pretrained or pretrained_file is not None:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    from ._hub import hub_errors
    # The 2D ImageNet weights come from the Hub through timm; say what to do when that fails (offline, no cache).
    hf_hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    with hub_errors(f'{name}: ImageNet weights for pretrained=True', hf_hub_id, 'model.safetensors'):
        return timm.create_model(name, pretrained=pretrained, **kwargs)

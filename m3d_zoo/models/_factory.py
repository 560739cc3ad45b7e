""" The zoo's public entry points, on top of timm's registry.

Zoo models are registered in timm's global registry (so `timm.create_model('m3d_resnet50')` works after
`import m3d_zoo`); these functions list and build only the zoo's, and fail with suggestions on an unknown name.
"""
import difflib
import inspect
import os
import pickle
import re
import zipfile
from typing import Any, List, NamedTuple, Optional, Union

import torch
import torch.nn as nn
import timm
from timm.models import parse_model_name, split_model_name_tag

from .._io import SafetensorsReadError, safetensors_keys
from ._inflate import PretrainedFileError, PretrainedMismatchError

__all__ = ['create_model', 'list_models', 'list_pretrained', 'is_model', 'UnknownModelError', 'ZOO_MODULES',
           'ModelSpec', 'classify_model_spec']

# Module (file) names of the model families; timm's registry groups models by them.
ZOO_MODULES = ('c2d', 'i3d', 'p3d', 'm3d', 'two_stream')

_SPEC_FORMS = ("A model is a registered name (m3d_zoo.list_models(), `m3d-zoo list`), 'hf-hub:ORG/NAME[@REVISION]', "
               "'local-dir:FOLDER', a folder written by m3d_zoo.save_pretrained, or a checkpoint written by "
               "`m3d-zoo train` (its .safetensors file or output folder).")


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
    if base not in list_models():
        raise _unknown_name(base)
    if tag:
        tags = [n.split('.', 1)[1] for n in list_pretrained(base) if n.split('.', 1)[0] == base]
        if tag not in tags:
            raise UnknownModelError(
                f"Model '{base}' has no pretrained tag '{tag}'; available: {', '.join(tags)}.")


def _unknown_name(base: str) -> UnknownModelError:
    """The error for a name the zoo does not have, with the near names."""
    names = list_models()
    near = difflib.get_close_matches(base, names, n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(repr(n) for n in near)}?' if near else ''
    return UnknownModelError(f"Unknown m3d_zoo model '{base}'.{hint} See m3d_zoo.list_models() (or `m3d-zoo list`) "
                             f"for the {len(names)} models.")


class ModelSpec(NamedTuple):
    """What a model spec names.

    Attributes:
        kind: 'name' (registered), 'hf-hub', 'local-dir', 'saved-model' (a folder written by `save_pretrained`) or
            'checkpoint' (written by `m3d-zoo train`).
        name: What loads it: the spec itself for a registered name or a source-prefixed one, 'local-dir:FOLDER' for a
            saved-model folder (both for `create_model`), the path for a checkpoint (for `model_from_checkpoint`).
    """
    kind: str
    name: str

    @property
    def saved(self) -> bool:
        """A model saved with its config.json (Hub repo or folder): `create_model(name, pretrained=True)` loads it."""
        return self.kind in ('hf-hub', 'local-dir', 'saved-model')


def classify_model_spec(spec: str) -> ModelSpec:
    """Say what a model spec names, by the one rule every command and `train`/`load_inference_model` share.

    In order:

    1. 'hf-hub:ORG/NAME[@REVISION]' or 'local-dir:FOLDER' (timm's source prefixes): kind 'hf-hub' / 'local-dir'.
    2. A registered name with an optional pretrained tag ('m3d_resnet50', 'm3d_resnet50.tv_in1k'): kind 'name', even
       if a folder of that name exists here (write './m3d_resnet50' for the folder).
    3. An existing folder holding config.json (as `save_pretrained` writes it): kind 'saved-model'.
    4. Any other existing file or folder: kind 'checkpoint' (a .safetensors file written by `m3d-zoo train`, or its
       output folder; `model_from_checkpoint` says if it is neither).

    Args:
        spec: What the user gave, e.g. `--model`.

    Returns:
        The kind and the name that loads it.

    Raises:
        FileNotFoundError: `spec` is written as a path (a folder separator, '~', a .safetensors suffix) that does not
            exist.
        UnknownModelError: `spec` is neither a registered name (with suggestions of near ones) nor an existing path.
        ValueError: nothing follows a source prefix.
    """
    head, colon, _ = spec.partition(':')
    if colon and head.lower().replace('_', '-') in ('hf-hub', 'local-dir'):  # timm still takes 'hf_hub:'
        source, _ = parse_model_name(spec)  # timm's check that an id follows the prefix
        return ModelSpec(source, spec)
    written_as_path = spec.startswith('~') or spec.endswith('.safetensors') \
        or any(s in spec for s in (os.sep, os.altsep) if s)
    if not written_as_path and is_model(spec):
        return ModelSpec('name', spec)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        from ..hub.constants import CONFIG_NAME
        if os.path.isfile(os.path.join(path, CONFIG_NAME)):
            return ModelSpec('saved-model', f'local-dir:{path}')
        return ModelSpec('checkpoint', path)
    if os.path.exists(path):
        return ModelSpec('checkpoint', path)
    if written_as_path:
        raise FileNotFoundError(f'Model {spec!r} is written as a path, but no such file or folder exists. '
                                f'{_SPEC_FORMS}')
    raise UnknownModelError(f'{_unknown_name(split_model_name_tag(spec)[0])} No file or folder {spec!r} exists '
                            f'either. {_SPEC_FORMS}')


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
        The model, in train mode like timm's. It records what its weights were loaded from, which save_pretrained
        writes as their source.

    Raises:
        UnknownModelError: a name or tag the zoo does not have.
        TypeError, ValueError: a model argument of the wrong type or value, or one the model does not take.
        FileNotFoundError, PretrainedFileError: `pretrained_file` is missing or is not a state dict.
        PretrainedMismatchError: the pretrained weights do not fit the model.
        HubError: the ImageNet weights could not be fetched.
    """
    source, name = parse_model_name(model_name)
    if source is not None:
        from ..hub.load import create_model_from_source
        return create_model_from_source(model_name, pretrained=pretrained, **kwargs)
    _check_name(name)
    from ..hub.errors import hub_errors
    from ..hub.provenance import RANDOM_INIT, pretrained_source, record_weights_source, recorded_weights_source
    path = None
    if pretrained_file is not None:
        path = os.fspath(pretrained_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'pretrained_file {path!r} does not exist or is not a file.')
        _check_pretrained_file(path)
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
        overlay['file'] = path
        kwargs['pretrained_cfg_overlay'] = overlay
        pretrained = True
    try:
        if not pretrained or path is not None:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        else:
            # The 2D ImageNet weights come from the Hub through timm; say what to do when that fails (offline, no
            # cache).
            hf_hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
            with hub_errors(f'{name}: the ImageNet weights to inflate', hf_hub_id, 'model.safetensors', imagenet=True):
                model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not unknown:
            raise
        raise TypeError(f"{name} has no argument {unknown.group(1)!r}. Its model arguments: "
                        f"{', '.join(_model_arguments())} (see help(m3d_zoo.VideoResNet)); timm's create_model options "
                        f"(pretrained_cfg_overlay, features_only, out_indices, ...) are taken too.") from e
    except PretrainedMismatchError as e:
        if path is None:
            raise
        raise PretrainedMismatchError(f'pretrained_file {path!r}: {e}') from e
    except RuntimeError as e:
        if path is None or not str(e).startswith('Error(s) in loading state_dict'):
            raise
        raise PretrainedMismatchError(
            f'pretrained_file {path!r} does not fit {name}: {str(e)[:2000]}. Pass a 2D ImageNet ResNet of the same '
            f'depth to inflate; a model saved by m3d_zoo loads with create_model("local-dir:FOLDER", '
            f'pretrained=True).') from e
    # What was loaded, for save_pretrained: the inflation filter records a pretrained source as timm loads it.
    if pretrained:
        loaded = recorded_weights_source(model) or pretrained_source(getattr(model, 'pretrained_cfg', None) or {})
    else:
        loaded = RANDOM_INIT
    record_weights_source(model, loaded)
    return model


def _model_arguments() -> List[str]:
    """The names a zoo model's constructor takes (the layer types, which config files cannot hold, left out)."""
    from .video_resnet import VideoResNet
    names = inspect.signature(VideoResNet.__init__).parameters
    return [n for n in names if n not in ('self', 'norm_layer', 'act_layer')]


_EXPECTED_FILE = ('a 2D ResNet state dict (a .safetensors file, or a torch.save file of a dict of tensors, '
                  'e.g. the model.safetensors of timm/resnet50.tv_in1k on the Hugging Face Hub)')


def _check_pretrained_file(path: str) -> None:
    """Read `path` as timm will, and raise `PretrainedFileError` naming the file if it is not a state dict.

    timm's own errors for such files (EOFError, KeyError, a safetensors header error) name neither the file nor what
    was expected. The file is read twice, here and by timm: a second read comes from the page cache.
    """
    def error(problem: str) -> PretrainedFileError:
        return PretrainedFileError(f'pretrained_file {path!r} {problem}: expected {_EXPECTED_FILE}.')

    if os.path.getsize(path) == 0:
        raise error('is empty (0 bytes)')
    if path.endswith('.safetensors'):
        try:
            keys = safetensors_keys(path)
        except (SafetensorsReadError, OSError) as e:  # a truncated, damaged or foreign file
            raise error(f'is not a valid safetensors file ({e}); it may be truncated or damaged') from e
        if not keys:
            raise error('holds no tensors')
        return
    with open(path, 'rb') as f:
        head = f.read(9)
    if not (head[:4] == b'PK\x03\x04' or head[:1] == b'\x80'):  # torch.save's zip archive, or a legacy pickle
        if len(head) == 9 and head[8:9] == b'{':  # safetensors: an 8-byte header length, then the JSON header
            raise error('looks like a safetensors file without the .safetensors extension, which selects the '
                        'reader: rename it')
        raise error('is not a torch checkpoint (torch.save) nor a safetensors file')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise error(f'cannot be read as a torch checkpoint with weights_only=True ({type(e).__name__}: '
                    f'{str(e)[:500]}); it may be truncated, damaged, or hold objects other than tensors') from e
    state_dict = _unwrap_state_dict(checkpoint)
    if not isinstance(state_dict, dict) or not state_dict \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise error(f'holds a {type(checkpoint).__name__}, not a dict of named tensors')


def _unwrap_state_dict(checkpoint: Any) -> Any:
    """The state dict inside a training checkpoint, with the keys timm looks for, in its order."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict_ema', 'model_ema', 'state_dict', 'model'):
            if checkpoint.get(key) is not None:
                return checkpoint[key]
    return checkpoint

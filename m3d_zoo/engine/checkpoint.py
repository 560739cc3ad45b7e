""" Training checkpoints: safetensors weights plus a training-state file, written atomically.

A checkpoint named `last` in an output folder is two files:

    last.safetensors                 the model's state dict; string metadata: architecture, model_args (JSON),
                                     preprocessing (JSON: input_size, mean, std, interpolation, num_frames,
                                     clip_sampling), epoch, train_state (the state file's name) and its sha256,
                                     m3d_zoo version
    last.state-<token>.pt            optimizer, scheduler, grad-scaler state, epoch, recipe, best metric: a dict of
                                     tensors and plain values that torch.load reads with weights_only=True

The weights file is what `m3d_zoo.create_model(arch, **model_args)` loads and what hub/release.py releases; the
state file is only for `--resume`. `model_from_checkpoint` puts the recorded preprocessing back into the model's
`pretrained_cfg`, so that extraction uses the frame size and clip length the model was trained at.

Every file is written to a temporary file in the same folder, fsynced and renamed over the old one, so a kill at any
moment leaves either the old or the new file, never a torn one. The pair stays consistent because the state file
gets a fresh name each time and the weights file, renamed last, is the one that names it: until that rename the old
weights still name the old state file, which is deleted only afterwards.
"""
import io
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn
from timm.utils import unwrap_model

from .. import _io
from .._io import (
    SafetensorsReadError, WriteError, bytes_sha256, read_safetensors, read_safetensors_metadata, write_safetensors)
from ..version import __version__

__all__ = [
    'CheckpointError', 'Checkpoint', 'save_checkpoint', 'load_checkpoint', 'resolve_checkpoint_path',
    'atomic_write_bytes', 'atomic_write_text', 'check_resume_compatible', 'model_from_checkpoint',
    'preprocessing_config', 'apply_preprocessing', 'PREPROCESSING_KEYS',
]

_logger = logging.getLogger(__name__)

WEIGHTS_SUFFIX = '.safetensors'

# What a model's inputs need, kept in its pretrained_cfg: timm's data config, the clip length T and how training drew
# clips ('consecutive' or 'segments'; extraction always takes consecutive clips, the paper's protocol)
PREPROCESSING_KEYS = ('input_size', 'mean', 'std', 'interpolation', 'num_frames', 'clip_sampling')


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read, or does not fit the model it should resume."""


def _checkpoint_error(e: WriteError, keep: str) -> CheckpointError:
    todo = ('Free disk space or write to another disk (--output), then continue with --resume.' if e.disk_full
            else 'Check that the output folder is writable, then continue with --resume.')
    return CheckpointError(f'Could not write {e.path}: {e.reason}. Nothing was replaced: {keep} {todo}')


def atomic_write_bytes(path: Union[str, Path], data: bytes, keep_msg: Optional[str] = None) -> Path:
    """Write `data` to `path` atomically (see `m3d_zoo._io.atomic_write_bytes`).

    Args:
        path: The target file.
        data: The new content.
        keep_msg: What the error says was kept; defaults to the previous file, if any.

    Raises:
        CheckpointError: The write failed (e.g. a full disk); `path` is untouched.
    """
    try:
        return _io.atomic_write_bytes(path, data)
    except WriteError as e:
        raise _checkpoint_error(e, keep_msg or e.keep) from e


def atomic_write_text(path: Union[str, Path], text: str, keep_msg: Optional[str] = None) -> Path:
    """`atomic_write_bytes` of `text`, UTF-8 encoded."""
    return atomic_write_bytes(path, text.encode('utf-8'), keep_msg)


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The weights file.
        state_dict: Model weights.
        architecture: Registered model name, if recorded.
        model_args: Constructor arguments (`create_model(architecture, **model_args)`).
        metadata: All string metadata of the weights file.
        train_state: The training state (optimizer, scheduler, epoch, ...) or None for a weights-only checkpoint.
    """
    path: Path
    state_dict: Dict[str, torch.Tensor]
    architecture: Optional[str]
    model_args: Dict[str, Any]
    metadata: Dict[str, str] = field(default_factory=dict)
    train_state: Optional[Dict[str, Any]] = None

    @property
    def preprocessing(self) -> Dict[str, Any]:
        """The recorded `PREPROCESSING_KEYS` ({} for checkpoints written before they were recorded)."""
        try:
            prep = json.loads(self.metadata.get('preprocessing') or '{}')
        except ValueError as e:
            raise CheckpointError(f'{self.path}: metadata preprocessing is not valid JSON ({e}).') from e
        return {k: v for k, v in prep.items() if k in PREPROCESSING_KEYS} if isinstance(prep, dict) else {}

    @property
    def epoch(self) -> Optional[int]:
        if self.train_state is not None:
            return int(self.train_state['epoch'])
        return int(self.metadata['epoch']) if 'epoch' in self.metadata else None


def preprocessing_config(model: nn.Module) -> Dict[str, Any]:
    """The `PREPROCESSING_KEYS` of a model: those in its pretrained_cfg, the clip length else its `num_frames`."""
    model = unwrap_model(model)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    prep = {k: cfg[k] for k in PREPROCESSING_KEYS if cfg.get(k) is not None}
    if 'num_frames' not in prep and getattr(model, 'num_frames', None):
        prep['num_frames'] = int(model.num_frames)
    return _norm(prep)


def apply_preprocessing(model: nn.Module, preprocessing: Dict[str, Any]) -> nn.Module:
    """Set `preprocessing` (a dict of `PREPROCESSING_KEYS`) in the model's pretrained_cfg, which transforms and
    extraction read; returns the model."""
    model = unwrap_model(model)
    prep = {k: tuple(v) if isinstance(v, list) else v for k, v in preprocessing.items() if k in PREPROCESSING_KEYS}
    model.pretrained_cfg = model.default_cfg = dict(getattr(model, 'pretrained_cfg', None) or {}, **prep)
    return model


def _read_metadata(path: Path) -> Dict[str, str]:
    try:
        return read_safetensors_metadata(path)
    except SafetensorsReadError:  # a torn or foreign file: the caller says which
        return {}


def save_checkpoint(
        directory: Union[str, Path],
        name: str,
        model: nn.Module,
        train_state: Optional[Dict[str, Any]] = None,
        metadata: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write checkpoint `name` (e.g. 'last', 'best') of `model` in `directory`, atomically.

    Args:
        directory: Output folder (created if needed).
        name: Checkpoint name; the weights go to `<name>.safetensors`.
        model: The model (DDP / compile wrappers are removed).
        train_state: What `--resume` needs (optimizer, scheduler, epoch ...): tensors and plain values only.
            None writes weights only.
        metadata: Extra string-able metadata for the weights file (epoch, metrics ...); values that are not
            strings are stored as JSON.

    Returns:
        The weights file.

    Raises:
        CheckpointError: The files could not be written (e.g. a full disk); the previous checkpoint is intact.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = unwrap_model(model)
    weights_path = directory / f'{name}{WEIGHTS_SUFFIX}'
    previous = _read_metadata(weights_path) if weights_path.exists() else {}
    keep = (f'the previous checkpoint {weights_path} (epoch {previous.get("epoch", "?")}) is intact.'
            if weights_path.exists() else 'no earlier checkpoint existed.')

    architecture = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture')
    meta = {'format': 'pt', 'm3d_zoo_version': __version__}
    if architecture:
        meta['architecture'] = architecture
    model_args = getattr(model, 'model_args', None)
    if isinstance(model_args, dict):
        meta['model_args'] = json.dumps(model_args)
    meta['preprocessing'] = json.dumps(preprocessing_config(model))
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)

    state_name = None
    if train_state is not None:
        buf = io.BytesIO()
        torch.save(train_state, buf)
        state_bytes = buf.getvalue()
        state_name = f'{name}.state-{uuid.uuid4().hex[:12]}.pt'
        atomic_write_bytes(directory / state_name, state_bytes, keep_msg=keep)
        meta['train_state'] = state_name
        meta['train_state_sha256'] = bytes_sha256(state_bytes)
        meta.setdefault('epoch', str(train_state.get('epoch')))

    tensors = {k: v.detach().to('cpu').contiguous() for k, v in model.state_dict().items()}
    try:
        write_safetensors(weights_path, tensors, meta)  # the commit point
    except BaseException as e:
        if state_name:  # the new state file is named by nothing; the old pair is still consistent
            (directory / state_name).unlink(missing_ok=True)
        if isinstance(e, WriteError):
            raise _checkpoint_error(e, keep) from e
        raise

    # Only now is the old state file unreferenced. Also sweep state and temporary files of interrupted saves.
    for p in directory.glob(f'{name}.state-*.pt'):
        if p.name != state_name:
            p.unlink(missing_ok=True)
    for p in directory.glob(f'.{name}*.tmp-*'):
        p.unlink(missing_ok=True)
    return weights_path


def resolve_checkpoint_path(path: Union[str, Path]) -> Path:
    """A checkpoint weights file from a path: the file itself, or `last.safetensors` in an output folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        cand = path / f'last{WEIGHTS_SUFFIX}'
        if not cand.is_file():
            raise CheckpointError(f'{path} is a folder without a last{WEIGHTS_SUFFIX} checkpoint; pass the '
                                  f'checkpoint file (e.g. {path}/last{WEIGHTS_SUFFIX}).')
        return cand
    if not path.is_file():
        raise CheckpointError(f'Checkpoint {path} does not exist.')
    if path.suffix != WEIGHTS_SUFFIX:
        raise CheckpointError(
            f'{path} is not a {WEIGHTS_SUFFIX} checkpoint. Pass the weights file written by `m3d-zoo train` '
            f'(e.g. output/last{WEIGHTS_SUFFIX}); its training state is found from there.')
    return path


def load_checkpoint(path: Union[str, Path], with_train_state: bool = True) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (or any safetensors state dict).

    Args:
        path: The weights file, or an output folder (its `last.safetensors`).
        with_train_state: Also read the training state the weights name (if any).

    Raises:
        CheckpointError: A missing or unreadable file, or a training state that is missing, altered, or named by a
            path leading outside the weights' folder.
    """
    path = resolve_checkpoint_path(path)
    try:
        state_dict, meta = read_safetensors(path)
    except (SafetensorsReadError, OSError) as e:
        raise CheckpointError(f'{path} is not a readable safetensors file ({e}); it is corrupt or not a '
                              f'checkpoint.') from e
    try:
        model_args = json.loads(meta.get('model_args') or '{}')
    except ValueError as e:
        raise CheckpointError(f'{path}: metadata model_args is not valid JSON ({e}).') from e
    ckpt = Checkpoint(path=path, state_dict=state_dict, architecture=meta.get('architecture'), model_args=model_args,
                      metadata=meta)
    if with_train_state and meta.get('train_state'):
        name = meta['train_state']
        # save_checkpoint writes a bare file name beside the weights; anything else would read a file elsewhere
        if name in ('.', '..') or Path(name).name != name or '\\' in name or Path(name).is_absolute():
            raise CheckpointError(
                f'{path} names its training state {name!r}, which is not a file in {path.parent}: a checkpoint '
                f'written by m3d-zoo names a file beside its weights, so this one was altered; it is not followed. '
                f'The weights alone can still be used (e.g. `m3d-zoo extract --model {path}`), but not resumed.')
        state_path = path.parent / name
        if not state_path.is_file():
            raise CheckpointError(
                f'{path} names its training state {state_path.name}, which is missing from {path.parent}. The '
                f'weights alone can still be used (e.g. `m3d-zoo extract --model {path}`), but not resumed.')
        data = state_path.read_bytes()
        if meta.get('train_state_sha256') and bytes_sha256(data) != meta['train_state_sha256']:
            raise CheckpointError(f'{state_path} does not match the sha256 recorded in {path.name}: it is corrupt '
                                  f'or from another save.')
        try:
            ckpt.train_state = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
        except Exception as e:
            raise CheckpointError(f'{state_path} cannot be read with torch.load(weights_only=True) ({e}).') from e
    return ckpt


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))  # tuples -> lists, as they come back from JSON metadata


def _full_args(ckpt: Checkpoint, arch: Optional[str]) -> Dict[str, Any]:
    """The checkpoint's complete construction record: older checkpoints store only some arguments, so rebuild the
    architecture from them (on the meta device, nothing allocated) and read its record."""
    saved = _norm(ckpt.model_args)
    if not saved or not arch:
        return saved
    from ..models import create_model
    try:
        with torch.device('meta'):
            return _norm(create_model(arch, **saved).model_args)
    except Exception as e:
        raise CheckpointError(f'Cannot resume {ckpt.path}: its model arguments {saved} do not build {arch} ({e}).') \
            from e


def check_resume_compatible(ckpt: Checkpoint, model: nn.Module) -> None:
    """Raise `CheckpointError` unless `ckpt` was written for the same architecture and arguments as `model`."""
    model = unwrap_model(model)
    arch = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture')
    args = _norm(getattr(model, 'model_args', None) or {})
    if ckpt.architecture and arch and ckpt.architecture != arch:
        raise CheckpointError(
            f'Cannot resume {ckpt.path}: it was trained as {ckpt.architecture}, not {arch}. Resume with '
            f'--model {ckpt.architecture} (or leave --model out), or start a new run in another --output folder.')
    saved = _full_args(ckpt, ckpt.architecture or arch)
    diff = {k: (saved.get(k), args.get(k)) for k in sorted(set(saved) | set(args)) if saved.get(k) != args.get(k)}
    if saved and diff:
        shown = ', '.join(f'{k}: checkpoint {a!r} vs now {b!r}' for k, (a, b) in diff.items())
        raise CheckpointError(
            f'Cannot resume {ckpt.path}: the model arguments differ ({shown}). Resume with the same model options '
            f'and dataset (num_classes is the number of training identities), or start a new run.')
    own = unwrap_model(model).state_dict()
    missing = sorted(set(own) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(own))
    shapes = sorted(k for k in set(own) & set(ckpt.state_dict) if own[k].shape != ckpt.state_dict[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            f'Cannot resume {ckpt.path}: its weights do not fit {arch or type(model).__name__} '
            f'(missing {missing[:5]}, unexpected {unexpected[:5]}, other shape {shapes[:5]}).')


def model_from_checkpoint(path: Union[str, Path], **kwargs: Any) -> nn.Module:
    """Rebuild the model a checkpoint was written for and load its weights (strictly).

    Args:
        path: Weights file (or output folder).
        **kwargs: Model arguments that override the saved ones (e.g. num_classes=0 drops the classifier after
            loading).

    Returns:
        The model, its pretrained_cfg holding the checkpoint's preprocessing (frame size, mean/std, interpolation,
        clip length and clip sampling of its training), which transforms and extraction then use by default.
    """
    from ..models import create_model
    ckpt = load_checkpoint(path, with_train_state=False)
    if not ckpt.architecture:
        raise CheckpointError(f'{ckpt.path} does not record its architecture (metadata "architecture"): it was not '
                              f'written by m3d_zoo; load it with create_model(NAME, pretrained_file=...) instead.')
    num_classes = kwargs.pop('num_classes', None)
    model = create_model(ckpt.architecture, **dict(ckpt.model_args, **kwargs))
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f'{ckpt.path} does not fit {ckpt.architecture}({ckpt.model_args}): {str(e)[:1000]}') \
            from e
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    prep = ckpt.preprocessing
    if 'num_frames' in kwargs:  # a clip length asked for now wins over the recorded one
        prep['num_frames'] = kwargs['num_frames']
    return apply_preprocessing(model, prep)

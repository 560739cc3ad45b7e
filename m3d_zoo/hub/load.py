""" Load a model saved by `save_pretrained`: ``create_model('hf-hub:org/name[@revision]')`` and
``create_model('local-dir:PATH')``.

The architecture is rebuilt with its saved arguments; the weights' sha256 is verified (safetensors carries no checksum
of its own, hence the one in config.json) and they are loaded strictly. Nothing is unpickled.
"""
import json
import logging
import os
import re
from contextlib import nullcontext
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from .._io import SafetensorsReadError, file_sha256, read_safetensors
from ..version import __version__
from .constants import CONFIG_NAME, WEIGHTS_NAME
from .errors import (
    CorruptWeightsError, HubConfigError, HubError, HubFileNotFoundError, UnknownArchitectureError, hub_connection,
    hub_errors, is_offline, transport_errors)
from .provenance import record_weights_source

__all__ = ['create_model_from_source', 'verify_weights', 'load_weights']

_logger = logging.getLogger(__name__)


def verify_weights(path: Union[str, Path], sha256: Optional[str], size: Optional[int] = None, what: str = ''):
    """Check a weights file against its recorded sha256 (and size); raise `CorruptWeightsError` if it differs."""
    path = Path(path)
    if not sha256:
        _logger.warning(f'{what or path}: no sha256 recorded for {path.name}, its integrity cannot be verified.')
        return
    actual = file_sha256(path)
    if actual != sha256.lower():
        nbytes = path.stat().st_size
        detail = f', {nbytes} bytes instead of {size}' + (' (truncated)' if nbytes < size else '') if size else ''
        raise CorruptWeightsError(
            f'{what + ": " if what else ""}{path.name} is corrupted: sha256 mismatch (expected {sha256}, '
            f'got {actual}{detail}). File: {path}. If it came from the Hub cache, delete it and download again '
            f'(create_model(..., force_download=True) or `hf cache delete`); if the fresh copy fails too, '
            f'the file on the Hub is damaged and must be pushed again.'
        )


def load_weights(path: Union[str, Path], what: str = '') -> Dict[str, torch.Tensor]:
    """Load a safetensors state dict on the CPU; an unreadable file raises `CorruptWeightsError`."""
    path = Path(path)
    try:
        return read_safetensors(path)[0]
    except SafetensorsReadError as e:
        raise CorruptWeightsError(
            f'{what + ": " if what else ""}{path.name} is not a valid safetensors file ({e}). File: {path}. '
            f'It is corrupted or truncated, or not a safetensors file at all; m3d_zoo loads weights from '
            f'safetensors only (never pickle).'
        ) from e


def _fetch(source: str, model_id: str, filename: str, cache_dir=None, force_download: bool = False,
           revision: Optional[str] = None) -> Path:
    """Path of a repo file: downloaded (or found in the cache) for hf-hub, looked up for local-dir."""
    what = f'{source}:{model_id}'
    if source == 'local-dir':
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise HubFileNotFoundError(f"{what}: folder '{folder}' does not exist.")
        path = folder / filename
        if not path.is_file():
            raise HubFileNotFoundError(
                f"{what}: file '{filename}' is missing from '{folder}'. An m3d_zoo model folder holds {CONFIG_NAME} "
                f"and {WEIGHTS_NAME}, as m3d_zoo.save_pretrained writes them.")
        return path
    from huggingface_hub import hf_hub_download
    repo_id, asked_revision = _split_revision(model_id)
    with hub_errors(what, repo_id, filename, asked_revision):
        return Path(hf_hub_download(
            repo_id, filename, revision=revision or asked_revision, cache_dir=cache_dir, force_download=force_download,
            library_name='m3d_zoo', library_version=__version__))


def _split_revision(model_id: str) -> Tuple[str, Optional[str]]:
    """'org/name@revision' -> ('org/name', 'revision'), as timm's hf_split."""
    repo_id, sep, revision = model_id.partition('@')
    if sep and (not revision or '@' in revision):
        raise HubConfigError(f"'{model_id}' is not a Hub model id: expected 'organisation/name' or "
                             f"'organisation/name@revision'.")
    return repo_id, revision or None


def _known_architecture(architecture: str, what: str):
    """Raise `UnknownArchitectureError` unless the zoo's registry has the architecture."""
    try:
        from ..models._factory import is_model, list_models
    except ImportError:  # the zoo's factory unavailable: fall back to timm's registry
        import timm
        is_model, list_models = timm.is_model, None
    if isinstance(architecture, str) and architecture and is_model(architecture):
        return
    hint = f' It has: {", ".join(sorted(list_models()))}.' if list_models is not None else ''
    raise UnknownArchitectureError(
        f"{what}: architecture {architecture!r} in {CONFIG_NAME} is not a model this m3d_zoo {__version__} knows."
        f"{hint} If the repo was saved by a newer m3d_zoo, upgrade it (pip install -U m3d_zoo); if it is not an "
        f"m3d_zoo model, load it with the library that made it (e.g. timm.create_model).")


_CONFIG_HELP = (
    'm3d_zoo.save_pretrained and push_to_hub write it; if it was edited, restore it (for a Hub repo, load an earlier '
    "commit with 'hf-hub:ORG/NAME@COMMIT'); if only a downloaded copy is damaged, download it again with "
    'force_download=True.')


def _config_error(what: str, config_path: Path, problem: str) -> HubConfigError:
    return HubConfigError(f'{what}: {CONFIG_NAME} {problem}. File: {config_path}. {_CONFIG_HELP}')


def _read_config(what: str, config_path: Path) -> Dict[str, Any]:
    """config.json, checked field by field: `HubConfigError` names the field that cannot be used."""
    try:
        config = json.loads(config_path.read_text(encoding='utf-8'))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise _config_error(what, config_path, f'is not valid JSON ({e})') from e
    if not isinstance(config, dict):
        raise _config_error(what, config_path, f'holds a JSON {type(config).__name__}, not an object with '
                                               f"'architecture' and 'model_args'")
    architecture = config.get('architecture')
    if not isinstance(architecture, str) or not architecture:
        found = 'has no' if architecture is None else f'has {architecture!r} as its'
        raise _config_error(what, config_path, f"{found} 'architecture' (the registered model name, a string)")
    for field in ('model_args', 'pretrained_cfg', 'weights'):
        if config.get(field) is not None and not isinstance(config[field], dict):
            raise _config_error(what, config_path, f"has a {type(config[field]).__name__} as '{field}', not an "
                                                   f'object')
    weights = config.get('weights') or {}
    checks = (('file', lambda v: isinstance(v, str) and v, 'a file name'),
              ('sha256', lambda v: isinstance(v, str) and re.fullmatch(r'[0-9a-fA-F]{64}', v), '64 hex digits'),
              ('size', lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, 'a byte count'))
    for field, valid, expected in checks:
        if weights.get(field) is not None and not valid(weights[field]):
            raise _config_error(what, config_path, f"has weights.{field}={weights[field]!r}, not {expected}")
    return config


def _check_weights_file(what: str, config_path: Path, filename: str, source: str) -> None:
    """Refuse a weights file name that leads outside the folder or repo (absolute, '..', a drive or backslashes).

    The check is on the name alone: a folder may hold links to files elsewhere (a Hub cache snapshot does), and the
    name is what an edited config.json could abuse.
    """
    posix, windows = PurePosixPath(filename), PureWindowsPath(filename)
    if posix.is_absolute() or windows.drive or windows.root or '\\' in filename or '..' in posix.parts:
        where = 'folder' if source == 'local-dir' else 'repo'
        raise _config_error(what, config_path, f'names the weights file {filename!r}, which leads outside its {where}; '
                                               f"m3d_zoo reads only files inside it (e.g. '{WEIGHTS_NAME}'). Do not "
                                               f'use a model whose config.json you did not expect to be edited')


def _resolve_commit(what: str, repo_id: str, revision: Optional[str]) -> Optional[str]:
    """The commit that `revision` (main by default) points at on the Hub now: the X-Repo-Commit of its config.json.

    None offline or when the Hub cannot be asked: hf_hub_download then reads the cache, whose refs do not move.
    """
    if revision and re.fullmatch(r'[0-9a-f]{40}', revision):
        return revision
    if is_offline():
        return None
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    with hub_errors(what, repo_id, CONFIG_NAME, revision):
        try:
            return get_hf_file_metadata(hf_hub_url(repo_id, CONFIG_NAME, revision=revision),
                                        library_name='m3d_zoo', library_version=__version__).commit_hash
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
            raise  # gone since config.json was fetched: hub_errors says which
        except (HfHubHTTPError, OSError) + transport_errors():
            return None  # unreachable or refused just now: the cache decides, as in hf_hub_download


def _load_saved_weights(
        model: nn.Module,
        what: str,
        source: str,
        model_id: str,
        weights: Dict[str, Any],
        filename: str,
        commit: Optional[str],
        overridden: List[str],
        num_classes: Optional[int],
        cache_dir=None,
        force_download: bool = False,
) -> None:
    """Fetch a saved model's weights (at `commit` for the Hub), verify their sha256, load them strictly, replace the
    classifier if another `num_classes` was asked for, and record where the weights came from."""
    if not filename.endswith('.safetensors'):
        raise HubError(f'{what}: weights file {filename!r} is not safetensors; m3d_zoo never unpickles weights.')
    weights_path = _fetch(source, model_id, filename, cache_dir=cache_dir, force_download=force_download,
                          revision=commit)
    verify_weights(weights_path, weights.get('sha256'), weights.get('size'), what=what)
    state_dict = load_weights(weights_path, what=what)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # missing, unexpected or differently shaped tensors
        raise HubError(
            f'{what}: the weights do not fit {model.pretrained_cfg.get("architecture")} built with '
            f'{"the overridden arguments " + str(overridden) if overridden else "its saved model_args"}: '
            f'{str(e)[:2000]}') from e
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)  # also updates the construction record
    if source == 'hf-hub':
        loaded = f'hf-hub:{_split_revision(model_id)[0]}@{commit}' if commit else f'hf-hub:{model_id}'
    else:  # the folder's name only, as for pretrained files (see pretrained_source)
        loaded = f'local-dir:{Path(os.path.abspath(os.path.expanduser(model_id))).name}'
    if not (source == 'hf-hub' and commit):  # a commit names the file; a folder or the cache does not
        loaded += f' ({filename} sha256 {weights.get("sha256") or file_sha256(weights_path)})'
    record_weights_source(model, loaded)
    if commit:
        model.pretrained_cfg = dict(model.pretrained_cfg, revision=commit)


def create_model_from_source(
        model_name: str,
        pretrained: bool = False,
        cache_dir: Optional[Union[str, Path]] = None,
        force_download: bool = False,
        **kwargs,
) -> nn.Module:
    """Build a model saved on the Hub (``hf-hub:org/name[@revision]``) or in a folder (``local-dir:PATH``).

    The architecture is rebuilt with its saved ``model_args``; keyword arguments override them. With
    ``pretrained=True`` the weights are downloaded (or taken from the cache, which also works with
    ``HF_HUB_OFFLINE=1``), checked against the sha256 in config.json and loaded strictly; a ``num_classes``
    different from the saved one then replaces the classifier (``num_classes=0``: the embedding model). As in timm,
    ``pretrained=False`` builds the architecture only, randomly initialised.

    Args:
        model_name: Source-prefixed name.
        pretrained: Load the saved weights.
        cache_dir: Hugging Face cache folder; HF_HOME's by default.
        force_download: Download again even if cached (e.g. after a corrupted download).
        **kwargs: Model arguments overriding the saved ones, and create_model options.

    Returns:
        The model, with ``pretrained_cfg`` naming its source.

    Raises:
        HubConfigError: config.json is malformed, names a weights file outside the folder or repo, or its
            model_args do not build the architecture.
        HubError: other failures to fetch or load (subclasses say which).
    """
    from timm.models import parse_model_name
    source, model_id = parse_model_name(model_name)
    if source not in ('hf-hub', 'local-dir'):
        raise ValueError(f"'{model_name}' has no source prefix: expected 'hf-hub:org/name' or 'local-dir:PATH'.")
    what = f'{source}:{model_id}'
    if kwargs.pop('pretrained_cfg', None) is not None:
        raise ValueError(f'{what}: pretrained_cfg cannot be combined with a source prefix, the source supplies it.')
    with hub_connection() if source == 'hf-hub' else nullcontext():  # one probe of the Hub for all the downloads
        return _build_saved_model(what, source, model_id, pretrained, cache_dir, force_download, kwargs)


def _build_saved_model(
        what: str,
        source: str,
        model_id: str,
        pretrained: bool,
        cache_dir: Optional[Union[str, Path]],
        force_download: bool,
        kwargs: Dict[str, Any],
) -> nn.Module:
    """`create_model_from_source` once the source is parsed: config.json, the architecture, the weights."""
    config_path = _fetch(source, model_id, CONFIG_NAME, cache_dir=cache_dir, force_download=force_download)
    commit = None
    if source == 'hf-hub':
        # Pin the weights to the commit of the config: a branch that moves between the two downloads would pair
        # this config with other weights. The config is fetched again at that commit, from the cache unless the
        # branch moved just now.
        repo_id, asked_revision = _split_revision(model_id)
        commit = _resolve_commit(what, repo_id, asked_revision)
        if commit:
            config_path = _fetch(source, model_id, CONFIG_NAME, cache_dir=cache_dir, revision=commit)
    config = _read_config(what, config_path)
    architecture = config['architecture']
    _known_architecture(architecture, what)
    weights = config.get('weights') or {}
    filename = weights.get('file', WEIGHTS_NAME)
    _check_weights_file(what, config_path, filename, source)

    pretrained_cfg = dict(config.get('pretrained_cfg') or {})
    pretrained_cfg.pop('architecture', None)
    if source == 'hf-hub':
        pretrained_cfg.update(hf_hub_id=model_id, source='hf-hub')
    else:
        pretrained_cfg.update(file=str(Path(model_id).expanduser() / filename), source='local-dir')

    saved_args = dict(config.get('model_args') or {})
    num_classes = kwargs.pop('num_classes', None)
    args = dict(saved_args, **{k: v for k, v in kwargs.items() if v is not None})
    if num_classes is not None and not pretrained:
        args['num_classes'] = num_classes
    overridden = sorted(k for k in kwargs if k in args and saved_args.get(k) != kwargs[k])

    create = _zoo_create_model()
    try:
        model = create(architecture, pretrained=False, pretrained_cfg=pretrained_cfg, **args)
    except (TypeError, ValueError) as e:
        if isinstance(e, HubError):
            raise
        given = f' and the overridden arguments {overridden}' if overridden else ''
        raise _config_error(what, config_path, f'has model_args that do not build {architecture}{given}: '
                                               f"{str(e).rstrip('.')}") from e

    if pretrained:
        _load_saved_weights(model, what, source, model_id, weights, filename, commit, overridden, num_classes,
                            cache_dir=cache_dir, force_download=force_download)
    else:
        _logger.warning(f'{what}: pretrained=False, architecture only (random weights); pass pretrained=True to '
                        f'load the saved weights.')
    return model


def _zoo_create_model():
    """The zoo's create_model for registry names, timm's while the zoo's is unavailable."""
    try:
        from ..models._factory import create_model
        return create_model
    except ImportError:
        import timm
        return timm.create_model

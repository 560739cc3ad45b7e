"""Hugging Face Hub integration: save, push and load m3d_zoo checkpoints, and write their model cards.

A saved model is a folder (or Hub repo) in timm's format, so ``timm`` tooling can read it:

    model.safetensors   the state dict; string metadata: architecture, num_frames, source weights, model_args
    config.json         architecture, num_classes, num_features, model_args (every constructor argument needed to
                        rebuild the model), pretrained_cfg (input size, mean/std), and the sha256 of the weights
    README.md           the model card

``create_model('hf-hub:org/name[@revision]', pretrained=True)`` and ``create_model('local-dir:PATH',
pretrained=True)`` rebuild the architecture with its saved arguments, verify the weights' sha256 and load them
strictly. safetensors carries no checksum of its own, hence the sha256 in config.json. Nothing is unpickled.

Hub failures are raised as `HubError` subclasses whose message names what was wrong and what to do.
"""
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from tempfile import TemporaryDirectory
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from .._io import SafetensorsReadError, atomic_write_text, file_sha256, read_safetensors, write_safetensors
from ..version import __version__

__all__ = [
    'HF_ORG', 'WEIGHTS_NAME', 'CONFIG_NAME', 'README_NAME', 'RELEASED_WEIGHTS', 'released_pretrained_cfgs',
    'HubError', 'HubRepoNotFoundError', 'HubRevisionNotFoundError', 'HubFileNotFoundError', 'HubOfflineError',
    'HubAuthError', 'HubConfigError', 'CorruptWeightsError', 'UnknownArchitectureError',
    'save_pretrained', 'push_to_hub', 'create_model_from_source', 'load_weights', 'verify_weights', 'file_sha256',
    'generate_model_card', 'hub_errors', 'RANDOM_INIT', 'pretrained_source', 'record_weights_source',
    'recorded_weights_source', 'weights_source',
]

_logger = logging.getLogger(__name__)

HF_ORG = 'm3d-zoo'  # the project's Hugging Face organisation, home of the ReID-trained weights
WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.json'
README_NAME = 'README.md'

# ReID-trained weights that exist on the Hub, as `<architecture>.<tag>` -> pretrained_cfg fields. A registry tag may
# point at HF_ORG only when its weights are listed here; hub/README.md says how a release adds one. None yet.
RELEASED_WEIGHTS: Dict[str, Dict[str, Any]] = {}

PAPER_TITLE = 'Multi-Scale 3D Convolution Network for Video Based Person Re-Identification'
PAPER_URL = 'https://arxiv.org/abs/1811.07468'
PAPER_CITATION = """@inproceedings{li2019multi,
  title={Multi-Scale 3D Convolution Network for Video Based Person Re-Identification},
  author={Li, Jianing and Zhang, Shiliang and Huang, Tiejun},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={33},
  number={01},
  pages={8618--8625},
  year={2019}
}"""

_OFFLINE_HELP = (
    'To work offline: run once with network access so the files land in the Hugging Face cache (HF_HOME), after '
    'which HF_HUB_OFFLINE=1 reuses them; or load a local copy with '
    "create_model('local-dir:/path/to/folder', pretrained=True) (a folder written by m3d_zoo.save_pretrained "
    'or downloaded with `hf download`); or, for the ImageNet weights that pretrained=True inflates, pass the 2D '
    "ResNet's file: m3d_zoo.create_model(name, pretrained_file='/path/to/model.safetensors') or "
    "pretrained_cfg_overlay=dict(file='/path/to/model.safetensors'). To go online: unset HF_HUB_OFFLINE (or set "
    'HF_HUB_OFFLINE=0) and check the network and HF_ENDPOINT.'
)


def released_pretrained_cfgs(architecture: str) -> Dict[str, Dict[str, Any]]:
    """The registry entries (``'<architecture>.<tag>'`` -> cfg) of the released ReID weights of an architecture.

    Meant for ``generate_default_cfgs`` in the model files, so that only weights that exist get a tag.
    """
    return {
        name: dict(cfg, hf_hub_id=cfg.get('hf_hub_id', f'{HF_ORG}/{name}'))
        for name, cfg in RELEASED_WEIGHTS.items() if name.split('.')[0] == architecture
    }


# ---------------------------------------------------------------------------------------------------------------------
# Errors


class HubError(RuntimeError):
    """A model could not be fetched from, or saved to, the Hub or a local folder."""


class HubRepoNotFoundError(HubError):
    """The Hub repo does not exist, or is private/gated and the token does not give access."""


class HubRevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repo."""


class HubFileNotFoundError(HubError, FileNotFoundError):
    """A file the model needs is missing from the repo or folder."""


class HubOfflineError(HubError, ConnectionError):
    """The Hub cannot be reached (or HF_HUB_OFFLINE is set) and the files are not in the local cache."""


class HubAuthError(HubError, PermissionError):
    """The Hub refused a write: no token, an invalid one, or one without write access to the repo."""


class HubConfigError(HubError, ValueError):
    """A saved model's config.json cannot be used: malformed, edited, or naming a file outside its folder or repo."""


class CorruptWeightsError(HubError):
    """The weights file does not match its recorded sha256, or is not a valid safetensors file."""


class UnknownArchitectureError(HubError, ValueError):
    """The saved architecture is not a model m3d_zoo (or timm) knows."""


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


def _is_offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


@contextmanager
def hub_errors(
        what: str,
        repo_id: Optional[str] = None,
        filename: Optional[str] = None,
        revision: Optional[str] = None,
) -> Iterator[None]:
    """Turn huggingface_hub's download errors into `HubError` subclasses that say what to do.

    Also meant to wrap ``pretrained=True`` builds that fetch ImageNet weights through timm.

    Args:
        what: What was being fetched, for the message (e.g. ``'hf-hub:m3d-zoo/m3d_resnet50.mars'``).
        repo_id: The Hub repo, if known.
        filename: The file, if known.
        revision: The revision asked for, if any.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    where = f"Hub repo '{repo_id}'" if repo_id else 'the Hub repo'
    file = f"'{filename}'" if filename else 'a file'
    try:
        yield
    except RevisionNotFoundError as e:
        raise HubRevisionNotFoundError(
            f"{what}: revision '{revision or 'main'}' not found in {where} at {_endpoint()}. Use a branch, tag or full "
            f"commit id that exists (HfApi().list_repo_refs('{repo_id}') lists them), or drop '@{revision}' for main."
        ) from e
    except RepositoryNotFoundError as e:  # GatedRepoError included
        raise HubRepoNotFoundError(
            f"{what}: {where} not found at {_endpoint()}. Check the id (organisation/name, e.g. "
            f"'{HF_ORG}/<model>'); a private or gated repo also answers 'not found' without a token that has "
            f"access (log in with `hf auth login` or set HF_TOKEN)."
        ) from e
    except LocalEntryNotFoundError as e:  # before EntryNotFoundError, of which it is a subclass
        reason = ('HF_HUB_OFFLINE=1 is set' if _is_offline() else f'the Hub at {_endpoint()} could not be reached')
        raise HubOfflineError(
            f"{what}: cannot fetch {file} of {where}: {reason} and it is not in the local cache "
            f"({_hub_cache_dir()}). {_OFFLINE_HELP}"
        ) from e
    except EntryNotFoundError as e:
        raise HubFileNotFoundError(
            f"{what}: file {file} is missing from {where} at revision '{revision or 'main'}'. An m3d_zoo repo holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} (m3d_zoo.push_to_hub writes both); check the repo id and revision."
        ) from e
    except HFValidationError as e:
        raise HubConfigError(
            f"{what}: '{repo_id}' is not a valid Hub repo id ({e}). Use 'organisation/name' or "
            f"'organisation/name@revision', e.g. 'hf-hub:{HF_ORG}/m3d_resnet50'.") from e
    except OfflineModeIsEnabled as e:
        raise HubOfflineError(f'{what}: HF_HUB_OFFLINE=1 is set and {file} of {where} is not cached. '
                              f'{_OFFLINE_HELP}') from e
    except HfHubHTTPError as e:
        raise HubError(f'{what}: the Hub at {_endpoint()} answered an error for {file} of {where}: {e}') from e


def _hub_cache_dir() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


# ---------------------------------------------------------------------------------------------------------------------
# Weights files


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


# ---------------------------------------------------------------------------------------------------------------------
# What a model's weights were loaded from

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


# ---------------------------------------------------------------------------------------------------------------------
# Saving


def _architecture(model: Any) -> str:
    """The registered architecture of a zoo model; TypeError for anything else, which m3d_zoo could not rebuild."""
    from ._record import has_model_args
    cfg = getattr(model, 'pretrained_cfg', None)
    architecture = cfg.get('architecture') if isinstance(cfg, dict) else None
    if not isinstance(model, nn.Module) or not has_model_args(model) or not architecture:
        what = type(model).__name__
        if isinstance(model, nn.Module) and has_model_args(model):
            raise TypeError(f'This {what} was built directly, not by m3d_zoo.create_model, so it has no registered '
                            f'architecture to be rebuilt as: build it with m3d_zoo.create_model(NAME, ...).')
        raise TypeError(
            f'{what} is not an m3d_zoo model: only models built by m3d_zoo.create_model can be saved and loaded back '
            f'by m3d_zoo (their config.json records the arguments that rebuild them). A timm model saves with '
            f'timm.models.push_to_hf_hub; any other module with torch.save or safetensors.')
    return architecture


def _model_args(model: nn.Module, model_args: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Constructor arguments that rebuild the model: its construction record, updated with `model_args`."""
    from ._record import get_model_args
    args = get_model_args(model)  # the zoo's construction record: the exact arguments
    args.update(model_args or {})
    # the classifier may have been reset since construction (e.g. to export an embedding model)
    args['num_classes'] = model.num_classes
    try:
        args = json.loads(json.dumps(args))  # tuples -> lists, as they will be read back
    except (TypeError, ValueError) as e:
        raise ValueError(f'model_args must be JSON serialisable to rebuild the model, got {args!r}: {e}') from e
    return args


def _source_weights(model: nn.Module, source_weights: Optional[str]) -> str:
    """What the weights started from: the caller's word, else what was recorded as loaded (never the registry's
    default pretrained source, which a model built with pretrained=False did not load)."""
    return source_weights or weights_source(model)


# pretrained_cfg fields that describe where the source weights were loaded from, not these weights
_SOURCE_FIELDS = ('url', 'file', 'state_dict', 'hf_hub_id', 'hf_hub_filename', 'source', 'revision', 'notes')
_NULLABLE_FIELDS = ('pool_size', 'first_conv', 'classifier')  # timm keeps these even when None


def _hf_config(model: nn.Module, architecture: str, args: Dict[str, Any]) -> Dict[str, Any]:
    """timm's config.json layout from the model's public attributes: architecture, num_classes, num_features,
    model_args and pretrained_cfg (input size, mean/std, ..., without the source fields)."""
    cfg = {k: v for k, v in model.pretrained_cfg.items()
           if k not in _SOURCE_FIELDS and k != 'architecture' and (v is not None or k in _NULLABLE_FIELDS)}
    cfg['num_classes'] = model.num_classes
    cfg['custom_load'] = False  # a plain state dict, whatever the source needed
    config = {'architecture': architecture, 'num_classes': model.num_classes, 'num_features': model.num_features,
              'model_args': args, 'pretrained_cfg': cfg}
    return json.loads(json.dumps(config))  # tuples -> lists, as they will be read back


def save_pretrained(
        model: nn.Module,
        save_directory: Union[str, Path],
        model_args: Optional[Dict[str, Any]] = None,
        model_card: Optional[Dict[str, Any]] = None,
        source_weights: Optional[str] = None,
        repo_id: Optional[str] = None,
        write_card: bool = True,
) -> Path:
    """Save a model as a Hub-ready folder: ``model.safetensors``, ``config.json`` and a ``README.md`` model card.

    Args:
        model: A zoo model (built by m3d_zoo.create_model).
        save_directory: Folder to write; created if needed, files in it are overwritten.
        model_args: Constructor arguments to record in addition to (or instead of) ``model.model_args``.
        model_card: Card content: ``description``, ``datasets`` (training data, list), ``training`` (dict of
            details), ``metrics`` ({dataset: {metric: value}}), ``eval_protocol``, ``license``, ``tags``, ``notes``.
        source_weights: What the weights started from, e.g. ``timm/resnet50.tv_in1k``; defaults to what
            m3d_zoo.create_model recorded as loaded (`RANDOM_INIT` for pretrained=False), with a note if the
            weights changed since.
        repo_id: The Hub repo the folder is meant for, used in the card's usage snippet.
        write_card: Write README.md.

    Returns:
        The folder.

    Raises:
        TypeError: `model` is not a zoo model.
    """
    architecture = _architecture(model)  # before anything is written: a module m3d_zoo cannot rebuild is refused
    args = _model_args(model, model_args)
    source = _source_weights(model, source_weights)
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)

    model_card = dict(model_card or {})
    weights_path = save_directory / WEIGHTS_NAME
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        'format': 'pt',
        'architecture': architecture,
        'source_weights': source,
        'model_args': json.dumps(args, sort_keys=True),
        'm3d_zoo_version': __version__,
    }
    if 'num_frames' in args:
        metadata['num_frames'] = str(args['num_frames'])
    # Every file is replaced atomically, weights first: a crash never leaves a half-written file, and a config.json
    # always describes complete weights (its sha256 tells an older config from the new weights).
    write_safetensors(weights_path, state_dict, metadata)

    config_path = save_directory / CONFIG_NAME
    config = _hf_config(model, architecture, args)
    config['weights'] = {'file': WEIGHTS_NAME, 'format': 'safetensors', 'sha256': file_sha256(weights_path),
                         'size': weights_path.stat().st_size}
    config['m3d_zoo'] = {'version': __version__, 'source_weights': source, 'num_params': _num_params(model)}
    atomic_write_text(config_path, json.dumps(config, indent=2) + '\n')

    if write_card:
        card = generate_model_card(config, model_card, repo_id=repo_id or f'{HF_ORG}/{architecture}')
        atomic_write_text(save_directory / README_NAME, card)
    return save_directory


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def push_to_hub(
        model: nn.Module,
        repo_id: str,
        commit_message: str = 'Add model',
        revision: Optional[str] = None,
        private: Optional[bool] = None,
        token: Optional[str] = None,
        create_pr: bool = False,
        model_args: Optional[Dict[str, Any]] = None,
        model_card: Optional[Dict[str, Any]] = None,
        source_weights: Optional[str] = None,
):
    """Push a model to a Hub repo (created if needed): weights, config and model card, in one commit.

    Args:
        model: A zoo model (built by m3d_zoo.create_model).
        repo_id: ``organisation/name``, e.g. ``m3d-zoo/m3d_resnet50.mars``.
        commit_message: The commit's title.
        revision: Branch to commit to (created from main if missing); main by default.
        private: Create the repo private.
        token: Hub token with write access; the logged-in user's (or HF_TOKEN) by default.
        create_pr: Open a pull request instead of committing to the branch.
        model_args: See `save_pretrained`.
        model_card: See `save_pretrained`.
        source_weights: See `save_pretrained`.

    Returns:
        huggingface_hub's ``CommitInfo`` (``oid`` is the commit id, usable as ``hf-hub:{repo_id}@{oid}``).

    Raises:
        TypeError: `model` is not a zoo model.
        HubAuthError: no token, an invalid one, or one without write access.
        HubOfflineError: HF_HUB_OFFLINE is set, or the Hub cannot be reached.
        HubError: any other refusal by the Hub.
    """
    from huggingface_hub import HfApi
    _architecture(model)  # a module m3d_zoo cannot rebuild is refused before the repo is created
    if _is_offline():
        raise HubOfflineError(f"push_to_hub('{repo_id}'): HF_HUB_OFFLINE=1 is set, and a push needs the Hub. "
                              f"{_push_later_help(repo_id)} Or unset HF_HUB_OFFLINE (or set HF_HUB_OFFLINE=0).")
    api = HfApi(token=token, library_name='m3d_zoo', library_version=__version__)
    with _push_errors(repo_id, token):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision and revision != 'main' and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with TemporaryDirectory() as tmpdir:
            save_pretrained(model, tmpdir, model_args=model_args, model_card=model_card,
                            source_weights=source_weights, repo_id=repo_id)
            return api.upload_folder(
                repo_id=repo_id, folder_path=tmpdir, revision=revision, commit_message=commit_message,
                create_pr=create_pr)


def _push_later_help(repo_id: str) -> str:
    return (f'To push later, save the folder now with m3d_zoo.save_pretrained(model, FOLDER) and upload it with '
            f'`hf upload {repo_id} FOLDER`.')


def _transport_errors() -> Tuple[type, ...]:
    """The connection and timeout errors of the HTTP client huggingface_hub uses: requests before 1.0, then httpx."""
    import huggingface_hub
    if int(huggingface_hub.__version__.split('.')[0]) < 1:
        import requests
        return (requests.ConnectionError, requests.Timeout)
    try:
        from huggingface_hub.utils import httpx  # the client it uses, re-exported from 1.31 on (httpx2 from 2.0)
    except ImportError:
        import httpx
    return (httpx.TransportError,)


@contextmanager
def _push_errors(repo_id: str, token: Optional[Union[str, bool]]) -> Iterator[None]:
    """Turn huggingface_hub's errors during a push into `HubError` subclasses that say what to do."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    what = f"push_to_hub('{repo_id}')"
    login = ("log in with `hf auth login`, set the HF_TOKEN environment variable, or pass token='hf_...' to "
             "push_to_hub")
    try:
        yield
    except OfflineModeIsEnabled as e:
        raise HubOfflineError(f'{what}: HF_HUB_OFFLINE=1 is set, and a push needs the Hub. '
                              f'{_push_later_help(repo_id)}') from e
    except HfHubHTTPError as e:
        status = getattr(e.response, 'status_code', None)
        answer = f'{status} {str(e).strip().splitlines()[-1]}'
        if status == 401 and not (token if token is not None else get_token()):
            raise HubAuthError(f'{what}: the Hub at {_endpoint()} refused the push ({answer}): no Hub token was given '
                               f'or found, and a push needs one with write access. To fix, {login}.') from e
        if status == 401:
            raise HubAuthError(f'{what}: the Hub at {_endpoint()} rejected the token ({answer}): it is invalid or '
                               f'expired. Create a token with write access in your Hub settings, then {login}.') \
                from e
        if status == 403:
            raise HubAuthError(f"{what}: the token has no write access to '{repo_id}' ({answer}). Use a token with "
                               f"write access to '{repo_id.split('/')[0]}' ({login}), or push to a repo of your "
                               f"own.") from e
        raise HubError(f'{what}: the Hub at {_endpoint()} answered an error: {e}') from e
    except _transport_errors() as e:
        raise HubOfflineError(f'{what}: the Hub at {_endpoint()} could not be reached ({e}). Check the network and '
                              f'HF_ENDPOINT. {_push_later_help(repo_id)}') from e


# ---------------------------------------------------------------------------------------------------------------------
# Loading


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
        from ._factory import is_model, list_models
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
    if _is_offline():
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
        except (HfHubHTTPError, OSError) + _transport_errors():
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
        from ._factory import create_model
        return create_model
    except ImportError:
        import timm
        return timm.create_model


# ---------------------------------------------------------------------------------------------------------------------
# Model card

_FAMILIES: List[Tuple[str, str]] = [
    # (architecture prefix, what it is), longest prefixes first; wording after the paper's names for the models
    ('two_stream_m3d', 'the paper\'s full two-stream network: a 2D ResNet spatial stream (frame features averaged '
                       'over time) and an M3D + Residual Attention Layer temporal stream, their embeddings '
                       'concatenated (Eq. 1)'),
    ('m3d_ral_s_', 'an M3D network with Residual Attention Layers using the spatial attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_t_', 'an M3D network with Residual Attention Layers using the temporal attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_c_', 'an M3D network with Residual Attention Layers using the channel attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_', 'an M3D network with Residual Attention Layers (spatial, channel and temporal attention) after '
                 'stages 1-3'),
    ('m3d_', 'an M3D CNN: a 2D ResNet with multi-scale 3D (M3D) layers, parallel dilated temporal convolutions, at '
             'the stem and in the first bottleneck of each stage'),
    ('p3d_a_', 'a P3D-A network: spatial 1x3x3 then temporal 3x1x1 convolutions in series in every block'),
    ('p3d_b_', 'a P3D-B network: spatial and temporal convolutions in parallel in every block'),
    ('p3d_c_', 'a P3D-C network: a temporal convolution added residually after the spatial one in every block'),
    ('i3d_', 'an I3D network: a ResNet with every 3x3 convolution inflated to 3x3x3'),
    ('c2d_', 'a frame-wise 2D ResNet ("2D CNN" in the paper) whose frame embeddings are averaged over time (Eq. 2)'),
]


def _family(architecture: str) -> str:
    for prefix, text in _FAMILIES:
        if architecture.startswith(prefix):
            return text
    return 'a video person re-identification network'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f'{v:.2f}'
    return str(v)


def _metrics_table(metrics: Dict[str, Dict[str, Any]]) -> str:
    columns: List[str] = []
    for row in metrics.values():
        for k in row:
            if k not in columns:
                columns.append(k)
    lines = ['| Dataset | ' + ' | '.join(columns) + ' |', '|---|' + '---|' * len(columns)]
    for dataset, row in metrics.items():
        lines.append(f'| {dataset} | ' + ' | '.join(_fmt(row[c]) if c in row else '' for c in columns) + ' |')
    return '\n'.join(lines)


def generate_model_card(config: Dict[str, Any], model_card: Optional[Dict[str, Any]] = None,
                        repo_id: Optional[str] = None) -> str:
    """Write a README.md model card for a saved model.

    Args:
        config: The model's config.json content.
        model_card: Optional content, see `save_pretrained`.
        repo_id: The repo, for the usage snippet.

    Returns:
        The card, YAML front matter included.
    """
    card = dict(model_card or {})
    arch = config['architecture']
    args = config.get('model_args') or {}
    pcfg = config.get('pretrained_cfg') or {}
    weights = config.get('weights') or {}
    zoo = config.get('m3d_zoo') or {}
    num_frames = args.get('num_frames', 8)
    _, height, width = (list(pcfg.get('input_size') or (3, 256, 128)) + [None] * 3)[:3]
    mean = tuple(pcfg.get('mean') or (0.485, 0.456, 0.406))
    std = tuple(pcfg.get('std') or (0.229, 0.224, 0.225))
    datasets = card.get('datasets') or []
    if isinstance(datasets, str):
        datasets = [datasets]
    metrics = card.get('metrics') or {}
    num_classes = config.get('num_classes', args.get('num_classes'))
    repo_id = repo_id or f'{HF_ORG}/{arch}'
    tags = card.get('tags') or ['video', 'person-reid', 'person-re-identification', 'm3d_zoo', 'timm']

    out = ['---', f"license: {card.get('license', 'apache-2.0')}", 'library_name: timm', 'tags:']
    out += [f'- {t}' for t in tags]
    if datasets:
        out += ['datasets:'] + [f'- {d.lower()}' for d in datasets]
    out += ['---', '', f'# {repo_id.split("/")[-1]}', '']
    out += [card.get('description') or (
        f'`{arch}` is {_family(arch)}, from m3d_zoo, the model zoo of '
        f'*{PAPER_TITLE}* (Li, Zhang and Huang, AAAI 2019). Given a short video clip of one person (a tracklet '
        f'crop), it produces an embedding for video-based person re-identification: matching the same person across '
        f'cameras by comparing embeddings.'), '']

    out += ['## Model details', '']
    out += [f'- **Architecture:** `{arch}` (m3d_zoo {zoo.get("version", __version__)}, built on timm)']
    if zoo.get('num_params'):
        out += [f"- **Parameters:** {zoo['num_params'] / 1e6:.2f} M"]
    out += [f"- **Embedding size:** {config.get('num_features')} (the output with `num_classes=0`)"]
    if num_classes:
        out += [f'- **Classifier:** {num_classes} training identities (replace it or pass `num_classes=0`)']
    out += [f'- **Frames per clip (T):** {num_frames}']
    out += [f"- **Source weights:** {zoo.get('source_weights', 'unknown')}"]
    if weights.get('sha256'):
        out += [f"- **Weights:** `{weights.get('file', WEIGHTS_NAME)}`, sha256 `{weights['sha256']}` "
                f"(verified by m3d_zoo on load)"]
    out += [f'- **Paper:** [{PAPER_TITLE}]({PAPER_URL})']
    out += ['- **Construction arguments** (`model_args` in config.json, used to rebuild the model):', '',
            '```json', json.dumps(args, indent=2, sort_keys=True), '```', '']

    out += ['## Input', '']
    out += [f'- A float tensor of shape `(B, 3, T, H, W)` = `(B, 3, {num_frames}, {height}, {width})`: B clips of '
            f'T={num_frames} consecutive frames, RGB, each frame resized to {height}x{width} (height x width).',
            f'- Pixel values scaled to [0, 1], then normalised per channel with the ImageNet mean {mean} and '
            f'std {std}.',
            '- Output: with `num_classes=0` the embedding `(B, D)`; otherwise classification logits over the '
            'training identities.',
            '- A tracklet of L frames is cut into floor(L/T) clips of T consecutive frames (shorter ones are looped '
            'up to T); the clip embeddings are averaged and tracklets ranked by Euclidean distance, as in the paper.']
    if arch.startswith(('m3d_ral', 'two_stream')):
        out += [f'- The temporal attention branch is built for T={num_frames}: clips of another length are '
                f'rejected.']
    out += ['']

    out += ['## Usage', '', '```python', 'import torch', 'import m3d_zoo', '',
            f'model = m3d_zoo.create_model("hf-hub:{repo_id}", pretrained=True, num_classes=0).eval()',
            f'clips = torch.randn(2, 3, {num_frames}, {height}, {width})  # ImageNet-normalised RGB clips',
            'with torch.no_grad():',
            '    embeddings = model(clips)  # (2, D)',
            '```', '',
            'Offline: once downloaded, the model loads from the Hugging Face cache with `HF_HUB_OFFLINE=1`; '
            '`m3d_zoo.create_model("local-dir:/path/to/folder", pretrained=True)` loads a local copy of this repo.',
            '']

    out += ['## Training data', '']
    if datasets or card.get('training'):
        if datasets:
            out += [f"Trained on {', '.join(datasets)}.", '']
        for k, v in (card.get('training') or {}).items():
            out += [f'- **{k}:** {v}']
        out += ['']
    else:
        out += ['These weights were not trained for re-identification by this release: they are the '
                f"initialisation ({zoo.get('source_weights', 'unknown')}) or an untrained model. Fine-tune before "
                'use.', '']

    if metrics:
        out += ['## Evaluation', '', _metrics_table(metrics), '']
        if card.get('eval_protocol'):
            out += [str(card['eval_protocol']), '']

    out += ['## Intended use', '',
            '- Research on video-based person re-identification: reproducing and extending the paper\'s experiments, '
            'benchmarking, and studying temporal modelling.',
            '- A backbone to fine-tune on re-identification data for which the people filmed have given their '
            'consent, or where another lawful basis exists and is documented.', '']

    out += ['## Limitations and risks', '',
            '**Person re-identification is surveillance technology.** Its purpose is to recognise the same person '
            'across cameras and over time, which makes it possible to track individuals, usually without their '
            'knowledge. It can be used to monitor people, to follow them through public spaces, and to chill '
            'lawful activity such as protest, and its errors fall on the people wrongly matched. In many '
            'jurisdictions such processing is regulated (for example as personal or biometric data under the '
            'GDPR, and by the EU AI Act), and some uses are prohibited.',
            '',
            '- Do not use this model to identify, track or profile people without a lawful basis, their informed '
            'consent where required, and meaningful human oversight. It must never be the sole basis of a decision '
            'about a person.',
            '- A match is a similarity score, not an identification: rank lists contain errors and need human '
            'verification.',
            '- Accuracy drops under domain shift: other cameras, viewpoints, resolutions, lighting, crowd density or '
            'clothing changes than in the training data. Benchmark numbers do not transfer to deployments.',
            '- It has not been evaluated for differences in accuracy across demographic groups.',
            '- Public re-identification benchmarks were recorded of people who did not all consent to it; check the '
            'terms and status of any dataset before use (some, e.g. DukeMTMC, have been withdrawn).', '']
    if card.get('notes'):
        out += ['## Notes', '', str(card['notes']), '']

    out += ['## Citation', '', '```bibtex', PAPER_CITATION, '```', '']
    return '\n'.join(out)

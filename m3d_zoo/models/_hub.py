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
import hashlib
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from .._io import atomic_path, atomic_write_text
from ..version import __version__

__all__ = [
    'HF_ORG', 'WEIGHTS_NAME', 'CONFIG_NAME', 'README_NAME', 'RELEASED_WEIGHTS', 'released_pretrained_cfgs',
    'HubError', 'HubRepoNotFoundError', 'HubRevisionNotFoundError', 'HubFileNotFoundError', 'HubOfflineError',
    'CorruptWeightsError', 'UnknownArchitectureError',
    'save_pretrained', 'push_to_hub', 'create_model_from_source', 'load_weights', 'verify_weights', 'file_sha256',
    'generate_model_card', 'hub_errors',
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


def file_sha256(path: Union[str, Path]) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            h.update(chunk)
    return h.hexdigest()


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
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    try:
        return load_file(str(path), device='cpu')
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptWeightsError(
            f'{what + ": " if what else ""}{path.name} is not a valid safetensors file ({e}). File: {path}. '
            f'It is corrupted or truncated, or not a safetensors file at all; m3d_zoo loads weights from '
            f'safetensors only (never pickle).'
        ) from e


def _safetensors_metadata(path: Union[str, Path]) -> Dict[str, str]:
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as f:
        return dict(f.metadata() or {})


# ---------------------------------------------------------------------------------------------------------------------
# Saving


def _model_args(model: nn.Module, model_args: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Constructor arguments that rebuild the model: the zoo's ``model.model_args``, else timm's record."""
    from ._record import get_model_args, has_model_args
    if has_model_args(model):
        args = get_model_args(model)  # the zoo's construction record: the exact arguments
    else:
        from timm.models import get_model_args as timm_model_args  # a timm model: its create_model arguments
        args = timm_model_args(model)
    args.update(model_args or {})
    # the classifier may have been reset since construction (e.g. to export an embedding model)
    args['num_classes'] = model.num_classes
    try:
        args = json.loads(json.dumps(args))  # tuples -> lists, as they will be read back
    except (TypeError, ValueError) as e:
        raise ValueError(f'model_args must be JSON serialisable to rebuild the model, got {args!r}: {e}') from e
    return args


def _source_weights(model: nn.Module, source_weights: Optional[str]) -> str:
    if source_weights:
        return source_weights
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    if cfg.get('hf_hub_id'):
        return cfg['hf_hub_id']
    arch, tag = cfg.get('architecture'), cfg.get('tag')
    return f'{arch}.{tag}' if arch and tag else 'unknown'


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
        model: A zoo model (or any timm model).
        save_directory: Folder to write; created if needed, files in it are overwritten.
        model_args: Constructor arguments to record in addition to (or instead of) ``model.model_args``.
        model_card: Card content: ``description``, ``datasets`` (training data, list), ``training`` (dict of
            details), ``metrics`` ({dataset: {metric: value}}), ``eval_protocol``, ``license``, ``tags``, ``notes``.
        source_weights: What the weights started from, e.g. ``timm/resnet50.tv_in1k``; defaults to the model's
            pretrained_cfg.
        repo_id: The Hub repo the folder is meant for, used in the card's usage snippet.
        write_card: Write README.md.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file
    # timm's config writer alone: its public save_for_hf would also write the weights, which are written once below
    from timm.models._hub import save_config_for_hf

    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    args = _model_args(model, model_args)
    architecture = model.pretrained_cfg['architecture']
    source = _source_weights(model, source_weights)

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
    with atomic_path(weights_path) as tmp:
        save_file(state_dict, str(tmp), metadata=metadata)

    config_path = save_directory / CONFIG_NAME
    # timm writes config.json in its own format; the zoo's model_args then replace timm's guess at the rebuild
    # arguments, as timm adds ones (in_chans, global_pool) a zoo constructor need not take.
    with TemporaryDirectory() as d:
        save_config_for_hf(model, Path(d) / CONFIG_NAME, model_args={'num_classes': model.num_classes})
        config = json.loads((Path(d) / CONFIG_NAME).read_text())
    config['model_args'] = args
    # notes describe the source checkpoint (e.g. 'not ReID-trained'), not these weights
    config.get('pretrained_cfg', {}).pop('notes', None)
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
        model: A zoo model (or any timm model).
        repo_id: ``organisation/name``, e.g. ``m3d-zoo/m3d_resnet50.mars``.
        commit_message: The commit's title.
        revision: Branch to commit to (created from main if missing); main by default.
        private: Create the repo private.
        token: Hub token; the logged-in user's (or HF_TOKEN) by default.
        create_pr: Open a pull request instead of committing to the branch.
        model_args: See `save_pretrained`.
        model_card: See `save_pretrained`.
        source_weights: See `save_pretrained`.

    Returns:
        huggingface_hub's ``CommitInfo`` (``oid`` is the commit id, usable as ``hf-hub:{repo_id}@{oid}``).
    """
    from huggingface_hub import HfApi
    api = HfApi(token=token, library_name='m3d_zoo', library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision and revision != 'main' and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with TemporaryDirectory() as tmpdir:
        save_pretrained(model, tmpdir, model_args=model_args, model_card=model_card, source_weights=source_weights,
                        repo_id=repo_id)
        return api.upload_folder(
            repo_id=repo_id, folder_path=tmpdir, revision=revision, commit_message=commit_message,
            create_pr=create_pr)


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
        raise ValueError(f"'{model_id}': expected 'organisation/name' or 'organisation/name@revision'.")
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
    """
    from timm.models import parse_model_name
    source, model_id = parse_model_name(model_name)
    if source not in ('hf-hub', 'local-dir'):
        raise ValueError(f"'{model_name}' has no source prefix: expected 'hf-hub:org/name' or 'local-dir:PATH'.")
    what = f'{source}:{model_id}'
    if kwargs.pop('pretrained_cfg', None) is not None:
        raise ValueError(f'{what}: pretrained_cfg cannot be combined with a source prefix, the source supplies it.')

    config_path = _fetch(source, model_id, CONFIG_NAME, cache_dir=cache_dir, force_download=force_download)
    try:
        config = json.loads(config_path.read_text(encoding='utf-8'))
    except ValueError as e:
        raise HubError(f'{what}: {CONFIG_NAME} is not valid JSON ({e}). File: {config_path}') from e
    architecture = config.get('architecture')
    _known_architecture(architecture, what)

    # pin the weights to the commit the config came from, even if the branch moves between the two downloads
    commit = config_path.parent.name if source == 'hf-hub' and re.fullmatch(r'[0-9a-f]{40}', config_path.parent.name) \
        else None
    pretrained_cfg = dict(config.get('pretrained_cfg') or {})
    pretrained_cfg.pop('architecture', None)
    if source == 'hf-hub':
        pretrained_cfg.update(hf_hub_id=model_id, source='hf-hub')
    else:
        pretrained_cfg.update(file=str(Path(model_id).expanduser() / WEIGHTS_NAME), source='local-dir')

    saved_args = dict(config.get('model_args') or {})
    num_classes = kwargs.pop('num_classes', None)
    args = dict(saved_args, **{k: v for k, v in kwargs.items() if v is not None})
    if num_classes is not None and not pretrained:
        args['num_classes'] = num_classes

    create = _zoo_create_model()
    model = create(architecture, pretrained=False, pretrained_cfg=pretrained_cfg, **args)

    if pretrained:
        weights = config.get('weights') or {}
        filename = weights.get('file', WEIGHTS_NAME)
        if not filename.endswith('.safetensors'):
            raise HubError(f'{what}: weights file {filename!r} is not safetensors; m3d_zoo never unpickles weights.')
        weights_path = _fetch(source, model_id, filename, cache_dir=cache_dir, force_download=force_download,
                              revision=commit)
        verify_weights(weights_path, weights.get('sha256'), weights.get('size'), what=what)
        state_dict = load_weights(weights_path, what=what)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:  # missing, unexpected or differently shaped tensors
            overridden = sorted(k for k in kwargs if saved_args.get(k) != kwargs[k])
            raise HubError(
                f'{what}: the weights do not fit {architecture} built with '
                f'{"the overridden arguments " + str(overridden) if overridden else "its saved model_args"}: '
                f'{str(e)[:2000]}') from e
        if num_classes is not None and num_classes != model.num_classes:
            model.reset_classifier(num_classes)
            if isinstance(getattr(model, 'model_args', None), dict):
                model.model_args['num_classes'] = num_classes
        if commit:
            model.pretrained_cfg = dict(model.pretrained_cfg, revision=commit)
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

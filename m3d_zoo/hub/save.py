""" Save a zoo model as a Hub-ready folder (weights, config.json, model card), and push it to a Hub repo. """
import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch.nn as nn

from .._io import atomic_write_text, file_sha256, write_safetensors
from ..version import __version__
from .card import generate_model_card
from .constants import CONFIG_NAME, HF_ORG, README_NAME, WEIGHTS_NAME
from .errors import HubOfflineError, is_offline, push_errors, push_later_help
from .provenance import weights_source

__all__ = ['save_pretrained', 'push_to_hub', 'push_folder']


def _architecture(model: Any) -> str:
    """The registered architecture of a zoo model; TypeError for anything else, which m3d_zoo could not rebuild."""
    from ..models._record import has_model_args
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
    if getattr(model, 'is_fused', False):
        raise ValueError(
            f'This {type(model).__name__} was fused (model.fuse()): its merged kernels and folded BatchNorms are not '
            f'the parameters {architecture} is built with, so the saved file would not load back. Save the model '
            f'before fusing it, or fuse a copy (copy.deepcopy(model).fuse()) for inference and export.')
    return architecture


def _model_args(model: nn.Module, model_args: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Constructor arguments that rebuild the model: its construction record, updated with `model_args`."""
    from ..models._record import get_model_args
    args = get_model_args(model)  # the zoo's construction record: the exact arguments
    args.update(model_args or {})
    # the classifier may have been reset since construction (e.g. to export an embedding model)
    args['num_classes'] = model.num_classes
    try:
        args = json.loads(json.dumps(args))  # tuples -> lists, as they will be read back
    except (TypeError, ValueError) as e:
        raise ValueError(f'model_args must be JSON serialisable to rebuild the model, got {args!r}: {e}') from e
    return args


# pretrained_cfg fields that describe where the source weights were loaded from, not these weights
_SOURCE_FIELDS = ('url', 'file', 'state_dict', 'hf_hub_id', 'hf_hub_filename', 'source', 'revision', 'notes')
_NULLABLE_FIELDS = ('pool_size', 'first_conv', 'classifier')  # timm keeps these even when None


def _hf_config(model: nn.Module, architecture: str, args: Dict[str, Any]) -> Dict[str, Any]:
    """timm's config.json layout from the model's public attributes: architecture, num_classes, num_features,
    model_args and pretrained_cfg (input size, mean/std, ..., without the source fields, and only timm's
    `PretrainedCfg` fields, which timm's loader insists on: the clip length is in model_args)."""
    from timm.models import PretrainedCfg
    timm_fields = {f.name for f in dataclasses.fields(PretrainedCfg)}
    cfg = {k: v for k, v in model.pretrained_cfg.items()
           if k in timm_fields and k not in _SOURCE_FIELDS and k != 'architecture'
           and (v is not None or k in _NULLABLE_FIELDS)}
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
    # the caller's word, else what was recorded as loaded (never the registry's default pretrained source, which a
    # model built with pretrained=False did not load)
    source = source_weights or weights_source(model)
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)

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

    config = _hf_config(model, architecture, args)
    config['weights'] = {'file': WEIGHTS_NAME, 'format': 'safetensors', 'sha256': file_sha256(weights_path),
                         'size': weights_path.stat().st_size}
    config['m3d_zoo'] = {'version': __version__, 'source_weights': source,
                         'num_params': sum(p.numel() for p in model.parameters())}
    atomic_write_text(save_directory / CONFIG_NAME, json.dumps(config, indent=2) + '\n')

    if write_card:
        card = generate_model_card(config, model_card, repo_id=repo_id or f'{HF_ORG}/{architecture}')
        atomic_write_text(save_directory / README_NAME, card)
    return save_directory


@contextmanager
def _push_session(repo_id: str, revision: Optional[str], private: Optional[bool], token: Optional[Union[str, bool]],
                  create_pr: bool, caller: str) -> Iterator[Tuple[Any, str]]:
    """Create the repo (and branch) of a push; yields huggingface_hub's HfApi and the repo's full id.

    huggingface_hub's errors in the block become `HubError` subclasses that say what to do.
    """
    from huggingface_hub import HfApi
    what = f"{caller}('{repo_id}')"
    if is_offline():
        raise HubOfflineError(f'{what}: HF_HUB_OFFLINE=1 is set, and a push needs the Hub. '
                              f'{push_later_help(repo_id)} Or unset HF_HUB_OFFLINE (or set HF_HUB_OFFLINE=0).')
    api = HfApi(token=token, library_name='m3d_zoo', library_version=__version__)
    with push_errors(what, repo_id, token, caller):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision and revision != 'main' and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        yield api, repo_id


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
    _architecture(model)  # a module m3d_zoo cannot rebuild is refused before the repo is created
    with _push_session(repo_id, revision, private, token, create_pr, 'push_to_hub') as (api, repo_id):
        with TemporaryDirectory() as tmpdir:
            save_pretrained(model, tmpdir, model_args=model_args, model_card=model_card,
                            source_weights=source_weights, repo_id=repo_id)
            return api.upload_folder(repo_id=repo_id, folder_path=tmpdir, revision=revision,
                                     commit_message=commit_message, create_pr=create_pr)


def push_folder(
        folder: Union[str, Path],
        repo_id: str,
        commit_message: str,
        revision: Optional[str] = None,
        private: Optional[bool] = None,
        token: Optional[str] = None,
        tag: Optional[str] = None,
        caller: str = 'push_folder',
):
    """Upload a folder written by `save_pretrained` to a Hub repo (created if needed) in one commit, and tag it.

    Args:
        folder: The saved model folder.
        repo_id: ``organisation/name``.
        commit_message: The commit's title (and the tag's message).
        revision: Branch to commit to (created from main if missing); main by default.
        private: Create the repo private.
        token: Hub token with write access; the logged-in user's (or HF_TOKEN) by default.
        tag: A git tag to put on the new commit, e.g. ``v1.0``.
        caller: The public function pushing, named in error messages.

    Returns:
        huggingface_hub's ``CommitInfo``.
    """
    with _push_session(repo_id, revision, private, token, False, caller) as (api, repo_id):
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message)
        if tag:
            api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=commit_message)
    return info

""" From a training checkpoint to a Hub repo: the one release path of `hub/release.py`, `m3d-zoo push
--checkpoint` and ``train(push_to_hub=...)``.

`build_release` rebuilds the trained model from its checkpoint, writes the repo's folder (weights, config.json, a
model card from the run's recipe and evaluation results) and checks that the folder reloads to the same model;
`push_release` uploads that folder in one commit. The checkpoint is the engine's (safetensors with the architecture
and model arguments in its metadata, or a run folder) or a torch file, read with ``weights_only=True``.
"""
import json
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from .._io import file_sha256
from ..engine.checkpoint import Checkpoint, CheckpointError, apply_preprocessing, load_checkpoint
from ..models import create_model
from .card import model_card_for_run
from .constants import CONFIG_NAME, HF_ORG, WEIGHTS_NAME
from .errors import CorruptWeightsError
from .save import push_folder, save_pretrained

__all__ = ['load_training_checkpoint', 'model_for_release', 'build_release', 'push_release', 'push_checkpoint',
           'registry_entry']

_STATE_KEYS = ('state_dict', 'model', 'model_state_dict', 'ema', 'state_dict_ema', 'model_ema')
_ARCH_KEYS = ('architecture', 'arch', 'model_name')


def load_training_checkpoint(path: Union[str, Path]) -> Checkpoint:
    """Read a training checkpoint safely: the engine's (or any safetensors state dict, or a run folder), or a torch
    file of tensors and plain values.

    A torch file holds a bare state dict or one under ``state_dict``, ``model``, ``model_state_dict`` or ``ema``,
    with the architecture under ``architecture``/``arch``/``model_name`` and the constructor arguments under
    ``model_args``. DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes are removed.

    Raises:
        CheckpointError: a missing or unreadable file, an object that is not plain data, or no state dict in it.
    """
    path = Path(path).expanduser()
    if path.is_dir() or path.suffix == '.safetensors':
        return load_checkpoint(path, with_train_state=False)
    if not path.is_file():
        raise CheckpointError(f'Checkpoint {path} does not exist.')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects: say why instead of unpickling them
        raise CheckpointError(
            f'{path}: cannot be read with torch.load(weights_only=True) ({e}). Save the checkpoint as a dict of '
            f'tensors and plain values (or safetensors); m3d_zoo never unpickles untrusted objects.') from e
    arch, args, state = None, {}, ckpt
    if isinstance(ckpt, dict):
        arch = next((ckpt[k] for k in _ARCH_KEYS if isinstance(ckpt.get(k), str)), None)
        args = dict(ckpt.get('model_args') or {})
        state = next((ckpt[k] for k in _STATE_KEYS if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path}: no state dict found (looked for a dict of tensors, or one under '
                              f'{_STATE_KEYS}).')
    return Checkpoint(path=path, state_dict={_strip_prefixes(k): v for k, v in state.items()}, architecture=arch,
                      model_args=args)


def _strip_prefixes(key: str) -> str:
    for prefix in ('module.', '_orig_mod.'):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def model_for_release(
        checkpoint: Union[str, Path],
        model: Optional[str] = None,
        model_args: Optional[Dict[str, Any]] = None,
        drop_classifier: bool = False,
) -> Tuple[nn.Module, Checkpoint]:
    """Rebuild the model a training checkpoint holds, its weights loaded strictly, in eval mode.

    Args:
        checkpoint: See `load_training_checkpoint`.
        model: The architecture, if the checkpoint does not record it (or to override it).
        model_args: Constructor arguments over those the checkpoint records.
        drop_classifier: Release the embedding model only (``num_classes=0``).

    Returns:
        (model, checkpoint).
    """
    ckpt = load_training_checkpoint(checkpoint)
    arch = model or ckpt.architecture
    if not arch:
        raise CheckpointError(f'{ckpt.path}: the architecture is not recorded in the checkpoint; pass it (--model, '
                              f'or model= in Python).')
    args = dict(ckpt.model_args, **(model_args or {}))
    net = create_model(arch, pretrained=False, **args)
    try:
        net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as e:  # missing, unexpected or differently shaped tensors
        raise CheckpointError(f'{ckpt.path} does not fit {arch}({args}): {str(e)[:2000]}\nPass the training run\'s '
                              f'model arguments (--model-args, or model_args= in Python).') from e
    if drop_classifier:
        net.reset_classifier(0)
    apply_preprocessing(net, ckpt.preprocessing)  # the frame size and mean/std it was trained with, for config.json
    return net.eval(), ckpt


def _run_record(ckpt: Checkpoint) -> Dict[str, Any]:
    """The run's recipe.json beside the checkpoint (written by `m3d-zoo train`), {} if there is none."""
    path = ckpt.path.parent / 'recipe.json'
    return json.loads(path.read_text(encoding='utf-8')) if path.is_file() else {}


def build_release(
        checkpoint: Union[str, Path],
        results: Optional[Union[str, Path, Dict[str, Any]]],
        output_dir: Union[str, Path],
        model: Optional[str] = None,
        model_args: Optional[Dict[str, Any]] = None,
        dataset: Optional[str] = None,
        repo_id: Optional[str] = None,
        source_weights: Optional[str] = None,
        training: Optional[Dict[str, Any]] = None,
        drop_classifier: bool = False,
) -> Tuple[Path, str]:
    """Rebuild the trained model, write the Hub folder, and check that the folder reloads bit-identically.

    The dataset, epochs, source weights and recipe are read from the checkpoint's metadata and its run folder
    (recipe.json) where they are recorded; the arguments override them.

    Args:
        checkpoint: See `load_training_checkpoint`.
        results: Evaluation results (m3d_zoo.eval's, a JSON file or a dict), see `card_from_results`.
        output_dir: The folder to write.
        model: See `model_for_release`.
        model_args: See `model_for_release`.
        dataset: The training (and evaluation) dataset, e.g. ``MARS``.
        repo_id: The Hub repo; ``m3d-zoo/<architecture>.<dataset>`` by default.
        source_weights: What training started from, e.g. ``timm/resnet50.tv_in1k``.
        training: Training details for the card (``{name: text}``).
        drop_classifier: See `model_for_release`.

    Returns:
        (folder, repo_id).
    """
    net, ckpt = model_for_release(checkpoint, model, model_args, drop_classifier)
    arch = net.pretrained_cfg['architecture']
    run = _run_record(ckpt)
    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text(encoding='utf-8'))
    dataset = dataset or ckpt.metadata.get('dataset') or run.get('dataset')
    epochs = int(ckpt.metadata['epoch']) if ckpt.metadata.get('epoch', '').isdigit() else None
    card = model_card_for_run(run.get('recipe'), dataset, results, epochs=epochs, training=training)
    repo_id = repo_id or f'{HF_ORG}/{arch}' + (f'.{dataset.lower().replace("-", "")}' if dataset else '')
    folder = save_pretrained(net, output_dir, model_card=card, repo_id=repo_id,
                             source_weights=source_weights or ckpt.metadata.get('source_weights'))

    # what users will load must be what was trained: reload the folder through the public path and compare
    reloaded = create_model(f'local-dir:{folder}', pretrained=True).eval()
    frames = net.model_args.get('num_frames', getattr(net, 'num_frames', 8))
    x = torch.randn(2, 3, frames, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(net(x), reloaded(x)):
            raise CorruptWeightsError(f'{folder} does not reload to the same model; not releasing it.')
    return folder, repo_id


def push_release(
        folder: Union[str, Path],
        repo_id: str,
        private: Optional[bool] = None,
        revision: Optional[str] = None,
        tag: Optional[str] = None,
        commit_message: Optional[str] = None,
        token: Optional[str] = None,
):
    """Upload a folder written by `build_release` in one commit, optionally tagged.

    Returns:
        huggingface_hub's ``CommitInfo``.
    """
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text(encoding='utf-8'))
    if config['weights']['sha256'] != file_sha256(folder / WEIGHTS_NAME):
        raise CorruptWeightsError(f'{folder / WEIGHTS_NAME} changed since it was written (sha256 differs from '
                                  f'{CONFIG_NAME}); build the release again.')
    return push_folder(folder, repo_id, commit_message or f"Add {config['architecture']}", revision=revision,
                       private=private, token=token, tag=tag, caller='push_release')


def push_checkpoint(
        checkpoint: Union[str, Path],
        repo_id: str,
        results: Optional[Union[str, Path, Dict[str, Any]]] = None,
        dataset: Optional[str] = None,
        drop_classifier: bool = False,
        commit_message: Optional[str] = None,
        revision: Optional[str] = None,
        private: Optional[bool] = None,
):
    """`build_release` in a temporary folder, then `push_release`: a training checkpoint to the Hub in one call.

    Returns:
        huggingface_hub's ``CommitInfo``.
    """
    with TemporaryDirectory() as tmpdir:
        folder, repo_id = build_release(checkpoint, results, tmpdir, dataset=dataset, repo_id=repo_id,
                                        drop_classifier=drop_classifier)
        return push_release(folder, repo_id, private=private, revision=revision, commit_message=commit_message)


def registry_entry(repo_id: str, folder: Union[str, Path]) -> str:
    """The RELEASED_WEIGHTS line that gives the released weights a registry tag (``<architecture>.<tag>``)."""
    config = json.loads((Path(folder) / CONFIG_NAME).read_text(encoding='utf-8'))
    name = repo_id.split('/', 1)[1]
    if '.' not in name:
        name = f"{config['architecture']}.{name}"
    entry = f"'{name}': dict(hf_hub_id='{repo_id}', num_classes={config['num_classes']}),"
    defaults = create_model(config['architecture'], num_classes=config['num_classes']).model_args
    if json.loads(json.dumps(defaults)) != config['model_args']:
        entry += ('  # NOTE: saved with non-default model_args, a registry tag builds the defaults: '
                  f"publish it as hf-hub:{repo_id} only")
    return entry

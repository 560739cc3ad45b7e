#!/usr/bin/env python3
"""Turn a training checkpoint and its evaluation results into a Hub repo (weights, config, model card), and push it.

    python hub/release.py --checkpoint output/m3d_mars/last.pth --results output/m3d_mars/eval.json \\
        --dataset MARS --model m3d_resnet50 --output-dir release/m3d_resnet50.mars            # build and verify
    python hub/release.py ... --push [--repo-id m3d-zoo/m3d_resnet50.mars] [--tag v1.0]     # and publish

The checkpoint is a safetensors file or a torch file read with ``weights_only=True`` (never an unsafe unpickle):
either a bare state dict or a dict holding one under ``state_dict``, ``model``, ``model_state_dict`` or ``ema``,
with the architecture under ``architecture``/``arch``/``model_name`` and the constructor arguments under
``model_args`` (``--model`` and ``--model-args`` fill in or override them). DDP (``module.``) and torch.compile
(``_orig_mod.``) prefixes are removed. The weights must load strictly into the rebuilt model.

The results JSON is what m3d_zoo.eval returns (``mAP``, ``rank1``... as fractions, ``ap_mode``, ``gallery_mode``,
optional ``*_std`` and ``num_splits``), either for one dataset (``--dataset`` names it) or as
``{"MARS": {...}, "iLIDS-VID": {...}}``. See hub/README.md for the whole release process.
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_ROOT))

import m3d_zoo  # noqa: E402
from m3d_zoo._io import read_safetensors  # noqa: E402
from m3d_zoo.engine.hub import card_from_results  # noqa: E402
from m3d_zoo.models._hub import (  # noqa: E402
    CONFIG_NAME, HF_ORG, WEIGHTS_NAME, file_sha256, hub_errors, save_pretrained)

_STATE_KEYS = ('state_dict', 'model', 'model_state_dict', 'ema', 'state_dict_ema', 'model_ema')
_ARCH_KEYS = ('architecture', 'arch', 'model_name')

def load_training_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str], Dict[str, Any]]:
    """Read a training checkpoint safely.

    Returns:
        (state_dict, architecture or None, model_args).
    """
    path = Path(path)
    if path.suffix == '.safetensors':
        state, meta = read_safetensors(path)
        return state, meta.get('architecture'), json.loads(meta.get('model_args') or '{}')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects: say why instead of unpickling them
        raise ValueError(
            f'{path}: cannot be read with torch.load(weights_only=True) ({e}). Save the checkpoint as a dict of '
            f'tensors and plain values (or safetensors); m3d_zoo never unpickles untrusted objects.') from e
    arch, args, state = None, {}, ckpt
    if isinstance(ckpt, dict):
        arch = next((ckpt[k] for k in _ARCH_KEYS if isinstance(ckpt.get(k), str)), None)
        args = dict(ckpt.get('model_args') or {})
        for key in _STATE_KEYS:
            if isinstance(ckpt.get(key), dict):
                state = ckpt[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path}: no state dict found (looked for a dict of tensors, or one under {_STATE_KEYS}).')
    state = {_strip_prefixes(k): v for k, v in state.items()}
    return state, arch, args


def _strip_prefixes(key: str) -> str:
    for prefix in ('module.', '_orig_mod.'):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def build_release(
        checkpoint: str,
        results: Optional[str],
        output_dir: str,
        model: Optional[str] = None,
        model_args: Optional[Dict[str, Any]] = None,
        dataset: Optional[str] = None,
        repo_id: Optional[str] = None,
        source_weights: Optional[str] = None,
        training: Optional[Dict[str, Any]] = None,
        drop_classifier: bool = False,
) -> Tuple[Path, str]:
    """Rebuild the trained model, write the Hub folder, and check that the folder reloads bit-identically.

    Returns:
        (folder, repo_id).
    """
    state, arch, saved_args = load_training_checkpoint(checkpoint)
    arch = model or arch
    if not arch:
        raise ValueError(f'{checkpoint}: the architecture is not recorded in the checkpoint; pass --model.')
    args = dict(saved_args, **(model_args or {}))
    net = m3d_zoo.create_model(arch, pretrained=False, **args)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:  # missing, unexpected or differently shaped tensors
        raise ValueError(f'{checkpoint} does not fit {arch}({args}): {str(e)[:2000]}\nPass the training run\'s '
                         f'model arguments with --model-args.') from e
    if drop_classifier:
        net.reset_classifier(0)
    net.eval()

    card: Dict[str, Any] = {'training': dict(training or {})}
    if dataset:
        card['datasets'] = [dataset]
    if results:
        metrics, protocol = card_from_results(json.loads(Path(results).read_text()), dataset)
        card.update(metrics=metrics, eval_protocol=protocol)
        card.setdefault('datasets', list(metrics))
    repo_id = repo_id or f'{HF_ORG}/{arch}' + (f'.{dataset.lower().replace("-", "")}' if dataset else '')
    folder = save_pretrained(net, output_dir, model_card=card, source_weights=source_weights, repo_id=repo_id)

    # what users will load must be what was trained: reload the folder through the public path and compare
    reloaded = m3d_zoo.create_model(f'local-dir:{folder}', pretrained=True).eval()
    x = torch.randn(2, 3, args.get('num_frames', getattr(net, 'num_frames', 8)), 64, 32,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(net(x), reloaded(x)):
            raise RuntimeError(f'{folder} does not reload to the same model; not releasing it.')
    return folder, repo_id


def push_release(folder: Path, repo_id: str, private: bool = False, revision: Optional[str] = None,
                 tag: Optional[str] = None, commit_message: Optional[str] = None, token: Optional[str] = None):
    """Upload a release folder in one commit, optionally tag it; returns the CommitInfo."""
    from huggingface_hub import HfApi
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config['weights']['sha256'] != file_sha256(folder / WEIGHTS_NAME):
        raise RuntimeError(f'{folder / WEIGHTS_NAME} changed since it was written (sha256 differs from config.json).')
    api = HfApi(token=token, library_name='m3d_zoo', library_version=m3d_zoo.__version__)
    with hub_errors(f'push {repo_id}', repo_id):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision and revision != 'main':
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message or f"Release {config['architecture']}")
        if tag:
            api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=commit_message)
    return info


def registry_entry(repo_id: str, folder: Path) -> str:
    """The RELEASED_WEIGHTS line that gives the released weights a registry tag (``<architecture>.<tag>``)."""
    config = json.loads((folder / CONFIG_NAME).read_text())
    name = repo_id.split('/', 1)[1]
    if '.' not in name:
        name = f"{config['architecture']}.{name}"
    entry = f"'{name}': dict(hf_hub_id='{repo_id}', num_classes={config['num_classes']}),"
    defaults = m3d_zoo.create_model(config['architecture'], num_classes=config['num_classes']).model_args
    if json.loads(json.dumps(defaults)) != config['model_args']:
        entry += ('  # NOTE: saved with non-default model_args, a registry tag builds the defaults: '
                  f"publish it as hf-hub:{repo_id} only")
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--checkpoint', required=True, help='training checkpoint (.safetensors, or torch file)')
    p.add_argument('--results', help='evaluation results JSON (from m3d_zoo.eval)')
    p.add_argument('--dataset', help='dataset the model was trained (and evaluated) on, e.g. MARS')
    p.add_argument('--model', help='architecture, if the checkpoint does not record it')
    p.add_argument('--model-args', type=json.loads, default=None, help='constructor arguments as JSON')
    p.add_argument('--training', type=json.loads, default=None,
                   help='training details for the card, JSON, e.g. \'{"epochs": 800, "loss": "softmax + triplet"}\'')
    p.add_argument('--source-weights', help='what training started from, e.g. timm/resnet50.tv_in1k')
    p.add_argument('--drop-classifier', action='store_true', help='release the embedding model only')
    p.add_argument('--repo-id', help=f'Hub repo; default {HF_ORG}/<model>.<dataset>')
    p.add_argument('--output-dir', help='where to write the release folder; default release/<repo name>')
    p.add_argument('--push', action='store_true', help='upload the folder to the Hub (otherwise only build it)')
    p.add_argument('--private', action='store_true', help='create the repo private')
    p.add_argument('--revision', help='branch to push to (default main)')
    p.add_argument('--tag', help='git tag for the release commit, e.g. v1.0')
    p.add_argument('--commit-message', help='commit title')
    a = p.parse_args(argv)

    output_dir = a.output_dir
    if output_dir is None:
        output_dir = os.path.join('release', (a.repo_id or a.model or 'model').split('/')[-1])
    folder, repo_id = build_release(
        a.checkpoint, a.results, output_dir, model=a.model, model_args=a.model_args, dataset=a.dataset,
        repo_id=a.repo_id, source_weights=a.source_weights, training=a.training, drop_classifier=a.drop_classifier)
    print(f'Release folder {folder} written and verified (reloads bit-identically).')
    if not a.push:
        print(f'Review {folder / "README.md"}, then run again with --push to publish to {repo_id}.')
        return 0
    info = push_release(folder, repo_id, private=a.private, revision=a.revision, tag=a.tag,
                        commit_message=a.commit_message)
    print(f'Pushed {repo_id} at commit {info.oid}: load it with '
          f'm3d_zoo.create_model("hf-hub:{repo_id}@{info.oid}", pretrained=True)')
    print('To give it a registry tag, add to RELEASED_WEIGHTS in m3d_zoo/models/_hub.py:\n    '
          + registry_entry(repo_id, folder))
    return 0


if __name__ == '__main__':
    sys.exit(main())

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
``{"MARS": {...}, "iLIDS-VID": {...}}``. The work is done by `m3d_zoo.hub.release` (the same path as
``m3d-zoo push --checkpoint``); see hub/README.md for the whole release process.
"""
import argparse
import json
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_ROOT))

from m3d_zoo.hub import HF_ORG  # noqa: E402
from m3d_zoo.hub.release import build_release, push_release, registry_entry  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--checkpoint', required=True,
                   help='training checkpoint: .safetensors (or an m3d-zoo train output folder), or a torch file')
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
    print('To give it a registry tag, add to RELEASED_WEIGHTS in m3d_zoo/hub/released.py:\n    '
          + registry_entry(repo_id, folder))
    return 0


if __name__ == '__main__':
    sys.exit(main())

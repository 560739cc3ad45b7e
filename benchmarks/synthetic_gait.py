#!/usr/bin/env python3
"""The paper's central claim on synthetic data: temporal modelling sees what frame averaging cannot.

The synthetic set (m3d_zoo.data.make_synthetic_gait) is order-only: every identity is the same figure
walking through the same poses, and identities differ only in the cyclic order of the poses. Every test clip holds
each pose exactly once, so a model that averages per-frame features (C2D, Eq. 2) sees the same input for everyone
and stays at chance; M3D's temporal convolutions see the order. Both models train from scratch with the same recipe
and budget (epochs, batches, clips), and are evaluated on identities never seen in training.

    python benchmarks/synthetic_gait.py                        # c2d_resnet18 vs m3d_resnet18, prints the table
    python benchmarks/synthetic_gait.py --threads 1 --models c2d_resnet18 m3d_resnet18 p3d_c_resnet18

Chance is measured, not assumed: the metrics of random rankings of the same query/gallery sets.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_ROOT))

from m3d_zoo.data import create_dataset, make_synthetic_gait, tracklet_labels  # noqa: E402
from m3d_zoo.engine import train  # noqa: E402
from m3d_zoo.eval import evaluate_rank, format_protocol, format_table, results_row  # noqa: E402

# A budget that separates the two models on 2 CPU cores in about a minute each. Why these values:
# - noise=0: the generator bakes its pixel noise into the image files, so every training frame is unique and a net can
#   memorise which frames belong to whom (C2D then learns the training ids, without any use on new ones). Without it
#   all identities share the very same frames, and the order is the only thing left to learn.
# - jitter=0: a one-pixel shift on 32x16 frames is as large as a limb; it slows learning many times over.
# - cycle=5 poses, clips of T=10 frames: every clip shows two full cycles, hence all five transitions of its identity
#   whatever the phase; 5 poses give 4! = 24 distinct cyclic orders, 16 for training and 8 unseen ones for testing.
DEFAULTS = dict(num_ids=24, num_train_ids=16, tracklets_per_id=4, length=20, size=(32, 16), cycle=5, noise=0.,
                jitter=0, seed=0)
RECIPE = dict(epochs=20, batch_size=16, num_instances=2, num_frames=10, input_size=(32, 16), lr=1e-3, warmup_epochs=0,
              decay_epochs=[1000], hflip=0., re_prob=0., pad=0, eval_interval=0, seed=0)
MODEL_KWARGS = {'temporal_strides': (1, 1, 1, 1)}


def make_data(root: str, **kwargs: Any) -> Dict[str, Any]:
    """Write the synthetic set (unless `root` already holds one made with the same arguments)."""
    cfg = dict(DEFAULTS, **kwargs)
    summary_path = Path(root) / 'synthetic_gait.json'
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        same = all(summary.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items())
        if same:
            return summary
        raise SystemExit(f'{root} holds a synthetic set made with other arguments; pass another --root.')
    return make_synthetic_gait(root, **cfg)


def chance_level(root: str, draws: int = 200, seed: int = 0) -> Dict[str, float]:
    """Mean rank-1 and mAP of random rankings of the set's queries against its gallery."""
    ds = create_dataset('folder', root)
    qp, qc = tracklet_labels(ds.query)
    gp, gc = tracklet_labels(ds.gallery)
    rng = np.random.default_rng(seed)
    r1, ap = [], []
    for _ in range(draws):
        res = evaluate_rank(rng.random((len(qp), len(gp))), qp, gp, qc, gc)
        r1.append(res['rank1'])
        ap.append(res['mAP'])
    return {'rank1': float(np.mean(r1)), 'mAP': float(np.mean(ap))}


def run(
        root: str,
        models: Sequence[str] = ('c2d_resnet18', 'm3d_resnet18'),
        output_dir: Optional[str] = None,
        num_workers: int = 0,
        progress: bool = False,
        model_kwargs: Optional[Dict[str, Any]] = None,
        **recipe: Any,
) -> Dict[str, Dict[str, Any]]:
    """Train each model with the same recipe and budget on the set at `root`; return their test results."""
    recipe = dict(RECIPE, **recipe)
    recipe['eval_interval'] = recipe['epochs']  # evaluate once, after the last epoch
    out = {}
    tmp = None
    if output_dir is None:
        output_dir = tmp = tempfile.mkdtemp(prefix='m3d_zoo_synthetic_')
    try:
        for name in models:
            t0 = time.time()
            # save_interval: one resumable checkpoint at the end, not one per epoch of a one-minute run
            summary = train(name, 'folder', root=root, recipe='modern', output_dir=os.path.join(output_dir, name),
                            model_kwargs=dict(MODEL_KWARGS, **(model_kwargs or {})), device='cpu',
                            num_workers=num_workers, progress=progress, save_interval=recipe['epochs'], **recipe)
            res = dict(summary['results'])
            res['train_time_s'] = round(time.time() - t0, 1)
            out[name] = res
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def results_table(results: Dict[str, Dict[str, Any]], chance: Dict[str, float]) -> str:
    """The models' test metrics and training time, chance below them, and the protocol they share."""
    rows = {name: dict(results_row(r), **{'train+eval time (s)': str(r['train_time_s'])})
            for name, r in results.items()}
    rows['chance (random ranking)'] = results_row(chance)
    return format_table(rows, 'model') + '\n\n' + format_protocol(next(iter(results.values())))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--root', help='where to write (or find) the synthetic set; default: a temporary folder')
    p.add_argument('--output-dir', help='training runs (checkpoints, metrics); default: a temporary folder')
    p.add_argument('--models', nargs='+', default=['c2d_resnet18', 'm3d_resnet18'])
    p.add_argument('--num-ids', type=int, default=DEFAULTS['num_ids'])
    p.add_argument('--num-train-ids', type=int, default=DEFAULTS['num_train_ids'])
    p.add_argument('--tracklets-per-id', type=int, default=DEFAULTS['tracklets_per_id'])
    p.add_argument('--length', type=int, default=DEFAULTS['length'])
    p.add_argument('--size', type=int, nargs=2, default=DEFAULTS['size'], metavar=('H', 'W'))
    p.add_argument('--noise', type=float, default=DEFAULTS['noise'])
    p.add_argument('--jitter', type=int, default=DEFAULTS['jitter'])
    p.add_argument('--cycle', type=int, default=DEFAULTS['cycle'], help='poses per cycle; T = 2 x cycle')
    p.add_argument('--epochs', type=int, default=RECIPE['epochs'])
    p.add_argument('--batch-size', type=int, default=RECIPE['batch_size'])
    p.add_argument('--lr', type=float, default=RECIPE['lr'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s; 1 is faster on a busy '
                                               'machine)')
    p.add_argument('--workers', type=int, default=0, help='data loading processes')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--json', help='also write the results as JSON here')
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    tmp = None
    root = a.root
    if root is None:
        tmp = tempfile.mkdtemp(prefix='m3d_zoo_gait_')
        root = os.path.join(tmp, 'gait')
    try:
        t0 = time.time()
        summary = make_data(root, num_ids=a.num_ids, num_train_ids=a.num_train_ids,
                            tracklets_per_id=a.tracklets_per_id, length=a.length, size=tuple(a.size),
                            noise=a.noise, jitter=a.jitter, cycle=a.cycle, seed=a.seed)
        print(f'synthetic set: {summary["num_train_ids"]} train ids, {summary["num_test_ids"]} test ids, '
              f'{summary["num_frames"]} frames of {tuple(summary["size"])} in {root} ({time.time() - t0:.0f}s)')
        chance = chance_level(root)
        results = run(root, a.models, a.output_dir, a.workers, a.progress, epochs=a.epochs, batch_size=a.batch_size,
                      lr=a.lr, seed=a.seed, num_frames=2 * a.cycle)
        print(f'\nSame recipe and budget for every model ({a.epochs} epochs, batch {a.batch_size}, lr {a.lr}, '
              f'T={2 * a.cycle}, {a.size[0]}x{a.size[1]}), evaluated on unseen identities:\n')
        print(results_table(results, chance))
        if a.json:
            Path(a.json).write_text(json.dumps({'results': results, 'chance': chance, 'args': vars(a)}, indent=1))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

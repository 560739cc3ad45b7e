#!/usr/bin/env python3
"""Stretch or pad: how to crop a tracker's person boxes for video ReID, measured on real video (MOT15, TUD).

The published video ReID sets (MARS, PRID-2011, iLIDS-VID) stretched every person box to 256x128; a tracker's boxes
can instead be scaled to fit and centred on black (`m3d_zoo.data.video.crop_box(mode='pad')`), which keeps the
person's aspect ratio. Pedestrian boxes are narrower than 1:2 (TUD-Stadtmitte's median width/height is 0.30,
TUD-Campus's 0.39), so stretching widens people, by a different factor in each sequence.

Protocol:
- Data: two single-camera MOT15 sequences with ground-truth tracks (`<seq>/<seq>.mp4`, `<seq>/gt/gt.txt`). Boxes
  are clipped to the frame and cropped to 256x128 (`stream_tracklets`, one decoding pass) in either mode, and cached
  as tracklet folders (`write_crop_cache`) under `--work`.
- Train: TUD-Stadtmitte, its identities as classes; each track cut into tracklets of 8 to 16 frames.
- Test: TUD-Campus (other people, another place). It has one camera, so each track is split in time: its earlier
  half of boxes is the query (camera 0), its later half the gallery (camera 1, so that same-identity matches count),
  each half cut into tracklets of 8 to 16 frames; tracks shorter than 16 boxes are left out.
- Training: from scratch (ImageNet weights are not available offline), the zoo's engine and its `modern` recipe
  (BN-neck, cross-entropy with label smoothing + batch-hard triplet, Adam, P x K batches, flip, pad-and-crop,
  random erasing) at a budget for a few minutes per run on 2 CPU cores: `--epochs`, lr 1e-3, warm-up over the first
  tenth of the epochs, lr / 10 for the last fifth; input size, clip length and batch size from the command line
  (defaults: 128x64, 8 frames, 16 clips of 4 identities x 4).
- Conditions: (a) train stretch / test stretch, (b) train pad / test pad, (c) train stretch / test pad, and
  (d) train pad / test stretch; one training run per seed and training crop mode, evaluated on both test crop modes.
  The seed (the recipe's) sets the initial weights, batches and augmentation; a stretch and a pad run of one seed
  start from the same weights and draw the same batches.
- Baselines: the same networks before training (random initialisation), on each test crop mode, and random rankings.
- Metrics: mAP and Rank-1 (m3d_zoo.eval, clip-averaged tracklet embeddings, Euclidean distance), mean ± sample std
  over the seeds, and the per-seed difference pad - stretch.

    python benchmarks/crop_mode.py --data MOT15_FOLDER --epochs 10 --seeds 0 1 2
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_ROOT))

from m3d_zoo.data import VideoReIDDataset, load_tracklet_folder, tracklet_labels  # noqa: E402
from m3d_zoo.data.tracks import Tracks, read_tracks, split_tracks  # noqa: E402
from m3d_zoo.data.video import (  # noqa: E402
    CROP_MODES, probe_video, read_crop_cache, stream_tracklets, write_crop_cache)
from m3d_zoo.engine import evaluate_dataset, get_recipe, seed_everything, train  # noqa: E402
from m3d_zoo.engine.extract import results_to_json  # noqa: E402
from m3d_zoo.engine.train import build_model  # noqa: E402
from m3d_zoo.eval import aggregate_results, evaluate_rank, format_protocol, format_table, results_row  # noqa: E402
from m3d_zoo.utils import tune_cpu_allocator  # noqa: E402

TRAIN_SEQ, TEST_SEQ = 'TUD-Stadtmitte', 'TUD-Campus'
CROP_SIZE = (256, 128)
TRACKLET_LEN = (8, 16)  # min_len, max_len of split_tracks, for training and for each half of a test track
GALLERY_MODE = 'later half of each track (query: earlier half)'
METRICS = ('mAP (%)', 'Rank-1 (%)')


def sequence_files(data: str, seq: str) -> Tuple[str, str]:
    """(video, track file) of a sequence."""
    return str(Path(data) / seq / f'{seq}.mp4'), str(Path(data) / seq / 'gt' / 'gt.txt')


def _rows(tracks: Tracks, keep: np.ndarray) -> Tracks:
    return Tracks(tracks.frame[keep], tracks.track_id[keep], tracks.boxes[keep], tracks.conf[keep],
                  tracks.visibility[keep], tracks.path)


def temporal_halves(tracks: Tracks) -> Tuple[Tracks, Tracks]:
    """Each track's earlier half of boxes and its later half (the middle box of an odd track goes to the later)."""
    first = np.zeros(len(tracks), dtype=bool)
    for tid in np.unique(tracks.track_id):
        rows = np.flatnonzero(tracks.track_id == tid)  # in frame order: read_tracks sorts by (id, frame)
        first[rows[:len(rows) // 2]] = True
    return _rows(tracks, first), _rows(tracks, ~first)


def cut_crops(video: str, tracks: Tracks, folder: Path, mode: str, camera: int = 0) -> str:
    """Crop the tracks' tracklets into `folder` (tracklet-folder layout) unless it holds them already; a summary."""
    info = probe_video(video)
    pieces, stats = split_tracks(tracks, camera, (info.width, info.height), *TRACKLET_LEN)
    key = {'video': Path(video).name, 'mode': mode, 'size': list(CROP_SIZE), 'camera': camera,
           'tracklets': [[t.track_id, t.first_frame, t.last_frame] for t in pieces]}
    if read_crop_cache(str(folder), key) is None:
        shutil.rmtree(folder, ignore_errors=True)  # a partial or different cache: its folders would be read too
        for _ in write_crop_cache(str(folder), key, stream_tracklets(video, pieces, CROP_SIZE, mode)):
            pass
    return (f'{len({t.track_id for t in pieces})} ids, {len(pieces)} tracklets, {sum(map(len, pieces))} boxes'
            + (f'; {stats.short_tracks} track(s) under {TRACKLET_LEN[0]} boxes left out' if stats.short_tracks else ''))


def make_datasets(data: str, work: Path) -> Dict[str, VideoReIDDataset]:
    """{crop mode: dataset} with TRAIN_SEQ as train and TEST_SEQ's halves as query and gallery."""
    train_tracks = read_tracks(sequence_files(data, TRAIN_SEQ)[1])
    query_tracks, gallery_tracks = temporal_halves(read_tracks(sequence_files(data, TEST_SEQ)[1]))
    out = {}
    for mode in CROP_MODES:
        root = work / 'crops' / mode
        notes = [f'train {cut_crops(sequence_files(data, TRAIN_SEQ)[0], train_tracks, root / "train", mode)}',
                 f'query {cut_crops(sequence_files(data, TEST_SEQ)[0], query_tracks, root / "query", mode, 0)}',
                 f'gallery {cut_crops(sequence_files(data, TEST_SEQ)[0], gallery_tracks, root / "gallery", mode, 1)}']
        print(f'{mode} crops in {root}: ' + '; '.join(notes), flush=True)
        out[mode] = replace(load_tracklet_folder(str(root), name=f'{TRAIN_SEQ} -> {TEST_SEQ} ({mode})'),
                            gallery_mode=GALLERY_MODE)
    return out


def recipe_overrides(epochs: int, seed: int, input_size: Tuple[int, int], num_frames: int,
                     batch_size: int) -> Dict[str, Any]:
    """The modern recipe's fields changed for a short from-scratch run (module docstring)."""
    return dict(epochs=epochs, seed=seed, input_size=input_size, num_frames=num_frames, batch_size=batch_size,
                num_instances=4, lr=1e-3, warmup_epochs=epochs // 10, decay_epochs=[epochs - epochs // 5],
                pad=round(10 * input_size[1] / 128), eval_interval=0)  # pad: the recipe's 10 pixels at width 128


def evaluate_all(net: torch.nn.Module, datasets: Dict[str, VideoReIDDataset], recipe) -> Dict[str, Dict[str, Any]]:
    """{test crop mode: results} of `net`."""
    return {mode: results_to_json(evaluate_dataset(net, ds, num_frames=recipe.num_frames,
                                                   input_size=recipe.input_size, device=torch.device('cpu')))
            for mode, ds in datasets.items()}


def run(datasets: Dict[str, VideoReIDDataset], model: str, seeds: Sequence[int], work: Path, workers: int = 0,
        **recipe_args: Any) -> Dict[str, List[Dict[str, Any]]]:
    """{'<train mode>/<test mode>' or 'untrained/<test mode>': one result per seed}."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for seed in seeds:
        recipe = get_recipe('modern', **recipe_overrides(seed=seed, **recipe_args))
        for train_mode, data in datasets.items():
            seed_everything(seed)  # the engine's own seeding before it builds a model: the same initial weights
            net = build_model(model, data.num_train_pids, recipe)
            if train_mode == CROP_MODES[0]:  # one baseline per seed: both training modes start from these weights
                for test_mode, res in evaluate_all(net, datasets, recipe).items():
                    out.setdefault(f'untrained/{test_mode}', []).append(res)
            t0 = time.time()
            with tempfile.TemporaryDirectory(dir=work) as tmp:  # checkpoints are not needed afterwards
                train(net, data, recipe=recipe, output_dir=tmp, device='cpu', num_workers=workers, progress=False)
            for test_mode, res in evaluate_all(net, datasets, recipe).items():
                out.setdefault(f'{train_mode}/{test_mode}', []).append(res)
            print(f'{model} seed {seed} train {train_mode}: ' + ', '.join(
                f'test {m} mAP {100 * out[f"{train_mode}/{m}"][-1]["mAP"]:.1f}' for m in datasets)
                + f' ({time.time() - t0:.0f}s)', flush=True)
    return out


def chance_level(dataset: VideoReIDDataset, draws: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Mean metrics of random rankings of the test set."""
    qp, qc = tracklet_labels(dataset.query)
    gp, gc = tracklet_labels(dataset.gallery)
    rng = np.random.default_rng(seed)
    res = [evaluate_rank(rng.random((len(qp), len(gp))), qp, gp, qc, gc) for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in res])) for k in ('mAP', 'rank1')}


ROWS = {'stretch/stretch': '(a) train stretch / test stretch', 'pad/pad': '(b) train pad / test pad',
        'stretch/pad': '(c) train stretch / test pad', 'pad/stretch': '(d) train pad / test stretch',
        'untrained/stretch': 'untrained / test stretch', 'untrained/pad': 'untrained / test pad'}


def _cells(results: Dict[str, Any]) -> Dict[str, str]:
    return {k: v for k, v in results_row(results).items() if k in METRICS}


def _paired(results: Dict[str, List[Dict[str, Any]]], pad: str, stretch: str) -> str:
    """Per-seed difference of two conditions that share their seeds."""
    parts = []
    for metric, label in (('mAP', 'mAP'), ('rank1', 'Rank-1')):
        d = [100 * (p[metric] - s[metric]) for p, s in zip(results[pad], results[stretch])]
        parts.append(f'{label} ' + ' '.join(f'{v:+.1f}' for v in d) + f' (mean {np.mean(d):+.1f})')
    return '; '.join(parts)


def results_table(results: Dict[str, Dict[str, List[Dict[str, Any]]]], chance: Dict[str, Any]) -> str:
    """Markdown table (mean ± std over seeds), the per-seed pad - stretch differences and the protocol."""
    rows, notes = {}, []
    for model, res in results.items():
        for key, label in ROWS.items():
            rows[f'{model} {label}'] = _cells(aggregate_results(res[key]))
        notes.append(f'{model}, pad - stretch per seed (b - a): {_paired(res, "pad/pad", "stretch/stretch")}')
        notes.append(f'{model}, same model, test pad - stretch (c - a): '
                     f'{_paired(res, "stretch/pad", "stretch/stretch")}')
    rows['random ranking'] = _cells(chance)
    first = next(iter(results.values()))['stretch/stretch']
    seeds = len(first)
    return (format_table(rows, 'model, condition') + '\n\n' + '\n'.join(notes) + '\n\n'
            + f'mean ± sample std over {seeds} seeds; {first[0]["num_queries"]} queries; ' + format_protocol(first[0]))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', help='folder holding TUD-Stadtmitte/ and TUD-Campus/ (MOTChallenge layout)')
    p.add_argument('--work', help='crop caches and training runs; default: a temporary folder')
    p.add_argument('--models', nargs='+', default=['c2d_resnet18'])
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--input-size', type=int, nargs=2, default=(128, 64), metavar=('H', 'W'))
    p.add_argument('--num-frames', type=int, default=8, help='clip length T')
    p.add_argument('--batch-size', type=int, default=16, help='P x K clips, K = 4')
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s)')
    p.add_argument('--workers', type=int, default=0, help='data loading processes')
    p.add_argument('--json', help='also write every per-seed result here')
    a = p.parse_args(argv)
    missing = [f for seq in (TRAIN_SEQ, TEST_SEQ) for f in sequence_files(a.data or '.', seq) if not Path(f).is_file()]
    if a.data is None or missing:
        print('Skipped: ' + (f'{", ".join(missing)} not found.' if a.data else 'no --data given.')
              + f' Pass --data with the folder that holds the MOT15 sequences {TRAIN_SEQ}/ and {TEST_SEQ}/, each '
              f'<seq>/<seq>.mp4 and <seq>/gt/gt.txt (MOTChallenge format).')
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    tune_cpu_allocator()
    tmp = None if a.work else tempfile.mkdtemp(prefix='m3d_zoo_crop_mode_')
    work = Path(a.work or tmp)
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.time()
        datasets = make_datasets(a.data, work)
        results = {m: run(datasets, m, a.seeds, work, a.workers, epochs=a.epochs, input_size=tuple(a.input_size),
                          num_frames=a.num_frames, batch_size=a.batch_size) for m in a.models}
        chance = chance_level(datasets[CROP_MODES[0]])
        print(f'\nTrained from scratch on {TRAIN_SEQ}, tested on {TEST_SEQ} ({a.epochs} epochs, batch '
              f'{a.batch_size}, T={a.num_frames}, input {a.input_size[0]}x{a.input_size[1]} from '
              f'{CROP_SIZE[0]}x{CROP_SIZE[1]} crops; {time.time() - t0:.0f}s in all):\n')
        print(results_table(results, chance))
        if a.json:
            Path(a.json).write_text(json.dumps({'results': results, 'chance': chance, 'args': vars(a)}, indent=1))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

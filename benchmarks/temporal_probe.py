#!/usr/bin/env python3
"""A hard motion-only probe: does a video network learn motion that carries over to people it never saw?

Construction. Every identity is the same figure, drawn in the same `poses` poses (m3d_zoo.data.synthetic's templates).
An identity is a cyclic order of those poses: which pose follows which. A tracklet of an identity starts at a random
phase and cycles through its order, `length` frames, a multiple of `poses`. Clips are `poses` frames long. Every
tracklet gets its own nuisances, drawn independently of its identity: a textured background (a colour plus a smooth
random pattern), the figure's colours (a random 3x3 colour matrix, or a per-channel gain), size and position; every
frame gets its own pixel noise and, optionally, jitter and clutter. No two tracklets share their nuisances, so
memorising them identifies training tracklets and is of no use on a new person. Training and test identities are
disjoint (distinct orders); `test_transitions_seen_in_training` in the summary says how many of the test identities'
directed transitions (a -> b) occur in training (all of them in both settings): what is to be learnt is seen in
training, while the combinations (people) are new.

Proof that no frame-averaging model can separate the identities. Let a clip be any `poses` consecutive frames of a
tracklet. Its poses are a rotation of its identity's order, hence hold every pose exactly once, for every identity
and phase. Frame t of a tracklet is R(pose_t, nu, e_t): a deterministic rendering of the pose under the tracklet's
nuisances nu and the frame's own draws e_t; nu is drawn independently of the identity and the e_t are i.i.d. So the
multiset {R(p, nu, e_p) : p = 0..poses-1} of a clip's frames has one distribution for every identity, and so does any
function of a clip that ignores frame order (C2D's mean of per-frame features, Eq. 2, whatever the per-frame net),
and of a tracklet's clips. The joint law of all query-gallery distances is then unchanged by permuting the identity
labels: the expected rank-1 and mAP of such a model are those of a random ranking (`exact_chance`). Identities are
separable by motion: two distinct cyclic orders have distinct successor maps, i.e. distinct sets of transitions.

Chance is exact (closed forms over the evaluated query/gallery sets), and two training-free matchers frame the
learnt models: `pair_matcher` compares consecutive-frame pairs (it sees transitions: the signal is there),
`frame_matcher` compares the same descriptors as sets of frames (order-blind, so at chance in expectation).

    python benchmarks/temporal_probe.py data --root /tmp/probe            # the set, chance and the two matchers
    python benchmarks/temporal_probe.py study --root /tmp/probe --threads 1 --seeds 0 1 2 --json study.json
    python benchmarks/temporal_probe.py study --root /tmp/probe --models "M3D strides 1" --set temporal_lr_mult=10
    python benchmarks/temporal_probe.py study --setting gpu --root /data/probe_gpu --device cuda
    # where M3D learns it on a CPU (benchmarks/RESULTS.md, "A larger test set, and more training identities"):
    python benchmarks/temporal_probe.py study --root /tmp/p480 --data-set num_train_ids=480 --epochs 96 \\
        --models "M3D strides 1" --centre --set noise_std=0.06 --threads 1

The study trains each model with one recipe and budget and records, besides rank-1 / mAP on the unseen identities,
what happens inside: the norm of each layer's temporal weights against its spatial conv's and of their gradients
(`Instruments`), and how much the embedding moves when a clip's frames are shuffled (`order_sensitivity`). `--set`
and `--model-set` change the recipe and the models, `--data-set` the probe, `--centre` feeds clips minus their
temporal mean frame.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_ROOT))

from m3d_zoo._io import atomic_write_text  # noqa: E402
from m3d_zoo.data import create_dataset, tracklet_labels  # noqa: E402
from m3d_zoo.data.synthetic import identity_orders, render_pose_templates  # noqa: E402
from m3d_zoo.eval import evaluate_rank, format_table  # noqa: E402
from m3d_zoo.layers import MultiScaleTemporal, TemporalConv  # noqa: E402

# 2 CPU cores: 8-frame clips at 32x16, 48 training identities, so that a study run per model fits one thread.
# 100 test identities: with 20, one query is 5 points of rank-1, too coarse to tell a model from chance.
CPU = dict(num_train_ids=48, num_test_ids=100, tracklets_per_id=4, length=24, size=(32, 16), poses=8, noise=0.06,
           jitter=0, offset=2, clutter=0, scale=0.1, recolour=True,
           seed=0)
# A GPU: ten times the identities, longer tracklets, 128x64 frames.
GPU = dict(CPU, num_train_ids=480, num_test_ids=100, tracklets_per_id=6, length=48, size=(128, 64), offset=8)
SETTINGS = {'cpu': CPU, 'gpu': GPU}
# One recipe for every model: modern (BN-neck, CE + triplet, Adam), no augmentation that would add nuisances of its
# own, the lr constant; the budget (epochs) is set by the study.
RECIPE = dict(batch_size=16, num_instances=4, lr=1e-3, warmup_epochs=0, decay_epochs=[1000], hflip=0., re_prob=0.,
              pad=0, seed=0)
# The study's models: (row, architecture, model arguments). C2D keeps T to the end, so that it is Eq. 2 exactly.
STUDY = [
    ('C2D', 'c2d_resnet18', {'temporal_strides': (1, 1, 1, 1)}),
    ('P3D-C', 'p3d_c_resnet18', {}),
    ('M3D (Eq. 6)', 'm3d_resnet18', {}),
    ('M3D (n=1)', 'm3d_resnet18', {'m3d_branches': 1}),
    ('I3D', 'i3d_resnet18', {}),
    ('M3D strides 1', 'm3d_resnet18', {'temporal_strides': (1, 1, 1, 1)}),
]


def _background(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """A tracklet's background: a random colour plus a smooth random pattern, float32 (H, W, 3)."""
    h, w = size
    colour = rng.uniform(40, 200, 3)
    coarse = rng.uniform(-50, 50, (4, 2, 3))
    smooth = Image.Resampling.BILINEAR
    pattern = np.stack([np.asarray(Image.fromarray(coarse[..., c].astype(np.float32)).resize((w, h), smooth))
                        for c in range(3)], -1)
    return (colour + pattern).astype(np.float32)


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`img` moved by (dy, dx), zeros shifted in (the figure layer is zero off the figure)."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


def _clutter(rng: np.random.Generator, size: Tuple[int, int], count: int) -> np.ndarray:
    """A frame's clutter layer: `count` rectangles of random colour, place and size (about a limb's), float32."""
    h, w = size
    out = np.zeros((h, w, 3), np.float32)
    for _ in range(count):
        bh, bw = int(rng.integers(2, max(3, h // 6))), int(rng.integers(2, max(3, w // 4)))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        out[y:y + bh, x:x + bw] = rng.uniform(-80, 80, 3)
    return out


def _scaled(layer: np.ndarray, factor: float) -> np.ndarray:
    """A figure layer (H, W, 3) scaled by `factor` about the frame's centre, same size."""
    h, w = layer.shape[:2]
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    big = np.stack([np.asarray(Image.fromarray(layer[..., c]).resize((sw, sh), Image.Resampling.BILINEAR))
                    for c in range(3)], -1)
    out = np.zeros_like(layer)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    ys, xs = slice(max(y0, 0), min(y0 + sh, h)), slice(max(x0, 0), min(x0 + sw, w))
    out[ys, xs] = big[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def render_tracklet(
        figures: np.ndarray,
        order: Sequence[int],
        length: int,
        rng: np.random.Generator,
        noise: float = 0.,
        jitter: int = 0,
        offset: int = 0,
        clutter: int = 0,
        scale: float = 0.,
        recolour: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """One tracklet: uint8 frames (length, H, W, 3) and the pose shown in each frame (length,).

    Args:
        figures: (poses, H, W, 3) float32 figure layers (template minus its background: zero off the figure).
        order: The identity's cyclic order of the poses.
        length: Frames.
        rng: Draws the phase and every nuisance.
        noise: Std of the per-frame Gaussian pixel noise, as a fraction of 255.
        jitter: Largest per-frame shift of the figure, pixels.
        offset: Largest per-tracklet shift of the figure, pixels (vertical; half of it horizontally).
        clutter: Rectangles of clutter drawn afresh behind the figure in every frame.
        scale: The tracklet's figure is scaled by a factor drawn in [1 - scale, 1 + scale].
        recolour: The tracklet's figure colours go through a random 3x3 colour matrix (else a per-channel gain).
    """
    size = figures.shape[1:3]
    phase = int(rng.integers(len(order)))
    background = _background(rng, size)
    colour = rng.uniform(-1.2, 1.2, (3, 3)) if recolour else np.diag(rng.uniform(0.7, 1.3, 3))
    factor = rng.uniform(1 - scale, 1 + scale)
    figures = np.stack([_scaled(f, factor) for f in figures]) if scale else figures
    figures = (figures @ colour.T.astype(np.float32)).astype(np.float32)
    oy, ox = int(rng.integers(-offset, offset + 1)), int(rng.integers(-(offset // 2), offset // 2 + 1))
    seq = np.array([order[(phase + t) % len(order)] for t in range(length)])
    frames = np.empty((length, *size, 3), np.uint8)
    for t, p in enumerate(seq):
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
        fig = _shift(figures[p], oy + dy, ox + dx)
        img = background + fig
        if clutter:
            img = img + _clutter(rng, size, clutter) * (np.abs(fig).max(-1, keepdims=True) == 0)
        if noise:
            img = img + rng.normal(0, 255 * noise, img.shape)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, seq


def transitions(order: Sequence[int]) -> set:
    """The directed transitions (a, b) of a cyclic order."""
    return {(order[i], order[(i + 1) % len(order)]) for i in range(len(order))}


def make_temporal_probe(root: str, num_train_ids: int, num_test_ids: int, tracklets_per_id: int, length: int,
                        size: Tuple[int, int], poses: int, noise: float, jitter: int, offset: int, clutter: int,
                        scale: float, recolour: bool, seed: int) -> Dict[str, Any]:
    """Write the probe in the tracklet-folder layout (`create_dataset('folder', root)`); returns its summary.

    Tracklet j of an identity is camera j + 1; a test identity's first tracklet is its query, the others its gallery.
    The summary (also `<root>/temporal_probe.json`) holds the arguments, the orders and each tracklet's poses.

    Args:
        root: Output folder (must not hold a train/, query/ or gallery/ folder yet).
        num_train_ids: Training identities (the first orders); num_test_ids: unseen test identities (the next).
        tracklets_per_id: Tracklets per identity (>= 2); length: frames per tracklet, a multiple of `poses`.
        size: Frame (H, W); poses: poses per cycle, also the clip length.
        noise, jitter, offset, clutter, scale, recolour: the nuisances, see `render_tracklet`.
        seed: Seed of the orders and of every draw.
    """
    if length % poses:
        raise ValueError(f'length ({length}) must be a multiple of poses ({poses}): every clip of `poses` frames then '
                         f'holds each pose once')
    if tracklets_per_id < 2 or num_train_ids < 1 or num_test_ids < 2:
        raise ValueError('need tracklets_per_id >= 2 (query and gallery), num_train_ids >= 1, num_test_ids >= 2')
    for sub in ('train', 'query', 'gallery'):
        if os.path.exists(os.path.join(root, sub)):
            raise FileExistsError(f'{os.path.join(root, sub)} exists; write the probe to an empty folder')
    orders = identity_orders(num_train_ids + num_test_ids, poses, seed)
    seen = set().union(*(transitions(o) for o in orders[:num_train_ids]))
    test = set().union(*(transitions(o) for o in orders[num_train_ids:]))
    coverage = len(test & seen) / len(test)
    bg = np.array(render_pose_templates(1, size)[0, 0, 0], np.float32)  # the templates' background colour
    figures = render_pose_templates(poses, size).astype(np.float32) - bg
    rng = np.random.default_rng([seed, 2])
    sequences = {}
    for i, order in enumerate(orders):
        pid = f'{i + 1:04d}'
        for j in range(tracklets_per_id):
            subset = 'train' if i < num_train_ids else ('query' if j == 0 else 'gallery')
            tdir = os.path.join(root, subset, pid, f'c{j + 1}_t{j + 1:03d}')
            os.makedirs(tdir)
            frames, seq = render_tracklet(
                figures, order, length, rng, noise, jitter, offset, clutter, scale, recolour)
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(os.path.join(tdir, f'{t + 1:06d}.png'))
            sequences[f'{subset}/{pid}/c{j + 1}_t{j + 1:03d}'] = seq.tolist()
    summary = dict(num_train_ids=num_train_ids, num_test_ids=num_test_ids, tracklets_per_id=tracklets_per_id,
                   length=length, size=list(size), poses=poses, noise=noise, jitter=jitter, offset=offset,
                   clutter=clutter, scale=scale, recolour=recolour, seed=seed,
                   test_transitions_seen_in_training=coverage,
                   orders={f'{i + 1:04d}': list(o) for i, o in enumerate(orders)}, poses_per_frame=sequences)
    atomic_write_text(os.path.join(root, 'temporal_probe.json'), json.dumps(summary))
    return summary


def make_data(root: str, **kwargs: Any) -> Dict[str, Any]:
    """The probe at `root` (written unless it holds one made with the same arguments)."""
    cfg = dict(CPU, **kwargs)
    path = Path(root) / 'temporal_probe.json'
    if path.is_file():
        summary = json.loads(path.read_text())
        if all(summary.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()):
            return summary
        raise SystemExit(f'{root} holds a probe made with other arguments; pass another --root.')
    return make_temporal_probe(root, **cfg)


def exact_chance(q_pids, g_pids, q_camids, g_camids) -> Dict[str, float]:
    """Expected rank-1 and mAP of a uniformly random ranking, under `evaluate_rank`'s protocol (a gallery item of the
    query's id and camera is ignored).

    A query with m true matches among N ranked items: rank-1 = m / N. AP = (1/m) sum over matches of (matches at or
    above it) / its rank; a match sits at rank r with probability 1/N, and the other m - 1 matches above it are
    hypergeometric with mean (m - 1)(r - 1)/(N - 1), so E[AP] = (H_N + (m - 1)/(N - 1) (N - H_N)) / N, H_N the
    harmonic number. Queries without a match are skipped, as `evaluate_rank` does.
    """
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a) for a in (q_pids, g_pids, q_camids, g_camids))
    r1, ap = [], []
    for p, c in zip(q_pids, q_camids):
        m = int(((g_pids == p) & (g_camids != c)).sum())
        n = m + int((g_pids != p).sum())
        if m == 0:
            continue
        h = float(np.sum(1. / np.arange(1, n + 1)))
        r1.append(m / n)
        ap.append((h + ((m - 1) / (n - 1) * (n - h) if n > 1 else 0.)) / n)
    return {'rank1': float(np.mean(r1)), 'mAP': float(np.mean(ap))}


def _load_frames(tracklet) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert('RGB'), np.float32) for p in tracklet.paths])


def frame_descriptors(frames: np.ndarray) -> np.ndarray:
    """Per-frame descriptors blind to a tracklet's background, gain and offset: the Fourier magnitude (shift-
    invariant) of the frame minus the tracklet's mean frame (the static background cancels), unit norm. (L, D)."""
    x = frames - frames.mean(0, keepdims=True)
    d = np.abs(np.fft.rfft2(x, axes=(1, 2))).reshape(len(frames), -1)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric chamfer distance of two sets of unit vectors: 1 - mean best cosine, both ways."""
    s = a @ b.T
    return 1. - 0.5 * (s.max(1).mean() + s.max(0).mean())


def _matcher(root: str, describe) -> Dict[str, Any]:
    ds = create_dataset('folder', root)
    q = [describe(frame_descriptors(_load_frames(t))) for t in ds.query]
    g = [describe(frame_descriptors(_load_frames(t))) for t in ds.gallery]
    dist = np.array([[_chamfer(a, b) for b in g] for a in q])
    qp, qc = tracklet_labels(ds.query)
    gp, gc = tracklet_labels(ds.gallery)
    return evaluate_rank(dist, qp, gp, qc, gc)


def pair_matcher(root: str) -> Dict[str, Any]:
    """Training-free motion baseline: a tracklet is its set of consecutive-frame pairs (descriptor of frame t, then of
    frame t + 1: ordered, so it sees directed transitions); tracklets are compared by chamfer distance."""
    return _matcher(root, lambda d: np.concatenate([d[:-1], d[1:]], 1) / math.sqrt(2))


def frame_matcher(root: str) -> Dict[str, Any]:
    """The same descriptors without order: a tracklet is its set of frames. At chance by construction."""
    return _matcher(root, lambda d: d)


def temporal_layers(model: nn.Module) -> List[Tuple[str, List[torch.Tensor], torch.Tensor]]:
    """(name, temporal weights, spatial weight) of each layer of `model` that models time.

    M3D / P3D-C: the layer's dilated kernels; P3D-A/B: its temporal conv; I3D: the off-centre taps of its 3 x k x k
    conv (the centre tap is the spatial weight). The spatial weight is the conv whose output the unit takes.
    """
    out = []
    for name, module in model.named_modules():
        if not (name == 'stem_temporal' or name.endswith('.temporal')):
            continue
        parent = model if name == 'stem_temporal' else model.get_submodule(name.rsplit('.', 1)[0])
        spatial = parent.conv1 if (name == 'stem_temporal' or not hasattr(parent, 'conv3')) else parent.conv2
        if isinstance(module, MultiScaleTemporal):
            out.append((name, [b.weight for b in module.branches], spatial.weight))
        elif isinstance(module, TemporalConv) or isinstance(getattr(module, 'conv', None), TemporalConv):
            out.append((name, [module.weight if isinstance(module, TemporalConv) else module.conv.weight],
                        spatial.weight))
        elif spatial.weight.shape[2] > 1:
            out.append((name, [spatial.weight], spatial.weight))
    return out


@torch.no_grad()
def _split_norms(temporal: List[torch.Tensor], spatial: torch.Tensor, grad: bool) -> Tuple[float, float]:
    """(temporal norm, spatial norm) of the weights or their gradients; an I3D conv splits into its taps."""
    get = (lambda p: p.grad) if grad else (lambda p: p)
    if temporal[0] is spatial:  # I3D: off-centre taps against the centre tap
        w = get(spatial)
        if w is None:
            return float('nan'), float('nan')
        c = w.shape[2] // 2
        return float(torch.cat([w[:, :, :c], w[:, :, c + 1:]], 2).norm()), float(w[:, :, c].norm())
    ws = [get(p) for p in temporal]
    if any(w is None for w in ws) or get(spatial) is None:
        return float('nan'), float('nan')
    return float(torch.stack([w.norm() for w in ws]).norm()), float(get(spatial).norm())


class Instruments:
    """Records, every `every` training steps, each temporal layer's weight norm and gradient norm against its spatial
    conv's. Hooks only: the training loop is `m3d_zoo.engine.train`'s, unchanged.
    """

    def __init__(self, model: nn.Module, every: int = 10):
        self.layers = temporal_layers(model)
        self.every = every
        self.step = 0
        self.records: List[Dict[str, Any]] = []
        self._grads: Dict[str, List[float]] = {}
        # on the stem conv: the training loop calls the model's forward_train, which skips the model's own hooks
        model.get_submodule('conv1').register_forward_pre_hook(self._before_forward)

    def _before_forward(self, module: nn.Module, args) -> None:
        if not module.training:
            return
        if self.layers and self.step % self.every == 0:
            rec = {'step': self.step}
            for name, temporal, spatial in self.layers:
                t, s = _split_norms(temporal, spatial, grad=False)
                gt, gs = _split_norms(temporal, spatial, grad=True)  # the previous step's gradients
                rec[name] = {'w_t': t, 'w_s': s, 'g_t': gt, 'g_s': gs}
            self.records.append(rec)
        self.step += 1

    def summary(self) -> Dict[str, Any]:
        """Per layer: the temporal weight norm relative to the spatial one at the end, and the median over training
        of the gradient norm ratio (temporal / spatial)."""
        out = {}
        for name, _, _ in self.layers:
            last = self.records[-1][name]
            ratios = [r[name]['g_t'] / r[name]['g_s'] for r in self.records
                      if name in r and r[name]['g_s'] and math.isfinite(r[name]['g_t'])]
            out[name] = {'w_t/w_s': last['w_t'] / last['w_s'], 'w_t': last['w_t'],
                         'g_t/g_s (median)': float(np.median(ratios)) if ratios else float('nan')}
        return out


@torch.no_grad()
def order_sensitivity(model: nn.Module, root: str, num_frames: int, seed: int = 0) -> float:
    """How much a model's embedding of a test clip moves when the clip's frames are shuffled, relative to the typical
    distance between clips of different test identities: 0 for a model blind to order (C2D: exactly 0), about 1 or
    more for one whose embedding is mostly order."""
    from m3d_zoo.data import create_video_transform, read_image
    ds = create_dataset('folder', root)
    transform = create_video_transform(model, is_training=False)
    clips = torch.stack([transform([read_image(p) for p in t.paths[:num_frames]]) for t in ds.query + ds.gallery])
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(num_frames))
    was_training = model.training
    model.eval()
    try:
        e, e_shuffled = model(clips), model(clips[:, :, perm])
    finally:
        model.train(was_training)
    pids = torch.tensor([t.pid for t in ds.query + ds.gallery])
    between = torch.cdist(e, e)[pids[:, None] != pids[None]].mean()
    return float((e - e_shuffled).norm(dim=1).mean() / between)


def train_one(root: str, arch: str, model_kwargs: Dict[str, Any], output_dir: str, epochs: int, seed: int,
              device: str = 'cpu', every: int = 10, centre: bool = False, **recipe: Any) -> Dict[str, Any]:
    """Train one model on the probe with the zoo's `train`, instrumented; its test results and the records.
    `centre`: the model sees each clip minus its temporal mean frame (the model argument `centre_clips=True`)."""
    import timm
    from m3d_zoo.engine import train
    recipe = dict(RECIPE, seed=seed, epochs=epochs, eval_interval=epochs, **recipe)
    summary = json.loads((Path(root) / 'temporal_probe.json').read_text())
    # one cycle per clip by default; a multiple of it keeps every clip's poses balanced (frame averaging still blind)
    num_frames = recipe.pop('num_frames', summary['poses'])
    if num_frames % summary['poses']:
        raise ValueError(f'num_frames={num_frames} must be a multiple of the probe\'s {summary["poses"]} poses')
    torch.manual_seed(seed)
    if centre:
        model_kwargs = dict(model_kwargs, centre_clips=True)
    model = timm.create_model(arch, num_classes=summary['num_train_ids'], num_frames=num_frames, **model_kwargs)
    inst = Instruments(model, every)
    t0 = time.time()
    res = train(model, 'folder', root=root, recipe='modern', output_dir=output_dir, device=device, num_workers=0,
                progress=False, num_frames=num_frames, input_size=tuple(summary['size']),
                save_interval=recipe.get('epochs', 1), **recipe)
    return {'rank1': res['results']['rank1'], 'mAP': res['results']['mAP'], 'steps': inst.step,
            'time_s': round(time.time() - t0, 1), 'layers': inst.summary() if inst.layers else {},
            'records': inst.records, 'order_sensitivity': order_sensitivity(model, root, num_frames)}


def study(root: str, rows: Sequence[Tuple[str, str, Dict[str, Any]]], seeds: Sequence[int], epochs: int,
          output_dir: str, device: str = 'cpu', json_path: Optional[str] = None, centre: bool = False,
          **recipe: Any) -> Dict[str, Any]:
    """Every (row, seed) trained with one recipe and budget; results accumulate in `json_path` after each run."""
    out: Dict[str, Any] = {}
    if json_path and os.path.isfile(json_path):
        out = json.loads(Path(json_path).read_text())  # runs already made are kept, not repeated
    for row, arch, kwargs in rows:
        for seed in seeds:
            key = f'{row}|{seed}'
            if key in out:
                continue
            run_dir = os.path.join(output_dir, os.path.basename(os.path.normpath(root)), re.sub(r'\W+', '_', key))
            res = train_one(root, arch, kwargs, run_dir, epochs, seed, device, centre=centre, **recipe)
            out[key] = dict(res, row=row, arch=arch, model_kwargs=kwargs, seed=seed, epochs=epochs, recipe=recipe,
                            centre=centre)
            print(f'{row} seed {seed}: rank-1 {100 * res["rank1"]:.1f} mAP {100 * res["mAP"]:.1f} '
                  f'({res["steps"]} steps, {res["time_s"]}s)', flush=True)
            if json_path:
                atomic_write_text(json_path, json.dumps(out, default=list))
    return out


def study_table(runs: Dict[str, Any], chance: Dict[str, float], baselines: Dict[str, Dict[str, float]]) -> str:
    """Mean +- std over seeds of rank-1 and mAP per row, then the baselines and chance."""
    by_row: Dict[str, List[Dict[str, Any]]] = {}
    for r in runs.values():
        by_row.setdefault(r['row'], []).append(r)
    table = {}
    for row, rs in by_row.items():
        r1 = 100 * np.array([r['rank1'] for r in rs])
        mp = 100 * np.array([r['mAP'] for r in rs])
        order = [r['order_sensitivity'] for r in rs if 'order_sensitivity' in r]
        table[row] = {'rank-1': f'{r1.mean():.1f} +- {r1.std():.1f}', 'mAP': f'{mp.mean():.1f} +- {mp.std():.1f}',
                      'order sensitivity': f'{np.mean(order):.2f}' if order else '', 'seeds': str(len(rs)),
                      'steps': str(rs[0]['steps'])}
    for name, res in baselines.items():
        table[name] = {'rank-1': f'{100 * res["rank1"]:.1f}', 'mAP': f'{100 * res["mAP"]:.1f}', 'seeds': '',
                       'steps': ''}
    table['chance (exact)'] = {'rank-1': f'{100 * chance["rank1"]:.1f}', 'mAP': f'{100 * chance["mAP"]:.1f}',
                               'seeds': '', 'steps': ''}
    return format_table(table, 'model')


def internals_table(runs: Dict[str, Any], steps: Sequence[int] = ()) -> str:
    """Per row and temporal layer, means over seeds: the temporal weight norm relative to its spatial conv's at the
    end (and at `steps`), and the median over training of the gradient norm ratio (temporal / spatial)."""
    by_row: Dict[str, List[Dict[str, Any]]] = {}
    for r in runs.values():
        by_row.setdefault(r['row'], []).append(r)
    table = {}
    for row, rs in by_row.items():
        for layer in rs[0]['layers']:
            cells = {}
            for step in steps:
                vals = [rec[layer]['w_t'] / rec[layer]['w_s'] for r in rs for rec in r['records']
                        if rec['step'] == step]
                cells[f'w_t/w_s @{step}'] = f'{np.mean(vals):.3f}' if vals else ''
            cells['w_t/w_s end'] = f'{np.mean([r["layers"][layer]["w_t/w_s"] for r in rs]):.3f}'
            cells['g_t/g_s median'] = f'{np.mean([r["layers"][layer]["g_t/g_s (median)"] for r in rs]):.3f}'
            table[f'{row}: {layer}'] = cells
    return format_table(table, 'model: layer')


def probe_reference(root: str) -> Tuple[Dict[str, float], Dict[str, Dict[str, float]]]:
    """Exact chance and the two training-free matchers on the probe at `root`."""
    ds = create_dataset('folder', root)
    qp, qc = tracklet_labels(ds.query)
    gp, gc = tracklet_labels(ds.gallery)
    chance = exact_chance(qp, gp, qc, gc)
    return chance, {'pair matcher (training-free)': pair_matcher(root),
                    'frame matcher (training-free)': frame_matcher(root)}


def _assignments(items: Sequence[str], flag: str) -> Dict[str, Any]:
    """{'a': 1} from ['a=1']: values are Python literals (numbers, tuples, lists), else strings."""
    import ast
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SystemExit(f'{flag} takes FIELD=VALUE items, got {item!r}')
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('command', choices=['data', 'study'])
    p.add_argument('--root', help='where to write (or find) the probe; default: a temporary folder')
    p.add_argument('--setting', choices=sorted(SETTINGS), default='cpu')
    p.add_argument('--seed', type=int, help='seed of the data (default: the setting\'s)')
    p.add_argument('--num-train-ids', type=int, help='training identities (default: the setting\'s)')
    p.add_argument('--data-set', nargs='+', default=[], metavar='ARG=VALUE',
                   help='other arguments of the probe (e.g. recolour=False scale=0)')
    p.add_argument('--models', nargs='+', help=f'rows of the study (default all: {[r[0] for r in STUDY]})')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, help='torch intra-op threads')
    p.add_argument('--output-dir', help='training runs; default: a temporary folder')
    p.add_argument('--json', help='write (and resume) the study\'s results here')
    p.add_argument('--set', nargs='+', default=[], metavar='FIELD=VALUE',
                   help='recipe fields for every run (e.g. temporal_lr_mult=10); named in the rows')
    p.add_argument('--model-set', nargs='+', default=[], metavar='ARG=VALUE',
                   help='model arguments for every run (e.g. "temporal_strides=(1,1,1,1)"); named in the rows')
    p.add_argument('--centre', action='store_true',
                   help='models see each clip minus its temporal mean frame (the model argument centre_clips=True)')
    a = p.parse_args(argv)
    overrides = _assignments(a.set, '--set')
    model_overrides = _assignments(a.model_set, '--model-set')
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = dict(SETTINGS[a.setting], **{k: v for k, v in (('seed', a.seed), ('num_train_ids', a.num_train_ids))
                                       if v is not None}, **_assignments(a.data_set, '--data-set'))
    tmp = tempfile.mkdtemp(prefix='m3d_zoo_probe_')
    try:
        root = a.root or os.path.join(tmp, 'probe')
        summary = make_data(root, **cfg)
        chance, baselines = probe_reference(root)
        print(f'probe: {summary["num_train_ids"]} train ids, {summary["num_test_ids"]} unseen test ids, '
              f'{summary["poses"]} poses, test transitions seen in training: '
              f'{100 * summary["test_transitions_seen_in_training"]:.0f}%')
        if a.command == 'study':
            tag = ' '.join(a.set + a.model_set + (['centre'] if a.centre else []))
            rows = [(f'{r[0]} [{tag}]' if tag else r[0], r[1], dict(r[2], **model_overrides)) for r in STUDY
                    if a.models is None or r[0] in a.models]
            runs = study(root, rows, a.seeds, a.epochs, a.output_dir or os.path.join(tmp, 'runs'), a.device, a.json,
                         a.centre, **overrides)
            print(study_table(runs, chance, baselines))
            print(internals_table(runs))
        else:
            print(study_table({}, chance, baselines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

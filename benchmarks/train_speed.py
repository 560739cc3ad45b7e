#!/usr/bin/env python3
""" Fine-tuning speed: the training step of every family, the memory it needs, and whether the data loader keeps up.

    python benchmarks/train_speed.py                     # CPU, ResNet-50, 8x256x128: step, memory and loader tables
    python benchmarks/train_speed.py --sections step --device cuda --dtype bf16 --channels-last --batch-size 32
    python benchmarks/train_speed.py --sections loader --loader-frames 256 128 1024 512
    python benchmarks/train_speed.py --sections subnormal --depth resnet18 --img-size 32 16 --batch-size 16 \
        --num-instances 4 --rounds 5

Four sections (`--sections`, default all but subnormal):

- step: one training step of the modern recipe (forward, the cross-entropy and batch-hard triplet losses, backward,
  Adam) for every Table 1 family plus M3D+RAL and the two-stream net, on a P x K batch of random clips. The models
  run interleaved in rounds in one process; each row is the median over rounds, and "vs 2D" is the median of the
  per-round ratios of clips/s to the 2D net's. Training GFLOPs per clip (forward and backward) come from torch's
  flop counter, so that the FLOP rate compares models that do different amounts of work.
- memory: the peak memory of two training steps, per family, with and without gradient checkpointing
  (`set_grad_checkpointing`), each measured in a fresh subprocess so that no model's memory is counted for another:
  on the CPU the growth of the process's peak resident memory over what it held before the first step (glibc's
  default allocator), on a GPU `torch.cuda.max_memory_allocated` over what was allocated before.
- loader: clips/s that the zoo's training loader (`build_train_loader`: decode, sample, augment, collate) delivers
  from JPEG tracklets written for the run (frames of the sizes given, smooth colour fields with noise), with 0, 1,
  2 and all the machine's workers, for each frame decoder of `m3d_zoo.data.FRAME_DECODERS`; next to it the step
  section's training clips/s, and the workers per GPU that the measured GPU rate (or the paper's TITAN X rate)
  would need. Each decoder's pixels are compared with PIL's full decode after the same resize; the fastest decoder
  that gives the same pixels (a mean difference of at most 0.5 levels) is the one to use.
- subnormal: what weights that get no gradient from the data cost once Adam with weight decay has driven them into
  the subnormal floats (frames so small that a 3x3 tap reads only padding). The M3D row's step, timed in interleaved
  rounds from three snapshots of the same model and optimizer: as built, with those weights and their first moments
  set to where Adam leaves them (found by running the recipe's Adam on zero gradients), and that again inside
  `m3d_zoo.utils.flush_denormals`, as `m3d_zoo.engine.train` runs. Frames large enough that every tap reads data
  have nothing to measure.
"""
import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import m3d_zoo
from _bench import add_output_args, emit, machine_info, markdown_table, median_ratio, stderr_logger, synchronize
from m3d_zoo.data import FRAME_DECODERS, create_dataset, read_frame, read_image
from m3d_zoo.engine import ReidLoss, build_optimizer, build_train_loader, get_recipe
from m3d_zoo.engine.distributed import DistInfo
from m3d_zoo.utils import flush_denormals

# Row key -> (label, model family). The 2D row comes first: it is every ratio's reference.
ROWS = {
    'c2d': ('2D', 'c2d'),
    'i3d': ('I3D', 'i3d'),
    'p3d_a': ('P3D-A', 'p3d_a'),
    'p3d_b': ('P3D-B', 'p3d_b'),
    'p3d_c': ('P3D-C', 'p3d_c'),
    'm3d': ('M3D', 'm3d'),
    'm3d_ral': ('M3D+RAL', 'm3d_ral'),
    'two_stream': ('Two-stream', 'two_stream_m3d'),
}
SECTIONS = ('step', 'memory', 'loader', 'subnormal')
DEFAULT_SECTIONS = ('step', 'memory', 'loader')
MARS_IDS = 625  # the classifier of a MARS fine-tuning run
PAPER_2D_FPS = 796.  # the paper's 2D net on a TITAN X (Table 1), frames/s at inference
# Two decoders give "the same pixels" when they differ by at most this many levels on average: libjpeg builds differ
# by the rounding of their inverse DCT, about one level on a few pixels.
SAME_PIXELS_MEAN_DIFF = 0.5


def model_name(family: str, depth: str) -> str:
    return family if family == 'two_stream_m3d' and depth == 'resnet50' else f'{family}_{depth}'


def _dtype(name: str) -> Optional[torch.dtype]:
    return dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[name]


class TrainStep:
    """One optimizer step of the modern recipe on a fixed P x K batch: the thing timed and measured here."""

    def __init__(self, row: str, args: argparse.Namespace, device: torch.device, grad_checkpointing: bool = False):
        self.recipe = get_recipe('modern', num_frames=args.frames, batch_size=args.batch_size,
                                 num_instances=args.num_instances)
        name = model_name(ROWS[row][1], args.depth)
        self.model = m3d_zoo.create_model(name, num_classes=MARS_IDS, num_frames=args.frames).to(device).train()
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.model.set_grad_checkpointing(grad_checkpointing)
        self.optimizer = build_optimizer(self.model, self.recipe)
        r = self.recipe
        self.loss_fn = ReidLoss(r.ce_weight, r.label_smoothing, r.triplet_weight, r.triplet_margin)
        self.scaler = torch.amp.GradScaler(device.type) if args.dtype == 'fp16' else None
        self.autocast = (torch.autocast(device.type, dtype=_dtype(args.dtype)) if _dtype(args.dtype)
                         else nullcontext())
        H, W = args.img_size
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(args.batch_size, 3, args.frames, H, W, generator=g).to(device)
        if args.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last_3d)
        pids = torch.arange(args.batch_size // args.num_instances).repeat_interleave(args.num_instances)
        self.pids = pids.to(device)
        self.name = name
        self.fn: Callable[[torch.Tensor], Dict[str, Any]] = self.model.forward_train
        if args.compile:
            self.fn = torch.compile(self.model.forward_train)

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            out = self.fn(self.x)
        loss, _ = self.loss_fn(out, self.pids)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def gflops_per_clip(self) -> float:
        """Forward and backward GFLOPs of one clip, by torch's counter (the optimizer's elementwise work is not
        counted); the batch keeps its P x K shape so that the losses see what they see in training."""
        counter = FlopCounterMode(display=False)
        with counter:
            out = self.model.forward_train(self.x)
            self.loss_fn(out, self.pids)[0].backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops() / 1e9 / self.x.shape[0]


def run_step(args: argparse.Namespace, device: torch.device, log) -> List[Dict[str, Any]]:
    """The step section: every row built, its FLOPs counted, then timed in interleaved rounds."""
    entries = []
    for i, row in enumerate(args.models):
        step = TrainStep(row, args, device)
        log(f'[{i + 1}/{len(args.models)}] {ROWS[row][0]}: {step.name} built, counting training FLOPs')
        entries.append(dict(row=row, step=step, gflops=step.gflops_per_clip(), times=[]))
    for e in entries:
        for _ in range(args.warmup):
            e['step']()
        synchronize(device)
    for r in range(args.rounds):
        for e in (entries if r % 2 == 0 else entries[::-1]):
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(args.iters):
                e['step']()
            synchronize(device)
            e['times'].append((time.perf_counter() - t0) / (args.iters * args.batch_size))
        log(f'  round {r + 1}/{args.rounds}: ' + ', '.join(
            f"{ROWS[e['row']][0]} {e['times'][-1] * 1e3:.0f} ms/clip" for e in entries))
    ref = entries[0]
    rows = []
    for e in entries:
        t = statistics.median(e['times'])
        speed = median_ratio(ref['times'], e['times'])  # ratios within a round, robust to a slow moment
        rows.append(dict(
            row=e['row'], label=ROWS[e['row']][0], model=e['step'].name, train_gflops=round(e['gflops'], 1),
            ms_per_clip=round(t * 1e3, 1), clips_per_s=round(1 / t, 3), speed_vs_2d=round(speed, 3),
            gflop_per_s=round(e['gflops'] / t, 1), flop_rate_vs_2d=round(speed * e['gflops'] / ref['gflops'], 3)))
    return rows


def _where_adam_leaves_dead_weights(recipe, steps: int = 3000) -> Dict[str, float]:
    """A weight and its first moment after `steps` Adam steps (the recipe's lr and weight decay) with no gradient from
    the data: the decay pulls them geometrically towards zero, into the subnormal floats, where they stay."""
    w = torch.nn.Parameter(torch.tensor([0.02, -0.05]))
    opt = torch.optim.Adam([w], lr=recipe.lr, weight_decay=recipe.weight_decay)
    for _ in range(steps):
        w.grad = torch.zeros_like(w)
        opt.step()
    return dict(weight=float(w.detach().abs().max()), exp_avg=float(opt.state[w]['exp_avg'].abs().max()))


def run_subnormal(args: argparse.Namespace, device: torch.device, log) -> Dict[str, Any]:
    """The subnormal section: one model, three snapshots of its state, timed in interleaved rounds."""
    step = TrainStep('m3d', args, device)
    step()  # Adam's state exists
    step.optimizer.zero_grad(set_to_none=True)
    step.loss_fn(step.model.forward_train(step.x), step.pids)[0].backward()
    dead = {p: p.grad == 0 for p in step.model.parameters() if p.grad is not None}
    step.optimizer.zero_grad(set_to_none=True)
    num_dead = sum(int(m.sum()) for m in dead.values())
    num_params = sum(p.numel() for p in step.model.parameters())
    left = _where_adam_leaves_dead_weights(step.recipe)
    out = dict(model=step.name, dead_weights=num_dead, params=num_params, subnormal_weight=left['weight'],
               subnormal_exp_avg=left['exp_avg'])
    log(f'{step.name}: {num_dead} of {num_params} weights get no gradient from the data; Adam leaves them at '
        f"{left['weight']:.3g} (first moment {left['exp_avg']:.3g})")
    tiny = torch.finfo(torch.float32).tiny
    if not num_dead or left['weight'] >= tiny:  # nothing subnormal to time
        return out
    fresh = copy.deepcopy((step.model.state_dict(), step.optimizer.state_dict()))
    with torch.no_grad():
        for p, m in dead.items():
            p[m] = left['weight'] * torch.sign(p[m])
            step.optimizer.state[p]['exp_avg'][m] = left['exp_avg']
    decayed = copy.deepcopy((step.model.state_dict(), step.optimizer.state_dict()))
    out['subnormal_weights'] = sum(int(((p != 0) & (p.abs() < tiny)).sum()) for p in step.model.parameters())
    modes = {'fresh': (fresh, nullcontext), 'subnormal': (decayed, nullcontext),
             'subnormal, flushed': (decayed, flush_denormals)}
    times: Dict[str, List[float]] = {k: [] for k in modes}
    for r in range(args.rounds):
        for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
            state, context = modes[name]
            step.model.load_state_dict(state[0])
            step.optimizer.load_state_dict(state[1])
            with context():
                synchronize(device)
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    step()
                synchronize(device)
            times[name].append((time.perf_counter() - t0) / args.iters)
        log(f'  round {r + 1}/{args.rounds}: ' + ', '.join(f'{k} {v[-1] * 1e3:.0f} ms/step' for k, v in times.items()))
    out['ms_per_step'] = {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()}
    out['slowdown_vs_fresh'] = {k: round(median_ratio(v, times['fresh']), 3) for k, v in times.items()}
    return out


def memory_probe(row: str, args: argparse.Namespace, grad_checkpointing: bool) -> Dict[str, float]:
    """Peak memory of two training steps of one model, in this (fresh) process; and the second step's time."""
    device = torch.device(args.device)
    step = TrainStep(row, args, device, grad_checkpointing)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _reset_peak_rss()
    step()
    synchronize(device)
    t0 = time.perf_counter()
    step()
    synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else _status_kb('VmHWM') * 1024
    return dict(peak_growth_mb=round((peak - before) / 2 ** 20, 1), step_s=round(seconds, 3))


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field + ':'))


def _reset_peak_rss() -> int:
    """Reset the process's peak resident memory (VmHWM) to what it holds now, and return that in bytes.

    Building a model can peak above what it keeps; without the reset that peak would count as the step's."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # Linux >= 4.0: reset the peak RSS
    except OSError as e:
        raise SystemExit(f'the CPU memory probe needs Linux\'s /proc/self/clear_refs ({e}); measure on Linux, or '
                         f'leave out the memory section (--sections step loader).') from None
    return _status_kb('VmRSS') * 1024


def _probe_argv(args: argparse.Namespace) -> List[str]:
    """The settings a memory probe needs, as a command line."""
    argv = ['--device', args.device, '--depth', args.depth, '--frames', str(args.frames), '--img-size',
            *map(str, args.img_size), '--batch-size', str(args.batch_size), '--num-instances', str(args.num_instances),
            '--dtype', args.dtype, '--threads', str(args.threads)]
    return argv + (['--channels-last'] if args.channels_last else [])


def run_memory(args: argparse.Namespace, log) -> List[Dict[str, Any]]:
    """The memory section: a fresh subprocess per (model, checkpointing)."""
    rows = []
    for i, row in enumerate(args.models):
        res = {}
        for ckpt in (False, True):
            cmd = [sys.executable, os.path.abspath(__file__), *_probe_argv(args), '--memory-probe', row]
            if ckpt:
                cmd.append('--grad-checkpointing')
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f'the memory probe of {row} failed:\n{out.stderr[-2000:]}')
            res[ckpt] = json.loads(out.stdout.strip().splitlines()[-1])
        log(f'[{i + 1}/{len(args.models)}] {ROWS[row][0]}: {res[False]["peak_growth_mb"]:.0f} MB, '
            f'{res[True]["peak_growth_mb"]:.0f} MB with gradient checkpointing')
        rows.append(dict(
            row=row, label=ROWS[row][0], peak_mb=res[False]['peak_growth_mb'],
            peak_mb_checkpointing=res[True]['peak_growth_mb'],
            memory_saved=round(1 - res[True]['peak_growth_mb'] / res[False]['peak_growth_mb'], 3),
            step_s=res[False]['step_s'], step_s_checkpointing=res[True]['step_s'],
            checkpointing_time_cost=round(res[True]['step_s'] / res[False]['step_s'], 3)))
    return rows


def write_jpeg_tracklets(root: Path, frame_size: Sequence[int], num_ids: int = 8, tracklets_per_id: int = 2,
                         length: int = 24, seed: int = 0) -> float:
    """A tracklet-folder dataset of JPEG frames (quality 90): blocks of colour with a little pixel noise, which
    compress about as well as pedestrian crops do. Query and gallery hold one tracklet each, for the loader's sake.

    Returns:
        JPEG's own error: the mean absolute difference (0-255 levels) between the frames written and PIL's decode.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    H, W = frame_size
    errors = []
    for split, pids in (('train', range(num_ids)), ('query', [0]), ('gallery', [0])):
        for pid in pids:
            for t in range(tracklets_per_id if split == 'train' else 1):
                folder = root / split / f'{pid:04d}' / f'c{t + 1}_t{t:03d}'
                folder.mkdir(parents=True, exist_ok=True)
                base = rng.random((max(H // 16, 1), max(W // 16, 1), 3)) * 200
                for f in range(length):
                    field = np.kron(base, np.ones((16, 16, 1)))[:H, :W] + rng.normal(0, 4, (H, W, 3))
                    frame = field.clip(0, 255).astype(np.uint8)
                    Image.fromarray(frame).save(folder / f'{f:06d}.jpg', quality=90)
                    if len(errors) < 8:
                        decoded = np.asarray(read_image(str(folder / f'{f:06d}.jpg')), dtype=np.float64)
                        errors.append(np.abs(decoded - frame).mean())
    return float(np.mean(errors))


def decoder_pixels(root: Path, decoder: str, size: Sequence[int], jpeg_error: float) -> Dict[str, Any]:
    """How far a decoder's frames are from PIL's full decode after the same resize to `size` (0-255 levels), whether
    they count as the same pixels, and JPEG's own error for scale (`jpeg_error`)."""
    from torchvision.transforms import v2
    resize = v2.Resize(tuple(size), antialias=True)
    paths = sorted((root / 'train').rglob('*.jpg'))[:24]
    diffs = []
    for p in paths:
        ref = resize(v2.functional.pil_to_tensor(read_image(str(p)))).float()
        frame = read_frame(str(p), decoder, tuple(size))
        if not isinstance(frame, torch.Tensor):
            frame = v2.functional.pil_to_tensor(frame)
        diffs.append((resize(frame).float() - ref).abs())
    d = torch.stack(diffs)
    mean = float(d.mean())
    return dict(max_abs_diff=round(float(d.max()), 1), mean_abs_diff=round(mean, 3), jpeg_error=round(jpeg_error, 3),
                same_pixels=mean <= SAME_PIXELS_MEAN_DIFF)


def _loader_rate(dataset, recipe, workers: int, batches: int, decoder: str) -> float:
    """Clips/s the training loader delivers after its first batch (worker start-up and the first batch excluded)."""
    loader = build_train_loader(dataset, None, recipe, DistInfo(), num_workers=workers, decoder=decoder)
    if len(loader) <= batches:
        raise ValueError(f'the loader has {len(loader)} batches per epoch, {batches + 1} are needed')
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        n += next(it)[0].shape[0]
    return n / (time.perf_counter() - t0)


def run_loader(args: argparse.Namespace, step_rows: Optional[List[Dict[str, Any]]], log) -> List[Dict[str, Any]]:
    """The loader section: every frame size x decoder x worker count."""
    workers = args.loader_workers or sorted({0, 1, 2, os.cpu_count() or 1})
    sizes = [tuple(args.loader_frames[i:i + 2]) for i in range(0, len(args.loader_frames), 2)]
    H, W = args.img_size
    rows = []
    with tempfile.TemporaryDirectory(prefix='m3d_zoo_loader_') as tmp:
        for size in sizes:
            root = Path(tmp) / f'{size[0]}x{size[1]}'
            # enough identities for every timed batch of one epoch (P x K batches, K of an identity's 4 tracklets)
            num_ids = max(4, -(-(args.loader_batches + 2) * args.batch_size // 4))
            jpeg_error = write_jpeg_tracklets(root, size, num_ids=num_ids, tracklets_per_id=4, length=2 * args.frames)
            dataset = create_dataset('folder', str(root))
            for decoder in FRAME_DECODERS:
                recipe = get_recipe('modern', num_frames=args.frames, batch_size=args.batch_size,
                                    num_instances=args.num_instances, input_size=(H, W))
                pixels = decoder_pixels(root, decoder, (H, W), jpeg_error)
                for w in workers:
                    rate = _loader_rate(dataset, recipe, w, args.loader_batches, decoder)
                    log(f'  frames {size[0]}x{size[1]}, {decoder}, {w} workers: {rate:.1f} clips/s')
                    rows.append(dict(frames=f'{size[0]}x{size[1]}', decoder=decoder, workers=w,
                                     clips_per_s=round(rate, 1), **pixels))
    return rows


def loader_summary(loader_rows: List[Dict[str, Any]], step_rows: Optional[List[Dict[str, Any]]],
                   args: argparse.Namespace) -> Dict[str, Any]:
    """Per frame size: the fastest decoder that gives the same pixels (at one worker), whether the loader with all workers
    keeps up with this machine's fastest training step, and the workers per GPU a GPU's training rate would need."""
    if step_rows and args.device.startswith('cuda'):
        gpu_rate = max(r['clips_per_s'] for r in step_rows)
        basis = f'the fastest training step measured on {args.device}'
    else:
        # No GPU measured: the paper's TITAN X inference rate of the 2D net, 796 frames/s, with a training step taken
        # as three forwards (forward, and a backward of about twice its cost).
        gpu_rate = PAPER_2D_FPS / args.frames / 3
        basis = "the paper's TITAN X rate (796 frames/s at inference; a training step taken as 3 forwards)"
    train_rate = max(r['clips_per_s'] for r in step_rows) if step_rows and args.device == 'cpu' else None
    out = {}
    for size in dict.fromkeys(r['frames'] for r in loader_rows):
        rows = [r for r in loader_rows if r['frames'] == size and r['same_pixels']]
        one = min({r['workers'] for r in rows} - {0}, default=0)  # one worker's rate (the main process's without)
        best = max((r for r in rows if r['workers'] == one), key=lambda r: r['clips_per_s'])
        most = max((r for r in rows if r['decoder'] == best['decoder']), key=lambda r: r['workers'])
        out[size] = dict(
            fastest_decoder=best['decoder'], clips_per_s_per_worker=best['clips_per_s'], per_worker_measured_with=one,
            all_workers=most['workers'], clips_per_s_all_workers=most['clips_per_s'],
            fastest_training_clips_per_s=train_rate,
            keeps_up=None if train_rate is None else most['clips_per_s'] >= train_rate,
            gpu_clips_per_s=round(gpu_rate, 1), workers_per_gpu=math.ceil(gpu_rate / best['clips_per_s']))
    return dict(per_size=out, basis=basis)


STEP_COLUMNS = [('Model', 'label'), ('Train GFLOPs/clip', 'train_gflops'), ('ms/clip', 'ms_per_clip'),
                ('clips/s', 'clips_per_s'), ('Speed vs 2D', 'speed_vs_2d'), ('GFLOP/s', 'gflop_per_s'),
                ('GFLOP/s vs 2D', 'flop_rate_vs_2d')]
MEMORY_COLUMNS = [('Model', 'label'), ('Peak MB', 'peak_mb'), ('Peak MB, checkpointing', 'peak_mb_checkpointing'),
                  ('Saved', 'memory_saved'), ('Step s', 'step_s'), ('Step s, checkpointing', 'step_s_checkpointing'),
                  ('Time cost', 'checkpointing_time_cost')]
LOADER_COLUMNS = [('Frames', 'frames'), ('Decoder', 'decoder'), ('Workers', 'workers'), ('clips/s', 'clips_per_s'),
                  ('Max diff vs PIL', 'max_abs_diff'), ('Mean diff vs PIL', 'mean_abs_diff'),
                  ("JPEG's own error", 'jpeg_error'), ('Same pixels', 'same_pixels')]


def to_markdown(report: Dict[str, Any]) -> str:
    m, s = report['machine'], report['settings']
    parts = [
        f"Device: {m.get('device_name', m['cpu'])} ({m['device']}, {m['threads']} threads), torch {m['torch']}; "
        f"{s['depth']}, batch {s['batch_size']} clips (P x K = {s['batch_size'] // s['num_instances']} x "
        f"{s['num_instances']}), {s['frames']}x{s['img_size'][0]}x{s['img_size'][1]}, {s['dtype']}"
        f"{', channels-last-3d' if s['channels_last'] else ''}{', compiled' if s['compile'] else ''}; modern recipe "
        f"(cross-entropy + batch-hard triplet, Adam); median of {s['rounds']} rounds x {s['iters']} step(s) after "
        f"{s['warmup']} warm-up; the allocator left as it is (as `m3d-zoo train` runs)."]
    if 'step' in report:
        parts += ['', 'Training step:', '', markdown_table(report['step'], STEP_COLUMNS)]
    if 'memory' in report:
        kind = 'GPU: max_memory_allocated' if m['device'].startswith('cuda') else \
            'CPU: growth of peak resident memory over the model and optimizer built'
        parts += ['', f'Peak memory of two training steps, fresh process per cell ({kind}):', '',
                  markdown_table(report['memory'], MEMORY_COLUMNS)]
    if 'loader' in report:
        parts += ['', 'Training loader (decode, sample, augment, collate), clips/s after the first batch; pixels after the '
                      "resize against PIL's full decode, in 0-255 levels:", '',
                  markdown_table(report['loader'], LOADER_COLUMNS, text_keys=('frames', 'decoder'))]
        summary = report['loader_summary']
        for size, v in summary['per_size'].items():
            line = (f"- {size} frames: fastest decoder with the same pixels: {v['fastest_decoder']} "
                    f"({v['clips_per_s_per_worker']} clips/s with {v['per_worker_measured_with']} worker(s), "
                    f"{v['clips_per_s_all_workers']} with {v['all_workers']})")
            if v['keeps_up'] is not None:
                line += (f"; {'keeps up with' if v['keeps_up'] else 'is slower than'} this machine's fastest "
                         f"training step ({v['fastest_training_clips_per_s']} clips/s)")
            parts.append(line + f"; {v['workers_per_gpu']} workers per GPU to feed {v['gpu_clips_per_s']} clips/s")
        parts += [f"- GPU rate: {summary['basis']}."]
    if 'subnormal' in report:
        parts += ['', _subnormal_markdown(report['subnormal'])]
    return '\n'.join(parts)


def _subnormal_markdown(sub: Dict[str, Any]) -> str:
    head = (f"Weights without gradient: {sub['dead_weights']} of {sub['params']} in {sub['model']}; Adam leaves them "
            f"at {sub['subnormal_weight']:.3g}")
    if 'ms_per_step' not in sub:
        return head + ': nothing subnormal to time.'
    rows = [dict(state=k, ms=v, ratio=sub['slowdown_vs_fresh'][k]) for k, v in sub['ms_per_step'].items()]
    return head + ' (first moment ' + f"{sub['subnormal_exp_avg']:.3g}):\n\n" + markdown_table(
        rows, [('State', 'state'), ('ms/step', 'ms'), ('Time vs fresh', 'ratio')], text_keys=('state',))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--sections', nargs='+', default=list(DEFAULT_SECTIONS), choices=SECTIONS,
                   help='default: step memory loader')
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ... (default: cpu)')
    p.add_argument('--depth', default='resnet50', choices=('resnet18', 'resnet34', 'resnet50', 'resnet101'))
    p.add_argument('--models', nargs='+', default=list(ROWS), choices=list(ROWS), metavar='ROW',
                   help=f"rows, of {', '.join(ROWS)} (default: all; c2d is always run, as the reference)")
    p.add_argument('--frames', type=int, default=8, help='clip length T (default: 8)')
    p.add_argument('--img-size', nargs=2, type=int, default=(256, 128), metavar=('H', 'W'), help='default: 256 128')
    p.add_argument('--batch-size', type=int, default=4, help='clips per step, P x K (default: 4 = 2 x 2)')
    p.add_argument('--num-instances', type=int, default=2, help='K, clips per identity in a batch (default: 2)')
    p.add_argument('--dtype', default='fp32', choices=('fp32', 'bf16', 'fp16'), help='fp32, or bf16/fp16 autocast')
    p.add_argument('--channels-last', action='store_true', help='channels_last_3d model and input')
    p.add_argument('--compile', action='store_true', help='torch.compile forward_train (compiled in the warm-up)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps per model (default: 1)')
    p.add_argument('--iters', type=int, default=1, help='timed steps per model and round (default: 1)')
    p.add_argument('--rounds', type=int, default=3, help='timing rounds, models alternating (default: 3)')
    p.add_argument('--threads', type=int, default=0, help='CPU threads (default: torch default)')
    p.add_argument('--loader-frames', nargs='+', type=int, default=[256, 128, 1024, 512], metavar='H W',
                   help='frame sizes of the loader section, as H W pairs (default: 256 128 (MARS) 1024 512)')
    p.add_argument('--loader-batches', type=int, default=40, help='batches timed per loader setting (default: 40)')
    p.add_argument('--loader-workers', nargs='+', type=int, default=None, metavar='N',
                   help='worker counts of the loader section (default: 0 1 2 and all CPUs)')
    p.add_argument('--memory-probe', default=None, help=argparse.SUPPRESS)
    p.add_argument('--grad-checkpointing', action='store_true', help=argparse.SUPPRESS)
    add_output_args(p)
    args = p.parse_args(argv)
    if args.batch_size < 2 or args.batch_size % args.num_instances or args.batch_size // args.num_instances < 2:
        p.error('--batch-size must hold at least 2 identities of --num-instances clips each (the triplet loss '
                'needs positives and negatives), e.g. --batch-size 4 --num-instances 2')
    if len(args.loader_frames) % 2:
        p.error('--loader-frames takes H W pairs')
    args.models = ['c2d'] + [r for r in dict.fromkeys(args.models) if r != 'c2d']
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args, args.grad_checkpointing)))
        return {}
    device = torch.device(args.device)
    log = stderr_logger(args.quiet)
    t0 = time.perf_counter()
    settings = {k: getattr(args, k) for k in (
        'sections', 'device', 'depth', 'frames', 'img_size', 'batch_size', 'num_instances', 'dtype', 'channels_last',
        'compile', 'warmup', 'iters', 'rounds', 'loader_frames', 'loader_batches', 'loader_workers')}
    report: Dict[str, Any] = dict(machine=machine_info(device), settings=settings)
    if 'step' in args.sections:
        report['step'] = run_step(args, device, log)
    if 'memory' in args.sections:
        report['memory'] = run_memory(args, log)
    if 'loader' in args.sections:
        report['loader'] = run_loader(args, report.get('step'), log)
        report['loader_summary'] = loader_summary(report['loader'], report.get('step'), args)
    if 'subnormal' in args.sections:
        report['subnormal'] = run_subnormal(args, device, log)
    report['wall_s'] = round(time.perf_counter() - t0, 1)
    emit(report, args.format, to_markdown, args.output)
    log(f'done in {report["wall_s"]:.0f} s')
    return report


if __name__ == '__main__':
    main()

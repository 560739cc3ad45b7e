#!/usr/bin/env python3
""" Table 1 of the paper, reproduced: model size, GFLOPs and speed of 2D, I3D, P3D-A/B/C and M3D (+ extra rows).

    python benchmarks/params_speed.py                      # CPU, ResNet-50, 256x128, 8 and 16 frames, Markdown
    python benchmarks/params_speed.py --device cuda --dtype bf16 --channels-last --compile --batch-size 8
    python benchmarks/params_speed.py --depth resnet18 --frames 8 --models c2d m3d m3d_fused --format json

Sizes follow the paper's convention (float32 state dict in decimal MB with the 128-d head and a 625-way classifier,
`m3d_zoo.paper_size_mb`). GFLOPs per clip come from torch's own counter (`torch.utils.flop_counter`, a multiply-add
counts 2). Speed is timed in rounds: each round runs every model once (after a warm-up), models alternating, so that a
slow moment of a shared machine hits all of them; each row reports the median over rounds. Speed relative to the 2D
net is the median of the per-round ratios: 3D clips/s / 2D clips/s at the same number of frames per clip, the paper's
2D rate being 796 frames/s, i.e. 796 / T clips/s; the FLOP rate relative to the 2D net is that speed ratio times the
ratio of GFLOPs per clip.

Extra rows: '2D fused' and the fused M3D rows run after `model.fuse()` (M3D kernels merged, BatchNorm folded into the
convs); 'timm ResNet (2D)' is timm's own ResNet of the same depth on the clip's B x T frames, the reference of the
2D net's "Time vs timm". `--onnxruntime` adds the time of each model exported to ONNX (fused) in ONNX Runtime's CPU
provider, in the same rounds. Speed targets scale with FLOPs: every 3D model's GFLOP/s at least 0.9x the 2D net's on
the CPU (0.8x on a GPU), and the 2D net no slower than timm's; the run checks them and prints the result.

On Linux/glibc the benchmark first calls `m3d_zoo.utils.tune_cpu_allocator()`, which keeps freed memory in the heap:
glibc's default gives each forward's activations back to the OS and page-faults them in again on the next forward, a
large share of a CPU forward's time (benchmarks/RESULTS.md). `--system-malloc` measures without it; the header says
which was used.
"""
import argparse
import math
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import m3d_zoo
from _bench import add_output_args, checks_markdown, emit, machine_info, markdown_table, median_ratio, \
    stderr_logger, synchronize

# Table 1 (TITAN X, 256x128): sizes in MB and clips/s at 8 and 16 frames; the 2D net runs 796 frames/s.
PAPER_2D_FPS = 796.
PAPER = {
    'c2d': dict(size=95.7, clips={8: PAPER_2D_FPS / 8, 16: PAPER_2D_FPS / 16}),
    'i3d': dict(size=186.3, clips={8: 81.0, 16: 38.7}),
    'p3d_a': dict(size=110.9, clips={8: 90.1, 16: 46.9}),
    'p3d_b': dict(size=110.9, clips={8: 93.9, 16: 48.7}),
    'p3d_c': dict(size=110.9, clips={8: 87.6, 16: 45.4}),
    'm3d': dict(size=99.9, clips={8: 98.3, 16: 49.1}),
}

# Row key -> (label, family, extra model args, fuse). The 2D row must come first: it is every ratio's reference.
# 'timm' is timm's own 2D ResNet of the same depth on the clip's frames (a batch of B x T images), averaged over T.
ROWS = {
    'c2d': ('2D', 'c2d', {}, False),
    'c2d_fused': ('2D fused', 'c2d', {}, True),
    'timm': ('timm ResNet (2D)', 'timm', {}, False),
    'i3d': ('I3D', 'i3d', {}, False),
    'p3d_a': ('P3D-A', 'p3d_a', {}, False),
    'p3d_b': ('P3D-B', 'p3d_b', {}, False),
    'p3d_c': ('P3D-C', 'p3d_c', {}, False),
    'm3d': ('M3D', 'm3d', {}, False),
    'm3d_fused': ('M3D fused', 'm3d', {}, True),
    'm3d_s1': ('M3D strides 1', 'm3d', dict(temporal_strides=(1, 1, 1, 1)), False),
    'm3d_s1_fused': ('M3D strides 1 fused', 'm3d', dict(temporal_strides=(1, 1, 1, 1)), True),
    'm3d_ral': ('M3D+RAL', 'm3d_ral', {}, False),
    'two_stream': ('Two-stream', 'two_stream_m3d', {}, False),
}
DEFAULT_ROWS = list(ROWS)
# Speed targets scale with FLOPs: every 3D model's GFLOP/s at least this share of the 2D net's (a model that does more
# work than the 2D net is judged by its FLOP rate, not by a fixed time ratio).
FLOP_RATE_TARGET = {'cpu': 0.9, 'cuda': 0.8}
REFERENCE_ROWS = ('c2d', 'c2d_fused', 'timm')  # 2D rows: not held to the FLOP-rate target


def model_name(family: str, depth: str) -> str:
    if family == 'two_stream_m3d':
        return family if depth == 'resnet50' else f'{family}_{depth}'
    return f'{family}_{depth}'


class FramesOf2dNet(torch.nn.Module):
    """A 2D network on a clip batch (B, C, T, H, W): its B x T frames as one image batch, features averaged over T."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        return self.net(frames).view(B, T, -1).mean(1)


def build(row: str, args: argparse.Namespace, frames: int, device: torch.device):
    label, family, extra, fuse = ROWS[row]
    if family == 'timm':
        model = FramesOf2dNet(timm.create_model(args.depth, num_classes=0)).eval()
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
        return f'timm {args.depth}', {}, size, _to_device(model, args, device)
    name = model_name(family, args.depth)
    kwargs = dict(num_frames=frames, head='paper', embed_dim=128)
    if family != 'c2d':
        if args.temporal_strides is not None:
            kwargs['temporal_strides'] = args.temporal_strides
        kwargs.update(extra)
    if args.m3d_branches is not None and family in ('m3d', 'm3d_ral', 'two_stream_m3d'):
        kwargs['m3d_branches'] = args.m3d_branches
    size = m3d_zoo.paper_size_mb(name, **kwargs)
    model = m3d_zoo.create_model(name, num_classes=0, **kwargs).eval()  # the test embedding, as deployed
    if fuse:
        model.fuse()
    return name, kwargs, size, _to_device(model, args, device)


def _to_device(model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last_3d) if args.channels_last else model


def count_gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOPs of one clip, by torch's flop counter on the eager model (a multiply-add is 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x[:1])
    return counter.get_total_flops() / 1e9


def onnx_session(model: torch.nn.Module, x: torch.Tensor, folder: str):
    """The model exported (fused, static shape of `x`) and loaded in ONNX Runtime's CPU provider, with as many threads
    as torch uses."""
    import onnxruntime as ort
    from m3d_zoo.export import export_onnx
    path = export_onnx(model, Path(folder) / 'model.onnx', num_frames=x.shape[2], input_size=tuple(x.shape[-2:]),
                       batch_size=x.shape[0], dynamic_batch=False, fuse=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.cpu().numpy()}
    return lambda: session.run(None, feed)


def _prepare_entries(rows: Sequence[str], args: argparse.Namespace, frames: int, x: torch.Tensor,
                     device: torch.device, log, step: List[int], n_steps: int) -> List[Dict[str, Any]]:
    """Build each row's model, count its FLOPs and (with --onnxruntime) export it; the callables to time."""
    entries = []
    for row in rows:
        step[0] += 1
        name, kwargs, size, model = build(row, args, frames, device)
        log(f'[{step[0]}/{n_steps}] T={frames} {ROWS[row][0]}: {name} built, counting FLOPs')
        gflops = count_gflops(model, x)
        fn = torch.compile(model, mode=args.compile_mode) if args.compile else model
        e = dict(row=row, name=name, kwargs=kwargs, size=size, gflops=gflops, fn=lambda fn=fn: fn(x), times=[])
        if args.onnxruntime and ROWS[row][1] != 'timm' and not ROWS[row][3]:  # export fuses: one column per model
            log(f'  exporting {name} to ONNX')
            with tempfile.TemporaryDirectory(prefix='m3d_zoo_ort_') as folder:
                e['ort'], e['ort_times'] = onnx_session(model, x, folder), []
        entries.append(e)
    return entries


def _time_rounds(entries: List[Dict[str, Any]], args: argparse.Namespace, frames: int, device: torch.device,
                 log) -> None:
    """Warm-up, then `rounds` rounds in which every model (and its ONNX Runtime session) runs `iters` times."""
    dtype = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[args.dtype]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    timed = [(e, 'fn', 'times') for e in entries] + [(e, 'ort', 'ort_times') for e in entries if 'ort' in e]
    with torch.no_grad(), autocast:
        for e, fn, _ in timed:  # warm-up (and compilation)
            for _ in range(args.warmup):
                e[fn]()
            synchronize(device)
        for r in range(args.rounds):
            # Alternate the models within a round; a round's order reverses every other round (no model always runs
            # right after the same neighbour).
            for e, fn, times in (timed if r % 2 == 0 else timed[::-1]):
                synchronize(device)
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    e[fn]()
                synchronize(device)
                e[times].append((time.perf_counter() - t0) / (args.iters * args.batch_size))
            log(f'  T={frames} round {r + 1}/{args.rounds}: ' + ', '.join(
                f"{ROWS[e['row']][0]} {e['times'][-1] * 1e3:.0f} ms" for e in entries))


def _result_row(e: Dict[str, Any], ref: Dict[str, Any], timm_ref: Optional[Dict[str, Any]], frames: int,
                args: argparse.Namespace) -> Dict[str, Any]:
    t = statistics.median(e['times'])
    rel = median_ratio(ref['times'], e['times'])  # clips/s over 2D's, per round
    # The paper's numbers are ResNet-50's, at 8 and 16 frames, default strides.
    paper_setting = args.depth == 'resnet50' and args.temporal_strides in (None, (1, 2, 2, 2))
    paper = PAPER.get(e['row']) if paper_setting else None
    paper_rel = paper['clips'].get(frames, math.nan) / (PAPER_2D_FPS / frames) if paper is not None else None
    ort = statistics.median(e['ort_times']) if 'ort_times' in e else None
    return dict(
        row=e['row'], label=ROWS[e['row']][0], model=e['name'], frames=frames,
        temporal_strides=list(e['kwargs'].get('temporal_strides') or ([1] * 4 if e['row'] == 'c2d' else [])),
        fused=ROWS[e['row']][3],
        size_mb=round(e['size'], 2),
        paper_size_mb=paper['size'] if paper is not None else None,
        gflops=round(e['gflops'], 2),
        ms_per_clip=round(t * 1e3, 2),
        clips_per_s=round(1 / t, 3),
        frames_per_s=round(frames / t, 2),
        gflop_per_s=round(e['gflops'] / t, 2),
        rel_throughput=round(rel, 3),
        paper_clips_per_s=paper['clips'].get(frames) if paper_rel is not None else None,
        paper_rel_throughput=round(paper_rel, 3) if paper_rel is not None else None,
        flop_rate_vs_2d=round(rel * e['gflops'] / ref['gflops'], 3),  # per-round time ratio x FLOP ratio
        time_vs_2d=round(1 / rel, 3),
        time_vs_timm=round(median_ratio(e['times'], timm_ref['times']), 3) if timm_ref is not None else None,
        ort_ms_per_clip=round(ort * 1e3, 2) if ort is not None else None,
        ort_speedup=round(median_ratio(e['times'], e['ort_times']), 3) if ort is not None else None,
    )


def run(args: argparse.Namespace, log=print) -> Dict[str, Any]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = 'glibc default'
    if not args.system_malloc and m3d_zoo.utils.tune_cpu_allocator():
        allocator = 'glibc, heap kept (m3d_zoo.utils.tune_cpu_allocator)'
    rows = list(dict.fromkeys(args.models))
    if rows[0] != 'c2d':
        rows = ['c2d'] + [r for r in rows if r != 'c2d']  # the 2D net is every ratio's reference
    H, W = args.img_size
    results, step = [], [0]
    for frames in args.frames:
        x = torch.randn(args.batch_size, 3, frames, H, W, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        entries = _prepare_entries(rows, args, frames, x, device, log, step, len(rows) * len(args.frames))
        _time_rounds(entries, args, frames, device, log)
        timm_ref = next((e for e in entries if e['row'] == 'timm'), None)
        results += [_result_row(e, entries[0], timm_ref, frames, args) for e in entries]
        del entries
    settings = dict(
        device=args.device, depth=args.depth, batch_size=args.batch_size, frames=args.frames, img_size=[H, W],
        dtype=args.dtype, channels_last=args.channels_last, compile=args.compile, warmup=args.warmup,
        iters=args.iters, rounds=args.rounds, temporal_strides=args.temporal_strides, m3d_branches=args.m3d_branches,
        allocator=allocator, onnxruntime=args.onnxruntime)
    return dict(machine=machine_info(device), settings=settings, rows=results, checks=checks(results, device.type))


def checks(results: Sequence[Dict[str, Any]], device_type: str = 'cpu') -> List[Dict[str, Any]]:
    """The speed targets, evaluated on this run: every 3D model's FLOP rate against the 2D net's, and the 2D net's
    time against timm's ResNet on the same frames (where that row was run)."""
    target = FLOP_RATE_TARGET.get(device_type, FLOP_RATE_TARGET['cuda'])
    out = []
    for r in results:
        if r['row'] == 'c2d' and r['time_vs_timm'] is not None:
            out.append(dict(check=f"T={r['frames']} 2D: time per clip <= timm's ResNet", value=r['time_vs_timm'],
                            ok=r['time_vs_timm'] <= 1.0))
        if r['row'] in REFERENCE_ROWS:
            continue
        out.append(dict(
            check=f"T={r['frames']} {r['label']}: GFLOP/s >= {target} x 2D", value=r['flop_rate_vs_2d'],
            ok=r['flop_rate_vs_2d'] >= target))
    return out


COLUMNS = [
    ('Model', 'label'), ('T', 'frames'), ('Size MB', 'size_mb'), ('Paper MB', 'paper_size_mb'),
    ('GFLOPs/clip', 'gflops'), ('ms/clip', 'ms_per_clip'), ('clips/s', 'clips_per_s'), ('frames/s', 'frames_per_s'),
    ('GFLOP/s', 'gflop_per_s'), ('GFLOP/s vs 2D', 'flop_rate_vs_2d'), ('Speed vs 2D', 'rel_throughput'),
    ('Paper vs 2D', 'paper_rel_throughput'), ('Paper clips/s', 'paper_clips_per_s'),
]
TIMM_COLUMNS = [('Time vs timm', 'time_vs_timm')]
ORT_COLUMNS = [('ORT ms/clip', 'ort_ms_per_clip'), ('ORT speed vs eager', 'ort_speedup')]


def to_markdown(report: Dict[str, Any]) -> str:
    m, s = report['machine'], report['settings']
    header = (
        f"Device: {m.get('device_name', m['cpu'])} ({m['device']}, {m['threads']} threads), torch {m['torch']}; "
        f"{s['depth']}, batch {s['batch_size']}, {s['img_size'][0]}x{s['img_size'][1]}, {s['dtype']}"
        f"{', channels-last-3d' if s['channels_last'] else ''}{', compiled' if s['compile'] else ''}"
        f"{', M3D kernels per layer ' + str(s['m3d_branches']) if s.get('m3d_branches') is not None else ''}; "
        f"median of {s['rounds']} rounds x {s['iters']} iteration(s) after {s['warmup']} warm-up"
        f"{'; allocator: ' + s['allocator'] if s.get('allocator') and m['device'] == 'cpu' else ''}.")
    rows = report['rows']
    columns = list(COLUMNS)
    if any(r.get('time_vs_timm') is not None for r in rows):
        columns += TIMM_COLUMNS
    if s.get('onnxruntime'):
        columns += ORT_COLUMNS
    return '\n'.join([header, '', markdown_table(rows, columns), checks_markdown(report['checks'])]).rstrip()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0].strip(), formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ... (default: cpu)')
    p.add_argument('--depth', default='resnet50', choices=('resnet18', 'resnet34', 'resnet50', 'resnet101'),
                   help="backbone depth (the paper's: resnet50)")
    p.add_argument('--models', nargs='+', default=DEFAULT_ROWS, choices=list(ROWS), metavar='ROW',
                   help=f"rows to run, of {', '.join(ROWS)} (default: all; c2d is always run, as the reference)")
    p.add_argument('--frames', nargs='+', type=int, default=[8, 16], help='clip lengths (default: 8 16)')
    p.add_argument('--batch-size', type=int, default=1, help='clips per forward (default: 1)')
    p.add_argument('--img-size', nargs=2, type=int, default=(256, 128), metavar=('H', 'W'), help='default: 256 128')
    p.add_argument('--dtype', default='fp32', choices=('fp32', 'bf16', 'fp16'), help='fp32, or bf16/fp16 autocast')
    p.add_argument('--channels-last', action='store_true', help='channels_last_3d model and input')
    p.add_argument('--compile', action='store_true', help='torch.compile every model (compilation in the warm-up)')
    p.add_argument('--compile-mode', default=None, help="torch.compile mode, e.g. 'max-autotune'")
    p.add_argument('--temporal-strides', type=lambda s: tuple(int(i) for i in s.split(',')), default=None,
                   metavar='S1,S2,S3,S4', help="3D models' temporal strides (default: the released (1,2,2,2))")
    p.add_argument('--m3d-branches', type=lambda s: int(s) if ',' not in s else tuple(int(i) for i in s.split(',')),
                   default=None, metavar='N|N1,...,N5',
                   help="M3D kernels per layer for the M3D rows (default: Eq. 6; the released code: log2 T)")
    p.add_argument('--warmup', type=int, default=1, help='untimed forwards per model (default: 1)')
    p.add_argument('--iters', type=int, default=1, help='timed forwards per model and round (default: 1)')
    p.add_argument('--rounds', type=int, default=5, help='timing rounds, models alternating (default: 5)')
    p.add_argument('--system-malloc', action='store_true',
                   help="keep glibc's default allocator settings (see m3d_zoo.utils.tune_cpu_allocator)")
    p.add_argument('--threads', type=int, default=0, help='CPU threads (default: torch default)')
    p.add_argument('--onnxruntime', action='store_true',
                   help='also time each model exported to ONNX (fused) in ONNX Runtime on the CPU, in the same '
                        'rounds (needs the export extra)')
    add_output_args(p)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0 or args.batch_size < 1:
        p.error('--rounds, --iters and --batch-size must be >= 1, --warmup >= 0')
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    log = stderr_logger(args.quiet)
    report = run(args, log=log)
    report['wall_s'] = round(time.perf_counter() - t0, 1)
    emit(report, args.format, to_markdown, args.output)
    log(f'done in {report["wall_s"]:.0f} s')
    return report


if __name__ == '__main__':
    main()

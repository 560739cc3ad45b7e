#!/usr/bin/env python3
""" Video input speed: decoding, decoding + cropping every tracked box, and `m3d-zoo extract --video` end to end.

    python benchmarks/video_speed.py --data ../shared/data/mot15
    python benchmarks/video_speed.py --data ../shared/data/mot15 --model m3d_resnet50 --img-size 256 128

For each sequence (`<data>/<seq>/<seq>.mp4` with its boxes in `<seq>/gt/gt.txt`, MOTChallenge format) it times, in
rounds that alternate the steps so that a slow moment of a shared machine hits all of them (median over rounds):

- decode: every frame to an RGB image (PyAV);
- decode + crop: the same, plus every box cropped and resized to the model's input (`stream_tracklets`), in frames/s
  and boxes/s, for both crop modes;
- extract: the whole `extract_videos` call (decode, crop, embed) with the given model, once per round.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import m3d_zoo
from m3d_zoo.data import iter_frames, probe_video, read_tracks, split_tracks, stream_tracklets
from m3d_zoo.engine import CropOptions, VideoSource, extract_videos
from m3d_zoo.utils import tune_cpu_allocator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import machine_info  # noqa: E402  (one way to describe the machine for every benchmark)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_sequence(video: str, gt: str, model, size, rounds: int) -> dict:
    info = probe_video(video)
    pieces, stats = split_tracks(read_tracks(gt), frame_size=(info.width, info.height), min_len=1, max_len=10 ** 6)
    steps = {
        'decode': lambda: sum(1 for _ in iter_frames(video)),
        'decode + crop (stretch)': lambda: sum(1 for _ in stream_tracklets(video, pieces, size, 'stretch')),
        'decode + crop (pad)': lambda: sum(1 for _ in stream_tracklets(video, pieces, size, 'pad')),
        'extract (decode, crop, embed)': lambda: extract_videos(
            model, [VideoSource(video, gt)], CropOptions(min_len=1), input_size=size, progress=False),
    }
    times = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(_timed(fn))
    out = {'frames': info.num_frames, 'boxes': stats.kept_boxes, 'size': f'{info.width}x{info.height}'}
    for name, ts in times.items():
        t = statistics.median(ts)
        out[name] = {'seconds': t, 'frames_per_s': info.num_frames / t, 'boxes_per_s': stats.kept_boxes / t}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default='../shared/data/mot15', help='folder of <seq>/<seq>.mp4 and <seq>/gt/gt.txt')
    p.add_argument('--sequences', nargs='+', default=['TUD-Campus', 'TUD-Stadtmitte'])
    p.add_argument('--model', default='m3d_resnet50')
    p.add_argument('--img-size', type=int, nargs=2, default=(256, 128), metavar=('H', 'W'))
    p.add_argument('--rounds', type=int, default=3)
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        sys.exit(f'{a.data} not found: pass --data, the folder of the MOT15 sequences (see the module docstring).')
    tune_cpu_allocator()  # as m3d-zoo extract does
    torch.manual_seed(0)
    model = m3d_zoo.create_model(a.model).eval()
    size = tuple(a.img_size)
    print(f'# Video input speed: {a.model}, crops {size[0]}x{size[1]}, median of {a.rounds} rounds\n')
    print(', '.join(f'{k}: {v}' for k, v in machine_info(torch.device('cpu')).items()) + '\n')
    print('| sequence | frames | boxes | step | seconds | frames/s | boxes/s |')
    print('|---|---|---|---|---|---|---|')
    for seq in a.sequences:
        r = bench_sequence(str(Path(a.data) / seq / f'{seq}.mp4'), str(Path(a.data) / seq / 'gt' / 'gt.txt'), model,
                           size, a.rounds)
        for step in [k for k in r if isinstance(r[k], dict)]:
            s = r[step]
            print(f'| {seq} ({r["size"]}) | {r["frames"]} | {r["boxes"]} | {step} | {s["seconds"]:.2f} | '
                  f'{s["frames_per_s"]:.0f} | {s["boxes_per_s"]:.0f} |', flush=True)


if __name__ == '__main__':
    main()

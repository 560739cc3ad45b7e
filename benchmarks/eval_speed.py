""" Speed and peak memory of `m3d_zoo.eval` on random features.

Sizes: MARS (1,980 queries x 9,330 gallery tracklets), 10x MARS (19,800 x 93,300) and the 10,000 x 100,000 target
(distances computed chunk by chunk from the features: the full matrix would be 4 GB of float32 alone).
Each case runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own.

    python benchmarks/eval_speed.py                     # all cases
    python benchmarks/eval_speed.py --cases mars --dim 2048
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    'mars': (1980, 9330),
    'mars_x10': (19800, 93300),
    'target_10k_100k': (10000, 100000),
}


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(nq: int, ng: int, dim: int, ap_mode: str, threads: int, from_distmat: bool, seed: int = 0) -> dict:
    import numpy as np
    import torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from m3d_zoo.eval import FeatureDistance, evaluate_rank

    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    num_ids = max(ng // 15, 10)  # ~15 gallery tracklets per identity, about MARS's ratio
    q_pids = rng.integers(0, num_ids, nq)
    g_pids = rng.integers(0, num_ids, ng)
    q_cams, g_cams = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    # features with identity structure, so rankings are not pure noise
    centers = torch.randn(num_ids, dim, generator=torch.Generator().manual_seed(seed))
    q = centers[torch.from_numpy(q_pids)] + 2 * torch.randn(nq, dim)
    g = centers[torch.from_numpy(g_pids)] + 2 * torch.randn(ng, dim)
    del centers
    base = _rss_mb()
    t0 = time.perf_counter()
    dist = FeatureDistance(q, g)
    if from_distmat:
        dist = dist[:].numpy()
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap_mode=ap_mode)
    secs = time.perf_counter() - t0
    return {
        'queries': nq, 'gallery': ng, 'dim': dim, 'ap_mode': ap_mode,
        'input': 'distmat' if from_distmat else 'features',
        'threads': torch.get_num_threads(), 'seconds': round(secs, 2), 'peak_rss_mb': round(_rss_mb(), 1),
        'rss_before_eval_mb': round(base, 1), 'mAP': round(res['mAP'], 4), 'rank1': round(res['rank1'], 4),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    ap.add_argument('--dim', type=int, default=128, help='feature dimension (128: the paper head)')
    ap.add_argument('--ap-mode', default='standard', choices=['standard', 'trapezoid'])
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ap.add_argument('--json', default=None, help='also write the results to this file')
    ap.add_argument('--_child', nargs=3, metavar=('NQ', 'NG', 'DISTMAT'), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child:
        nq, ng, from_distmat = int(args._child[0]), int(args._child[1]), args._child[2] == '1'
        print(json.dumps(run_case(nq, ng, args.dim, args.ap_mode, args.threads, from_distmat)))
        return

    results = []
    for name in args.cases:
        nq, ng = CASES[name]
        # MARS fits as a full matrix: time that path too; the large cases only go through lazy distances
        for from_distmat in ((True, False) if name == 'mars' else (False,)):
            cmd = [sys.executable, __file__, '--dim', str(args.dim), '--ap-mode', args.ap_mode,
                   '--threads', str(args.threads), '--_child', str(nq), str(ng), '1' if from_distmat else '0']
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r['case'] = name
            results.append(r)
            print(f'{name:16s} {nq:6d} x {ng:6d} from {r["input"]:8s} D={r["dim"]:4d} ({r["ap_mode"]}, '
                  f'{r["threads"]} threads): {r["seconds"]:7.2f} s, peak RSS {r["peak_rss_mb"]:7.1f} MB '
                  f'(before eval {r["rss_before_eval_mb"]:.0f} MB); mAP {r["mAP"]:.3f}, R1 {r["rank1"]:.3f}',
                  flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()

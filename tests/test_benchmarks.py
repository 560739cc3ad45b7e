""" benchmarks/params_speed.py smoke test (tiny settings, no timing assertions). The CPU fast paths it motivated are
tested in tests/test_cpu_kernels.py. """
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import m3d_zoo


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'params_speed.py'


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(SCRIPT), '--depth', 'resnet18', '--img-size', '64', '32', '--frames', '8',
         '--warmup', '0', '--rounds', '1', '--threads', '1', *args],
        capture_output=True, text=True, env=env, timeout=300, check=True)


def test_params_speed_json_and_markdown(tmp_path):
    out = tmp_path / 'table.md'
    res = _run('--models', 'c2d', 'p3d_b', 'm3d', 'm3d_fused', 'two_stream', '--format', 'json')
    report = json.loads(res.stdout)
    assert '[1/4]' in res.stderr or '[1/5]' in res.stderr  # progress goes to stderr, the table to stdout
    rows = {r['row']: r for r in report['rows']}
    assert list(rows) == ['c2d', 'p3d_b', 'm3d', 'm3d_fused', 'two_stream']
    for r in rows.values():
        assert r['frames'] == 8 and r['clips_per_s'] > 0
        assert r['paper_size_mb'] is None  # the paper's numbers are ResNet-50's
    # GFLOPs against a count made independently: torchvision's ResNet-18 on each of the 8 frames, plus the paper
    # head's 512 -> 128 Linear; M3D adds 2 C^2 (2n+1) T H W FLOPs per M3D layer (one (2n+1)-tap conv, 2D path folded).
    c2d = _torchvision_gflops_per_frame(64, 32) * 8 + 2 * 512 * 128 / 1e9
    assert rows['c2d']['gflops'] == pytest.approx(c2d, abs=0.01)
    # (C, n, T, H, W) of the stem's and each stage's first M3D layer at 8x64x32, Eq. 6 kernels (3, 3, 3, 1, 1)
    layers = [(64, 3, 8, 32, 16), (64, 3, 8, 16, 8), (128, 3, 8, 8, 4), (256, 1, 4, 4, 2), (512, 1, 2, 2, 1)]
    extra = sum(2 * c * c * (2 * n + 1) * t * h * w for c, n, t, h, w in layers) / 1e9
    c2d_strided = rows['m3d']['gflops'] - extra  # the 2D convs of M3D run on 8, 8, 4, 2 frames in stages 1-4
    assert 0 < c2d_strided < rows['c2d']['gflops'] and rows['m3d_fused']['gflops'] == pytest.approx(
        rows['m3d']['gflops'], abs=0.01)
    # the two-stream net is a 2D net plus M3D + RAL (whose attention layers add a few MFLOPs)
    assert rows['two_stream']['gflops'] == pytest.approx(rows['c2d']['gflops'] + rows['m3d']['gflops'], abs=0.02)
    assert report['settings']['depth'] == 'resnet18' and report['machine']['threads'] == 1
    assert any(c['check'].startswith('T=8 M3D: time per clip') for c in report['checks'])
    if sys.platform.startswith('linux') and hasattr(ctypes.CDLL(None), 'gnu_get_libc_version'):  # glibc: recorded
        assert report['settings']['allocator'].startswith('glibc, heap kept')

    one = json.loads(_run('--models', 'm3d', 'two_stream', '--m3d-branches', '1', '--format', 'json').stdout)
    assert one['settings']['m3d_branches'] == 1
    one_rows = {r['row']: r for r in one['rows']}
    assert one_rows['c2d']['size_mb'] == rows['c2d']['size_mb']  # the 2D reference is untouched
    for row in ('m3d', 'two_stream'):  # Eq. 6 gives (3, 3, 3, 1, 1) kernels at 8 frames; now one per layer
        assert one_rows[row]['size_mb'] < rows[row]['size_mb'] and one_rows[row]['gflops'] < rows[row]['gflops']

    res = _run('--models', 'm3d', '--quiet', '--output', str(out), '--system-malloc')  # c2d: the reference
    assert not res.stderr.strip()
    lines = res.stdout.splitlines()
    assert 'allocator: glibc default' in lines[0]
    assert out.read_text().strip() == res.stdout.strip()
    table = [ln for ln in lines if ln.startswith('| ')]
    assert table[0].startswith('| Model | T | Size MB | Paper MB | GFLOPs/clip | ms/clip | clips/s | frames/s')
    assert [ln.split('|')[1].strip() for ln in table[1:]] == ['2D', 'M3D']


def test_params_speed_paper_columns_at_resnet50_defaults():
    """At the paper's setting (ResNet-50, default strides) the rows carry Table 1's numbers; elsewhere they do not."""
    run = ['--depth', 'resnet50', '--img-size', '32', '16', '--models', 'm3d', '--format', 'json']
    rows = {r['row']: r for r in json.loads(_run(*run).stdout)['rows']}
    assert rows['c2d']['paper_size_mb'] == 95.7 and rows['c2d']['paper_rel_throughput'] == 1.0
    assert rows['c2d']['paper_clips_per_s'] == pytest.approx(796 / 8)
    assert rows['m3d']['paper_size_mb'] == 99.9 and rows['m3d']['paper_clips_per_s'] == 98.3
    assert rows['m3d']['paper_rel_throughput'] == pytest.approx(98.3 / (796 / 8), abs=1e-3)
    assert rows['m3d']['size_mb'] == round(m3d_zoo.paper_size_mb('m3d_resnet50'), 2)
    other = {r['row']: r for r in json.loads(_run(*run, '--temporal-strides', '1,1,1,1').stdout)['rows']}
    assert other['m3d']['paper_size_mb'] is None and other['m3d']['paper_rel_throughput'] is None


def _torchvision_gflops_per_frame(h, w):
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, h, w))
    return counter.get_total_flops() / 1e9

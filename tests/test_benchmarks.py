""" benchmarks/params_speed.py smoke test (tiny settings, no timing assertions), and the CPU fast paths it motivated:
the same results as PyTorch's stock ops, which graphs and FLOP counters still see. """
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from m3d_zoo.layers.temporal import Conv3d, TemporalConv, TemporalPool
from m3d_zoo.models.video_resnet import FrameMaxPool

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
        assert r['frames'] == 8 and r['gflops'] > 0 and r['size_mb'] > 0 and r['clips_per_s'] > 0
        assert r['frames_per_s'] == pytest.approx(8 * r['clips_per_s'], rel=1e-3)
        assert r['paper_size_mb'] is None  # the paper's numbers are ResNet-50's
    assert rows['c2d']['rel_throughput'] == 1.0 and rows['c2d']['flop_rate_vs_2d'] == 1.0
    # The M3D layer always runs its assembled (2n+1)-tap kernel, so fusing changes neither FLOPs nor size; the
    # two-stream net holds a 2D net and an M3D one.
    assert rows['m3d_fused']['gflops'] == pytest.approx(rows['m3d']['gflops'], rel=1e-6)
    assert rows['m3d_fused']['size_mb'] == rows['m3d']['size_mb']
    assert rows['two_stream']['gflops'] > rows['c2d']['gflops'] + rows['m3d']['gflops'] * 0.99
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
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import params_speed
    finally:
        sys.path.remove(str(SCRIPT.parent))
    args = params_speed.parse_args([])
    assert args.frames == [8, 16] and args.depth == 'resnet50' and args.device == 'cpu'
    assert args.models[0] == 'c2d'
    assert {'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'two_stream'} <= set(args.models)
    # Table 1's relative speed: M3D at 8 frames runs 98.3 clips/s, the 2D net 796 frames/s.
    assert params_speed.PAPER['m3d']['clips'][8] / (params_speed.PAPER_2D_FPS / 8) == pytest.approx(0.988, abs=1e-3)


# CPU fast paths: identical results to the stock ops, in both memory formats; stock ops under dispatch modes.

def _both_formats(x):
    return [x, x.contiguous(memory_format=torch.channels_last_3d)]


@pytest.mark.parametrize('cfg', [
    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    dict(kernel_size=1),
    dict(kernel_size=3, stride=(2, 1, 1), padding=1),
])
def test_conv3d_fast_path_matches_stock(cfg):
    torch.manual_seed(0)
    conv = Conv3d(8, 16, bias=True, **cfg)
    x = torch.randn(1, 8, 4, 9, 7, requires_grad=True)
    for xx in _both_formats(x):
        ref = F.conv3d(xx, conv.weight, conv.bias, conv.stride, conv.padding)
        torch.testing.assert_close(conv(xx), ref, rtol=1e-5, atol=1e-5)
    conv(x).sum().backward()  # trains too
    assert x.grad is not None and conv.weight.grad is not None


@pytest.mark.parametrize('chs', [3, 32])  # 3: the im2col GEMM path (few input channels), 32: oneDNN
@pytest.mark.parametrize('stride,dilation', [(1, 1), (1, 3), (2, 1), ((2, 2, 2), 1)])
def test_temporal_conv_fast_path_matches_stock(stride, dilation, chs):
    torch.manual_seed(0)
    conv = TemporalConv(chs, 8, 3, stride=stride, dilation=dilation)
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, chs, 8, 6, 5, requires_grad=True)
    ref = F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    for xx in _both_formats(x):
        torch.testing.assert_close(conv(xx), ref, rtol=1e-5, atol=1e-5)
    residual = torch.randn_like(ref)  # P3D-B's parallel sum, fused into the GEMM on the CPU
    torch.testing.assert_close(conv(x, residual=residual), ref + residual, rtol=1e-5, atol=1e-5)
    conv(x, residual=residual).square().sum().backward()  # trains too
    gx, gw = x.grad, conv.weight.grad
    x.grad = conv.weight.grad = None
    (F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation) + residual).square().sum().backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, conv.weight.grad, rtol=1e-4, atol=1e-4)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert counter.get_total_flops() == 2 * ref.numel() * chs * 3


def test_pools_match_stock():
    pool = FrameMaxPool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))  # ResNet's stem: its own CPU path
    pool5 = FrameMaxPool((1, 5, 5), stride=(1, 3, 3), padding=(0, 2, 2))  # the general CPU path
    for shape in [(2, 4, 3, 11, 6), (1, 2, 2, 1, 1), (1, 2, 2, 2, 3), (1, 3, 1, 6, 7)]:
        x = torch.randn(*shape)
        ref, ref5 = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1)), F.max_pool3d(x, (1, 5, 5), (1, 3, 3), (0, 2, 2))
        for xx in _both_formats(x):
            assert torch.equal(pool(xx), ref) and torch.equal(pool5(xx), ref5)
            with torch.no_grad():  # inference has its own path for the stem's pool
                assert torch.equal(pool(xx), ref)
    x = torch.randn(2, 4, 8, 11, 6)
    for s in (2, 4):
        ref = F.avg_pool3d(x, (s, 1, 1), (s, 1, 1))
        torch.testing.assert_close(TemporalPool(s)(x), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(TemporalPool(2)(x), F.avg_pool3d(x, (2, 1, 1), (2, 1, 1)))

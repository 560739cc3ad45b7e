""" benchmarks/params_speed.py smoke test (tiny settings, no timing assertions). The CPU fast paths it motivated are
tested in tests/test_cpu_kernels.py. """
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


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


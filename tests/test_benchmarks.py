""" benchmarks/params_speed.py smoke test (tiny settings, no timing assertions). The CPU fast paths it motivated are
tested in tests/test_cpu_kernels.py. """
import ctypes
import importlib.util
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
TRAIN_SCRIPT = ROOT / 'benchmarks' / 'train_speed.py'


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(SCRIPT), '--depth', 'resnet18', '--img-size', '64', '32', '--frames', '8',
         '--warmup', '0', '--rounds', '1', '--threads', '1', *args],
        capture_output=True, text=True, env=env, timeout=300, check=True)


IN_PROCESS = ['--img-size', '32', '16', '--frames', '8', '--warmup', '0', '--rounds', '1', '--system-malloc']


def _load_benchmark(script: Path):
    """A benchmark script as a module (its folder on sys.path while it imports `_bench`)."""
    spec = importlib.util.spec_from_file_location(f'm3d_zoo_{script.stem}', script)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(script.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(script.parent))
    return module


def _params_speed_module():
    return _load_benchmark(SCRIPT)


def _params_speed_in_process(*args: str) -> dict:
    """params_speed's report, run in this process: --system-malloc and the default thread count, so that nothing
    process-wide changes."""
    module = _params_speed_module()
    return module.run(module.parse_args(IN_PROCESS + list(args)), log=lambda msg: None)


def test_params_speed_json(tmp_path):
    res = _run('--models', 'c2d', 'c2d_fused', 'timm', 'p3d_b', 'm3d', 'm3d_fused', 'two_stream', '--format', 'json')
    report = json.loads(res.stdout)
    assert '[1/7]' in res.stderr  # progress goes to stderr, the table to stdout
    rows = {r['row']: r for r in report['rows']}
    assert list(rows) == ['c2d', 'c2d_fused', 'timm', 'p3d_b', 'm3d', 'm3d_fused', 'two_stream']
    for r in rows.values():
        assert r['frames'] == 8 and r['clips_per_s'] > 0 and r['time_vs_timm'] > 0
        assert r['paper_size_mb'] is None  # the paper's numbers are ResNet-50's
    # GFLOPs against a count made independently: torchvision's ResNet-18 on each of the 8 frames, plus the paper
    # head's 512 -> 128 Linear; M3D adds 2 C^2 (2n+1) T H W FLOPs per M3D layer (one (2n+1)-tap conv, 2D path folded).
    per_frame = _torchvision_gflops_per_frame(64, 32)
    c2d = per_frame * 8 + 2 * 512 * 128 / 1e9
    assert rows['c2d']['gflops'] == pytest.approx(c2d, abs=0.01)
    assert rows['timm']['gflops'] == pytest.approx(per_frame * 8, abs=0.01)  # timm's ResNet-18 on the 8 frames
    assert rows['c2d_fused']['gflops'] == pytest.approx(c2d, abs=0.01)  # BatchNorm folded: no FLOPs counted for it
    # (C, n, T, H, W) of the stem's and each stage's first M3D layer at 8x64x32, Eq. 6 kernels (3, 3, 3, 1, 1)
    layers = [(64, 3, 8, 32, 16), (64, 3, 8, 16, 8), (128, 3, 8, 8, 4), (256, 1, 4, 4, 2), (512, 1, 2, 2, 1)]
    extra = sum(2 * c * c * (2 * n + 1) * t * h * w for c, n, t, h, w in layers) / 1e9
    c2d_strided = rows['m3d']['gflops'] - extra  # the 2D convs of M3D run on 8, 8, 4, 2 frames in stages 1-4
    assert 0 < c2d_strided < rows['c2d']['gflops'] and rows['m3d_fused']['gflops'] == pytest.approx(
        rows['m3d']['gflops'], abs=0.01)
    # the two-stream net is a 2D net plus M3D + RAL (whose attention layers add a few MFLOPs)
    assert rows['two_stream']['gflops'] == pytest.approx(rows['c2d']['gflops'] + rows['m3d']['gflops'], abs=0.02)
    assert report['settings']['depth'] == 'resnet18' and report['machine']['threads'] == 1
    checks = {c['check']: c for c in report['checks']}
    # every 3D row is held to the CPU's FLOP-rate target, the 2D rows are not; the 2D net is compared with timm's
    assert set(checks) == {"T=8 2D: time per clip <= timm's ResNet"} | {
        f'T=8 {label}: GFLOP/s >= 0.9 x 2D' for label in ('P3D-B', 'M3D', 'M3D fused', 'Two-stream')}
    assert all(c['ok'] == (c['value'] >= 0.9) for c in checks.values() if 'GFLOP/s' in c['check'])
    if sys.platform.startswith('linux') and hasattr(ctypes.CDLL(None), 'gnu_get_libc_version'):  # glibc: recorded
        assert report['settings']['allocator'].startswith('glibc, heap kept')


def test_params_speed_markdown_and_onnxruntime(tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    out = tmp_path / 'table.md'
    _params_speed_module().main(IN_PROCESS + ['--depth', 'resnet18', '--models', 'c2d', '--onnxruntime', '--quiet',
                                              '--output', str(out)])  # c2d: the reference, the only row
    res = capsys.readouterr()
    assert not res.err.strip()
    lines = res.out.splitlines()
    assert 'allocator: glibc default' in lines[0]
    assert out.read_text().strip() == res.out.strip()
    table = [ln.split('|')[1:-1] for ln in lines if ln.startswith('| ')]
    header = [c.strip() for c in table[0]]
    assert header[:8] == ['Model', 'T', 'Size MB', 'Paper MB', 'GFLOPs/clip', 'ms/clip', 'clips/s', 'frames/s']
    assert header[-2:] == ['ORT ms/clip', 'ORT speed vs eager']
    (row,) = [dict(zip(header, (c.strip() for c in r))) for r in table[1:]]
    assert row['Model'] == '2D' and float(row['ORT ms/clip']) > 0  # exported and run in ONNX Runtime


def test_params_speed_m3d_branches():
    one = {r['row']: r for r in _params_speed_in_process(
        '--depth', 'resnet18', '--models', 'm3d', 'two_stream', '--m3d-branches', '1')['rows']}
    eq6 = {r['row']: r for r in _params_speed_in_process('--depth', 'resnet18', '--models', 'm3d', 'two_stream')['rows']}
    assert one['c2d']['size_mb'] == eq6['c2d']['size_mb']  # the 2D reference is untouched
    for row in ('m3d', 'two_stream'):  # Eq. 6 gives (3, 3, 3, 1, 1) kernels at 8 frames; now one per layer
        assert one[row]['size_mb'] < eq6[row]['size_mb'] and one[row]['gflops'] < eq6[row]['gflops']


def test_params_speed_paper_columns_at_resnet50_defaults():
    """At the paper's setting (ResNet-50, default strides) the rows carry Table 1's numbers; elsewhere they do not."""
    rows = {r['row']: r for r in _params_speed_in_process('--models', 'm3d')['rows']}
    assert rows['c2d']['paper_size_mb'] == 95.7 and rows['c2d']['paper_rel_throughput'] == 1.0
    assert rows['c2d']['paper_clips_per_s'] == pytest.approx(796 / 8)
    assert rows['m3d']['paper_size_mb'] == 99.9 and rows['m3d']['paper_clips_per_s'] == 98.3
    assert rows['m3d']['paper_rel_throughput'] == pytest.approx(98.3 / (796 / 8), abs=1e-3)
    assert rows['m3d']['size_mb'] == round(m3d_zoo.paper_size_mb('m3d_resnet50'), 2)
    other = {r['row']: r for r in _params_speed_in_process('--models', 'm3d', '--temporal-strides', '1,1,1,1')['rows']}
    assert other['m3d']['paper_size_mb'] is None and other['m3d']['paper_rel_throughput'] is None


def _torchvision_gflops_per_frame(h, w):
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, h, w))
    return counter.get_total_flops() / 1e9


def test_train_speed_step_and_loader():
    """The training step and the loader's decoders, at a tiny size; the figures themselves are not asserted, their
    presence and the pixel comparison are."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), '--depth', 'resnet18', '--img-size', '32', '16', '--models', 'c2d',
         '--sections', 'step', 'loader', '--warmup', '0', '--rounds', '1', '--threads', '1', '--loader-frames', '64',
         '32', '--loader-batches', '2', '--loader-workers', '0', '--format', 'json'],
        capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    (step,) = report['step']
    assert step['row'] == 'c2d' and step['speed_vs_2d'] == 1.0 and step['clips_per_s'] > 0
    # forward and backward: about three forwards of ResNet-18 on 8 frames of 32x16 (0.045 GFLOPs per frame)
    assert 2.5 * 8 * 0.045 < step['train_gflops'] < 3.5 * 8 * 0.045
    assert 'memory' not in report
    loader = {r['decoder']: r for r in report['loader']}
    assert list(loader) == ['torchvision', 'pil', 'pil-draft'] and all(r['clips_per_s'] > 0 for r in loader.values())
    assert loader['torchvision']['same_pixels'] and loader['pil']['same_pixels']
    assert not loader['pil-draft']['same_pixels']  # decoded at half scale: not PIL's full decode and resize
    summary = report['loader_summary']['per_size']['64x32']
    assert summary['fastest_decoder'] in ('torchvision', 'pil') and summary['workers_per_gpu'] >= 1
    assert summary['keeps_up'] in (True, False)  # against this machine's training step


def test_train_speed_subnormal_section():
    """Frames so small that the last stage's 3x3 taps read only padding: those weights are found, Adam's decay puts
    them in the subnormal floats, and the three states are timed (the figures are not asserted)."""
    bench = _load_benchmark(TRAIN_SCRIPT)
    args = bench.parse_args(['--depth', 'resnet18', '--img-size', '32', '16', '--batch-size', '4', '--rounds', '1',
                             '--sections', 'subnormal'])
    assert bench.parse_args([]).sections == ['step', 'memory', 'loader']  # timed only when asked for
    sub = bench.run_subnormal(args, torch.device('cpu'), log=lambda msg: None)
    assert sub['params'] > sub['dead_weights'] > sub['params'] // 2  # most of stage 4's 3x3 kernels at 1x1 maps
    assert 0 < sub['subnormal_weight'] < torch.finfo(torch.float32).tiny
    # the timed 'subnormal' state holds them, but for the zero-initialised temporal kernels that never moved
    assert sub['dead_weights'] >= sub['subnormal_weights'] > sub['params'] // 2
    assert set(sub['ms_per_step']) == {'fresh', 'subnormal', 'subnormal, flushed'}
    assert sub['slowdown_vs_fresh']['fresh'] == 1.0
    assert float((torch.tensor([1e-39]) * 1.5).item()) != 0  # the flushing ended with its block
    assert '| subnormal, flushed |' in bench._subnormal_markdown(sub)


@pytest.mark.skipif(not os.path.exists('/proc/self/clear_refs'), reason='the CPU memory probe reads Linux /proc')
def test_train_speed_memory_probe():
    """The memory section's probe (each cell of the section runs it in a fresh process): two training steps' peak
    resident memory over what the process held before them, here in this process at a tiny size."""
    bench = _load_benchmark(TRAIN_SCRIPT)
    args = bench.parse_args(['--depth', 'resnet18', '--img-size', '32', '16', '--models', 'c2d'])
    plain = bench.memory_probe('c2d', args, grad_checkpointing=False)
    assert plain['peak_growth_mb'] > 0 and plain['step_s'] > 0
    # a larger batch needs more: the peak is the step's, not the process's history
    bigger = bench.memory_probe('c2d', bench.parse_args(
        ['--depth', 'resnet18', '--img-size', '128', '64', '--batch-size', '8']), grad_checkpointing=True)
    assert bigger['peak_growth_mb'] > plain['peak_growth_mb']
    assert bench._probe_argv(args)[:4] == ['--device', 'cpu', '--depth', 'resnet18']  # what each subprocess gets

""" m3d_zoo.utils: the CPU allocator setting must stop repeated forwards from page-faulting their memory back in;
subnormal floats are flushed inside `flush_denormals` and only there. """
import ctypes
import subprocess
import sys

import pytest
import torch

import m3d_zoo

# m3d_zoo/utils.py loaded on its own (it needs no more than the standard library): the probe needs torch, not the
# models and timm the package imports.
_PROBE = r'''
import importlib.util, resource, sys, torch
spec = importlib.util.spec_from_file_location('m3d_zoo_utils', sys.argv[2])
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)
applied = utils.tune_cpu_allocator() if sys.argv[1] == 'tuned' else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.randn(1, 64, 16, 128, 80)  # 42 MB, like the stem activation of a 16-frame clip
steps = []
for _ in range(16):
    f0 = faults()
    y = [x * 2 for _ in range(3)]; del y  # 126 MB allocated, written and freed per step, like a forward pass
    steps.append(faults() - f0)
print(applied, *steps)
'''


def _probe(mode):
    """Whether the tuning was applied, and the page faults of the last 6 of 16 steps."""
    out = subprocess.run([sys.executable, '-c', _PROBE, mode, m3d_zoo.utils.__file__], capture_output=True, text=True,
                         check=True)
    applied, *faults = out.stdout.split()
    return applied == 'True', [int(f) for f in faults[-6:]]


def _has_glibc() -> bool:
    """Decided here, not by tune_cpu_allocator's return value: a tuner that wrongly gave up must fail, not skip."""
    try:
        return hasattr(ctypes.CDLL(None), 'gnu_get_libc_version')
    except OSError:
        return False


@pytest.mark.skipif(not (sys.platform.startswith('linux') and _has_glibc()),
                    reason='glibc malloc tuning: Linux with glibc only')
def test_tune_cpu_allocator_stops_page_faults():
    applied, tuned = _probe('tuned')
    assert applied, 'tune_cpu_allocator() returned False on glibc'
    _, default = _probe('default')
    # A step allocates 3 x 42 MB, 30k pages. glibc mmaps blocks over 32 MB and unmaps them when freed, so by default
    # every step faults them in again. The kept heap reuses its pages once its layout has settled: the first steps
    # may still place blocks above the freed ones (small allocations in between), for up to five steps here.
    assert min(default) > 25_000, default
    assert sum(tuned) < sum(default) / 10, (tuned, default)


def test_tune_cpu_allocator_off():
    assert m3d_zoo.utils.tune_cpu_allocator(top_pad_mb=0) is False


@pytest.mark.parametrize('cpus, local_world_size, workers', [
    (1, None, 0), (2, None, 1), (5, None, 4), (64, None, 4), (16, '4', 3), (4, '4', 0)])
def test_default_workers_fit_the_cpus_this_process_may_use(cpus, local_world_size, workers, monkeypatch, capsys):
    """min(4, CPUs - 1) of the process's affinity mask (its share under torchrun), and --workers defaults to it."""
    from m3d_zoo.cli import build_parser, main
    from m3d_zoo.utils import available_cpus, default_num_workers
    monkeypatch.setattr(m3d_zoo.utils.os, 'sched_getaffinity', lambda pid: set(range(cpus)), raising=False)
    if local_world_size:
        monkeypatch.setenv('LOCAL_WORLD_SIZE', local_world_size)
    else:
        monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    assert available_cpus() == cpus and default_num_workers() == workers
    for command, argv in (('train', ['--dataset', 'd']), ('extract', ['--model', 'm', '--tracklets', 't', '-o', 'o']),
                          ('evaluate', [])):
        assert build_parser().parse_args([command] + argv).workers == workers
        with pytest.raises(SystemExit):
            main([command, '--help'])
        help_text = ' '.join(capsys.readouterr().out.split())
        assert f'(default {workers} here: min(4, CPUs - 1), with {cpus} CPUs available)' in help_text


def test_available_cpus_without_an_affinity_mask(monkeypatch):
    monkeypatch.delattr(m3d_zoo.utils.os, 'sched_getaffinity', raising=False)
    monkeypatch.setattr(m3d_zoo.utils.os, 'cpu_count', lambda: 6)
    assert m3d_zoo.utils.available_cpus() == 6
    monkeypatch.setattr(m3d_zoo.utils.os, 'cpu_count', lambda: None)
    assert m3d_zoo.utils.available_cpus() == 1


def test_the_training_loader_defaults_to_the_machines_worker_count(monkeypatch):
    import inspect
    train_module = __import__('importlib').import_module('m3d_zoo.engine.train')
    assert inspect.signature(train_module.train).parameters['num_workers'].default is None
    assert inspect.signature(train_module.build_train_loader).parameters['num_workers'].default is None
    monkeypatch.setattr(train_module, 'default_num_workers', lambda: 3)
    from m3d_zoo.data import make_synthetic_gait, create_dataset
    from m3d_zoo.engine.distributed import DistInfo
    from m3d_zoo.engine.recipes import get_recipe
    import m3d_zoo
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        make_synthetic_gait(d, num_ids=4, tracklets_per_id=2, length=8, size=(16, 8))
        data = create_dataset('folder', d)
        info = DistInfo()
        loader = train_module.build_train_loader(data, m3d_zoo.create_model('c2d_resnet18'),
                                                 get_recipe('modern', batch_size=4, num_instances=2), info)
        assert loader.num_workers == 3


def _subnormal_survives() -> bool:
    return float((torch.tensor([1e-39]) * 1.5).item()) != 0.0


def test_flush_denormals_zeroes_subnormals_inside_and_restores_the_setting():
    from m3d_zoo.utils import flush_denormals
    assert _subnormal_survives()
    with flush_denormals() as supported:
        if not supported:
            pytest.skip('torch.set_flush_denormal is not supported on this CPU')
        assert not _subnormal_survives()
        assert float((torch.tensor([1e-30]) * 1e-10).item()) == 0.0  # an underflowing result is flushed too
        assert float((torch.tensor([1e-30]) * 1e3).item()) == pytest.approx(1e-27)  # normal floats are untouched
    assert _subnormal_survives()
    torch.set_flush_denormal(True)  # a caller's own setting outlives the block
    try:
        with flush_denormals():
            pass
        assert not _subnormal_survives()
    finally:
        torch.set_flush_denormal(False)

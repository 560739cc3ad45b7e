"""`m3d-zoo train` under torchrun: 2 processes, gloo on the CPU, P x K batches split across the ranks, the process
group's timeout, and the output folder's lock taken by rank 0 for all (the samplers' split: test_data_clips.py)."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from _fake_datasets import write_fake_folder
from _lock_procs import holding
from safetensors.torch import load_file

import m3d_zoo
from m3d_zoo.engine.distributed import state_dict_sha256
from m3d_zoo.engine.train import LOCK_NAME

TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']


def _train_cmd(root, out):
    return TORCHRUN + [
        '-m', 'm3d_zoo.cli', 'train', '--model', 'c2d_resnet18', '--dataset', 'folder', '--root', str(root),
        '--recipe', 'modern', '--epochs', '4', '--batch-size', '8', '--num-instances', '2', '--num-frames', '2',
        '--img-size', '32', '16', '--lr', '1e-3', '--warmup-epochs', '0', '--re-prob', '0', '--hflip', '0',
        '--pad', '0', '--eval-interval', '4', '--workers', '0', '--no-progress', '--device', 'cpu',
        '--output', str(out)]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp') / 'data'
    ids = {f'{p:04d}': [(1, 8), (2, 8), (1, 8), (2, 8)] for p in (1, 2, 3, 4)}
    write_fake_folder(str(root), train=ids, query={'0005': [(1, 8)], '0006': [(1, 8)]},
                      gallery={'0005': [(2, 8)], '0006': [(2, 8)]}, size=(32, 16))
    return root


def test_torchrun_two_processes_gloo(root, tmp_path):
    out = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1', M3D_ZOO_DEBUG='1')
    proc = subprocess.run(_train_cmd(root, out) + ['--dist-timeout', '45'], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert not (out / LOCK_NAME).exists()  # rank 0 released the folder

    events = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    config = next(e for e in events if e['event'] == 'config')
    assert config['world_size'] == 2 and config['steps_per_epoch'] == [2] * 4  # 16 tracklets / (P=4 x K=2)
    assert config['dist_timeout_min'] == 45  # what init_process_group was given (see the test below)
    losses = [e['loss'] for e in events if e['event'] == 'epoch']
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert any(e['event'] == 'eval' for e in events)  # rank 0 evaluated
    done = next(e for e in events if e['event'] == 'done')
    assert len(done['state_sha256']) == 2 and done['ranks_in_sync'], done['state_sha256']

    # rank 0's checkpoint holds exactly the weights (and BatchNorm statistics) both ranks ended with
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=4, num_frames=2)
    model.load_state_dict(load_file(str(out / 'last.safetensors')))
    assert state_dict_sha256(model) == done['state_sha256'][0] == done['state_sha256'][1]
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


# Joins the process group with the given timeout (minutes), reports the timeout the process group holds, then
# rank 0 sleeps (seconds) before the barrier that rank 1 waits at.
BARRIER = textwrap.dedent('''
    import sys, time
    import torch, torch.distributed as dist
    from m3d_zoo.engine.distributed import barrier, init_distributed
    info = init_distributed('cpu', timeout_min=float(sys.argv[1]))
    backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device('cpu'))
    print(f'rank {info.rank}: timeout {backend.options._timeout.total_seconds():g}s', flush=True)
    if info.rank == 0:
        time.sleep(float(sys.argv[2]))
    t0 = time.time()
    try:
        barrier()
    except RuntimeError as e:
        print(f'rank {info.rank}: barrier failed after {time.time() - t0:.0f}s: {e}', flush=True)
        sys.exit(3)
    print(f'rank {info.rank}: passed the barrier', flush=True)
''')


def test_the_timeout_reaches_the_process_group(tmp_path):
    """A rank waits at a barrier for as long as `timeout_min` says, and no longer: with 1.5 s, rank 1 gives up while
    rank 0 is still busy for 5 s (the ranks start together at the process group's rendezvous; under the default of
    two hours, rank 1 would wait)."""
    script = tmp_path / 'barrier.py'
    script.write_text(BARRIER)
    proc = subprocess.run(TORCHRUN + [str(script), '0.025', '5'], env=dict(os.environ, OMP_NUM_THREADS='1'),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert 'rank 0: timeout 1.5s' in out and 'rank 1: timeout 1.5s' in out, out[-3000:]
    assert proc.returncode != 0 and 'rank 1: barrier failed after 2s' in out and 'Timed out' in out, out[-3000:]
    assert 'passed the barrier' not in out


def test_torchrun_into_a_folder_another_run_holds_stops_every_rank(root, tmp_path):
    """Only rank 0 takes the lock; when it cannot, every rank stops at once instead of waiting at a collective."""
    out = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    with holding(out) as holder:
        t0 = time.time()
        proc = subprocess.run(_train_cmd(root, out), env=env, capture_output=True, text=True, timeout=300)
        took = time.time() - t0
    err = proc.stderr
    assert proc.returncode != 0, proc.stdout[-2000:] + err[-3000:]
    who = f'is in use by another training run: pid {holder.pid} on host {socket.gethostname()}'
    assert f'm3d-zoo train [rank 0]: error: {out} {who}' in err, err[-3000:]
    assert f'm3d-zoo train [rank 1]: error: rank 0 could not take the output folder: {out} {who}' in err, err[-3000:]
    # one line each, no traceback of the zoo's (torchrun adds its own report of the failed ranks), and no waiting
    assert 'm3d_zoo/engine' not in err and 'm3d_zoo/cli.py' not in err and took < 120, (took, err[-3000:])
    assert sorted(os.listdir(out)) == [LOCK_NAME]

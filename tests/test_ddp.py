"""`m3d-zoo train` under torchrun: 2 processes, gloo on the CPU, P x K batches split across the ranks."""
import json
import os
import subprocess
import sys

import pytest
import torch
from _fake_datasets import write_fake_folder
from safetensors.torch import load_file

import m3d_zoo
from m3d_zoo.engine.distributed import SplitPKBatchSampler, state_dict_sha256


def test_split_pk_sampler_splits_each_batch_by_identity():
    pids = [i // 3 for i in range(24)]  # 8 identities, 3 tracklets each
    full = list(SplitPKBatchSampler(pids, 4, 2, seed=1))
    ranks = [list(SplitPKBatchSampler(pids, 4, 2, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(full) > 0
    for batch, a, b in zip(full, *ranks):
        assert a + b == batch and len(a) == 4  # the global batch is the same as with one process
        ids_a, ids_b = {pids[i] for i in a}, {pids[i] for i in b}
        assert len(ids_a) == 2 and not ids_a & ids_b  # whole identities (K tracklets each) per rank
    with pytest.raises(ValueError, match='cannot be split evenly across 2 processes'):
        SplitPKBatchSampler(pids, 3, 2, num_replicas=2, rank=0)


def test_torchrun_two_processes_gloo(tmp_path):
    root = tmp_path / 'data'
    ids = {f'{p:04d}': [(1, 8), (2, 8), (1, 8), (2, 8)] for p in (1, 2, 3, 4)}
    write_fake_folder(str(root), train=ids, query={'0005': [(1, 8)], '0006': [(1, 8)]},
                      gallery={'0005': [(2, 8)], '0006': [(2, 8)]}, size=(32, 16))
    out = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1', M3D_ZOO_DEBUG='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           '-m', 'm3d_zoo.cli', 'train', '--model', 'c2d_resnet18', '--dataset', 'folder', '--root', str(root),
           '--recipe', 'modern', '--epochs', '4', '--batch-size', '8', '--num-instances', '2', '--num-frames', '2',
           '--img-size', '32', '16', '--lr', '1e-3', '--warmup-epochs', '0', '--re-prob', '0', '--hflip', '0',
           '--pad', '0', '--eval-interval', '4', '--workers', '0', '--no-progress', '--device', 'cpu',
           '--output', str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    events = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    config = next(e for e in events if e['event'] == 'config')
    assert config['world_size'] == 2 and config['steps_per_epoch'] == 2  # 16 tracklets / (P=4 x K=2)
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

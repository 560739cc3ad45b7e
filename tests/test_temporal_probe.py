"""benchmarks/temporal_probe.py: the construction of the motion-only probe (no training here).

Frame averaging is blind by construction, train and test identities are disjoint, chance is exact, the training-free
pair matcher finds the motion signal, and the study's instruments read the temporal layers.
"""
import importlib.util
import os

import numpy as np
import pytest
import torch

import m3d_zoo
from m3d_zoo.eval import evaluate_rank

_BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks', 'temporal_probe.py')


@pytest.fixture(scope='module')
def probe():
    spec = importlib.util.spec_from_file_location('m3d_zoo_temporal_probe_benchmark', _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figures(probe, poses=8, size=(32, 16)):
    bg = np.array(probe.render_pose_templates(1, size)[0, 0, 0], np.float32)
    return probe.render_pose_templates(poses, size).astype(np.float32) - bg


def test_every_clip_of_every_identity_holds_the_same_frames(probe):
    figures = _figures(probe)
    orders = probe.identity_orders(6, 8, seed=3)
    nuisances = dict(offset=2, scale=0.1, recolour=True)  # per tracklet; the frame draws (noise) are off
    clips = []
    for order in orders:
        # the same nuisance draws for every identity: what is left to differ is the order
        frames, seq = probe.render_tracklet(figures, order, 24, np.random.default_rng(7), **nuisances)
        for s in range(len(frames) - 8 + 1):
            assert sorted(seq[s:s + 8]) == list(range(8))  # every pose once in every clip
            clips.append(frames[s:s + 8])
    as_sets = {tuple(sorted(f.tobytes() for f in clip)) for clip in clips}
    assert len(as_sets) == 1  # one multiset of frames for every clip of every identity
    # hence a frame-averaging model (C2D, Eq. 2) gives every identity the same embedding; M3D tells them apart
    x = torch.from_numpy(np.stack([clips[0], clips[17]])).permute(0, 4, 1, 2, 3).float() / 255
    c2d = m3d_zoo.create_model('c2d_resnet18', num_classes=0, temporal_strides=(1, 1, 1, 1)).eval()
    m3d = m3d_zoo.create_model('m3d_resnet18', num_classes=0, temporal_strides=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        for p in m3d.parameters():
            p.add_(0.05 * torch.randn_like(p))  # temporal kernels away from zero
        e_c2d, e_m3d = c2d(x), m3d(x)
    assert torch.allclose(e_c2d[0], e_c2d[1], atol=1e-5)
    assert not torch.allclose(e_m3d[0], e_m3d[1], atol=1e-3)


def test_probe_identities_disjoint_transitions_seen_and_matchers(probe, tmp_path):
    root = str(tmp_path / 'probe')
    summary = probe.make_temporal_probe(
        root, num_train_ids=30, num_test_ids=10, tracklets_per_id=3, length=16, size=(32, 16), poses=8, noise=0.06,
        jitter=0, offset=2, clutter=0, scale=0.1, recolour=False, seed=0)
    orders = [tuple(o) for o in summary['orders'].values()]
    assert len(set(orders)) == len(orders) == 40  # distinct orders: no test identity is a training one
    assert summary['test_transitions_seen_in_training'] == 1.
    ds = probe.create_dataset('folder', root)
    assert len({t.pid for t in ds.train}) == 30 and len({t.pid for t in ds.query}) == 10
    assert {os.path.basename(os.path.dirname(t.paths[0])) for t in ds.query} <= {'c1_t001'}
    with pytest.raises(ValueError, match='multiple of poses'):
        probe.make_temporal_probe(str(tmp_path / 'bad'), **dict(summary_args(summary), length=12))
    chance, matchers = probe.probe_reference(root)
    pair, frame = matchers['pair matcher (training-free)'], matchers['frame matcher (training-free)']
    assert chance['rank1'] == pytest.approx(0.1)  # 2 true matches among 20 gallery tracklets
    assert pair['rank1'] >= 0.8 and pair['mAP'] >= 0.6  # consecutive-frame pairs carry the identity
    assert frame['mAP'] < pair['mAP'] - 0.3  # frames without their order do not


def summary_args(summary):
    keys = ('num_train_ids', 'num_test_ids', 'tracklets_per_id', 'length', 'size', 'poses', 'noise', 'jitter',
            'offset', 'clutter', 'scale', 'recolour', 'seed')
    return {k: summary[k] for k in keys}


def test_exact_chance_matches_random_rankings(probe):
    rng = np.random.default_rng(0)
    # uneven match counts, and gallery items in the query's camera that the protocol ignores
    qp, qc = np.array([1, 2, 3, 4]), np.array([1, 1, 2, 1])
    gp = np.array([1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 1, 2])
    gc = np.array([2, 1, 2, 1, 3, 2, 2, 2, 1, 3, 3, 1])
    exact = probe.exact_chance(qp, gp, qc, gc)
    draws = [evaluate_rank(rng.random((4, 12)), qp, gp, qc, gc) for _ in range(4000)]
    assert exact['rank1'] == pytest.approx(np.mean([d['rank1'] for d in draws]), abs=0.015)
    assert exact['mAP'] == pytest.approx(np.mean([d['mAP'] for d in draws]), abs=0.01)
    # one query, one match among N: rank-1 1/N, mAP H_N / N
    one = probe.exact_chance([1], [1, 2, 3], [1], [2, 2, 2])
    assert one == pytest.approx({'rank1': 1 / 3, 'mAP': (1 + 1 / 2 + 1 / 3) / 3})


def test_instruments_read_temporal_and_spatial_norms(probe):
    assert probe.temporal_layers(m3d_zoo.create_model('c2d_resnet18', num_classes=3)) == []
    assert len(probe.temporal_layers(m3d_zoo.create_model('i3d_resnet18', num_classes=3))) == 9  # stem + 8 blocks
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=3, num_frames=8)
    inst = probe.Instruments(model, every=1)
    assert [n for n, _, _ in inst.layers] == ['stem_temporal'] + [f'layer{i}.0.temporal' for i in range(1, 5)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        out = model.forward_train(torch.randn(2, 3, 8, 32, 16))
        opt.zero_grad()
        out['logits'].logsumexp(1).sum().backward()
        opt.step()
    first, last = inst.records[0]['stem_temporal'], inst.records[-1]['stem_temporal']
    assert first['w_t'] == 0 and np.isnan(first['g_t'])  # zero at init, no gradient yet
    assert last['w_t'] > 0 and last['g_t'] > 0 and last['g_s'] > 0
    assert inst.summary()['stem_temporal']['w_t/w_s'] == pytest.approx(last['w_t'] / last['w_s'])

""" The synthetic gait set is order-only: same frames for everybody, identity only in the order of the poses. """
import json
import os

import numpy as np
import pytest
from PIL import Image

from m3d_zoo.data import create_dataset, make_synthetic_gait
from m3d_zoo.data.synthetic import identity_orders, render_pose_templates
from m3d_zoo.eval import evaluate_embeddings

SIZE = (32, 16)
CYCLE = 8


def _load(t):
    return np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in t.paths])


def _pose_ids(frames, templates):
    # nearest clean template, allowing the generator's 1-pixel jitter
    cands, ids = [], []
    bg = templates[0, 0, 0]
    for k, tpl in enumerate(templates):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                s = np.roll(tpl, (dy, dx), axis=(0, 1)).copy()
                if dy:
                    s[(slice(0, dy) if dy > 0 else slice(dy, None))] = bg
                if dx:
                    s[:, (slice(0, dx) if dx > 0 else slice(dx, None))] = bg
                cands.append(s)
                ids.append(k)
    cands = np.stack(cands).astype(np.float32)
    d = ((frames[:, None] - cands[None]) ** 2).mean((2, 3, 4))
    return [ids[i] for i in d.argmin(1)]


@pytest.fixture(scope='module')
def gait(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('gait'))
    # with the optional noise and jitter on, so that the tests cover them
    summary = make_synthetic_gait(root, num_ids=10, tracklets_per_id=3, length=16, size=SIZE, seed=0,
                                  cycle=CYCLE, num_train_ids=4, noise=0.02, jitter=1)
    return root, summary, create_dataset('synthetic', root)


def test_layout_and_counts(gait):
    root, summary, ds = gait
    assert summary['num_frames'] == 10 * 3 * 16 and summary['num_tracklets'] == 30
    assert json.load(open(os.path.join(root, 'synthetic_gait.json')))['orders'] == summary['orders']
    assert ds.stats() == {'train': (4, 12, 192), 'query': (6, 6, 96), 'gallery': (6, 12, 192)}
    assert {t.camid for t in ds.query} == {1} and {t.camid for t in ds.gallery} == {1, 2}
    assert Image.open(ds.query[0].paths[0]).size == (SIZE[1], SIZE[0])
    with pytest.raises(ValueError, match='multiple of cycle'):
        make_synthetic_gait(root + '_x', num_ids=2, length=12, cycle=8, size=SIZE)
    with pytest.raises(FileExistsError):
        make_synthetic_gait(root, num_ids=2, size=SIZE)


def test_same_pose_multiset_different_cyclic_order(gait):
    root, summary, ds = gait
    templates = render_pose_templates(CYCLE, SIZE).astype(np.float32)
    names = summary['orders']
    for t in ds.train + ds.query + ds.gallery:
        ids = _pose_ids(_load(t), templates)
        # the multiset: every pose exactly length / cycle times, in every tracklet of every identity
        assert np.bincount(ids, minlength=CYCLE).tolist() == [16 // CYCLE] * CYCLE
        # the order: the identity's own cycle, from some phase
        pid_name = os.path.basename(os.path.dirname(os.path.dirname(t.paths[0])))
        order = names[pid_name]
        phase = order.index(ids[0])
        assert ids == [order[(phase + f) % CYCLE] for f in range(16)]
    orders = [tuple(o) for o in names.values()]
    rotations = {o[i:] + o[:i] for o in orders for i in range(CYCLE)}
    assert len(rotations) == len(orders) * CYCLE  # no identity is a rotation of another


def test_frame_averages_cannot_separate_identities(gait, tmp_path):
    root, summary, ds = gait
    # without noise and jitter, the mean image of every tracklet is exactly the same
    clean = make_synthetic_gait(str(tmp_path), num_ids=4, tracklets_per_id=2, length=16, size=SIZE, seed=1,
                                noise=0, jitter=0)
    cds = create_dataset('folder', str(tmp_path))
    means = [_load(t).mean(0) for t in cds.train + cds.query + cds.gallery]
    assert clean['num_tracklets'] == len(means)
    for m in means[1:]:
        np.testing.assert_allclose(m, means[0], atol=1e-4)

    # with noise: frame-averaged features are at chance, order-aware features are perfect
    from m3d_zoo.data import tracklet_labels
    (qp, qc), (gp, gc) = tracklet_labels(ds.query), tracklet_labels(ds.gallery)
    mean_q = np.stack([_load(t).mean(0).ravel() for t in ds.query])
    mean_g = np.stack([_load(t).mean(0).ravel() for t in ds.gallery])
    templates = render_pose_templates(CYCLE, SIZE).astype(np.float32)

    def transitions(t):  # which pose follows which: invariant to the start phase, blind to nothing temporal
        ids = _pose_ids(_load(t), templates)
        m = np.zeros((CYCLE, CYCLE))
        for a, b in zip(ids, ids[1:]):
            m[a, b] += 1
        return (m > 0).ravel().astype(np.float32)

    order_q = np.stack([transitions(t) for t in ds.query])
    order_g = np.stack([transitions(t) for t in ds.gallery])
    res_order = evaluate_embeddings(order_q, order_g, qp, gp, qc, gc)
    assert res_order['rank1'] == 1.0 and res_order['mAP'] == 1.0

    d = np.sqrt(((mean_q[:, None] - mean_g[None]) ** 2).sum(-1))
    same = qp[:, None] == gp[None]
    # the mean image carries no identity: a true match is no closer than another identity's tracklet
    assert d[same].mean() > 0.9 * d[~same].mean()
    res_mean = evaluate_embeddings(mean_q, mean_g, qp, gp, qc, gc)
    assert res_mean['mAP'] < 0.75 * res_order['mAP'], res_mean


def test_identity_orders_distinct():
    orders = identity_orders(200, cycle=8, seed=3)
    assert len(set(orders)) == 200 and all(o[0] == 0 and sorted(o) == list(range(8)) for o in orders)
    assert len(set(identity_orders(6, cycle=4, seed=0))) == 6
    with pytest.raises(ValueError, match='distinct cyclic orders'):
        identity_orders(7, cycle=4)

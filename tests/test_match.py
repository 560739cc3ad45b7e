""" Cross-camera matching of tracks into global identities, and the within-camera re-linking of broken tracks. """
import numpy as np
import pytest

from m3d_zoo.engine.match import cosine_distance, match_tracks

RNG = np.random.default_rng(0)
PEOPLE = RNG.normal(size=(5, 32))


def _rows(spec, noise=0.05, seed=1):
    """ spec: (camera, track id, first, last, person index or None for a stranger) per tracklet. """
    rng = np.random.default_rng(seed)
    emb = np.stack([(PEOPLE[p] if p is not None else rng.normal(size=32)) + noise * rng.normal(size=32)
                    for *_, p in spec])
    cols = [np.array([s[i] for s in spec]) for i in range(4)]
    return (emb, *cols)


def _same(result, a, b):
    g = {(c, t): i for c, t, i in zip(result.cameras, result.track_ids, result.global_ids)}
    return g[a] == g[b]


def test_cross_camera_matches_relinks_and_strangers():
    spec = [(0, 1, 1, 10, 0), (0, 2, 1, 50, 1), (0, 3, 5, 60, 2), (0, 4, 20, 40, 0),  # track 4: track 1 again
            (1, 7, 1, 30, 2), (1, 8, 10, 40, 0), (1, 9, 1, 9, None),
            (1, 8, 41, 60, 0)]  # a second tracklet of track 8
    r = match_tracks(*_rows(spec), threshold=0.3)
    assert len(r.global_ids) == 7 and len(r.row_global_ids) == 8
    assert _same(r, (0, 1), (0, 4)) and _same(r, (0, 1), (1, 8)) and _same(r, (0, 3), (1, 7))
    assert not _same(r, (0, 2), (1, 9)) and r.num_identities == 4
    assert r.links == [(0, 1, 4, pytest.approx(r.links[0][3]))] and len(r.matches) == 2
    assert r.row_global_ids[1] == r.global_ids[1] and r.row_global_ids[7] == r.row_global_ids[5]
    assert sorted(set(r.global_ids)) == [1, 2, 3, 4]  # numbered from 1 in order of appearance
    table = r.table()
    assert table[0] == {'camera': 0, 'track_id': 1, 'global_id': r.global_ids[0], 'first_frame': 1, 'last_frame': 10}
    assert table[5]['last_frame'] == 60  # a track's span covers all its tracklets


def test_one_person_is_never_in_two_overlapping_tracks_of_one_camera():
    # two tracks of one camera at the same time, with the same appearance (e.g. twins, or a duplicate detection):
    # they cannot be one person, and another camera's track joins at most one of them
    spec = [(0, 1, 1, 30, 0), (0, 2, 10, 40, 0), (1, 5, 1, 30, 0)]
    r = match_tracks(*_rows(spec), threshold=0.5)
    assert not _same(r, (0, 1), (0, 2)) and r.num_identities == 2
    assert _same(r, (0, 1), (1, 5)) != _same(r, (0, 2), (1, 5))


def test_threshold_and_max_gap():
    spec = [(0, 1, 1, 10, 0), (0, 2, 100, 120, 0), (1, 3, 1, 10, 1)]
    assert match_tracks(*_rows(spec), threshold=0.3).num_identities == 2
    assert match_tracks(*_rows(spec), threshold=0.3, max_gap=50).num_identities == 3
    assert match_tracks(*_rows(spec), threshold=0.3, relink=False).num_identities == 3
    assert match_tracks(*_rows(spec), threshold=0.0).num_identities == 3


def test_cosine_distance_and_bad_input():
    a = np.array([[1., 0.], [0., 2.], [-3., 0.]])
    np.testing.assert_allclose(cosine_distance(a, a), [[0, 1, 2], [1, 0, 1], [2, 1, 0]], atol=1e-12)
    emb, *cols = _rows([(0, 1, 1, 2, 0)])
    with pytest.raises(ValueError, match='cosine distance, 0..2'):
        match_tracks(emb, *cols, threshold=3)
    with pytest.raises(ValueError, match='one camera, track id'):
        match_tracks(emb, [0, 1], *cols[1:])

""" Bad inputs to the evaluation get an error that says what was wrong and what to do. """
import numpy as np
import pytest
import torch

from m3d_zoo.eval import FeatureDistance, compute_distance_matrix, evaluate_embeddings, evaluate_rank


def _case():
    """ 2 queries x 4 gallery items, each query with one true match. """
    dist = np.array([[0.1, 0.5, 0.2, 0.9], [0.3, 0.05, 0.8, 0.1]])
    return dist, np.array([1, 2]), np.array([1, 2, 3, 4]), np.array([0, 0]), np.array([1, 1, 1, 1])


# ---- the distance matrix's shape ----

@pytest.mark.parametrize('dist, match', [
    (np.zeros(4), r'2-D .*got shape \(4,\).*reshape\(1, -1\)'),
    (torch.zeros(4), r'2-D .*got shape \(4,\).*reshape\(1, -1\)'),
    (np.zeros((2, 4, 1)), r'2-D .*got shape \(2, 4, 1\).*extra dimensions'),
    (np.float64(0.5), r'2-D .*got shape \(\)'),
])
def test_distmat_not_2d(dist, match):
    _, q_pids, g_pids, q_cams, g_cams = _case()
    with pytest.raises(ValueError, match=match):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)


def test_distmat_not_an_array():
    _, q_pids, g_pids, q_cams, g_cams = _case()
    with pytest.raises(TypeError, match=r'distmat must be a \(num_queries, num_gallery\) array.*got dict'):
        evaluate_rank({'a': 1}, q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(TypeError, match=r'distmat must hold real numbers.*dtype <U'):
        evaluate_rank(np.full((2, 4), 'far'), q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(TypeError, match=r'distmat must hold real numbers.*complex'):
        evaluate_rank(torch.zeros(2, 4, dtype=torch.complex64), q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match='distmat could not be made into one array'):
        evaluate_rank([[0.1, 0.2, 0.3, 0.4], [0.1]], q_pids, g_pids, q_cams, g_cams)


def test_distmat_shape_does_not_match_the_ids():
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    with pytest.raises(ValueError, match=r'shape \(4, 2\) but there are 2 queries .* and 4 gallery items .*'
                                         r'rows must be queries .*transposed: pass distmat.T'):
        evaluate_rank(dist.T, q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match=r'shape \(2, 3\) but there are 2 queries .* and 4 gallery items'):
        evaluate_rank(dist[:, :3], q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match=r'shape \(1, 4\) but there are 2 queries'):
        evaluate_rank(dist[:1], q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match='g_pids has 4 ids but g_camids has 3: give one of each per item'):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams[:3])
    with pytest.raises(ValueError, match=r'q_pids must be 1-D.*shape \(2, 1\).*reshape\(-1\)'):
        evaluate_rank(dist, q_pids[:, None], g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match='q_camids must be a 1-D sequence of ids.*scalar 0'):
        evaluate_rank(dist, q_pids, g_pids, 0, g_cams)


# ---- max_rank and chunk_size ----

@pytest.mark.parametrize('max_rank', [0, -1, np.int64(0)])
def test_max_rank_below_one(max_rank):
    with pytest.raises(ValueError, match=f'max_rank must be >= 1, got {max_rank} .*length of the CMC curve'):
        evaluate_rank(*_case(), max_rank=max_rank)


@pytest.mark.parametrize('max_rank', [2.5, '5', True, None])
def test_max_rank_not_an_integer(max_rank):
    with pytest.raises(TypeError, match='max_rank must be an integer >= 1'):
        evaluate_rank(*_case(), max_rank=max_rank)


def test_chunk_size_below_one():
    with pytest.raises(ValueError, match='chunk_size must be >= 1, got 0'):
        evaluate_rank(*_case(), chunk_size=0)
    with pytest.raises(TypeError, match='chunk_size must be an integer >= 1, got 1.5'):
        evaluate_rank(*_case(), chunk_size=1.5)


# ---- ids that are not integers ----

@pytest.mark.parametrize('which, ids, kind', [
    ('q_pids', np.array(['1', '2']), 'strings'),
    ('q_pids', ['alice', 'bob'], 'strings'),
    ('g_pids', np.array([b'a', b'b', b'c', b'd']), 'strings'),
    ('g_pids', np.array(['a', 2, 3, 4], dtype=object), 'Python objects'),
    ('g_camids', ['c1', 'c1', 'c1', 'c2'], 'strings'),
])
def test_string_ids(which, ids, kind):
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    args = dict(q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams)
    args[which] = ids
    with pytest.raises(TypeError, match=f'{which} must hold integer ids, got {kind} .*map the labels to integers '
                                        f'with one mapping for query and gallery, e.g. .*np.unique'):
        evaluate_rank(dist, **args)


def test_string_junk_pids():
    with pytest.raises(TypeError, match='junk_pids must hold integer ids, got strings'):
        evaluate_rank(*_case(), junk_pids=('distractor',))


@pytest.mark.parametrize('which, ids, match', [
    ('q_pids', np.array([1.5, 2.0]), r'q_pids has 1 non-integral id \(e.g. 1.5 at index 0\)'),
    ('g_pids', np.array([1.0, 2.25, 3.0, 4.75]), r'g_pids has 2 non-integral ids \(e.g. 2.25 at index 1\)'),
    ('q_camids', torch.tensor([0.0, 0.5]), r'q_camids has 1 non-integral id \(e.g. 0.5 at index 1\)'),
    ('g_camids', [1.0, 1.0, 1.0, 1.0001], r'g_camids has 1 non-integral id \(e.g. 1.0001 at index 3\)'),
])
def test_non_integral_float_ids(which, ids, match):
    # these used to be truncated (1.5 -> 1), silently merging different people or cameras
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    args = dict(q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams)
    args[which] = ids
    with pytest.raises(ValueError, match=match + '.*not rounded.*integral floats such as 3.0 are accepted'):
        evaluate_rank(dist, **args)


@pytest.mark.parametrize('ids', [np.array([1.0, np.nan]), torch.tensor([np.inf, 2.0])])
def test_nan_or_infinite_ids(ids):
    dist, _, g_pids, q_cams, g_cams = _case()
    with pytest.raises(ValueError, match=r'q_pids has 1 NaN or infinite id \(first at index \d\): give every item '
                                         r'an integer id'):
        evaluate_rank(dist, ids, g_pids, q_cams, g_cams)


def test_integral_float_ids_are_accepted():
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    ref = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, return_per_query=True)
    res = evaluate_rank(dist, q_pids.astype(np.float32), torch.from_numpy(g_pids).double(), q_cams.astype(float),
                        g_cams.astype(float), return_per_query=True)
    np.testing.assert_array_equal(res['ap'], ref['ap'])
    np.testing.assert_array_equal(res['ap'], [1.0, 1.0])


# ---- NaN distances ----

def test_nan_distances_counted_and_explained():
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    dist[1, 2] = dist[1, 3] = dist[0, 3] = np.nan
    why = 'NaN distances come from NaN or infinite features.*overflow.*normalise them or use float64'
    with pytest.raises(ValueError, match=f'distmat has 3 NaN entries, the first at query 0, gallery item 3. {why}'):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=1)
    with pytest.raises(ValueError, match='distmat has 3 NaN entries, the first at query 0, gallery item 3'):
        evaluate_rank(torch.from_numpy(dist).half(), q_pids, g_pids, q_cams, g_cams)
    dist[0, 3] = 0.9
    with pytest.raises(ValueError, match='distmat has 2 NaN entries, the first at query 1, gallery item 2'):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=1)


def test_nan_distances_of_a_lazy_matrix_counted_per_chunk():
    dist, q_pids, g_pids, q_cams, g_cams = _case()
    dist[1, 0] = dist[1, 1] = np.nan

    class Rows:  # computes rows on demand: only the chunk that was computed can be counted
        shape = dist.shape

        def __getitem__(self, rows):
            return dist[rows]

    with pytest.raises(ValueError, match=r'distmat has 2 NaN entries in query rows 1..1 \(later rows not checked\), '
                                         r'the first at query 1, gallery item 0'):
        evaluate_rank(Rows(), q_pids, g_pids, q_cams, g_cams, chunk_size=1)


# ---- distances computed from features ----

@pytest.mark.parametrize('metric', ['euclidean', 'sqeuclidean'])
def test_float32_overflow_is_reported_as_overflow(metric):
    # |q|^2 + |g|^2 - 2 q.g overflows float32 (inf - inf = NaN) although every feature and the true distance is finite
    q = np.array([[3e19, 0.0], [1.0, 0.0]], dtype=np.float32)
    g = np.array([[3e19, 1.0], [0.0, 2e19], [1.0, 1.0], [2.0, 2.0]], dtype=np.float32)
    _, q_pids, g_pids, q_cams, g_cams = _case()
    match = f'{metric} distances overflowed float32 in .* entries .*largest feature norm 3e\\+19.*normalise the ' \
            f'features .*or pass them as float64'
    with pytest.raises(ValueError, match=match):
        evaluate_embeddings(q, g, q_pids, g_pids, q_cams, g_cams, metric=metric)
    with pytest.raises(ValueError, match=match):
        compute_distance_matrix(q, g, metric)
    with pytest.raises(ValueError, match=r'overflowed float32 in 2 of 4 entries of query rows 1..1'):
        FeatureDistance(q, g, metric)[1:2]
    # small features alone are fine; the suggested float64 holds the large ones
    expected = [[1.0, 5.0 if metric == 'sqeuclidean' else 5 ** 0.5]]
    np.testing.assert_allclose(compute_distance_matrix(q[1:], g[2:], metric).numpy(), expected, rtol=1e-6)
    assert np.isfinite(compute_distance_matrix(q.astype(np.float64), g.astype(np.float64), metric).numpy()).all()


def test_float16_overflow_is_reported_as_overflow():
    # plain unnormalised float16 features: squared norms above 65504 overflow
    q = torch.full((2, 8), 100.0, dtype=torch.float16)
    g = torch.full((4, 8), 50.0, dtype=torch.float16)
    with pytest.raises(ValueError, match=r'euclidean distances overflowed float16 in 8 of 8 entries .*largest '
                                         r'feature norm 283.*stay below 6.55e\+04.*float32 or float64'):
        compute_distance_matrix(q, g)
    np.testing.assert_allclose(compute_distance_matrix(q.float(), g.float()).numpy(), np.full((2, 4), 50 * 8 ** 0.5))


@pytest.mark.parametrize('bad, count', [(np.nan, 1), (np.inf, 2)])
def test_non_finite_features(bad, count):
    q, g = np.ones((2, 3)), np.ones((4, 3))
    g[2, :count] = bad
    _, q_pids, g_pids, q_cams, g_cams = _case()
    with pytest.raises(ValueError, match=f'g_feats has {count} NaN or infinite value.* \\(first in row 2\\): the model '
                                         f'produced broken embeddings'):
        evaluate_embeddings(q, g, q_pids, g_pids, q_cams, g_cams, metric='cosine')


def test_string_features():
    with pytest.raises(TypeError, match='q_feats must hold real numbers .*dtype <U'):
        FeatureDistance(np.array([['a', 'b']]), np.ones((1, 2)))


def test_no_query_with_a_true_match_is_an_evaluation_error():
    """Ids shared only within one camera: every match is junk, so nothing can be evaluated; the zoo's own error type
    (which the CLI prints as one line) says what to check."""
    from m3d_zoo.eval import EvaluationError
    distmat = np.zeros((2, 3))
    with pytest.raises(EvaluationError, match='camera ids differ.*for data from a single camera, pass '
                                              'same_camera=True, or --same-camera'):
        evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]), np.array([0, 0, 1]))
    assert evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]), np.array([0, 0, 1]),
                         same_camera=True)['num_valid_queries'] == 2


@pytest.mark.parametrize('index, match', [
    ([0], r'one gallery index per query \(2\), got shape \(1,\)'),
    ([0, 3], r'query_gallery_index\[1\] = 3 is not a gallery index \(0..2\) nor -1'),
    ([-2, 0], r'query_gallery_index\[0\] = -2'),
    ([0.5, 0], 'non-integral id'),
])
def test_bad_query_gallery_index(index, match):
    with pytest.raises(ValueError, match=match):
        evaluate_rank(np.zeros((2, 3)), [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], query_gallery_index=index,
                      same_camera=True)

""" CMC / mAP: hand-computed cases, agreement with a plain per-query loop, chunking, junk, ties, infinite distances,
aggregation. """
import numpy as np
import pytest
import torch

from m3d_zoo.eval import (
    FeatureDistance, aggregate_results, compute_distance_matrix, evaluate_embeddings, evaluate_rank, format_protocol,
    format_results, format_table, re_ranking, results_row)


def _hand_case():
    # gallery:      0       1       2       3       4       5       6
    g_pids = np.array([1, 2, 1, 3, 1, 2, -1])
    g_cams = np.array([1, 1, 0, 1, 1, 0, 0])
    q_pids = np.array([1, 2, 3, 1])
    q_cams = np.array([0, 1, 1, 1])
    dist = np.array([
        [0.5, 0.1, 0.05, 0.3, 0.9, 0.7, 0.0],  # valid order: neg neg POS neg POS -> hits at ranks 3 and 5
        [0.5, 0.1, 0.05, 0.3, 0.9, 0.7, 0.0],  # g1 is junk (same id and cam); hit (g5) at valid rank 4
        [0.5, 0.1, 0.05, 0.3, 0.9, 0.7, 0.0],  # id 3 only seen by its own camera: no valid match, skipped
        [0.9, 0.5, 0.01, 0.6, 0.7, 0.8, 0.0],  # g0 and g4 junk; hit (g2) at rank 1
    ])  # g6 is a distractor (-1) at distance 0: ignored for every query
    return dist, q_pids, g_pids, q_cams, g_cams


def test_hand_computed_standard_ap_and_cmc():
    res = evaluate_rank(*_hand_case(), max_rank=5, return_per_query=True)
    ap = [(1 / 3 + 2 / 5) / 2, 1 / 4, np.nan, 1.0]
    np.testing.assert_allclose(res['ap'], ap, rtol=1e-12)
    assert res['num_valid_queries'] == 3 and res['num_skipped_queries'] == 1 and res['num_queries'] == 4
    np.testing.assert_allclose(res['cmc'], [1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert res['mAP'] == pytest.approx(np.nanmean(ap))
    assert res['rank1'] == pytest.approx(1 / 3) and res['rank5'] == pytest.approx(1.0)
    assert list(res['first_hit_rank']) == [3, 4, 0, 1]
    # mINP: matches / rank of the last match
    assert res['mINP'] == pytest.approx((2 / 5 + 1 / 4 + 1) / 3)


def test_hand_computed_trapezoid_ap_official_kit():
    res = evaluate_rank(*_hand_case(), max_rank=5, ap_mode='trapezoid', return_per_query=True)
    # the kit: ap += (recall - old_recall) * (old_precision + precision) / 2, old_precision starting at 1
    q0 = 0.5 * (0 / 2 + 1 / 3) / 2 + 0.5 * (1 / 4 + 2 / 5) / 2
    q1 = 1.0 * (0 / 3 + 1 / 4) / 2
    q3 = 1.0 * (1.0 + 1.0) / 2
    np.testing.assert_allclose(res['ap'], [q0, q1, np.nan, q3], rtol=1e-12)
    assert res['mAP'] == pytest.approx((q0 + q1 + q3) / 3)
    assert res['ap_mode'] == 'trapezoid'


def test_hand_computed_same_camera_matches():
    """Single-camera data: same-camera items of the query's id are true matches; a query never matches itself."""
    res = evaluate_rank(*_hand_case(), max_rank=5, same_camera=True, return_per_query=True)
    # q0: hits g2, g0, g4 at ranks 1, 4, 6; q1: g1, g5 at 2, 5; q2: g3 (its own camera) at 3; q3: g2, g4, g0 at 1, 4, 6
    ap = [(1 + 2 / 4 + 3 / 6) / 3, (1 / 2 + 2 / 5) / 2, 1 / 3, (1 + 2 / 4 + 3 / 6) / 3]
    np.testing.assert_allclose(res['ap'], ap, rtol=1e-12)
    np.testing.assert_allclose(res['cmc'], [2 / 4, 3 / 4, 1, 1, 1])
    assert res['num_valid_queries'] == 4 and res['same_camera'] is True
    assert 'same-camera matches counted' in format_protocol(res)
    # g2 is q0's own tracklet: junk, so q0 scores as across cameras (its only same-camera match was itself)
    res = evaluate_rank(*_hand_case(), max_rank=5, same_camera=True, return_per_query=True,
                        query_gallery_index=[2, -1, -1, -1])
    assert res['ap'][0] == pytest.approx((1 / 3 + 2 / 5) / 2) and res['first_hit_rank'][0] == 3
    default = evaluate_rank(*_hand_case(), max_rank=5)
    assert default['same_camera'] is False and 'same-camera' not in format_protocol(default)


def _reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap_mode, junk_pids=(-1,), same_camera=False,
               q_self=None):
    """ Plain per-query loop, ranking the whole gallery (ties: negatives before matches). """
    cmcs, aps = [], []
    for i in range(len(q_pids)):
        itself = np.arange(len(g_pids)) == (-1 if q_self is None else q_self[i])
        same_cam_junk = (g_cams == q_cams[i]) & (not same_camera)
        pos = (g_pids == q_pids[i]) & ~same_cam_junk & ~np.isin(g_pids, junk_pids) & ~itself
        junk = ((g_pids == q_pids[i]) & same_cam_junk) | np.isin(g_pids, junk_pids) | itself
        order = np.lexsort((pos, dist[i]))
        order = order[~junk[order]]
        matches = pos[order]
        if not matches.any():
            continue
        hits = np.flatnonzero(matches) + 1
        cmc = np.zeros(max_rank)
        cmc[hits[0] - 1:] = 1
        cmcs.append(cmc)
        k = np.arange(1, len(hits) + 1)
        prec = k / hits
        if ap_mode == 'standard':
            aps.append(prec.mean())
        else:
            prev = np.where(hits > 1, (k - 1) / np.maximum(hits - 1, 1), 1.0)
            aps.append(((prev + prec) / 2).mean())
    return np.mean(cmcs, 0), np.mean(aps), len(aps)


@pytest.mark.parametrize('same_camera', [False, True], ids=['cross-camera', 'same-camera'])
@pytest.mark.parametrize('ap_mode', ['standard', 'trapezoid'])
@pytest.mark.parametrize('kind', ['continuous', 'ties', 'infinite'])
def test_matches_reference_loop_on_random_data(ap_mode, kind, same_camera):
    rng = np.random.default_rng(['continuous', 'ties', 'infinite'].index(kind))
    nq, ng = 60, 400
    q_pids, g_pids = rng.integers(-1, 25, nq), rng.integers(-1, 25, ng)
    q_cams, g_cams = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    dist = rng.random((nq, ng)) if kind == 'continuous' else rng.integers(0, 20, (nq, ng)).astype(np.float32)
    if kind == 'infinite':  # a quarter of the pairs masked to +inf, some at -inf: true matches and junk among them
        dist[rng.random((nq, ng)) < 0.25] = np.inf
        dist[rng.random((nq, ng)) < 0.05] = -np.inf
    # a third of the queries are also in the gallery (MARS's official gallery holds them): never their own match
    q_self = np.where(rng.random(nq) < 1 / 3, rng.permutation(ng)[:nq], -1)
    g_pids[q_self[q_self >= 0]], g_cams[q_self[q_self >= 0]] = q_pids[q_self >= 0], q_cams[q_self >= 0]
    cmc, m_ap, n_valid = _reference(dist, q_pids, g_pids, q_cams, g_cams, 20, ap_mode, same_camera=same_camera,
                                    q_self=q_self)
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap_mode=ap_mode, chunk_size=7,
                        same_camera=same_camera, query_gallery_index=q_self)
    np.testing.assert_allclose(res['cmc'], cmc, rtol=1e-12)
    assert res['mAP'] == pytest.approx(m_ap, rel=1e-10)
    assert res['num_valid_queries'] == n_valid and res['num_skipped_queries'] == nq - n_valid


def test_chunking_torch_and_lazy_inputs_agree():
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(37, 16)), rng.normal(size=(250, 16))
    q_pids, g_pids = rng.integers(0, 15, 37), rng.integers(0, 15, 250)
    q_cams, g_cams = rng.integers(0, 3, 37), rng.integers(0, 3, 250)
    dist = np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))
    ref = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=10_000)
    for kwargs in ({'chunk_size': 1}, {'chunk_size': 5}, {'max_chunk_memory_mb': 0}):
        res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, **kwargs)
        np.testing.assert_allclose(res['cmc'], ref['cmc'])
        assert res['mAP'] == pytest.approx(ref['mAP'])
    res = evaluate_rank(torch.from_numpy(dist).float(), torch.from_numpy(q_pids), torch.from_numpy(g_pids),
                        torch.from_numpy(q_cams), torch.from_numpy(g_cams))
    assert res['mAP'] == pytest.approx(ref['mAP'], rel=1e-5)
    lazy = FeatureDistance(torch.from_numpy(q).float(), torch.from_numpy(g).float())
    np.testing.assert_allclose(lazy[:].numpy(), dist, atol=1e-4)
    res = evaluate_rank(lazy, q_pids, g_pids, q_cams, g_cams, chunk_size=4)
    assert res['mAP'] == pytest.approx(ref['mAP'], rel=1e-5)
    res = evaluate_embeddings(q, g, q_pids, g_pids, q_cams, g_cams)
    assert res['mAP'] == pytest.approx(ref['mAP'], rel=1e-5) and 'euclidean' in res['metric']


def test_degenerate_embeddings_do_not_score():
    # all distances equal: ties count against the query, so every match ranks after every negative
    q_pids, g_pids = np.array([0, 1]), np.array([0, 1, 2, 3])
    res = evaluate_rank(np.zeros((2, 4)), q_pids, g_pids, np.zeros(2), np.ones(4), max_rank=4)
    np.testing.assert_allclose(res['cmc'], [0, 0, 0, 1])


def _inf_case():
    # gallery:          0  1  2  3  4   5
    g_pids = np.array([1, 1, 2, 3, 1, -1])
    g_cams = np.array([1, 0, 1, 1, 1, 0])
    q_pids = np.array([1, 2, 1])
    q_cams = np.array([0, 0, 1])
    inf = np.inf
    dist = np.array([
        [0.1, inf, 0.5, inf, inf, -inf],  # g1 junk at +inf; valid: POS g0, neg g2, neg g3 (tie) before POS g4
        [0.3, 0.4, inf, 0.1, 0.2, 0.0],  # the only match (g2) masked to +inf: after the 4 negatives, rank 5
        [-inf, 0.3, -inf, 0.5, -inf, inf],  # g0 and g4 junk at -inf; neg g2 at -inf, then POS g1: rank 2
    ])  # g5 is a distractor (-1) at -inf / 0 / +inf: ignored
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize('as_float16', [False, True])
@pytest.mark.parametrize('chunk_size', [1, None])
def test_infinite_distances_hand_computed(as_float16, chunk_size):
    dist, q_pids, g_pids, q_cams, g_cams = _inf_case()
    if as_float16:  # the same matrix with the infinities produced by float16 overflow
        dist = torch.from_numpy(np.where(np.isinf(dist), np.sign(dist) * 1e5, dist)).half()
        assert torch.isinf(dist).sum() == 9
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, chunk_size=chunk_size,
                        return_per_query=True)
    np.testing.assert_allclose(res['ap'], [(1 / 1 + 2 / 4) / 2, 1 / 5, 1 / 2], rtol=1e-12)
    assert list(res['first_hit_rank']) == [1, 5, 2]
    np.testing.assert_allclose(res['cmc'], [1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    assert res['mAP'] == pytest.approx((0.75 + 0.2 + 0.5) / 3)
    assert res['mINP'] == pytest.approx((2 / 4 + 1 / 5 + 1 / 2) / 3)


@pytest.mark.parametrize('ap_mode', ['standard', 'trapezoid'])
def test_all_inf_all_equal_and_all_minus_inf_score_alike(ap_mode):
    _, q_pids, g_pids, q_cams, g_cams = _inf_case()
    results = [evaluate_rank(np.full((3, 6), v), q_pids, g_pids, q_cams, g_cams, max_rank=5, ap_mode=ap_mode,
                             return_per_query=True) for v in (0.0, 7.0, np.inf, -np.inf)]
    # every valid negative ranks before every match: q0 has 2 negatives and 2 matches, q1 4 and 1, q2 2 and 1
    standard = [(1 / 3 + 2 / 4) / 2, 1 / 5, 1 / 3]
    trapezoid = [((0 / 2 + 1 / 3) / 2 + (1 / 3 + 2 / 4) / 2) / 2, (0 / 4 + 1 / 5) / 2, (0 / 2 + 1 / 3) / 2]
    for res in results:
        np.testing.assert_allclose(res['ap'], standard if ap_mode == 'standard' else trapezoid, rtol=1e-12)
        np.testing.assert_allclose(res['cmc'], [0, 0, 2 / 3, 2 / 3, 1])
        assert list(res['first_hit_rank']) == [3, 5, 3]


def test_cosine_distance_of_huge_features():
    # the norm of these float32 rows overflows; normalising must not turn them into zero vectors (distance 1)
    q = torch.tensor([[3e19, 3e19, 0.0], [0.0, 0.0, 1e-30]])
    g = torch.tensor([[-3e19, -3e19, 0.0], [1e20, 0.0, 0.0], [0.0, 0.0, 5.0]])
    expected = [[2.0, 1 - 2 ** -0.5, 1.0], [1.0, 1.0, 0.0]]
    np.testing.assert_allclose(compute_distance_matrix(q, g, 'cosine').numpy(), expected, atol=1e-6)
    # an all-zero row is at distance 1 from everything, also in float16 (whose eps must not underflow to 0/0)
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    for dtype in (torch.float32, torch.float16):
        np.testing.assert_allclose(compute_distance_matrix(z.to(dtype), z.to(dtype), 'cosine').float().numpy(),
                                   [[1, 1], [1, 0]], atol=1e-3)


def test_bad_inputs_raise():
    dist, q_pids, g_pids, q_cams, g_cams = _hand_case()
    with pytest.raises(ValueError, match='g_pids'):
        evaluate_rank(dist, q_pids, g_pids[:-1], q_cams, g_cams)
    with pytest.raises(ValueError, match='ap_mode'):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap_mode='interpolated')
    with pytest.raises(ValueError, match='NaN'):
        evaluate_rank(np.full_like(dist, np.nan), q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match='No query'):
        evaluate_rank(dist[2:3], q_pids[2:3], g_pids, q_cams[2:3], g_cams)


def test_aggregate_and_format_name_the_protocol():
    dist, q_pids, g_pids, q_cams, g_cams = _hand_case()
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, gallery_mode='MARS whole test set (official)')
    line = format_results(res, 'toy')
    assert 'non-interpolated' in line and 'official' in line and '3/4 queries' in line and '1 skipped' in line
    res2 = evaluate_rank(dist[[0, 1, 3]][:, ::-1], q_pids[[0, 1, 3]], g_pids[::-1], q_cams[[0, 1, 3]], g_cams[::-1])
    agg = aggregate_results([res, res2])
    assert agg['num_splits'] == 2
    assert agg['mAP'] == pytest.approx((res['mAP'] + res2['mAP']) / 2)
    assert agg['mAP_std'] == pytest.approx(np.std([res['mAP'], res2['mAP']], ddof=1))
    assert 'mean ± std over 2 random splits' in format_results(agg)
    trap = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap_mode='trapezoid')
    assert 'trapezoidal' in format_results(trap)
    with pytest.raises(ValueError, match='different AP'):
        aggregate_results([res, trap])



def test_results_text_line_table_and_cells():
    res = {'mAP': 0.7406, 'rank1': 0.8439, 'rank5': 0.9312, 'mINP': 0.5, 'cmc': [0.8439], 'ap_mode': 'trapezoid',
           'gallery_mode': 'official', 'metric': 'cosine', 'num_valid_queries': 3, 'num_queries': 4,
           'num_skipped_queries': 1}
    protocol = ('AP: trapezoidal AP (official MARS kit); gallery: official; distance: cosine; '
                '3/4 queries with a match, 1 skipped')
    assert format_protocol(res) == protocol
    assert format_results(res, 'MARS') == f'MARS: mAP 74.1 | Rank-1 84.4 | Rank-5 93.1 | mINP 50.0 [{protocol}]'
    assert format_results(res, 'MARS', table=True).splitlines() == [
        '| results | mAP (%) | Rank-1 (%) | Rank-5 (%) | mINP (%) |', '|---|---|---|---|---|',
        '| MARS | 74.1 | 84.4 | 93.1 | 50.0 |', protocol]
    # mean and std over splits, read back from a file that lacks the protocol fields
    agg = {'mAP': 0.8, 'mAP_std': 0.021, 'rank1': 0.9, 'rank1_std': 0.03, 'num_splits': 10}
    assert results_row(agg) == {'mAP (%)': '80.0 ± 2.1', 'Rank-1 (%)': '90.0 ± 3.0'}
    assert format_protocol(agg) == 'AP: formula not recorded; gallery: as given; mean ± std over 10 random splits'
    # several rows: columns in first-seen order, missing cells empty, floats with two decimals
    assert format_table({'A': {'x': 74.061, 'y': 'a'}, 'B': {'y': 'b', 'z': 2}}, 'Dataset').splitlines() == [
        '| Dataset | x | y | z |', '|---|---|---|---|', '| A | 74.06 | a |  |', '| B |  | b | 2 |']

def _euclidean(a, b):
    return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))


def test_rerank_hand_computed():
    # 1-D points: query q = 0, gallery g1 = 1 and g2 = 3; joint order (q, g1, g2).
    q, g = np.array([[0.]]), np.array([[1.], [3.]])
    dists = _euclidean(q, g), _euclidean(q, q), _euclidean(g, g)
    # Squared distances scaled per row to [0, 1]: q (0, 1/9, 1), g1 (1/4, 0, 1), g2 (1, 4/9, 0).
    # k1 = 1: q and g1 are each other's nearest, so both k-reciprocal sets are {q, g1}; g2's is {g2} (g2 is nobody's
    # nearest). The encoding v_i is exp(-dist(i, .)) over the set, normalised to sum 1:
    a = np.exp(-1 / 9) / (1 + np.exp(-1 / 9))  # v_q = (1 - a, a, 0)
    c = np.exp(-1 / 4) / (1 + np.exp(-1 / 4))  # v_g1 = (c, 1 - c, 0); v_g2 = (0, 0, 1)
    # Jaccard distance 1 - sum(min) / sum(max) = 1 - m / (2 - m), m = sum(min); a, c < 1/2 so m(q, g1) = c + a.
    m = a + c
    lam = 0.5
    expected = [(1 - lam) * (1 - m / (2 - m)) + lam * 1 / 9, (1 - lam) * 1 + lam * 1]
    np.testing.assert_allclose(re_ranking(*dists, k1=1, k2=1, lambda_value=lam), [expected], rtol=1e-6)
    # k2 = 2, local query expansion: each v becomes the mean over its 2 nearest. q and g1 have the same two, so
    # their Jaccard distance is 0; v_g2 -> (v_g2 + v_g1) / 2, with v_q's: m = c / 2 + (1 - c) / 2 = 1 / 2, so 2 / 3.
    expected = [(1 - lam) * 0 + lam * 1 / 9, (1 - lam) * 2 / 3 + lam * 1]
    np.testing.assert_allclose(re_ranking(*dists, k1=1, k2=2, lambda_value=lam), [expected], rtol=1e-6)
    # lambda = 1: the scaled squared distance alone
    np.testing.assert_allclose(re_ranking(*dists, k1=1, k2=2, lambda_value=1.0), [[1 / 9, 1.]], rtol=1e-6)


def test_rerank_clusters_and_evaluate_embeddings_wiring():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 8)) * 4
    g_pids = np.repeat(np.arange(6), 5)
    q_pids = np.arange(6)
    g = centers[g_pids] + rng.normal(size=(30, 8))
    q = centers[q_pids] + rng.normal(size=(6, 8))
    rr = re_ranking(_euclidean(q, g), _euclidean(q, q), _euclidean(g, g), k1=4, k2=2, lambda_value=0.3)
    assert rr.shape == (6, 30)
    # well separated identities: every query's own 5 tracklets come first
    assert (np.sort(rr, 1)[:, 4] < np.min(np.where(q_pids[:, None] == g_pids[None], np.inf, rr), 1)).all()
    # evaluate_embeddings(rerank=True) ranks by re_ranking of its query-gallery, query-query and gallery-gallery
    # distances, with the caller's k1 / k2. Noisy identities, so that re-ranking and its settings change the result.
    g = centers[g_pids] * 0.25 + rng.normal(size=(30, 8))
    q = centers[np.repeat(q_pids, 2)] * 0.25 + rng.normal(size=(12, 8))
    qp, qc, gc = np.repeat(q_pids, 2), np.zeros(12), np.ones(30)
    plain = evaluate_embeddings(q, g, qp, g_pids, qc, gc)
    maps = []
    for kw in (dict(k1=4, k2=2), dict(k1=6, k2=3)):
        res = evaluate_embeddings(q, g, qp, g_pids, qc, gc, rerank=True, rerank_kwargs=kw)
        ref = evaluate_rank(re_ranking(_euclidean(q, g), _euclidean(q, q), _euclidean(g, g), **kw), qp, g_pids, qc,
                            gc)
        assert res['mAP'] == pytest.approx(ref['mAP'], rel=1e-6) and res['mAP'] != pytest.approx(plain['mAP'])
        np.testing.assert_allclose(res['cmc'], ref['cmc'])
        assert 're-ranking' in res['metric'] and 're-ranking' not in plain['metric']
        maps.append(res['mAP'])
    assert maps[0] != pytest.approx(maps[1])  # the settings reach re_ranking

""" CMC and mAP for (video) person re-identification, vectorised and processed in chunks of queries.

Conventions (the README's Evaluation section gives them to users):
  * For a query, a gallery item with the same person id and a different camera is a true match; one with the same
    id and the same camera is junk and ignored (neither hit nor miss), as are gallery items whose id is in
    `junk_pids` (default (-1,): MARS distractors, which the official kit ignores). Queries without a true match
    are skipped and counted.
  * Two AP formulas: 'standard' (default), the non-interpolated mean of the precision at each hit (torchreid and
    most papers); 'trapezoid', the official MARS-evaluation kit's, which integrates the precision-recall curve with
    trapezoids, averaging the precision just before and at each hit (the one before the first rank being 1).
  * Ties: a negative at exactly the same distance as a true match is ranked before it, so degenerate embeddings
    (e.g. all equal) cannot score well by luck of the gallery order.

The distance matrix is never ranked in full: each query's true matches are sorted (few) and the valid negatives
are counted below each of them with a batched binary search. That is O(Q*G) work and memory bounded by the chunk,
so a distance "matrix" can also be an object that computes rows on demand (`FeatureDistance`) and a
10,000 x 100,000 evaluation never holds more than one chunk of rows.
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

__all__ = [
    'evaluate_rank', 'evaluate_embeddings', 'FeatureDistance', 'aggregate_results', 'format_results',
    'AP_MODES', 'compute_distance_matrix',
]

AP_MODES = {
    'standard': 'non-interpolated AP',
    'trapezoid': 'trapezoidal AP (official MARS kit)',
}

# bytes of temporaries per (query, gallery) element of a chunk: several times what a chunk's temporaries take, so the
# memory bound holds with room to spare; chunks of a few million elements also stay in cache
_BYTES_PER_ELEMENT = 48


def _as_tensor(x, device=None, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))  # also takes lists and negative-stride views
    return t.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else t


class FeatureDistance:
    """ A lazily computed (Q, G) distance matrix: rows are produced on demand from the features.

    Args:
        q_feats: Query features (Q, D).
        g_feats: Gallery features (G, D).
        metric: 'euclidean' (paper), 'sqeuclidean' or 'cosine' (1 - cosine similarity).
    """

    def __init__(self, q_feats, g_feats, metric: str = 'euclidean'):
        if metric not in ('euclidean', 'sqeuclidean', 'cosine'):
            raise ValueError(f'metric must be euclidean, sqeuclidean or cosine, got {metric!r}')
        self.q = _as_tensor(q_feats)
        self.g = _as_tensor(g_feats).to(self.q.device)
        if not self.q.is_floating_point():
            self.q = self.q.float()
        self.g = self.g.to(self.q.dtype)
        if self.q.ndim != 2 or self.g.ndim != 2 or self.q.shape[1] != self.g.shape[1]:
            raise ValueError(f'features must be (Q, D) and (G, D), got {tuple(self.q.shape)} and {tuple(self.g.shape)}')
        self.metric = metric
        if metric == 'cosine':
            self.q = torch.nn.functional.normalize(self.q, dim=1)
            self.g = torch.nn.functional.normalize(self.g, dim=1)
        else:
            self.g_sq = (self.g * self.g).sum(1)
        self.shape = (self.q.shape[0], self.g.shape[0])
        self.device = self.q.device

    def __getitem__(self, rows) -> torch.Tensor:
        q = self.q[rows]
        if self.metric == 'cosine':
            return 1 - q @ self.g.T
        # |q|^2 + |g|^2 - 2 q.g with one fused GEMM and in-place ops: half the time of the plain expression
        d = torch.addmm(self.g_sq.unsqueeze(0), q, self.g.T, alpha=-2)
        d.add_((q * q).sum(1, keepdim=True)).clamp_(min=0)
        return d.sqrt_() if self.metric == 'euclidean' else d


def compute_distance_matrix(q_feats, g_feats, metric: str = 'euclidean') -> torch.Tensor:
    """ Full (Q, G) distance matrix (use `FeatureDistance` for sets too large to hold). """
    return FeatureDistance(q_feats, g_feats, metric)[:]


def _chunk_ranks(d, qp, qc, gp, gc, g_junk):
    """ For a chunk of queries: 1-based ranks among valid gallery items of each true match, and match counts.

    Returns:
        ranks (c, M) float64 with M the chunk's largest match count (padding where k >= npos), npos (c,).
    """
    same_pid = qp.unsqueeze(1) == gp.unsqueeze(0)
    pos = same_pid & (qc.unsqueeze(1) != gc.unsqueeze(0)) & ~g_junk
    neg = ~same_pid & ~g_junk
    del same_pid
    npos = pos.sum(1)
    max_pos = int(npos.max()) if npos.numel() else 0
    c = d.shape[0]
    if max_pos == 0:
        return torch.zeros(c, 0, dtype=torch.float64, device=d.device), npos
    inf = torch.tensor(float('inf'), dtype=d.dtype, device=d.device)
    pos_d = torch.topk(torch.where(pos, d, inf), max_pos, dim=1, largest=False, sorted=True).values.contiguous()
    del pos
    # bucket b = number of true matches strictly closer than the negative; that negative ranks before match k
    # iff b <= k (ties go against the query). Non-negatives become +inf and land past every real match.
    bucket = torch.searchsorted(pos_d, torch.where(neg, d, inf), right=False, out_int32=True)
    del neg
    bucket = bucket.clamp_(max=max_pos).long()
    bucket += (torch.arange(c, device=d.device) * (max_pos + 1)).unsqueeze(1)
    hist = torch.bincount(bucket.view(-1), minlength=c * (max_pos + 1)).view(c, max_pos + 1)[:, :max_pos]
    del bucket
    negs_before = hist.cumsum(1)
    k = torch.arange(max_pos, device=d.device).unsqueeze(0)
    ranks = (negs_before + k + 1).double()
    return ranks, npos


def evaluate_rank(
        distmat: Any,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank: int = 20,
        ap_mode: str = 'standard',
        gallery_mode: Optional[str] = None,
        junk_pids: Sequence[int] = (-1,),
        chunk_size: Optional[int] = None,
        max_chunk_memory_mb: int = 256,
        return_per_query: bool = False,
) -> Dict[str, Any]:
    """ CMC and mAP of a query x gallery distance matrix (smaller = more similar).

    Args:
        distmat: (Q, G) distances: numpy array, torch tensor (any device; computed there), or any object with
            `.shape` and row slicing (a `np.memmap`, a `FeatureDistance`).
        q_pids: Query person ids (Q,).
        g_pids: Gallery person ids (G,).
        q_camids: Query camera ids (Q,).
        g_camids: Gallery camera ids (G,).
        max_rank: Length of the CMC curve.
        ap_mode: 'standard' (non-interpolated, default) or 'trapezoid' (official MARS kit).
        gallery_mode: Label of the gallery convention, carried into the results and printed (e.g.
            `dataset.gallery_mode`).
        junk_pids: Gallery person ids ignored for every query (default (-1,): distractors).
        chunk_size: Queries per chunk (default: as many as fit in `max_chunk_memory_mb`).
        max_chunk_memory_mb: Memory budget for one chunk's temporaries when `chunk_size` is None.
        return_per_query: Also return per-query AP, first-hit rank and match counts (NaN / 0 for skipped queries).

    Returns:
        Dict with `cmc` (numpy, max_rank), `mAP`, `mINP`, `rank1`/`rank5`/`rank10`/`rank20` (those <= max_rank),
        all fractions in [0, 1]; `num_valid_queries`, `num_queries`, `num_skipped_queries`, `ap_mode`,
        `gallery_mode`.
    """
    if ap_mode not in AP_MODES:
        raise ValueError(f'ap_mode must be one of {list(AP_MODES)}, got {ap_mode!r}')
    if isinstance(distmat, (list, tuple)):
        distmat = np.asarray(distmat)
    num_q, num_g = distmat.shape
    device = getattr(distmat, 'device', None)
    device = device if isinstance(device, torch.device) else torch.device('cpu')
    q_pids, q_camids = _as_tensor(q_pids, device, torch.int64), _as_tensor(q_camids, device, torch.int64)
    g_pids, g_camids = _as_tensor(g_pids, device, torch.int64), _as_tensor(g_camids, device, torch.int64)
    for name, arr, n in (('q_pids', q_pids, num_q), ('q_camids', q_camids, num_q),
                         ('g_pids', g_pids, num_g), ('g_camids', g_camids, num_g)):
        if arr.shape != (n,):
            raise ValueError(f'{name} has shape {tuple(arr.shape)}, expected ({n},) to match distmat {(num_q, num_g)}')
    g_junk = torch.isin(g_pids, _as_tensor(list(junk_pids), device, torch.int64)).unsqueeze(0) \
        if len(junk_pids) else torch.zeros(1, num_g, dtype=torch.bool, device=device)
    if chunk_size is None:
        chunk_size = max(1, (max_chunk_memory_mb << 20) // (_BYTES_PER_ELEMENT * max(num_g, 1)))

    cmc_sum = torch.zeros(max_rank, dtype=torch.float64)
    ap_all = torch.full((num_q,), float('nan'), dtype=torch.float64)
    inp_all = torch.full((num_q,), float('nan'), dtype=torch.float64)
    first_all = torch.zeros(num_q, dtype=torch.int64)
    npos_all = torch.zeros(num_q, dtype=torch.int64)
    ranks_1 = torch.arange(1, max_rank + 1, dtype=torch.float64)
    for s in range(0, num_q, chunk_size):
        e = min(s + chunk_size, num_q)
        d = _as_tensor(distmat[s:e], device)
        if not d.is_floating_point() or d.dtype in (torch.float16, torch.bfloat16):
            d = d.float()
        if torch.isnan(d).any():
            raise ValueError(f'distmat has NaN values in query rows {s}..{e - 1}')
        ranks, npos = _chunk_ranks(d, q_pids[s:e], q_camids[s:e], g_pids, g_camids, g_junk)
        del d
        ranks, npos = ranks.cpu(), npos.cpu()
        valid = npos > 0
        if not valid.any():
            continue
        ranks, npos_v = ranks[valid], npos[valid].double()
        mask = torch.arange(ranks.shape[1]).unsqueeze(0) < npos_v.unsqueeze(1)
        hits = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64).unsqueeze(0)
        prec = hits / ranks
        if ap_mode == 'standard':
            ap = (prec * mask).sum(1) / npos_v
        else:
            # official kit: precision before the hit is (k-1)/(r-1), and 1 when the hit is at rank 1
            prev = torch.where(ranks > 1, (hits - 1) / (ranks - 1).clamp_min(1), torch.ones_like(ranks))
            ap = ((prev + prec) / 2 * mask).sum(1) / npos_v
        last_rank = ranks.gather(1, (npos_v.long() - 1).unsqueeze(1)).squeeze(1)
        first = ranks[:, 0]
        cmc_sum += (first.unsqueeze(1) <= ranks_1.unsqueeze(0)).double().sum(0)
        idx = torch.arange(s, e)[valid]
        ap_all[idx] = ap
        inp_all[idx] = npos_v / last_rank
        first_all[idx] = first.long()
        npos_all[torch.arange(s, e)] = npos

    valid_all = ~torch.isnan(ap_all)
    num_valid = int(valid_all.sum())
    if num_valid == 0:
        raise ValueError('No query has a true match in the gallery (same id, other camera): nothing to evaluate')
    cmc = (cmc_sum / num_valid).numpy()
    out = {
        'cmc': cmc,
        'mAP': float(ap_all[valid_all].mean()),
        'mINP': float(inp_all[valid_all].mean()),
        'num_valid_queries': num_valid,
        'num_queries': num_q,
        'num_skipped_queries': num_q - num_valid,
        'num_gallery': num_g,
        'ap_mode': ap_mode,
        'gallery_mode': gallery_mode,
    }
    for r in (1, 5, 10, 20):
        if r <= max_rank:
            out[f'rank{r}'] = float(cmc[r - 1])
    if return_per_query:
        out['ap'] = ap_all.numpy()
        out['first_hit_rank'] = first_all.numpy()
        out['num_matches'] = npos_all.numpy()
    return out


def evaluate_embeddings(
        q_feats,
        g_feats,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        metric: str = 'euclidean',
        rerank: bool = False,
        rerank_kwargs: Optional[Dict[str, Any]] = None,
        **kwargs,
) -> Dict[str, Any]:
    """ Evaluate query/gallery embeddings: distances are computed chunk by chunk (never the full matrix), unless
    k-reciprocal re-ranking is asked for, which needs all query/gallery distances ((Q+G)^2 memory).

    Args:
        q_feats: Query embeddings (Q, D).
        g_feats: Gallery embeddings (G, D).
        metric: 'euclidean' (paper), 'sqeuclidean' or 'cosine'.
        rerank: Apply k-reciprocal re-ranking (Zhong et al., CVPR 2017) first.
        rerank_kwargs: k1, k2, lambda_value for `re_ranking`.
        **kwargs: Passed to `evaluate_rank`.
    """
    dist = FeatureDistance(q_feats, g_feats, metric)
    if rerank:
        from .rerank import re_ranking
        qq = FeatureDistance(q_feats, q_feats, metric)[:].cpu().numpy()
        gg = FeatureDistance(g_feats, g_feats, metric)[:].cpu().numpy()
        dist = re_ranking(dist[:].cpu().numpy(), qq, gg, **(rerank_kwargs or {}))
    res = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, **kwargs)
    res['metric'] = metric + (' + k-reciprocal re-ranking' if rerank else '')
    return res


def aggregate_results(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """ Mean and standard deviation (ddof=1, i.e. the sample std over splits) of the results of several splits
    (PRID-2011 / iLIDS-VID: the 10 random splits). Keys `<metric>` hold the mean and `<metric>_std` the std. """
    if not results:
        raise ValueError('no results to aggregate')
    modes = {r.get('ap_mode') for r in results}
    if len(modes) > 1:
        raise ValueError(f'cannot aggregate results computed with different AP formulas: {modes}')
    ddof = 1 if len(results) > 1 else 0
    out: Dict[str, Any] = {'num_splits': len(results), 'ap_mode': results[0].get('ap_mode'),
                           'gallery_mode': results[0].get('gallery_mode')}
    keys = [k for k in ('mAP', 'mINP', 'rank1', 'rank5', 'rank10', 'rank20') if all(k in r for r in results)]
    for k in keys:
        v = np.array([r[k] for r in results], dtype=np.float64)
        out[k], out[k + '_std'] = float(v.mean()), float(v.std(ddof=ddof))
    cmcs = np.stack([np.asarray(r['cmc']) for r in results])
    out['cmc'], out['cmc_std'] = cmcs.mean(0), cmcs.std(0, ddof=ddof)
    out['num_valid_queries'] = int(sum(r['num_valid_queries'] for r in results))
    out['num_queries'] = int(sum(r['num_queries'] for r in results))
    out['num_skipped_queries'] = int(sum(r['num_skipped_queries'] for r in results))
    return out


def format_results(results: Dict[str, Any], name: Optional[str] = None) -> str:
    """ One-line summary that always names the AP formula and the gallery convention used. """
    agg = 'num_splits' in results

    def fmt(k):
        s = f'{100 * results[k]:.1f}'
        return s + (f'±{100 * results[k + "_std"]:.1f}' if agg else '')

    parts = [f'mAP {fmt("mAP")}'] + [f'R{r} {fmt(f"rank{r}")}' for r in (1, 5, 10, 20) if f'rank{r}' in results]
    head = (name + ': ') if name else ''
    tail = f'[AP: {AP_MODES.get(results.get("ap_mode"), results.get("ap_mode"))}; ' \
           f'gallery: {results.get("gallery_mode") or "as given"}'
    if results.get('metric'):
        tail += f'; distance: {results["metric"]}'
    if agg:
        tail += f'; mean±std over {results["num_splits"]} splits'
    tail += f'; {results["num_valid_queries"]}/{results["num_queries"]} queries with a match'
    if results['num_skipped_queries']:
        tail += f', {results["num_skipped_queries"]} skipped'
    return head + ' | '.join(parts) + ' ' + tail + ']'

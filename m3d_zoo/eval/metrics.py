""" CMC and mAP for (video) person re-identification, vectorised and processed in chunks of queries.

Conventions (the README's Evaluation section gives them to users):
  * For a query, a gallery item with the same person id and a different camera is a true match; one with the same
    id and the same camera is junk and ignored (neither hit nor miss), as are gallery items whose id is in
    `junk_pids` (default (-1,): MARS distractors, which the official kit ignores). Queries without a true match
    are skipped and counted. This is the MARS, PRID-2011 and iLIDS-VID protocol: re-identification across cameras.
    `same_camera=True` counts same-camera items of the query's id as true matches too (single-camera data); the
    query's own tracklet stays junk if the gallery holds it (`query_gallery_index`).
  * Two AP formulas: 'standard' (default), the non-interpolated mean of the precision at each hit (torchreid and
    most papers); 'trapezoid', the official MARS-evaluation kit's, which integrates the precision-recall curve with
    trapezoids, averaging the precision just before and at each hit (the one before the first rank being 1).
  * Ties: a negative at exactly the same distance as a true match is ranked before it, so degenerate embeddings
    (e.g. all equal) cannot score well by luck of the gallery order.
  * Infinite distances are ordinary values: a true match at `+inf` ranks after every finite negative and after the
    negatives at `+inf` (a tie), and junk stays ignored whatever its distance, so an all-`+inf`, all-`-inf` or
    all-equal matrix scores alike. NaN distances are refused with an error.
  * Person and camera ids must be integers; integral floats (3.0) are accepted, other floats, strings and NaN are
    refused rather than truncated or compared as labels.

The distance matrix is never ranked in full: each query's true matches are sorted (few) and the valid negatives
are counted below each of them with a batched binary search. That is O(Q*G) work and memory bounded by the chunk,
so a distance "matrix" can also be an object that computes rows on demand (`FeatureDistance`) and a
10,000 x 100,000 evaluation never holds more than one chunk of rows.
"""
import numbers
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    'EvaluationError',
    'evaluate_rank', 'evaluate_embeddings', 'FeatureDistance', 'aggregate_results',
    'AP_MODES', 'compute_distance_matrix',
]


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (no query with a true match)."""


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


def _plural(n: int, word: str) -> str:
    return f'{n} {word}' + ('' if n == 1 else 's')


def _check_real(x, name: str, what: str):
    """ TypeError naming `name` unless the array or tensor `x` holds real numbers (bool, int or float). """
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f'{name} must hold real numbers ({what}), got a complex tensor ({x.dtype})')
    elif x.dtype.kind not in 'biuf':
        example = f', e.g. {x.flat[0]!r}' if x.size else ''
        raise TypeError(f'{name} must hold real numbers ({what}), got dtype {x.dtype}{example}')


def _as_numeric_tensor(x, name: str, what: str) -> torch.Tensor:
    """ `x` as a tensor of real numbers, or a clear error naming `name` and what it should hold. """
    if not isinstance(x, torch.Tensor):
        try:
            x = np.asarray(x)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f'{name} could not be made into one array ({e}): give a numpy array or tensor') from None
    _check_real(x, name, what)
    return _as_tensor(x)


def _as_ids(x, name: str, device) -> torch.Tensor:
    """ Integer id tensor (int64, on `device`) from ints, bools or integral floats; clear errors for anything else.

    Floats must be integral because ids are compared exactly: truncating 1.5 to 1 would merge two people.
    """
    if isinstance(x, numbers.Number) or (isinstance(x, np.ndarray) and x.ndim == 0):
        raise ValueError(f'{name} must be a 1-D sequence of ids, one per item, got the scalar {x!r}')
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f'{name} must hold integer ids, got a complex tensor ({t.dtype})')
    else:
        try:
            a = np.asarray(x)
        except ValueError as e:
            raise ValueError(f'{name} could not be made into an array ({e}): give a 1-D sequence of integer ids') \
                from None
        if a.dtype.kind in 'USO':
            example = f', e.g. {a.flat[0]!r}' if a.size else ''
            raise TypeError(
                f'{name} must hold integer ids, got {"strings" if a.dtype.kind in "US" else "Python objects"} '
                f'(dtype {a.dtype}{example}); map the labels to integers with one mapping for query and gallery, '
                f'e.g. ids = np.unique(np.concatenate([q_labels, g_labels]), return_inverse=True)[1], then split ids '
                f'back into query and gallery parts')
        if a.dtype.kind not in 'biuf':
            raise TypeError(f'{name} must hold integer ids, got dtype {a.dtype}')
        t = _as_tensor(a)
    if t.is_floating_point():
        bad = ~torch.isfinite(t)
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            raise ValueError(f'{name} has {_plural(int(bad.sum()), "NaN or infinite id")} (first at index {i}): give '
                             f'every item an integer id, or drop the items without one')
        bad = t != t.trunc()
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            raise ValueError(f'{name} has {_plural(int(bad.sum()), "non-integral id")} (e.g. {t.flatten()[i].item()!r} '
                             f'at index {i}); ids are compared as integers and are not rounded: pass integer ids '
                             f'(integral floats such as 3.0 are accepted)')
    return t.to(device=device, dtype=torch.int64)


def _describe_rows(rows) -> str:
    if isinstance(rows, slice) and rows.step is None:
        if rows.start is None and rows.stop is None:
            return 'all query rows'
        return f'query rows {rows.start or 0}..' + ('end' if rows.stop is None else str(rows.stop - 1))
    return f'query rows {rows!r}'


def _unit_rows(f: torch.Tensor) -> torch.Tensor:
    # scaled to max |x| = 1 first: the norm of large features overflows to inf, which would zero the vector
    # (an eps that float16 can hold keeps an all-zero row at zero instead of 0/0)
    tiny = torch.finfo(f.dtype).tiny
    return torch.nn.functional.normalize(f / f.abs().amax(1, keepdim=True).clamp_min(tiny), dim=1, eps=tiny)


class FeatureDistance:
    """ A lazily computed (Q, G) distance matrix: rows are produced on demand from the features.

    Args:
        q_feats: Query features (Q, D).
        g_feats: Gallery features (G, D).
        metric: 'euclidean' (paper), 'sqeuclidean' or 'cosine' (1 - cosine similarity).

    Raises:
        ValueError: On features that are not finite, or, when rows are computed, on distances that overflow the
            features' floating type (normalise the features or pass them in a wider type).
    """

    def __init__(self, q_feats, g_feats, metric: str = 'euclidean'):
        if metric not in ('euclidean', 'sqeuclidean', 'cosine'):
            raise ValueError(f'metric must be euclidean, sqeuclidean or cosine, got {metric!r}')
        self.q = _as_numeric_tensor(q_feats, 'q_feats', 'query features')
        self.g = _as_numeric_tensor(g_feats, 'g_feats', 'gallery features').to(self.q.device)
        if not self.q.is_floating_point():
            self.q = self.q.float()
        self.g = self.g.to(self.q.dtype)
        if self.q.ndim != 2 or self.g.ndim != 2 or self.q.shape[1] != self.g.shape[1]:
            raise ValueError(f'features must be (Q, D) and (G, D), got {tuple(self.q.shape)} and {tuple(self.g.shape)}')
        for name, f in (('q_feats', self.q), ('g_feats', self.g)):
            bad = ~torch.isfinite(f)
            if bad.any():
                row = int(bad.any(1).nonzero()[0])
                raise ValueError(f'{name} has {_plural(int(bad.sum()), "NaN or infinite value")} (first in row {row}): '
                                 f'the model produced broken embeddings; check them with torch.isfinite before '
                                 f'evaluating')
        self.metric = metric
        if metric == 'cosine':
            self.q, self.g = _unit_rows(self.q), _unit_rows(self.g)
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
        # features are finite, so a non-finite distance is an overflow (inf - inf gives NaN)
        if not torch.isfinite(d).all():
            self._raise_overflow(q, d, rows)
        return d.sqrt_() if self.metric == 'euclidean' else d

    def _raise_overflow(self, q, d, rows):
        norm = max(float(torch.linalg.vector_norm(f.double(), dim=1).max()) for f in (q, self.g))
        wider = 'float32 or float64' if torch.finfo(d.dtype).bits < 32 else 'float64'
        dtype = str(d.dtype).replace('torch.', '')
        raise ValueError(
            f'{self.metric} distances overflowed {dtype} in {int((~torch.isfinite(d)).sum())} of {d.numel()} '
            f'entries of {_describe_rows(rows)} (largest feature norm {norm:.3g}; squared distances must stay below '
            f'{torch.finfo(d.dtype).max:.3g}): normalise the features (e.g. torch.nn.functional.normalize(feats, '
            f'dim=1), or metric="cosine") or pass them as {wider}')


def compute_distance_matrix(q_feats, g_feats, metric: str = 'euclidean') -> torch.Tensor:
    """ Full (Q, G) distance matrix (use `FeatureDistance` for sets too large to hold). """
    return FeatureDistance(q_feats, g_feats, metric)[:]


def _chunk_ranks(d, qp, qc, gp, gc, g_junk, same_camera=False, q_self=None):
    """ For a chunk of queries: 1-based ranks among valid gallery items of each true match, and match counts.

    `same_camera`: same-camera items of the query's id are true matches too; `q_self` (c,): the gallery index of each
    query's own tracklet (-1: none), which is then junk.

    Returns:
        ranks (c, M) float64 with M the chunk's largest match count (padding where k >= npos), npos (c,).
    """
    same_pid = qp.unsqueeze(1) == gp.unsqueeze(0)
    if same_camera:
        pos = same_pid & ~g_junk
        if q_self is not None:
            pos &= torch.arange(gp.shape[0], device=gp.device).unsqueeze(0) != q_self.unsqueeze(1)
    else:
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
    # iff b <= k (ties go against the query). Non-negatives go to bucket max_pos, which is dropped: giving them a
    # distance of +inf instead would rank them before any true match at +inf.
    bucket = torch.searchsorted(pos_d, d.contiguous(), right=False, out_int32=True)
    bucket.masked_fill_(~neg, max_pos)
    del neg
    bucket = bucket.long()
    bucket += (torch.arange(c, device=d.device) * (max_pos + 1)).unsqueeze(1)
    hist = torch.bincount(bucket.view(-1), minlength=c * (max_pos + 1)).view(c, max_pos + 1)[:, :max_pos]
    del bucket
    negs_before = hist.cumsum(1)
    k = torch.arange(max_pos, device=d.device).unsqueeze(0)
    ranks = (negs_before + k + 1).double()
    return ranks, npos


def _raise_nan(distmat, nan: torch.Tensor, s: int, e: int):
    """ ValueError for NaN distances found in query rows s..e-1: how many, where first, and where they come from. """
    i, j = (int(v) for v in nan.nonzero()[0])
    if type(distmat) is np.ndarray or isinstance(distmat, torch.Tensor):  # in memory: cheap to count all of it
        count = f'{int(np.isnan(distmat).sum()) if isinstance(distmat, np.ndarray) else int(distmat.isnan().sum())} ' \
                f'NaN entries'
    else:  # computed or read on demand: count this chunk only
        count = f'{int(nan.sum())} NaN entries in query rows {s}..{e - 1} (later rows not checked)'
    raise ValueError(
        f'distmat has {count}, the first at query {s + i}, gallery item {j}. NaN distances come from NaN or infinite '
        f'features (a diverged model), from an overflow when computing the distances (e.g. |q|^2 + |g|^2 - 2 q.g in '
        f'float16/float32 with large features: normalise them or use float64) or from 0/0 in a custom distance; a '
        f'masked pair should be +inf, not NaN')


def _check_options(ap_mode: str, max_rank: Any, chunk_size: Any) -> None:
    if ap_mode not in AP_MODES:
        raise ValueError(f'ap_mode must be one of {list(AP_MODES)}, got {ap_mode!r}')
    for name, v in (('max_rank', max_rank), ('chunk_size', chunk_size)):
        if v is None and name == 'chunk_size':
            continue
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f'{name} must be an integer >= 1, got {v!r} ({type(v).__name__})')
        if v < 1:
            raise ValueError(f'{name} must be >= 1, got {v}' + (
                ' (the length of the CMC curve: 20 gives rank-1 to rank-20)' if name == 'max_rank' else ''))


def _checked_distmat(distmat: Any) -> Tuple[Any, int, int]:
    """The distance matrix (a list becomes an array; arrays and tensors are checked to hold real numbers, lazy
    matrices chunk by chunk) and its (Q, G) shape."""
    if isinstance(distmat, (list, tuple)):
        distmat = _as_numeric_tensor(distmat, 'distmat', 'distances').numpy()
    elif isinstance(distmat, (np.ndarray, torch.Tensor)):
        _check_real(distmat, 'distmat', 'distances')
    shape = getattr(distmat, 'shape', None)
    if shape is None:
        raise TypeError(f'distmat must be a (num_queries, num_gallery) array, tensor or object with .shape and row '
                        f'slicing, got {type(distmat).__name__}')
    if len(shape) != 2:
        hint = '; for a single query pass distmat.reshape(1, -1)' if len(shape) == 1 else \
            '; drop the extra dimensions (e.g. with .squeeze())' if len(shape) > 2 else ''
        raise ValueError(f'distmat must be 2-D (num_queries, num_gallery), got shape {tuple(shape)}{hint}')
    return distmat, shape[0], shape[1]


def _checked_ids(num_q: int, num_g: int, device: torch.device, q_pids, q_camids, g_pids, g_camids):
    """The four id arrays as 1-D integer tensors on `device`, checked against each other and the matrix shape."""
    ids = {name: _as_ids(arr, name, device) for name, arr in (
        ('q_pids', q_pids), ('q_camids', q_camids), ('g_pids', g_pids), ('g_camids', g_camids))}
    for name, arr in ids.items():
        if arr.ndim != 1:
            raise ValueError(f'{name} must be 1-D, one id per item, got shape {tuple(arr.shape)}: flatten it with '
                             f'.reshape(-1)')
    for a, b in (('q_pids', 'q_camids'), ('g_pids', 'g_camids')):
        if len(ids[a]) != len(ids[b]):
            raise ValueError(f'{a} has {len(ids[a])} ids but {b} has {len(ids[b])}: give one of each per item')
    nq, ng = len(ids['q_pids']), len(ids['g_pids'])
    if (num_q, num_g) != (nq, ng):
        hint = ' (it looks transposed: pass distmat.T)' if (num_g, num_q) == (nq, ng) else ''
        raise ValueError(f'distmat has shape {(num_q, num_g)} but there are {nq} queries (q_pids) and {ng} gallery '
                         f'items (g_pids): rows must be queries and columns gallery items{hint}')
    return ids['q_pids'], ids['q_camids'], ids['g_pids'], ids['g_camids']


def _checked_self_index(index, num_q: int, num_g: int, device) -> torch.Tensor:
    """`query_gallery_index` as a (Q,) int64 tensor on `device`, each entry a gallery index or -1."""
    t = _as_ids(index, 'query_gallery_index', device)
    if t.shape != (num_q,):
        raise ValueError(f'query_gallery_index must hold one gallery index per query ({num_q}), got shape '
                         f'{tuple(t.shape)}')
    bad = (t < -1) | (t >= num_g)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f'query_gallery_index[{i}] = {int(t[i])} is not a gallery index (0..{num_g - 1}) nor -1 '
                         f'(the query is not in the gallery)')
    return t


def _average_precision(ranks: torch.Tensor, npos: torch.Tensor, ap_mode: str) -> torch.Tensor:
    """AP per query from the (sorted) ranks of its true matches, padded past `npos` of them."""
    mask = torch.arange(ranks.shape[1]).unsqueeze(0) < npos.unsqueeze(1)
    hits = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64).unsqueeze(0)
    prec = hits / ranks
    if ap_mode == 'standard':
        return (prec * mask).sum(1) / npos
    # official kit: precision before the hit is (k-1)/(r-1), and 1 when the hit is at rank 1
    prev = torch.where(ranks > 1, (hits - 1) / (ranks - 1).clamp_min(1), torch.ones_like(ranks))
    return ((prev + prec) / 2 * mask).sum(1) / npos


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
        same_camera: bool = False,
        query_gallery_index=None,
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
        same_camera: Count gallery items of the query's id in the query's camera as true matches too, for data from
            a single camera (or where matches within a camera are wanted); by default they are junk, as in the
            published protocols, which re-identify across cameras.
        query_gallery_index: (Q,) the gallery index of each query's own tracklet, -1 where the gallery does not hold
            it (e.g. MARS's official gallery holds the queries); that item is junk, so that with `same_camera` a
            query does not match itself. None: no query is in the gallery.

    Returns:
        Dict with `cmc` (numpy, max_rank), `mAP`, `mINP`, `rank1`/`rank5`/`rank10`/`rank20` (those <= max_rank),
        all fractions in [0, 1]; `num_valid_queries`, `num_queries`, `num_skipped_queries`, `ap_mode`,
        `gallery_mode`, `same_camera`.

    Raises:
        TypeError: On ids that are not numbers (e.g. strings: map them to integers first), a distance matrix
            that is not numeric, or a `max_rank` / `chunk_size` that is not an integer.
        ValueError: On a distance matrix that is not 2-D or whose shape is not (number of queries, number of
            gallery items), NaN distances, non-integral or NaN ids (integral floats such as 3.0 are accepted),
            `max_rank` or `chunk_size` below 1, or when no query has a true match.
    """
    _check_options(ap_mode, max_rank, chunk_size)
    distmat, num_q, num_g = _checked_distmat(distmat)
    device = getattr(distmat, 'device', None)
    device = device if isinstance(device, torch.device) else torch.device('cpu')
    q_pids, q_camids, g_pids, g_camids = _checked_ids(num_q, num_g, device, q_pids, q_camids, g_pids, g_camids)
    q_self = None if query_gallery_index is None else _checked_self_index(query_gallery_index, num_q, num_g, device)
    g_junk = _junk_mask(junk_pids, g_pids, device)
    if chunk_size is None:
        chunk_size = max(1, (max_chunk_memory_mb << 20) // (_BYTES_PER_ELEMENT * max(num_g, 1)))
    tally = _Tally(num_q, max_rank, ap_mode)
    for s in range(0, num_q, chunk_size):
        e = min(s + chunk_size, num_q)
        ranks, npos = _chunk_ranks(_chunk_distances(distmat, s, e, device), q_pids[s:e], q_camids[s:e], g_pids,
                                   g_camids, g_junk, same_camera, None if q_self is None else q_self[s:e])
        tally.add(s, e, ranks.cpu(), npos.cpu())
    return tally.results(num_g, gallery_mode, same_camera, return_per_query)


def _junk_mask(junk_pids, g_pids: torch.Tensor, device) -> torch.Tensor:
    """(1, G) True where a gallery item's id is one of `junk_pids` (a sequence, set or tensor of ids)."""
    junk = junk_pids if isinstance(junk_pids, torch.Tensor) else np.asarray(
        list(junk_pids) if isinstance(junk_pids, (set, frozenset)) else junk_pids)
    return torch.isin(g_pids, _as_ids(junk.reshape(-1), 'junk_pids', device)).unsqueeze(0)


def _chunk_distances(distmat, s: int, e: int, device) -> torch.Tensor:
    """Rows s:e of the distance matrix as a float tensor on `device`; NaN distances are an error."""
    d = _as_numeric_tensor(distmat[s:e], 'distmat', 'distances').to(device)
    if not d.is_floating_point() or d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()
    nan = torch.isnan(d)
    if nan.any():
        _raise_nan(distmat, nan, s, e)
    return d


class _Tally:
    """Per-query AP, INP, first hit and match counts, and the CMC sum, filled chunk by chunk."""

    def __init__(self, num_q: int, max_rank: int, ap_mode: str):
        self.max_rank, self.ap_mode = max_rank, ap_mode
        self.cmc_sum = torch.zeros(max_rank, dtype=torch.float64)
        self.ap = torch.full((num_q,), float('nan'), dtype=torch.float64)
        self.inp = torch.full((num_q,), float('nan'), dtype=torch.float64)
        self.first = torch.zeros(num_q, dtype=torch.int64)
        self.npos = torch.zeros(num_q, dtype=torch.int64)

    def add(self, s: int, e: int, ranks: torch.Tensor, npos: torch.Tensor) -> None:
        """Queries s:e: `ranks` (n, G) the 1-based ranks of each query's true matches, `npos` (n,) their count."""
        self.npos[s:e] = npos
        valid = npos > 0
        if not valid.any():
            return
        ranks, npos_v = ranks[valid], npos[valid].double()
        last_rank = ranks.gather(1, (npos_v.long() - 1).unsqueeze(1)).squeeze(1)
        first = ranks[:, 0]
        ranks_1 = torch.arange(1, self.max_rank + 1, dtype=torch.float64)
        self.cmc_sum += (first.unsqueeze(1) <= ranks_1.unsqueeze(0)).double().sum(0)
        idx = torch.arange(s, e)[valid]
        self.ap[idx] = _average_precision(ranks, npos_v, self.ap_mode)
        self.inp[idx] = npos_v / last_rank
        self.first[idx] = first.long()

    def results(self, num_g: int, gallery_mode: Optional[str], same_camera: bool, per_query: bool) -> Dict[str, Any]:
        valid = ~torch.isnan(self.ap)
        num_valid, num_q = int(valid.sum()), len(self.ap)
        if num_valid == 0:
            _raise_no_match(same_camera)
        cmc = (self.cmc_sum / num_valid).numpy()
        out = {'cmc': cmc, 'mAP': float(self.ap[valid].mean()), 'mINP': float(self.inp[valid].mean()),
               'num_valid_queries': num_valid, 'num_queries': num_q, 'num_skipped_queries': num_q - num_valid,
               'num_gallery': num_g, 'ap_mode': self.ap_mode, 'gallery_mode': gallery_mode,
               'same_camera': bool(same_camera)}
        out.update({f'rank{r}': float(cmc[r - 1]) for r in (1, 5, 10, 20) if r <= self.max_rank})
        if per_query:
            out.update(ap=self.ap.numpy(), first_hit_rank=self.first.numpy(), num_matches=self.npos.numpy())
        return out


def _raise_no_match(same_camera: bool):
    if same_camera:
        raise EvaluationError('No query has a true match in the gallery (same id): nothing to evaluate. Check that '
                              'query and gallery share person ids.')
    raise EvaluationError(
        'No query has a true match in the gallery (same id, other camera): nothing to evaluate. Check that query '
        'and gallery share person ids, and that the camera ids differ between a query and its matches (a match '
        'in the same camera is ignored; for data from a single camera, pass same_camera=True, or --same-camera '
        'to m3d-zoo evaluate).')


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
    same_camera = {bool(r.get('same_camera')) for r in results}
    if len(same_camera) > 1:
        raise ValueError('cannot aggregate results that count same-camera matches with results that do not')
    ddof = 1 if len(results) > 1 else 0
    out: Dict[str, Any] = {'num_splits': len(results), 'ap_mode': results[0].get('ap_mode'),
                           'gallery_mode': results[0].get('gallery_mode'), 'same_camera': same_camera.pop()}
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

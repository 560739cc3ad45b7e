""" Validation splits: identities set aside from training, evaluated as a query and a gallery of their own.

Choosing the best epoch on the test split reports a test score that was selected on the test split. A validation
split instead holds identities the model never trains on: either a `val/` folder of the tracklet-folder layout, or
training identities held out by `hold_out_identities` (drawn from the seed; the training set keeps the others). The
published datasets' train/query/gallery protocols are left as they are.

`validation_dataset` turns the validation tracklets into a query and a gallery, one identity at a time:

* seen by two or more cameras: one tracklet of a camera drawn from the seed is the query, the identity's other
  tracklets go to the gallery, so the query has a true match in another camera;
* seen by one camera only, with two or more tracklets: split in time, the first tracklet (in the dataset's order,
  the layout's natural name order) is the query and the later ones the gallery, which gets a camera id of its own
  (the metrics count a match only across cameras);
* one tracklet only: a gallery distractor.
"""
from collections import defaultdict
from typing import Dict, List, Sequence, Union

import numpy as np

from .base import DatasetError, Tracklet, VideoReIDDataset, relabel_tracklets

__all__ = ['validation_dataset', 'hold_out_identities']


def _rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), purpose])


def validation_dataset(tracklets: Sequence[Tracklet], name: str = 'validation', seed: int = 0) -> VideoReIDDataset:
    """ The validation tracklets as a query/gallery dataset (see the module docstring for the split).

    Args:
        tracklets: Tracklets of the validation identities (e.g. `dataset.val`).
        name: Dataset name for summaries and results.
        seed: Draws the query camera of each identity seen by several cameras.

    Raises:
        DatasetError: No identity has two tracklets, so no query could have a true match.
    """
    by_pid: Dict[int, List[Tracklet]] = defaultdict(list)
    for t in tracklets:
        by_pid[t.pid].append(t)
    rng = _rng(seed, 1)
    other_cam = 1 + max((t.camid for t in tracklets), default=0)  # camera ids no real tracklet has
    query, gallery, split_in_time = [], [], 0
    for pid in sorted(by_pid):
        items = by_pid[pid]
        cams = sorted({t.camid for t in items})
        if len(cams) > 1:
            cam = cams[int(rng.integers(len(cams)))]
            q = next(i for i, t in enumerate(items) if t.camid == cam)
            query.append(items[q])
            gallery += items[:q] + items[q + 1:]
        elif len(items) > 1:
            query.append(items[0])
            gallery += [t._replace(camid=t.camid + other_cam) for t in items[1:]]
            split_in_time += 1
        else:
            gallery += items
    if not query:
        raise DatasetError(
            f'{name}: none of the {len(by_pid)} validation identities has two tracklets, so none can be a query with '
            f'a true match in the gallery. Give each validation identity at least two tracklets (ideally from two '
            f'cameras), or hold out other identities.')
    mode = 'validation: one query per identity' + (f' ({split_in_time} single-camera ones split in time)'
                                                   if split_in_time else '')
    return VideoReIDDataset(name=name, train=[], query=query, gallery=gallery, gallery_mode=mode)


def _num_held_out(val_ids: Union[int, float], num_ids: int, name: str) -> int:
    """The number of identities that `val_ids` (a count, or a fraction in (0, 1)) holds out of `num_ids`."""
    if isinstance(val_ids, bool) or not isinstance(val_ids, (int, float, np.integer, np.floating)):
        raise ValueError(f'val_ids must be a number of identities or a fraction in (0, 1), got {val_ids!r}')
    if isinstance(val_ids, (float, np.floating)) and not float(val_ids).is_integer():
        if not 0 < val_ids < 1:
            raise ValueError(f'a validation fraction must be in (0, 1), got {val_ids}')
        n = max(1, int(round(val_ids * num_ids)))
    else:
        n = int(val_ids)
    if not 1 <= n < num_ids:
        raise DatasetError(f'{name}: cannot hold out {n} of its {num_ids} training identities for validation: hold '
                           f'out between 1 and {num_ids - 1} (--val-ids N, or a fraction with --val-split).')
    return n


def hold_out_identities(dataset: VideoReIDDataset, val_ids: Union[int, float], seed: int = 0) -> VideoReIDDataset:
    """ A copy of `dataset` whose training identities lose `val_ids` of theirs to the validation split.

    Args:
        dataset: A dataset with training tracklets.
        val_ids: How many identities to hold out: a count (e.g. 10), or a fraction of them in (0, 1) (e.g. 0.1,
            rounded, at least one).
        seed: Draws the identities; the same seed and dataset hold out the same ones.

    Returns:
        The dataset with the remaining training identities relabelled to 0..N-1, `val` holding the held-out
        identities' tracklets (ids as they were), and `extra['val_held_out']` their number. Query and gallery are
        unchanged.

    Raises:
        ValueError: `val_ids` is neither a count nor a fraction in (0, 1).
        DatasetError: The dataset would keep no training identity (or lose none).
    """
    pids = sorted({t.pid for t in dataset.train})
    n = _num_held_out(val_ids, len(pids), dataset.name)
    held = {pids[i] for i in _rng(seed, 0).choice(len(pids), size=n, replace=False)}
    train, _ = relabel_tracklets([t for t in dataset.train if t.pid not in held])
    val = [t for t in dataset.train if t.pid in held]
    extra = dict(dataset.extra, val_held_out=n)
    return VideoReIDDataset(
        name=dataset.name, train=train, query=dataset.query, gallery=dataset.gallery, gallery_mode=dataset.gallery_mode,
        split_id=dataset.split_id, num_skipped=dataset.num_skipped, extra=extra, val=val)

""" Reproducible train/test identity splits for PRID-2011 and iLIDS-VID, saved and loaded as JSON.

The JSON keeps the full list of eligible person folders next to the splits, so that a split file made for another
copy of the dataset (other folders, other frame filter) is detected instead of silently giving wrong identities.
"""
import json
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np

from .._io import atomic_path
from .base import DatasetError, natural_key

__all__ = ['make_random_splits', 'save_splits', 'load_splits', 'check_splits']

SPLIT_FORMAT_VERSION = 1


def make_random_splits(
        persons: Sequence[str],
        num_splits: int = 10,
        seed: int = 0,
        num_train: Optional[int] = None,
) -> List[Dict[str, List[str]]]:
    """ Random train/test partitions of `persons` (half/half unless `num_train` is given).

    The same `persons`, `num_splits` and `seed` give the same splits on any machine (numpy's PCG64 generator).
    """
    persons = list(persons)
    n = len(persons)
    num_train = n // 2 if num_train is None else num_train
    if not 0 < num_train < n:
        raise DatasetError(f'Cannot split {n} persons into {num_train} train and {n - num_train} test identities')
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(num_splits):
        perm = rng.permutation(n)
        train = sorted((persons[i] for i in perm[:num_train]), key=natural_key)
        test = sorted((persons[i] for i in perm[num_train:]), key=natural_key)
        splits.append({'train': train, 'test': test})
    return splits


def save_splits(path: str, splits, persons: Sequence[str], dataset: str, source: str, **meta) -> bool:
    """ Write `splits` with the eligible `persons` and metadata to JSON. Returns False if the file could not be written
    (a read-only dataset folder is common on shared machines; the splits are then regenerated on each load). """
    data = dict(
        format_version=SPLIT_FORMAT_VERSION, dataset=dataset, source=source, persons=list(persons),
        num_splits=len(splits), splits=splits, **meta)
    try:
        with atomic_path(path) as tmp, open(tmp, 'w') as f:
            json.dump(data, f, indent=1)
        return True
    except OSError as e:
        warnings.warn(f'{dataset}: could not save the split file {path} ({e}); splits are not cached', stacklevel=2)
        return False


def load_splits(path: str, dataset: str) -> Dict:
    """ Read a split file written by `save_splits`. """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f'{dataset}: cannot read split file {path}: {e}') from e
    if not isinstance(data, dict) or 'splits' not in data or 'persons' not in data:
        raise DatasetError(f'{dataset}: {path} is not a split file written by m3d_zoo (no "splits"/"persons" keys)')
    return data


def check_splits(data: Dict, persons: Sequence[str], path: str, dataset: str, **meta):
    """ Raise `DatasetError` if a loaded split file does not describe the person folders found on disk. """
    found = set(persons)
    listed = set(data['persons'])
    hint = f'Delete {path} to regenerate the splits, or point the loader at the dataset copy it was made for.'
    if listed != found:
        missing = sorted(listed - found, key=natural_key)[:5]
        extra = sorted(found - listed, key=natural_key)[:5]
        raise DatasetError(
            f'{dataset}: split file {path} does not match the folders: it lists {len(listed)} persons, the dataset '
            f'has {len(found)} eligible ones (in the file only: {missing}; on disk only: {extra}). {hint}')
    for k, v in meta.items():
        if k in data and data[k] != v:
            raise DatasetError(f'{dataset}: split file {path} was made with {k}={data[k]!r}, not {v!r}. {hint}')
    for i, s in enumerate(data['splits']):
        tr, te = set(s.get('train', ())), set(s.get('test', ()))
        if not tr or not te or (tr | te) - found or tr & te:
            raise DatasetError(
                f'{dataset}: split {i} of {path} is invalid (empty, overlapping, or naming persons that are not '
                f'among the dataset folders). {hint}')

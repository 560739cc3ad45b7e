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


def _describe(value) -> str:
    """ A short description of a JSON value's type, for error messages. """
    if value is None:
        return 'null'
    if isinstance(value, (list, dict)) and not value:
        return f'an empty {type(value).__name__}'
    return f'a {type(value).__name__}'


def _names_problem(value) -> Optional[str]:
    """ Why `value` is not a list of person folder names, or None if it is one. """
    if not isinstance(value, list):
        return f'found {_describe(value)}'
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        return f'found {bad[0]!r} ({type(bad[0]).__name__})'
    return None


def load_splits(path: str, dataset: str) -> Dict:
    """ Read a split file written by `save_splits` and check its structure.

    Raises:
        DatasetError: The file cannot be read, is not JSON, is not a split file, was written for another dataset or by
            a newer version, or has values of the wrong type. The message names the file and what to do.
    """
    damaged = f'Delete {path} to regenerate the splits, or pass the right split file with split_file=.'
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except UnicodeDecodeError:
        raise DatasetError(f'{dataset}: split file {path} is not a UTF-8 text file, so not a JSON split file. '
                           f'{damaged}') from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            f'{dataset}: split file {path} is not valid JSON (cut short or edited?): {e}. {damaged}') from None
    except OSError as e:
        raise DatasetError(f'{dataset}: cannot read split file {path}: {e}. Make it readable, or pass another '
                           f'split file with split_file=.') from e
    if not isinstance(data, dict) or 'splits' not in data or 'persons' not in data:
        # it may be another file of the user's: no advice to delete it
        raise DatasetError(
            f'{dataset}: {path} is not a split file written by m3d_zoo (no "splits"/"persons" keys): pass a '
            f'split file made for {dataset} with split_file=, or leave split_file unset to use or generate the default '
            f'one.')
    other = data.get('dataset')
    if other is not None and other != dataset:
        raise DatasetError(
            f'{dataset}: split file {path} was written for {other}, not {dataset}: pass a split file made for '
            f'{dataset} with split_file=, or leave split_file unset to use or generate the default one.')

    def malformed(what: str):
        return DatasetError(f'{dataset}: split file {path} is malformed: {what}. {damaged}')

    version = data.get('format_version', SPLIT_FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise malformed(f'"format_version" must be an integer, found {version!r}')
    if version > SPLIT_FORMAT_VERSION:
        raise DatasetError(
            f'{dataset}: split file {path} has format version {version}; this m3d_zoo reads version '
            f'{SPLIT_FORMAT_VERSION}. Upgrade m3d_zoo, or delete the file to regenerate the splits.')
    problem = _names_problem(data['persons'])
    if problem:
        raise malformed(f'"persons" must be a list of person folder names, {problem}')
    splits = data['splits']
    if not isinstance(splits, list) or not splits:
        raise malformed(f'"splits" must be a non-empty list of {{"train": [...], "test": [...]}}, found '
                        f'{_describe(splits)}')
    for i, split in enumerate(splits):
        if not isinstance(split, dict) or 'train' not in split or 'test' not in split:
            raise malformed(f'split {i} must be an object with "train" and "test" lists, found {_describe(split)}'
                            + (f' with keys {sorted(split)}' if isinstance(split, dict) else ''))
        for key in ('train', 'test'):
            problem = _names_problem(split[key])
            if problem:
                raise malformed(f'split {i} "{key}" must be a list of person folder names, {problem}')
    return data


def check_splits(data: Dict, persons: Sequence[str], path: str, dataset: str, **meta):
    """ Raise `DatasetError` if a split file read by `load_splits` does not describe the person folders on disk. """
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
        tr, te = set(s['train']), set(s['test'])
        where = f'{dataset}: split {i} of {path}'
        unknown = sorted((tr | te) - found, key=natural_key)
        if unknown:
            raise DatasetError(f'{where} names persons that are not among the eligible folders: {unknown[:5]}. {hint}')
        both = sorted(tr & te, key=natural_key)
        if both:
            raise DatasetError(f'{where} has persons in both train and test: {both[:5]}. {hint}')
        for key, names in (('train', tr), ('test', te)):
            if not names:
                raise DatasetError(f'{where} has no {key} persons. {hint}')

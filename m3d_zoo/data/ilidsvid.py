""" iLIDS-VID (Wang et al., ECCV 2014) in its published layout.

Protocol: 300 persons, each with one tracklet per camera; 10 splits of 150 train and 150 test identities; camera 1
tracklets are the queries, camera 2 tracklets the gallery. The official split file
`train-test people splits/train_test_splits_ilidsvid.mat` (variable `ls_set`, 10 rows of 1-based indices into the
numerically sorted person folders; first half test, second half train, as in Wang et al.) is used when present;
otherwise random splits are generated from a seed. Either way the splits are saved as JSON next to the data.
"""
import os
import re
from typing import List, Optional

import numpy as np

from .base import DatasetError, VideoReIDDataset, natural_key, require_dir
from ._twocam import load_two_camera, scan_camera

__all__ = ['load_ilidsvid']

ILIDS_URL = 'https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html'
ILIDS_LAYOUT = """\
  <root>/i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png ...
  <root>/i-LIDS-VID/sequences/cam2/person001/cam2_person001_00317.png ...
  <root>/train-test people splits/train_test_splits_ilidsvid.mat          (optional: official splits)"""

_PERSON_RE = re.compile(r'^person(\d+)$')
_FRAME_RE = re.compile(r'^cam(\d+)_person(\d+)_(\d+)\.png$', re.IGNORECASE)
_MAT_NAME = 'train_test_splits_ilidsvid.mat'


def _make_check_frame(cam: str):
    def _check(name: str, person: str):
        m = _FRAME_RE.match(name)
        if m is None or f'cam{m.group(1)}' != cam or f'person{m.group(2)}' != person:
            raise DatasetError(
                f'iLIDS-VID: frame file name {name!r} in {cam}/{person}/ does not parse or does not match its folder '
                f'(expected {cam}_{person}_<frame>.png)')
    return _check


def _find_official_mat(root: str, data_dir: str) -> Optional[str]:
    for base in (root, data_dir, os.path.dirname(os.path.abspath(data_dir))):
        p = os.path.join(base, 'train-test people splits', _MAT_NAME)
        if os.path.isfile(p):
            return p
    return None


def load_ilidsvid(
        root: str,
        split_id: int = 0,
        split_file: Optional[str] = None,
        seed: int = 0,
        num_splits: int = 10,
        min_frames: int = 1,
        use_official_splits: bool = True,
) -> VideoReIDDataset:
    """ Load one of the 10 train/test splits of iLIDS-VID.

    Args:
        root: Folder holding `i-LIDS-VID/` (and `train-test people splits/`), or the `i-LIDS-VID` folder itself.
        split_id: Which split, 0..9.
        split_file: Where to read / write the splits JSON (default `<root>/splits_ilidsvid.json`).
        seed: Seed for random splits, used only when the official `.mat` file is absent (or not wanted).
        num_splits: Number of random splits to generate.
        min_frames: Minimum tracklet length in both cameras for a person to be used (all 300 qualify).
        use_official_splits: Use the official `.mat` split file when present.
    """
    require_dir(root, 'iLIDS-VID', ILIDS_LAYOUT, ILIDS_URL)
    data_dir = os.path.join(root, 'i-LIDS-VID') if os.path.isdir(os.path.join(root, 'i-LIDS-VID')) else root
    skipped: List[str] = []
    cams = []
    for cam in ('cam1', 'cam2'):
        cam_dir = os.path.join(data_dir, 'sequences', cam)
        require_dir(cam_dir, 'iLIDS-VID', ILIDS_LAYOUT, ILIDS_URL)
        cams.append(scan_camera('iLIDS-VID', cam_dir, _PERSON_RE, _make_check_frame(cam), skipped))

    mat_path = _find_official_mat(root, data_dir) if use_official_splits else None
    official = _official_split_maker(mat_path, cams[0]) if mat_path is not None else None

    default = os.path.join(root, 'splits_ilidsvid.json' if mat_path else f'splits_ilidsvid_seed{seed}.json')
    return load_two_camera(
        'iLIDS-VID', data_dir, cams, split_id=split_id, split_file=split_file, default_split_file=default, seed=seed,
        num_splits=num_splits, min_frames=min_frames, skipped=skipped, official_splits=official)


def _official_split_maker(mat_path: str, cam1_persons):
    """persons -> (the official splits, their source name), for `load_two_camera`."""
    cam1 = sorted(cam1_persons, key=natural_key)

    def official(persons):
        return _official_splits(mat_path, cam1, persons), f'official {_MAT_NAME}'
    return official


def _official_splits(mat_path: str, cam1_persons: List[str], persons: List[str]):
    from scipy.io import loadmat
    what_to_do = 'Restore the official file, or pass use_official_splits=False to use random splits.'
    try:
        ls_set = np.asarray(loadmat(mat_path)['ls_set'], dtype=np.float64)
    except Exception as e:  # scipy raises several types for a damaged or foreign file
        raise DatasetError(f'iLIDS-VID: cannot read variable ls_set from {mat_path}: {e}. {what_to_do}') from e
    if ls_set.ndim != 2 or ls_set.shape[0] == 0:
        raise DatasetError(f'iLIDS-VID: split file {mat_path} has no rows of person indices (ls_set has shape '
                           f'{ls_set.shape}). {what_to_do}')
    if not np.all(np.isfinite(ls_set)) or np.any(ls_set != np.round(ls_set)):
        raise DatasetError(f'iLIDS-VID: split file {mat_path} holds non-integer person indices in ls_set. '
                           f'{what_to_do}')
    if ls_set.shape[1] != len(cam1_persons) or ls_set.min() < 1 or ls_set.max() > len(cam1_persons):
        raise DatasetError(
            f'iLIDS-VID: split file {mat_path} does not match the folders: ls_set has shape {ls_set.shape} with '
            f'indices {ls_set.min():.0f}..{ls_set.max():.0f}, but sequences/cam1 has {len(cam1_persons)} person '
            f'folders (indices 1..{len(cam1_persons)}). {what_to_do}')
    eligible = set(persons)
    half = ls_set.shape[1] // 2
    splits = []
    for row in ls_set.astype(np.int64):
        # Wang et al. ECCV'14: the first half of each row are the test identities
        test = [cam1_persons[i - 1] for i in row[:half]]
        train = [cam1_persons[i - 1] for i in row[half:]]
        bad = [p for p in test + train if p not in eligible]
        if bad or len(set(row.tolist())) != len(row):
            raise DatasetError(
                f'iLIDS-VID: split file {mat_path} does not match the folders: it names persons without a usable '
                f'tracklet in both cameras ({bad[:5]}) or repeats an index. {what_to_do}')
        splits.append({'train': sorted(train, key=natural_key), 'test': sorted(test, key=natural_key)})
    return splits

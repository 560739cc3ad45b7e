""" Shared loader for the two-camera datasets (PRID-2011, iLIDS-VID): one tracklet per person and camera,
random identity splits, camera 0 as query and camera 1 as gallery. """
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import (
    DatasetError, Tracklet, VideoReIDDataset, list_images, natural_key, relabel_tracklets, warn_skipped)
from .splits import check_splits, load_splits, make_random_splits, save_splits


def scan_camera(
        dataset: str,
        cam_dir: str,
        person_re: re.Pattern,
        check_frame: Callable[[str, str], None],
        skipped: List[str],
) -> Dict[str, Tuple[int, Tuple[str, ...]]]:
    """ {person folder name: (person id, sorted frame paths)} for one camera; empty folders skipped and counted. """
    out = {}
    for name in sorted(os.listdir(cam_dir), key=natural_key):
        path = os.path.join(cam_dir, name)
        if name.startswith('.') or not os.path.isdir(path):
            continue
        m = person_re.match(name)
        if m is None:
            raise DatasetError(
                f'{dataset}: cannot parse person folder name {path!r} (expected a name matching {person_re.pattern})')
        frames = list_images(path)
        for f in frames:
            check_frame(os.path.basename(f), name)
        if not frames:
            skipped.append(os.path.join(os.path.basename(cam_dir), name))
            continue
        out[name] = (int(m.group(1)), tuple(frames))
    return out


def _check_int(dataset: str, name: str, value, low: Optional[int]):
    # values from the command line's --dataset-kwargs arrive as whatever JSON they parse to
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{dataset}: {name} must be an integer, got {value!r}')
    if low is not None and value < low:
        raise ValueError(f'{dataset}: {name} must be an integer >= {low}, got {value!r}')


def load_two_camera(
        dataset: str,
        data_dir: str,
        cams: Sequence[Dict[str, Tuple[int, Tuple[str, ...]]]],
        split_id: int,
        split_file: Optional[str],
        default_split_file: str,
        seed: int,
        num_splits: int,
        min_frames: int,
        skipped: List[str],
        official_splits: Optional[Callable[[List[str]], Tuple[List[Dict], str]]] = None,
) -> VideoReIDDataset:
    for arg, value, low in (('split_id', split_id, None), ('num_splits', num_splits, 1), ('seed', seed, None),
                            ('min_frames', min_frames, None)):
        _check_int(dataset, arg, value, low)
    cam_a, cam_b = cams
    # a person is usable only when seen by both cameras, each tracklet long enough for the protocol
    persons = sorted(
        (p for p in cam_a if p in cam_b and len(cam_a[p][1]) >= min_frames and len(cam_b[p][1]) >= min_frames),
        key=natural_key)
    if len(persons) < 2:
        raise DatasetError(
            f'{dataset}: found {len(persons)} persons with a tracklet of >= {min_frames} frames in both cameras under '
            f'{data_dir}; at least 2 are needed')
    if not 0 <= split_id < num_splits:
        raise ValueError(f'{dataset}: split_id must be in [0, {num_splits}), got {split_id}')

    path = split_file or default_split_file
    meta = dict(min_frames=min_frames)
    if official_splits is None:
        meta['seed'] = seed  # a split file made from another seed is an error, not a silent substitute
    if os.path.isfile(path):
        data = load_splits(path, dataset)
        check_splits(data, persons, path, dataset, **meta)
        splits = data['splits']
        source = data.get('source', 'split file')
    else:
        if official_splits is not None:
            splits, source = official_splits(persons)
        else:
            splits = make_random_splits(persons, num_splits=num_splits, seed=seed)
            source = f'random, seed {seed}'
        save_splits(path, splits, persons, dataset, source, **meta)
    if split_id >= len(splits):
        raise DatasetError(
            f'{dataset}: split file {path} has {len(splits)} splits (split_id 0..{len(splits) - 1}), split_id '
            f'{split_id} requested: pick one of those, or delete {path} to regenerate {num_splits} splits.')

    split = splits[split_id]
    train = []
    for p in split['train']:
        for camid, cam in enumerate(cams):
            pid, frames = cam[p]
            train.append(Tracklet(frames, pid, camid))
    train, _ = relabel_tracklets(train)
    query = [Tracklet(cam_a[p][1], cam_a[p][0], 0) for p in split['test']]
    gallery = [Tracklet(cam_b[p][1], cam_b[p][0], 1) for p in split['test']]
    warn_skipped(dataset, skipped)
    return VideoReIDDataset(
        name=dataset, train=train, query=query, gallery=gallery, gallery_mode=f'{dataset} camera 2 of the test ids',
        split_id=split_id, num_skipped=len(skipped),
        extra={'split_file': path, 'split_source': source, 'num_persons': len(persons), 'num_splits': len(splits)})

""" MARS (Zheng et al., ECCV 2016) in its published layout with the MARS-evaluation kit's `info/` files.

Two gallery conventions are in use for MARS and both are offered:
  * 'torchreid' (default): gallery = test tracklets minus the 1,980 queries and minus the distractors (pid -1);
    9,330 gallery tracklets. This is what torchreid and most papers since 2018 report.
  * 'official': the MARS-evaluation kit's; gallery = the whole test set (12,180 tracklets, queries included).
    A query's own tracklet has its id and camera and is therefore junk; distractors (pid -1) are junk as well
    (`m3d_zoo.eval.evaluate_rank` ignores pid -1 by default, as the kit does).
"""
import os
import re
from typing import Dict, List, Set

import numpy as np

from .base import DatasetError, Tracklet, VideoReIDDataset, relabel_tracklets, require_dir, require_file, warn_skipped

__all__ = ['load_mars', 'parse_mars_name', 'MARS_GALLERY_MODES']

MARS_URL = 'http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html (info/ files: ' \
           'https://github.com/liangzheng06/MARS-evaluation)'
MARS_LAYOUT = """\
  <root>/bbox_train/<pid>/<pid>C<cam>T<track>F<frame>.jpg   e.g. bbox_train/0001/0001C1T0001F001.jpg
  <root>/bbox_test/<pid>/...                                pid folder 00-1 = distractors, 0000 = junk
  <root>/info/train_name.txt, info/test_name.txt            one image file name per line
  <root>/info/tracks_train_info.mat, tracks_test_info.mat   rows [start, end, pid, cam], 1-based
  <root>/info/query_IDX.mat                                 1-based rows of tracks_test_info"""

MARS_GALLERY_MODES = {
    'torchreid': 'MARS test minus query and distractors (torchreid convention)',
    'official': 'MARS whole test set incl. queries (official MARS-evaluation kit convention)',
}

_NAME_RE = re.compile(r'^(\d{4}|00-1)C(\d+)T(\d+)F(\d+)\.(?:jpg|jpeg|png)$', re.IGNORECASE)


def parse_mars_name(name: str):
    """ Parse a MARS frame file name into (pid, cam, track, frame); cam is 1-based as in the name.

    Raises:
        DatasetError: The name does not follow `<pid>C<cam>T<track>F<frame>.jpg`.
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise DatasetError(
            f'MARS: cannot parse file name {name!r}; expected <pid>C<cam>T<track>F<frame>.jpg, '
            f'e.g. 0001C1T0001F001.jpg (pid 4 digits, or 00-1 for distractors)')
    pid = -1 if m.group(1) == '00-1' else int(m.group(1))
    return pid, int(m.group(2)), int(m.group(3)), int(m.group(4))


def _read_names(path: str) -> List[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _load_mat(path: str, var: str) -> np.ndarray:
    from scipy.io import loadmat
    try:
        data = loadmat(path)
    except NotImplementedError as e:  # MATLAB v7.3 files are HDF5, which scipy does not read
        raise DatasetError(f'MARS: {path} is a MATLAB v7.3 file; re-save it with save(..., "-v7")') from e
    except Exception as e:
        raise DatasetError(f'MARS: cannot read {path}: {e}') from e
    if var not in data:
        keys = [k for k in data if not k.startswith('__')]
        raise DatasetError(f'MARS: {path} has no variable {var!r} (found {keys})')
    return np.asarray(data[var])


class _FolderIndex:
    """ Lists each pid folder once, so that checking ~1.2M frame files does not cost 1.2M `stat` calls. """

    def __init__(self, root: str):
        self.root = root
        self.cache: Dict[str, Set[str]] = {}

    def exists(self, folder: str, name: str) -> bool:
        if folder not in self.cache:
            d = os.path.join(self.root, folder)
            self.cache[folder] = set(os.listdir(d)) if os.path.isdir(d) else set()
        return name in self.cache[folder]


def _build_tracklets(
        names: List[str],
        tracks: np.ndarray,
        img_dir: str,
        info_file: str,
        check_files: bool,
        skipped: List[str],
) -> List[Tracklet]:
    if tracks.ndim != 2 or tracks.shape[1] < 4:
        raise DatasetError(f'MARS: {info_file} must hold rows [start, end, pid, cam], got shape {tracks.shape}')
    index = _FolderIndex(img_dir) if check_files else None
    out = []
    for row, (start, end, pid, cam) in enumerate(tracks[:, :4].astype(np.int64)):
        if end < start:
            skipped.append(f'{os.path.basename(info_file)} row {row + 1}')
            out.append(None)  # keep row numbering for query_IDX
            continue
        if start < 1 or end > len(names):
            raise DatasetError(
                f'MARS: row {row + 1} of {info_file} spans names {start}..{end}, but the name list has '
                f'{len(names)} entries: the info/ files and the name list do not belong together')
        frames = names[start - 1:end]
        parsed = []
        for n in frames:
            fpid, fcam, _, fnum = parse_mars_name(n)
            if fpid != pid or fcam != cam:
                raise DatasetError(
                    f'MARS: frame {n} in row {row + 1} of {info_file} does not match the row (pid {pid}, cam {cam})')
            folder = n[:4]
            if index is not None and not index.exists(folder, n):
                raise DatasetError(f'MARS: frame file missing: {os.path.join(img_dir, folder, n)}')
            parsed.append((fnum, os.path.join(img_dir, folder, n)))
        parsed.sort()  # temporal order by frame number, whatever the order of the name list
        out.append(Tracklet(tuple(p for _, p in parsed), int(pid), int(cam) - 1))
    return out


def load_mars(root: str, gallery_mode: str = 'torchreid', check_files: bool = True) -> VideoReIDDataset:
    """ Load MARS from its published layout.

    Args:
        root: Folder holding `bbox_train/`, `bbox_test/` and `info/` (or a `MARS/`/`mars/` folder that does).
        gallery_mode: 'torchreid' (default; test minus queries and distractors) or 'official' (whole test set).
        check_files: Check that every frame listed in the name lists exists (one directory listing per pid folder).

    Returns:
        The dataset; train ids relabelled to 0..N-1 (625 on the real data), camera ids 0-based, query and
        gallery keep MARS ids (0 junk, -1 distractors).
    """
    if gallery_mode not in MARS_GALLERY_MODES:
        raise ValueError(f'gallery_mode must be one of {list(MARS_GALLERY_MODES)}, got {gallery_mode!r}')
    require_dir(root, 'MARS', MARS_LAYOUT, MARS_URL)
    if not os.path.isdir(os.path.join(root, 'info')):
        for sub in ('MARS', 'mars'):
            if os.path.isdir(os.path.join(root, sub, 'info')):
                root = os.path.join(root, sub)
                break
    for sub in ('bbox_train', 'bbox_test', 'info'):
        require_dir(os.path.join(root, sub), 'MARS', MARS_LAYOUT, MARS_URL)
    info = os.path.join(root, 'info')
    files = {k: os.path.join(info, k) for k in (
        'train_name.txt', 'test_name.txt', 'tracks_train_info.mat', 'tracks_test_info.mat', 'query_IDX.mat')}
    for f in files.values():
        require_file(f, 'MARS', MARS_LAYOUT, MARS_URL)

    skipped: List[str] = []
    train_names = _read_names(files['train_name.txt'])
    test_names = _read_names(files['test_name.txt'])
    train_info = _load_mat(files['tracks_train_info.mat'], 'track_train_info')
    test_info = _load_mat(files['tracks_test_info.mat'], 'track_test_info')
    query_idx = _load_mat(files['query_IDX.mat'], 'query_IDX').reshape(-1).astype(np.int64) - 1
    if query_idx.size == 0 or query_idx.min() < 0 or query_idx.max() >= len(test_info):
        raise DatasetError(
            f'MARS: query_IDX.mat indexes rows 1..{query_idx.max() + 1 if query_idx.size else 0} but '
            f'tracks_test_info.mat has {len(test_info)} rows: the info/ files do not belong together')

    train_all = _build_tracklets(
        train_names, train_info, os.path.join(root, 'bbox_train'), files['tracks_train_info.mat'], check_files,
        skipped)
    test_all = _build_tracklets(
        test_names, test_info, os.path.join(root, 'bbox_test'), files['tracks_test_info.mat'], check_files, skipped)

    # junk (0) and distractor (-1) ids are not identities a classifier should learn
    train = [t for t in train_all if t is not None and t.pid > 0]
    train, _ = relabel_tracklets(train)
    query_set = set(query_idx.tolist())
    query = [test_all[i] for i in query_idx if test_all[i] is not None]
    if gallery_mode == 'torchreid':
        gallery = [t for i, t in enumerate(test_all) if i not in query_set and t is not None and t.pid != -1]
    else:
        gallery = [t for t in test_all if t is not None]
    warn_skipped('MARS', skipped)
    return VideoReIDDataset(
        name='MARS', train=train, query=query, gallery=gallery, gallery_mode=MARS_GALLERY_MODES[gallery_mode],
        num_skipped=len(skipped), extra={'root': root, 'gallery_convention': gallery_mode})

""" Builders of small copies of the video ReID datasets in their real layouts (real image files, real `.mat` files
written with scipy, the real file-naming schemes), for tests of the loaders and of anything that trains or
evaluates on them.

Every frame is a flat image whose red channel encodes the frame's position in its tracklet (10 + 8 * index), so
a test can check that frames come out in temporal order; green encodes the person, blue the camera.
Each builder returns a dict of the counts a correct loader must report.
"""
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy.io import savemat

__all__ = ['write_frame', 'frame_order_value', 'write_fake_mars', 'write_fake_prid2011', 'write_fake_ilidsvid',
           'write_fake_folder']


def frame_order_value(index: int) -> int:
    """ Red value of the frame at position `index` of its tracklet. """
    return min(255, 10 + 8 * index)


def write_frame(path: str, index: int, pid: int = 0, cam: int = 0, size: Tuple[int, int] = (16, 8)):
    h, w = size
    arr = np.empty((h, w, 3), dtype=np.uint8)
    arr[..., 0] = frame_order_value(index)
    arr[..., 1] = (37 * (pid % 7) + 20) % 256
    arr[..., 2] = (50 * cam + 30) % 256
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # JPEG at quality 95 keeps flat colours within a couple of levels
    Image.fromarray(arr).save(path, quality=95) if path.lower().endswith(('.jpg', '.jpeg')) else \
        Image.fromarray(arr).save(path)


def write_fake_mars(
        root: str,
        train_pids: Sequence[int] = (1, 3, 8),
        test_pids: Sequence[int] = (2, 5, 11, 20),
        num_distractor_tracks: int = 2,
        num_junk_tracks: int = 2,
        frames: Tuple[int, int] = (3, 12),
        size: Tuple[int, int] = (16, 8),
        seed: int = 0,
        empty_train_rows: int = 0,
) -> Dict:
    """ A tiny MARS: `bbox_train/`, `bbox_test/` with `<pid>/<pid>C<cam>T<track>F<frame>.jpg`, and `info/` with
    the name lists, `tracks_*_info.mat` (rows [start, end, pid, cam], 1-based) and `query_IDX.mat`.

    Train ids get 2-3 tracks on cameras 1..3; test ids get one track per camera on 2-3 cameras, the camera-1 track
    being the query; pid 0 (junk) and -1 (distractor, folder 00-1) tracks are added to the test set. The frame
    numbers of a track start at a random offset and go above F009, and one track per subset is listed in reverse
    frame order in the name file, so that a loader must sort frames numerically.
    """
    rng = np.random.default_rng(seed)
    expected = {}

    def add_track(names, rows, folder, pid, cam, track, n, reverse=False):
        token = '00-1' if pid == -1 else f'{pid:04d}'
        first = int(rng.integers(1, 5))
        fnames = [f'{token}C{cam}T{track:04d}F{first + k:03d}.jpg' for k in range(n)]
        for k, fn in enumerate(fnames):
            write_frame(os.path.join(root, folder, token, fn), k, pid, cam, size)
        start = len(names) + 1
        names.extend(reversed(fnames) if reverse else fnames)
        rows.append([start, len(names), pid, cam])

    # train
    names, rows = [], []
    train_frames = 0
    for i, pid in enumerate(train_pids):
        for t in range(2 + i % 2):
            n = int(rng.integers(frames[0], frames[1] + 1))
            add_track(names, rows, 'bbox_train', pid, t % 3 + 1, t + 1, n, reverse=(i == 0 and t == 0))
            train_frames += n
    for _ in range(empty_train_rows):
        rows.append([len(names) + 1, len(names), train_pids[0], 1])  # end < start: an empty track
    expected.update(num_train_pids=len(train_pids), num_train_tracklets=len(rows) - empty_train_rows,
                    num_train_frames=train_frames)
    _write_info(root, 'train', names, rows)

    # test
    names, rows, query_rows = [], [], []
    for i, pid in enumerate(test_pids):
        for c in range(2 + i % 2):
            n = int(rng.integers(frames[0], frames[1] + 1))
            if c == 0:
                query_rows.append(len(rows) + 1)
            add_track(names, rows, 'bbox_test', pid, c + 1, c + 1, n, reverse=(i == 0 and c == 1))
    num_real = len(rows)
    for k in range(num_junk_tracks):
        add_track(names, rows, 'bbox_test', 0, k % 6 + 1, k + 1, int(rng.integers(frames[0], frames[1] + 1)))
    for k in range(num_distractor_tracks):
        add_track(names, rows, 'bbox_test', -1, k % 6 + 1, k + 1, int(rng.integers(frames[0], frames[1] + 1)))
    _write_info(root, 'test', names, rows)
    savemat(os.path.join(root, 'info', 'query_IDX.mat'), {'query_IDX': np.array(query_rows, dtype=np.float64)})
    expected.update(
        num_query=len(query_rows), num_test_tracklets=len(rows),
        num_gallery_torchreid=num_real - len(query_rows) + num_junk_tracks,
        num_gallery_official=len(rows), num_test_pids=len(test_pids))
    return expected


def _write_info(root, subset, names, rows):
    info = os.path.join(root, 'info')
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, f'{subset}_name.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    # the kit's files hold doubles, as MATLAB writes them
    savemat(os.path.join(info, f'tracks_{subset}_info.mat'),
            {f'track_{subset}_info': np.array(rows, dtype=np.float64).reshape(-1, 4)})


def write_fake_prid2011(
        root: str,
        num_both: int = 8,
        num_short: int = 2,
        num_a_only: int = 2,
        num_b_only: int = 3,
        min_frames: int = 22,
        size: Tuple[int, int] = (16, 8),
        seed: int = 0,
) -> Dict:
    """ A tiny PRID-2011: `prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png`.

    Persons 1..num_both appear in both cameras; the last `num_short` of them have a tracklet shorter than
    `min_frames` in one camera (so the protocol drops them); more persons follow in one camera only.
    """
    rng = np.random.default_rng(seed)
    base = os.path.join(root, 'prid_2011', 'multi_shot')
    frames_written = {}
    only_a = list(range(num_both + 1, num_both + num_a_only + 1))
    only_b = list(range(num_both + num_a_only + 1, num_both + num_a_only + num_b_only + 1))
    for cam, extra in (('cam_a', only_a), ('cam_b', only_b)):
        for p in list(range(1, num_both + 1)) + extra:
            n = int(rng.integers(min_frames, min_frames + 8))
            if p <= num_both and p > num_both - num_short and cam == 'cam_b':
                n = min_frames - 1 - int(rng.integers(0, 5))
            for k in range(n):
                write_frame(os.path.join(base, cam, f'person_{p:04d}', f'{k + 1:04d}.png'), k, p, cam == 'cam_b', size)
            frames_written[(cam, p)] = n
    eligible = num_both - num_short
    return {'num_persons': eligible, 'num_train_pids': eligible // 2, 'num_test_pids': eligible - eligible // 2,
            'frames': frames_written}


def write_fake_ilidsvid(
        root: str,
        person_ids: Sequence[int] = (1, 2, 4, 7, 10, 12, 15, 19),
        frames: Tuple[int, int] = (23, 30),
        with_mat: bool = True,
        num_splits: int = 10,
        size: Tuple[int, int] = (16, 8),
        seed: int = 0,
) -> Dict:
    """ A tiny iLIDS-VID: `i-LIDS-VID/sequences/cam{1,2}/personNNN/cam{c}_personNNN_NNNNN.png` and, if
    `with_mat`, `train-test people splits/train_test_splits_ilidsvid.mat` (`ls_set`, num_splits x persons,
    1-based indices into the sorted person folders; first half test). Person ids have gaps, as in the real set.
    """
    rng = np.random.default_rng(seed)
    base = os.path.join(root, 'i-LIDS-VID', 'sequences')
    for c in (1, 2):
        for p in person_ids:
            n = int(rng.integers(frames[0], frames[1] + 1))
            first = int(rng.integers(1, 900))
            for k in range(n):
                name = f'cam{c}_person{p:03d}_{first + k:05d}.png'
                write_frame(os.path.join(base, f'cam{c}', f'person{p:03d}', name), k, p, c - 1, size)
    ls_set = None
    if with_mat:
        ls_set = np.stack([rng.permutation(len(person_ids)) + 1 for _ in range(num_splits)]).astype(np.float64)
        d = os.path.join(root, 'train-test people splits')
        os.makedirs(d, exist_ok=True)
        savemat(os.path.join(d, 'train_test_splits_ilidsvid.mat'), {'ls_set': ls_set})
    half = len(person_ids) // 2
    return {'num_persons': len(person_ids), 'num_test_pids': half, 'num_train_pids': len(person_ids) - half,
            'ls_set': ls_set, 'person_ids': list(person_ids)}


def write_fake_folder(
        root: str,
        train: Dict[str, Sequence[Tuple[int, int]]] = None,
        query: Dict[str, Sequence[Tuple[int, int]]] = None,
        gallery: Dict[str, Sequence[Tuple[int, int]]] = None,
        size: Tuple[int, int] = (16, 8),
        ext: str = '.jpg',
        empty: Optional[Sequence[str]] = None,
        val: Optional[Dict[str, Sequence[Tuple[int, int]]]] = None,
) -> Dict:
    """ A dataset in the generic tracklet-folder layout: `<subset>/<pid>/c<cam>_t<k>/f<frame>.jpg`.

    Each subset maps a pid folder name to a list of (camera, number of frames). Frame files are named f1, f2, ...,
    f12 (unpadded: only a numeric sort gets them right). `empty` lists extra empty tracklet folders (relative
    paths) to create; `val`, if given, the `val/` subset.
    """
    train = train if train is not None else {'0001': [(1, 5), (2, 12)], '0002': [(1, 7), (3, 3)], '0009': [(2, 10)]}
    query = query if query is not None else {'0003': [(1, 6)], '0004': [(1, 11)], '-1': [(2, 4)]}
    gallery = gallery if gallery is not None else {'0003': [(2, 9), (1, 5)], '0004': [(3, 4)], '0005': [(1, 8)]}
    counts = {}
    subsets = (('train', train), ('query', query), ('gallery', gallery)) + ((('val', val),) if val else ())
    for subset, spec in subsets:
        n_t = n_f = 0
        for pid, tracks in spec.items():
            for k, (cam, n) in enumerate(tracks):
                for i in range(n):
                    write_frame(os.path.join(root, subset, pid, f'c{cam}_t{k + 1}', f'f{i + 1}{ext}'), i,
                                sum(map(ord, pid)) % 50, cam, size)
                n_t += 1
                n_f += n
        counts[subset] = (len(spec), n_t, n_f)
    for rel in empty or ():
        os.makedirs(os.path.join(root, rel), exist_ok=True)
    return counts

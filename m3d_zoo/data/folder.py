""" Generic tracklet-folder layout for users' own data.

    <root>/train/<pid>/<tracklet>/<frames>      e.g. train/0007/c1_t003/000001.jpg
    <root>/val/<pid>/<tracklet>/<frames>        optional: validation identities (not in train/)
    <root>/query/<pid>/<tracklet>/<frames>
    <root>/gallery/<pid>/<tracklet>/<frames>

`<pid>` is the person's folder: an integer or any other name. An integer folder keeps its integer as the person id,
whatever other folders exist: `-1` marks distractors (ignored by the metrics) and `0` stays 0 (MARS's junk id).
`0007` and `7` are the same id, so one subset may not hold both. Every other name (`alice`) gets a fresh id above
the largest integer id (at least 1), in natural name order with the raw name breaking ties (`Alice` before `alice`,
`p01` before `p1`), so the same name is the same person in every subset and the ids depend only on the folder names.
Train ids are then relabelled to 0..N-1 in id order; a negative folder in `train/` is an error (a distractor is not
one person). `<tracklet>` is a folder whose name starts with the camera: `c<cam>` or `cam<cam>`, optionally followed
by `_` or `-` and anything (`c1`, `c2_t0004`, `cam3-morning`). Frames are the image files inside, ordered by the
numbers in their names (natural order: `f2.jpg` before `f10.jpg`). `train/` may be left out for a test-only set.
`val/` holds identities set aside to choose the best epoch while training (`m3d-zoo train` splits them into a
validation query and gallery, see `m3d_zoo.data.validation_dataset`); a negative folder there is an error too.
"""
import os
import re
from typing import Dict, List, Optional, Tuple

from .base import DatasetError, Tracklet, VideoReIDDataset, list_images, natural_key, relabel_tracklets, require_dir
from .base import warn_skipped

__all__ = ['load_tracklet_folder', 'FOLDER_LAYOUT']

FOLDER_LAYOUT = """\
  <root>/train/<pid>/<tracklet>/<frames>     e.g. train/0007/c1_t003/000001.jpg   (train/ optional)
  <root>/val/<pid>/<tracklet>/<frames>       validation identities, not in train/   (val/ optional)
  <root>/query/<pid>/<tracklet>/<frames>
  <root>/gallery/<pid>/<tracklet>/<frames>
  <tracklet> starts with c<cam> or cam<cam> (c1, c2_t0004, cam3-morning); frames in natural (numeric) order"""

_TRACKLET_RE = re.compile(r'^c(?:am)?(\d+)(?:[_\-].*)?$', re.IGNORECASE)
_INT_RE = re.compile(r'^-?\d+$')
_MAX_PID = 2 ** 62  # ids go into int64 arrays; the margin leaves room for the fresh ids of named folders


def _scan(subset_dir: str, skipped: List[str]):
    items = []
    for pid_name in sorted(os.listdir(subset_dir), key=natural_key):
        pid_dir = os.path.join(subset_dir, pid_name)
        if pid_name.startswith('.') or not os.path.isdir(pid_dir):
            continue
        for tname in sorted(os.listdir(pid_dir), key=natural_key):
            tdir = os.path.join(pid_dir, tname)
            if tname.startswith('.') or not os.path.isdir(tdir):
                continue
            m = _TRACKLET_RE.match(tname)
            if m is None:
                raise DatasetError(
                    f'Tracklet folder name {tdir!r} does not parse: it must start with the camera, c<cam> or '
                    f'cam<cam> (e.g. c1_t0001).\nExpected layout:\n{FOLDER_LAYOUT}')
            frames = list_images(tdir)
            if not frames:
                skipped.append(os.path.relpath(tdir, os.path.dirname(subset_dir)))
                continue
            items.append((pid_name, int(m.group(1)), tuple(frames)))
    return items


def _name_order(name: str):
    # a total order: names with equal natural keys ('Alice'/'alice') must not keep set order, which changes with
    # the hash seed and would give a resumed run other labels
    return natural_key(name), name


def _person_ids(root: str, raw: Dict[str, List[Tuple[str, int, tuple]]]) -> Dict[str, int]:
    """ {person folder name: person id}: integers as written, other names fresh ids above them (module docstring). """
    pid_of: Dict[str, int] = {}
    named = set()
    for sub, items in raw.items():
        spelled: Dict[int, str] = {}
        for name in sorted({p for p, _, _ in items}, key=_name_order):
            if _INT_RE.match(name) is None:
                named.add(name)
                continue
            pid = int(name)
            if abs(pid) >= _MAX_PID:
                raise DatasetError(f'{root}: person folder {sub}/{name}: the number is too large for a person id '
                                   f'(at most {_MAX_PID - 1}); rename the folder.')
            if pid < 0 and sub in ('train', 'val'):
                raise DatasetError(
                    f'{root}: person folder {sub}/{name}: a negative id marks distractors, which are not one person '
                    f'and hence not a {"training" if sub == "train" else "validation"} identity; move the folder to '
                    f'query/ or gallery/, or give it a person id.')
            if pid in spelled:  # two folders read as one id would merge two people without a word
                raise DatasetError(
                    f'{root}: {sub}/ has person folders {spelled[pid]!r} and {name!r}, which are the same person id '
                    f'{pid}. Rename one: the tracklets of one person belong in one folder, two people need two ids.')
            spelled[pid] = name
            pid_of[name] = pid
    first = max([0, *pid_of.values()]) + 1
    pid_of.update((n, first + i) for i, n in enumerate(sorted(named, key=_name_order)))
    return pid_of


def _names_of(pid_of: Dict[str, int]) -> Dict[int, str]:
    out: Dict[int, str] = {}
    for name in sorted(pid_of, key=_name_order):
        out.setdefault(pid_of[name], name)
    return out


def load_tracklet_folder(root: str, name: Optional[str] = None) -> VideoReIDDataset:
    """ Load a dataset in the generic tracklet-folder layout (see the module docstring / README).

    Args:
        root: Folder holding `query/`, `gallery/` and optionally `train/` and `val/`.
        name: Dataset name for summaries (default: the folder name).

    Returns:
        The dataset; train ids relabelled to 0..N-1, val, query and gallery ids as described in the module docstring,
        camera ids as written in the tracklet folder names. `extra['pid_names']` maps each id (before the train
        relabelling) to its folder name (the first in name order where subsets spell an integer differently).

    Raises:
        DatasetError: A folder is missing or misnamed, one subset has two folders for one integer id (`7`, `0007`),
            or `train/` or `val/` holds a negative (distractor) folder.
    """
    require_dir(root, 'tracklet folder dataset', FOLDER_LAYOUT)
    for sub in ('query', 'gallery'):
        require_dir(os.path.join(root, sub), 'tracklet folder dataset', FOLDER_LAYOUT)
    skipped: List[str] = []
    raw = {}
    for sub in ('train', 'val', 'query', 'gallery'):
        d = os.path.join(root, sub)
        raw[sub] = _scan(d, skipped) if os.path.isdir(d) else []

    pid_of = _person_ids(root, raw)
    sets = {k: [Tracklet(f, pid_of[p], c) for p, c, f in v] for k, v in raw.items()}
    train, _ = relabel_tracklets(sets['train'])
    if not sets['query'] or not sets['gallery']:
        raise DatasetError(
            f'{root}: no non-empty tracklets in query/ or gallery/.\nExpected layout:\n{FOLDER_LAYOUT}')
    warn_skipped(name or os.path.basename(os.path.normpath(root)), skipped)
    return VideoReIDDataset(
        name=name or os.path.basename(os.path.normpath(root)), train=train, query=sets['query'],
        gallery=sets['gallery'], gallery_mode='gallery/ folder', num_skipped=len(skipped),
        extra={'root': root, 'pid_names': _names_of(pid_of)}, val=sets['val'])

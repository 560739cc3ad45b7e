""" Generic tracklet-folder layout for users' own data.

    <root>/train/<pid>/<tracklet>/<frames>      e.g. train/0007/c1_t003/000001.jpg
    <root>/query/<pid>/<tracklet>/<frames>
    <root>/gallery/<pid>/<tracklet>/<frames>

`<pid>` is the person's folder: an integer (negative ids such as -1 mark distractors, ignored as junk by the
metrics) or any name (names are then mapped to integers, consistently across query and gallery). `<tracklet>` is
a folder whose name starts with the camera: `c<cam>` or `cam<cam>`, optionally followed by `_` or `-` and anything
(`c1`, `c2_t0004`, `cam3-morning`). Frames are the image files inside, ordered by the numbers in their names
(natural order: `f2.jpg` before `f10.jpg`). `train/` may be left out for a test-only set.
"""
import os
import re
from typing import Dict, List, Optional

from .base import DatasetError, Tracklet, VideoReIDDataset, list_images, natural_key, relabel_tracklets, require_dir
from .base import warn_skipped

__all__ = ['load_tracklet_folder', 'FOLDER_LAYOUT']

FOLDER_LAYOUT = """\
  <root>/train/<pid>/<tracklet>/<frames>     e.g. train/0007/c1_t003/000001.jpg   (train/ optional)
  <root>/query/<pid>/<tracklet>/<frames>
  <root>/gallery/<pid>/<tracklet>/<frames>
  <tracklet> starts with c<cam> or cam<cam> (c1, c2_t0004, cam3-morning); frames in natural (numeric) order"""

_TRACKLET_RE = re.compile(r'^c(?:am)?(\d+)(?:[_\-].*)?$', re.IGNORECASE)
_INT_RE = re.compile(r'^-?\d+$')


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


def load_tracklet_folder(root: str, name: Optional[str] = None) -> VideoReIDDataset:
    """ Load a dataset in the generic tracklet-folder layout (see the module docstring / README).

    Args:
        root: Folder holding `query/`, `gallery/` and optionally `train/`.
        name: Dataset name for summaries (default: the folder name).

    Returns:
        The dataset; train ids relabelled to 0..N-1, camera ids as written in the tracklet folder names.
    """
    require_dir(root, 'tracklet folder dataset', FOLDER_LAYOUT)
    for sub in ('query', 'gallery'):
        require_dir(os.path.join(root, sub), 'tracklet folder dataset', FOLDER_LAYOUT)
    skipped: List[str] = []
    raw = {}
    for sub in ('train', 'query', 'gallery'):
        d = os.path.join(root, sub)
        raw[sub] = _scan(d, skipped) if os.path.isdir(d) else []

    names = {p for items in raw.values() for p, _, _ in items}
    if all(_INT_RE.match(n) for n in names):
        pid_of: Dict[str, int] = {n: int(n) for n in names}
    else:
        # names are not numbers: give each a number, the same in every subset so query and gallery still match
        pid_of = {n: i for i, n in enumerate(sorted(names, key=natural_key))}
    sets = {k: [Tracklet(f, pid_of[p], c) for p, c, f in v] for k, v in raw.items()}
    train, _ = relabel_tracklets(sets['train'])
    if not sets['query'] or not sets['gallery']:
        raise DatasetError(
            f'{root}: no non-empty tracklets in query/ or gallery/.\nExpected layout:\n{FOLDER_LAYOUT}')
    warn_skipped(name or os.path.basename(os.path.normpath(root)), skipped)
    return VideoReIDDataset(
        name=name or os.path.basename(os.path.normpath(root)), train=train, query=sets['query'],
        gallery=sets['gallery'], gallery_mode='gallery/ folder', num_skipped=len(skipped),
        extra={'root': root, 'pid_names': {v: k for k, v in pid_of.items()}})

""" PRID-2011 (Hirzer et al., SCIA 2011), multi-shot part, in its published layout.

Protocol (McLaughlin et al. CVPR 2016 and most video ReID papers since, the M3D paper included): only the persons
seen by both cameras with tracklets of more than 21 frames (178 on the real data), split at random into halves of
train and test identities 10 times; camera A tracklets are the queries, camera B tracklets the gallery.
"""
import os
import re
from typing import List, Optional

from .base import DatasetError, VideoReIDDataset, IMG_EXTENSIONS, require_dir
from ._twocam import load_two_camera, scan_camera

__all__ = ['load_prid2011']

PRID_URL = 'https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/prid11'
PRID_LAYOUT = """\
  <root>/prid_2011/multi_shot/cam_a/person_0001/0001.png ...
  <root>/prid_2011/multi_shot/cam_b/person_0001/0001.png ...   (root may also be the prid_2011 folder itself)"""

_PERSON_RE = re.compile(r'^person_(\d+)$')
_FRAME_RE = re.compile(r'^(\d+)(?:' + '|'.join(re.escape(e) for e in IMG_EXTENSIONS) + r')$', re.IGNORECASE)


def _check_frame(name: str, person: str):
    if _FRAME_RE.match(name) is None:
        raise DatasetError(
            f'PRID-2011: cannot parse frame file name {name!r} in {person}/ (expected a frame number, e.g. 0001.png)')


def load_prid2011(
        root: str,
        split_id: int = 0,
        split_file: Optional[str] = None,
        seed: int = 0,
        num_splits: int = 10,
        min_frames: int = 22,
) -> VideoReIDDataset:
    """ Load one of the 10 random train/test splits of PRID-2011.

    The splits are generated once from `seed` and saved as JSON (default `<prid_2011>/splits_prid2011_seed<seed>.json`,
    holding the eligible person folders so that a file made for another copy is rejected); later loads read it.

    Args:
        root: Folder holding `prid_2011/` (or the `prid_2011` folder itself).
        split_id: Which split, 0..num_splits-1.
        split_file: Where to read / write the splits JSON instead of the default.
        seed: Seed for generating the splits (only used when no split file exists).
        num_splits: Number of splits to generate.
        min_frames: A person is used only if both tracklets have at least this many frames (22: "more than 21").
    """
    require_dir(root, 'PRID-2011', PRID_LAYOUT, PRID_URL)
    data_dir = os.path.join(root, 'prid_2011') if os.path.isdir(os.path.join(root, 'prid_2011')) else root
    skipped: List[str] = []
    cams = []
    for cam in ('cam_a', 'cam_b'):
        cam_dir = os.path.join(data_dir, 'multi_shot', cam)
        require_dir(cam_dir, 'PRID-2011', PRID_LAYOUT, PRID_URL)
        cams.append(scan_camera('PRID-2011', cam_dir, _PERSON_RE, _check_frame, skipped))
    return load_two_camera(
        'PRID-2011', data_dir, cams, split_id=split_id, split_file=split_file,
        default_split_file=os.path.join(data_dir, f'splits_prid2011_seed{seed}.json'), seed=seed, num_splits=num_splits,
        min_frames=min_frames, skipped=skipped)

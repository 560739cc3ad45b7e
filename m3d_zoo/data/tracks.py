""" Tracker output: MOTChallenge track files, box filters and the split of tracks into tracklets.

Multi-object trackers (ByteTrack, BoT-SORT, OC-SORT, DeepSORT) and the MOTChallenge ground truth write one box a line:

    frame,id,left,top,width,height,conf,x,y,z

frame and id are 1-based, the box is in pixels, conf is the detection confidence (1 in ground truth) and the last
three are world coordinates (-1 when unknown). Files with only the first six or seven fields are accepted (conf then
defaults to 1), as is MOTChallenge 16/17 ground truth, whose 9th field is the box's visibility.

A track (all boxes of one id) becomes tracklets: its boxes that pass the filters, cut into pieces of at most
`max_len` frames of near-equal length, each at least `min_len` frames long (a shorter track is dropped and counted).
"""
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .base import DatasetError

__all__ = ['TrackFileError', 'Tracks', 'TrackletBoxes', 'read_tracks', 'split_tracks', 'write_tracks']


class TrackFileError(DatasetError):
    """ A track file cannot be read as MOTChallenge text (the message names the file and the line). """


@dataclass
class Tracks:
    """ The boxes of one track file, one row each, sorted by (id, frame).

    Attributes:
        frame: int64 (N,), 1-based frame numbers.
        track_id: int64 (N,), the tracker's ids.
        boxes: float64 (N, 4), left, top, width, height in pixels.
        conf: float64 (N,), detection confidence.
        visibility: float64 (N,), the file's visibility field (MOTChallenge 16/17 ground truth), else 1.
        path: The file read (for messages).
    """
    frame: np.ndarray
    track_id: np.ndarray
    boxes: np.ndarray
    conf: np.ndarray
    visibility: np.ndarray
    path: str = ''

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def last_frame(self) -> int:
        return int(self.frame.max()) if len(self) else 0


@dataclass
class TrackletBoxes:
    """ The boxes of one tracklet: a piece of one track, in frame order.

    Attributes:
        camera: Camera index (the position of its video and track file in the command line, from 0).
        track_id: The tracker's id in that camera.
        frames: int64 (L,), 1-based frame numbers, increasing.
        boxes: float64 (L, 4), left, top, width, height.
    """
    camera: int
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    def __len__(self) -> int:
        return len(self.frames)


def _parse_line(path: str, lineno: int, line: str) -> Tuple[float, ...]:
    fields = line.replace(' ', '').split(',')
    if len(fields) < 6:
        raise TrackFileError(f'{path}, line {lineno}: {line!r} has {len(fields)} fields; a track file has '
                             f'frame,id,left,top,width,height[,conf,x,y,z] on each line (MOTChallenge format).')
    try:
        values = [float(v) for v in fields[:10]]
    except ValueError:
        raise TrackFileError(f'{path}, line {lineno}: {line!r} holds a field that is not a number.') from None
    frame, tid, _, _, w, h = values[:6]
    if not all(math.isfinite(v) for v in values[:6]):
        raise TrackFileError(f'{path}, line {lineno}: {line!r} holds a NaN or infinite value.')
    if frame != int(frame) or frame < 1:
        raise TrackFileError(f'{path}, line {lineno}: frame {fields[0]} is not a 1-based frame number.')
    if tid != int(tid) or tid < 0:
        hint = ' (id -1 marks an untracked detection: run a tracker on a detection file first)' if tid == -1 else ''
        raise TrackFileError(f'{path}, line {lineno}: track id {fields[1]} is not a track id{hint}.')
    if w <= 0 or h <= 0:
        raise TrackFileError(f'{path}, line {lineno}: the box is {fields[4]}x{fields[5]} pixels; width and height '
                             f'must be positive.')
    conf = values[6] if len(values) > 6 else 1.
    visibility = values[8] if len(values) > 8 and 0 <= values[8] <= 1 and values[7] >= 0 else 1.
    return frame, tid, values[2], values[3], w, h, conf, visibility


def read_tracks(path: str) -> Tracks:
    """ Read a MOTChallenge-format track file (see the module docstring).

    Raises:
        TrackFileError: The file is missing, empty, or a line is malformed (named with its number), or a track has
            two boxes in one frame.
    """
    if not os.path.isfile(path):
        raise TrackFileError(f'Track file not found: {path}')
    rows, seen = [], {}
    with open(path, encoding='utf-8', errors='replace') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            row = _parse_line(path, lineno, line)
            key = (int(row[0]), int(row[1]))
            if key in seen:
                raise TrackFileError(f'{path}, lines {seen[key]} and {lineno}: track {key[1]} has two boxes in '
                                     f'frame {key[0]}; a track holds one box per frame.')
            seen[key] = lineno
            rows.append(row)
    if not rows:
        raise TrackFileError(f'{path} holds no boxes: is it the tracker\'s output (frame,id,left,top,width,height,'
                             f'...)?')
    a = np.asarray(rows, dtype=np.float64)
    order = np.lexsort((a[:, 0], a[:, 1]))
    a = a[order]
    return Tracks(frame=a[:, 0].astype(np.int64), track_id=a[:, 1].astype(np.int64), boxes=a[:, 2:6],
                  conf=a[:, 6], visibility=a[:, 7], path=path)


def inside_fraction(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """ The fraction of each box's area that lies inside a width x height frame. """
    x0, y0 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return (x1 - x0) * (y1 - y0) / (boxes[:, 2] * boxes[:, 3])


@dataclass
class SplitStats:
    """ What `split_tracks` kept and why it dropped the rest (counts). """
    boxes: int = 0
    kept_boxes: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    tracklets: int = 0
    short_tracks: int = 0

    def skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)


def _pieces(n: int, max_len: int) -> List[Tuple[int, int]]:
    """ [start, end) of ceil(n / max_len) near-equal pieces of n items. """
    k = -(-n // max_len)
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def split_tracks(
        tracks: Tracks,
        camera: int = 0,
        frame_size: Optional[Tuple[int, int]] = None,
        min_len: int = 8,
        max_len: int = 64,
        min_height: float = 0.,
        min_conf: float = -math.inf,
        min_visibility: float = 0.,
) -> Tuple[List[TrackletBoxes], SplitStats]:
    """ Filter boxes and cut each track into tracklets.

    Args:
        tracks: The file's boxes (`read_tracks`).
        camera: Camera index recorded in each tracklet.
        frame_size: (width, height) of the video, for the in-frame filter; None skips it.
        min_len: Fewest frames a tracklet may have; shorter tracks are dropped.
        max_len: Most frames a tracklet may have; longer tracks are cut into near-equal pieces.
        min_height: Boxes lower than this (pixels) are dropped.
        min_conf: Boxes with a lower confidence are dropped.
        min_visibility: Boxes with less than this fraction visible are dropped: the fraction inside the frame, times
            the file's visibility field where it has one.

    Returns:
        Tracklets in (track id, first frame) order, and the counts of what was kept and dropped.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f'need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}.')
    stats = SplitStats(boxes=len(tracks))
    keep = np.ones(len(tracks), dtype=bool)
    visible = tracks.visibility.copy()
    if frame_size is not None:
        inside = inside_fraction(tracks.boxes, *frame_size)
        outside = inside <= 0
        stats.skip('outside the frame', outside.sum())
        keep &= ~outside
        visible *= inside
    for reason, bad in (('lower than min_height', tracks.boxes[:, 3] < min_height),
                        ('confidence below min_conf', tracks.conf < min_conf),
                        ('visibility below min_visibility', visible < min_visibility)):
        stats.skip(reason, (bad & keep).sum())
        keep &= ~bad
    stats.kept_boxes = int(keep.sum())
    out = []
    ids = tracks.track_id[keep]
    frames, boxes = tracks.frame[keep], tracks.boxes[keep]
    for tid in np.unique(tracks.track_id):
        sel = ids == tid
        stats.tracks += 1
        n = int(sel.sum())
        if n < min_len:
            stats.short_tracks += 1
            continue
        f, b = frames[sel], boxes[sel]
        for s, e in _pieces(n, max_len):
            out.append(TrackletBoxes(camera, int(tid), f[s:e], b[s:e]))
    stats.tracklets = len(out)
    return out, stats


def write_tracks(path: str, tracks: Tracks, track_id: np.ndarray) -> None:
    """ Write `tracks` in MOTChallenge format with new ids (e.g. global identities), atomically. """
    from .._io import atomic_write_text
    order = np.lexsort((track_id, tracks.frame))
    lines = []
    for i in order:
        x, y, w, h = tracks.boxes[i]
        lines.append(f'{tracks.frame[i]},{track_id[i]},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{tracks.conf[i]:g},-1,-1,-1')
    atomic_write_text(path, '\n'.join(lines) + '\n')

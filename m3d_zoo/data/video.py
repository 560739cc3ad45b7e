""" Video + track file -> tracklets of person crops: decoded once, streamed, optionally cached as folders.

    from m3d_zoo.data import read_tracks, split_tracks, probe_video, stream_tracklets
    info = probe_video('cam1.mp4')
    pieces, stats = split_tracks(read_tracks('cam1.txt'), camera=0, frame_size=(info.width, info.height))
    for t in stream_tracklets('cam1.mp4', pieces):   # a VideoTracklet as soon as its last frame is decoded
        t.crops                                     # uint8 (L, 256, 128, 3)

Decoding is PyAV's (FFmpeg bundled in its wheel). The video is read once, front to back; a tracklet's crops are held
only from its first frame to its last, so memory is bounded by the tracklets in flight, not the video's length.

Crops are the box clipped to the frame and resized to the model's input, stretched as the published datasets' crops
were made (MARS, PRID-2011 and iLIDS-VID person boxes resized to 256x128), or `mode='pad'`: scaled to fit and
centred on black, keeping the person's aspect ratio.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .base import DatasetError, Tracklet, list_images
from .clip_dataset import EvalClipDataset
from .tracks import TrackFileError, TrackletBoxes, Tracks, inside_fraction

__all__ = ['VideoError', 'VideoInfo', 'VideoTracklet', 'probe_video', 'iter_frames', 'crop_box', 'CROP_MODES',
           'check_tracks_fit_video', 'stream_tracklets', 'CropClipDataset', 'write_crop_cache', 'read_crop_cache']

CROP_MODES = ('stretch', 'pad')
_CACHE_MANIFEST = 'crops.json'
_DECODE_HELP = 'Check that it is a video file; FFmpeg can re-encode it: ffmpeg -i in.avi -c:v libx264 out.mp4'


class VideoError(DatasetError):
    """ A video cannot be opened or decoded, or does not match its track file (the message says which). """


@dataclass(frozen=True)
class VideoInfo:
    """ A video's path, frame count (0 where the container does not say), frame size and frame rate. """
    path: str
    num_frames: int
    width: int
    height: int
    fps: float


@dataclass
class VideoTracklet(TrackletBoxes):
    """ A tracklet cut from a video: its boxes (see `TrackletBoxes`) and their crops in frame order.

    Attributes:
        crops: uint8 (L, H, W, 3) RGB crops.
    """
    crops: np.ndarray

    @property
    def name(self) -> str:
        return f'c{self.camera}_t{self.track_id}_f{self.first_frame}-{self.last_frame}'

    def as_tracklet(self) -> Tracklet:
        """ The dataset view (person id unknown: -1), with one name per frame in place of a path. """
        return Tracklet(tuple(f'{self.name}/{f:06d}' for f in self.frames), -1, self.camera)


def _open(path: str):
    import av  # imported here: only video input needs PyAV
    if not os.path.isfile(path):
        raise VideoError(f'Video file not found: {path}')
    try:
        return av.open(path)
    except av.FFmpegError as e:
        raise VideoError(f'Cannot open {path} as a video ({e}). {_DECODE_HELP}') from e


def probe_video(path: str) -> VideoInfo:
    """ Frame count, size and rate from the container's header (nothing is decoded). """
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f'{path} holds no video stream. {_DECODE_HELP}')
        s = container.streams.video[0]
        return VideoInfo(path, int(s.frames or 0), int(s.codec_context.width), int(s.codec_context.height),
                         float(s.average_rate or 0))


def iter_frames(path: str) -> Iterator[Tuple[int, Image.Image]]:
    """ (1-based frame number, RGB frame) of every frame, in order. """
    import av
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'  # frame- and slice-threaded decoding where the codec allows it
        n = 0
        try:
            for frame in container.decode(stream):
                n += 1
                yield n, frame.to_image()
        except av.FFmpegError as e:
            raise VideoError(f'{path}: decoding failed after {n} frames ({e}). {_DECODE_HELP}') from e
        if n == 0:
            raise VideoError(f'{path}: no frame could be decoded. {_DECODE_HELP}')


def crop_box(frame: Image.Image, box: Sequence[float], size: Tuple[int, int] = (256, 128),
             mode: str = 'stretch') -> np.ndarray:
    """ The box (left, top, width, height) clipped to the frame, resized to size (H, W); uint8 (H, W, 3).

    Raises:
        ValueError: The box lies entirely outside the frame, or `mode` is unknown.
    """
    if mode not in CROP_MODES:
        raise ValueError(f'crop mode must be one of {CROP_MODES}, got {mode!r}')
    fw, fh = frame.size
    x0, y0 = max(0., box[0]), max(0., box[1])
    x1, y1 = min(float(fw), box[0] + box[2]), min(float(fh), box[1] + box[3])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'box {tuple(box)} lies outside the {fw}x{fh} frame')
    h, w = size
    if mode == 'stretch':
        return np.asarray(frame.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1)))
    scale = min(w / (x1 - x0), h / (y1 - y0))
    rw, rh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    canvas = Image.new('RGB', (w, h))
    shrunk = frame.resize((rw, rh), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1))
    canvas.paste(shrunk, ((w - rw) // 2, (h - rh) // 2))
    return np.asarray(canvas)


def check_tracks_fit_video(tracks: Tracks, info: VideoInfo) -> None:
    """ Refuse a track file that belongs to another video: frames past the video's end, or a frame size that most
    boxes fall outside of.
    """
    if info.num_frames and tracks.last_frame > info.num_frames:
        n_past = int((tracks.frame > info.num_frames).sum())
        raise TrackFileError(
            f'{tracks.path} has boxes up to frame {tracks.last_frame} ({n_past} boxes past the end), but '
            f'{info.path} has {info.num_frames} frames: does the track file belong to this video?')
    outside = inside_fraction(tracks.boxes, info.width, info.height) <= 0
    if outside.mean() > 0.5:
        raise TrackFileError(
            f'{int(outside.sum())} of the {len(tracks)} boxes in {tracks.path} lie outside the {info.width}x'
            f'{info.height} frames of {info.path}: the track file was made for another video or frame size.')


def stream_tracklets(
        video: str,
        tracklets: Sequence[TrackletBoxes],
        size: Tuple[int, int] = (256, 128),
        mode: str = 'stretch',
) -> Iterator[VideoTracklet]:
    """ Decode `video` once and yield each tracklet with its crops as soon as its last frame has been decoded.

    Raises:
        VideoError: The video cannot be decoded, or ends before the tracklets' last frame.
    """
    if mode not in CROP_MODES:
        raise ValueError(f'crop mode must be one of {CROP_MODES}, got {mode!r}')
    wanted: Dict[int, List[Tuple[int, int]]] = {}  # frame -> [(tracklet index, position in it)]
    for ti, t in enumerate(tracklets):
        for pos, f in enumerate(t.frames):
            wanted.setdefault(int(f), []).append((ti, pos))
    if not wanted:
        return
    last_needed = max(wanted)
    buffers: Dict[int, np.ndarray] = {}
    frame_no = 0
    for frame_no, frame in iter_frames(video):
        for ti, pos in wanted.get(frame_no, ()):
            t = tracklets[ti]
            if ti not in buffers:
                buffers[ti] = np.empty((len(t), *size, 3), dtype=np.uint8)
            buffers[ti][pos] = crop_box(frame, t.boxes[pos], size, mode)
            if pos == len(t) - 1:
                yield VideoTracklet(t.camera, t.track_id, t.frames, t.boxes, buffers.pop(ti))
        if frame_no >= last_needed:
            return
    raise VideoError(f'{video} ends at frame {frame_no}, but its track file has boxes up to frame {last_needed}: '
                     f'does the track file belong to this video?')


class CropClipDataset(EvalClipDataset):
    """ The test clips (as `EvalClipDataset`) of tracklets held in memory as crops. """

    def __init__(self, tracklets: Sequence[VideoTracklet], num_frames: int = 8, transform=None,
                 max_clips: Optional[int] = None):
        super().__init__([t.as_tracklet() for t in tracklets], num_frames, transform, max_clips)
        self.crops = [t.crops for t in tracklets]

    def __getitem__(self, index: int):
        ti, idxs = self.items[index]
        return self.transform([Image.fromarray(self.crops[ti][i]) for i in idxs]), ti


def write_crop_cache(folder: str, key: Dict[str, Any], tracklets: Iterable[VideoTracklet]) -> Iterator[VideoTracklet]:
    """ Pass `tracklets` through while writing them under `folder` as tracklet folders (lossless PNG):

        <folder>/<track id>/c<camera>_t<track id>_f<first>-<last>/<frame>.png

    The manifest (`crops.json`: `key` and each tracklet's frames and boxes) is written last, so a cache that a crash
    cut short is never read as complete. The person folder is the track id, the layout's `<pid>/c<cam>...`, so
    `m3d-zoo extract --tracklets <folder>` reads the crops as tracklets.
    """
    from .._io import atomic_write_text
    entries = []
    for t in tracklets:
        out = Path(folder) / str(t.track_id) / t.name
        out.mkdir(parents=True, exist_ok=True)
        for f, crop in zip(t.frames, t.crops):
            Image.fromarray(crop).save(out / f'{int(f):06d}.png', compress_level=1)
        entries.append({'camera': t.camera, 'track_id': t.track_id, 'folder': str(out.relative_to(folder)),
                        'frames': t.frames.tolist(), 'boxes': np.round(t.boxes, 3).tolist()})
        yield t
    atomic_write_text(Path(folder) / _CACHE_MANIFEST, json.dumps({'key': key, 'tracklets': entries}) + '\n')


def read_crop_cache(folder: str, key: Dict[str, Any]) -> Optional[List[VideoTracklet]]:
    """ The cached tracklets if `folder` holds a complete cache made with the same `key`, else None. """
    path = Path(folder) / _CACHE_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    if manifest.get('key') != json.loads(json.dumps(key)):
        return None
    out = []
    for e in manifest['tracklets']:
        files = list_images(str(Path(folder) / e['folder']))
        if len(files) != len(e['frames']):
            return None
        crops = np.stack([np.asarray(Image.open(p).convert('RGB')) for p in files])
        out.append(VideoTracklet(e['camera'], e['track_id'], np.asarray(e['frames'], dtype=np.int64),
                                 np.asarray(e['boxes'], dtype=np.float64), crops))
    return out

""" Clip sampling and DataLoader-ready datasets over tracklets.

Training (`ClipDataset`): each access draws one clip of T frames from a tracklet, either T consecutive frames from
a random start (the paper: "we sample T adjacent frames from each video sequence") or one random frame in each of
T equal segments (TSN-style, covering the whole tracklet). Test (`EvalClipDataset`): the paper's protocol, every
tracklet of length L gives floor(L/T) consecutive, non-overlapping clips (a tracklet shorter than T is looped to
T frames); `m3d_zoo.engine.extract_embeddings` averages the clip embeddings of each tracklet.
"""
import random
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Dataset

from .base import Tracklet, check_decoder, read_frame
from .transforms import create_video_transform

__all__ = [
    'sample_train_indices', 'eval_clip_indices', 'ClipDataset', 'EvalClipDataset', 'tracklet_labels',
    'CLIP_SAMPLING_MODES',
]

CLIP_SAMPLING_MODES = ('consecutive', 'segments')


def _is_count(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def _check_num_frames(num_frames) -> int:
    """ Raise a `ValueError` that says what to pass unless `num_frames` is an integer >= 1; return it. """
    if not _is_count(num_frames):
        raise ValueError(f'num_frames (the clip length T) must be an integer >= 1, got {num_frames!r}; e.g. '
                         f'num_frames=8, the paper\'s clip length, or the num_frames the model was built for.')
    return int(num_frames)


def _check_max_clips(max_clips) -> Optional[int]:
    if max_clips is not None and not _is_count(max_clips):
        raise ValueError(f'max_clips must be None (all clips) or an integer >= 1, got {max_clips!r}')
    return max_clips


def _loop(length: int, num_frames: int) -> List[int]:
    return [i % length for i in range(num_frames)]


def sample_train_indices(
        length: int,
        num_frames: int,
        mode: str = 'consecutive',
        rng: Optional[random.Random] = None,
) -> List[int]:
    """ Frame indices of one training clip.

    Args:
        length: Number of frames in the tracklet.
        num_frames: Clip length T.
        mode: 'consecutive' (T adjacent frames, random start) or 'segments' (one random frame in each of T
            equal segments; indices stay in temporal order, repeating frames when L < T).
        rng: Random generator (default: the `random` module, which DataLoader seeds per worker).

    Raises:
        ValueError: `num_frames` is not an integer >= 1, the tracklet is empty, or `mode` is unknown.
    """
    _check_num_frames(num_frames)
    if length < 1:
        raise ValueError('cannot sample a clip from an empty tracklet')
    rng = rng or random
    if mode == 'consecutive':
        if length < num_frames:
            return _loop(length, num_frames)
        start = rng.randint(0, length - num_frames)
        return list(range(start, start + num_frames))
    if mode == 'segments':
        out = []
        for i in range(num_frames):
            lo = (i * length) // num_frames
            hi = max(lo + 1, ((i + 1) * length) // num_frames)
            out.append(rng.randrange(lo, hi))
        return out
    raise ValueError(f'mode must be one of {CLIP_SAMPLING_MODES}, got {mode!r}')


def eval_clip_indices(length: int, num_frames: int, max_clips: Optional[int] = None) -> List[List[int]]:
    """ Frame indices of all test clips of a tracklet: floor(L/T) consecutive clips, or one looped clip if L < T.

    Args:
        length: Number of frames in the tracklet.
        num_frames: Clip length T.
        max_clips: Keep at most this many clips, evenly spread over the tracklet (None: all, the paper's protocol).

    Raises:
        ValueError: `num_frames` or `max_clips` is not an integer >= 1, or the tracklet is empty.
    """
    _check_num_frames(num_frames)
    _check_max_clips(max_clips)
    if length < 1:
        raise ValueError('cannot sample clips from an empty tracklet')
    if length < num_frames:
        return [_loop(length, num_frames)]
    n = length // num_frames
    starts = [i * num_frames for i in range(n)]
    if max_clips is not None and n > max_clips:
        starts = [starts[int(j)] for j in np.linspace(0, n - 1, max_clips).round()]
    return [list(range(s, s + num_frames)) for s in starts]


def tracklet_labels(tracklets: Sequence[Tracklet]) -> Tuple[np.ndarray, np.ndarray]:
    """ (pids, camids) arrays of `tracklets`, in order, for `m3d_zoo.eval.evaluate_rank`. """
    return (np.array([t.pid for t in tracklets], dtype=np.int64),
            np.array([t.camid for t in tracklets], dtype=np.int64))


def _load_clip(tracklet: Tracklet, idxs: Sequence[int], transform: Callable, decoder: str):
    size = getattr(transform, 'size', None)  # the output (H, W) of the zoo's transforms, for 'pil-draft'
    return transform([read_frame(tracklet.paths[i], decoder, size) for i in idxs])


class ClipDataset(Dataset):
    """ Training dataset: item i is one random clip of tracklet i, as (clip (3, T, H, W), pid, camid).

    Args:
        tracklets: e.g. `dataset.train` (pids already relabelled to 0..N-1).
        num_frames: Clip length T.
        sampling: 'consecutive' (paper) or 'segments'.
        transform: Clip transform (list of frames -> tensor); default: eval transform at 256x128.
        decoder: How frames are decoded, one of `m3d_zoo.data.FRAME_DECODERS` (see `read_frame`).
    """

    def __init__(
            self,
            tracklets: Sequence[Tracklet],
            num_frames: int = 8,
            sampling: str = 'consecutive',
            transform: Optional[Callable] = None,
            decoder: str = 'torchvision',
    ):
        if sampling not in CLIP_SAMPLING_MODES:
            raise ValueError(f'sampling must be one of {CLIP_SAMPLING_MODES}, got {sampling!r}')
        self.tracklets = list(tracklets)
        self.num_frames = _check_num_frames(num_frames)
        self.sampling = sampling
        self.transform = transform or create_video_transform()
        self.decoder = check_decoder(decoder)

    @property
    def pids(self) -> List[int]:
        return [t.pid for t in self.tracklets]

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int):
        t = self.tracklets[index]
        idxs = sample_train_indices(len(t.paths), self.num_frames, self.sampling)
        return _load_clip(t, idxs, self.transform, self.decoder), t.pid, t.camid


class EvalClipDataset(Dataset):
    """ Test dataset: every clip of every tracklet, as (clip (3, T, H, W), tracklet index).

    Clips of one tracklet are contiguous items, in temporal order. `m3d_zoo.engine.extract_embeddings` averages them
    back into one embedding per tracklet.

    Args:
        tracklets: e.g. `dataset.query` or `dataset.gallery`.
        num_frames: Clip length T.
        transform: Clip transform; default: eval transform at 256x128.
        max_clips: Cap on clips per tracklet (None: all floor(L/T), the paper's protocol).
        decoder: How frames are decoded, one of `m3d_zoo.data.FRAME_DECODERS` (see `read_frame`).
    """

    def __init__(
            self,
            tracklets: Sequence[Tracklet],
            num_frames: int = 8,
            transform: Optional[Callable] = None,
            max_clips: Optional[int] = None,
            decoder: str = 'torchvision',
    ):
        self.tracklets = list(tracklets)
        self.num_frames = _check_num_frames(num_frames)
        _check_max_clips(max_clips)
        self.transform = transform or create_video_transform()
        self.decoder = check_decoder(decoder)
        self.items: List[Tuple[int, List[int]]] = [
            (ti, idxs) for ti, t in enumerate(self.tracklets)
            for idxs in eval_clip_indices(len(t.paths), num_frames, max_clips)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        ti, idxs = self.items[index]
        return _load_clip(self.tracklets[ti], idxs, self.transform, self.decoder), ti


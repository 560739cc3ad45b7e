""" Video ReID dataset base: tracklets, the dataset container, image reading and layout errors.

A dataset is three lists of `Tracklet` (train, query, gallery). Train person ids are relabelled to 0..N-1 so they
can index a classifier; query and gallery keep the dataset's own ids (MARS: -1 distractors, 0 junk) because the
metrics only compare them for equality. Camera ids are 0-based for the published datasets.
"""
import functools
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from PIL import Image

__all__ = [
    'Tracklet', 'VideoReIDDataset', 'DatasetError', 'read_image', 'read_frame', 'natural_key', 'list_images',
    'IMG_EXTENSIONS', 'FRAME_DECODERS', 'verify_images', 'relabel_tracklets',
]

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')

_DIGITS = re.compile(r'(\d+)')


class DatasetError(ValueError):
    """ A dataset on disk does not match the layout a loader expects (missing folder, bad name, corrupt file). """


class Tracklet(NamedTuple):
    """ One tracklet: frame paths in temporal order, person id and camera id. """
    paths: Tuple[str, ...]
    pid: int
    camid: int

    @property
    def num_frames(self) -> int:
        return len(self.paths)


def natural_key(s: str):
    """ Sort key that orders embedded numbers numerically ('f2' < 'f10'), so frames keep their temporal order. """
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(s)]


def list_images(folder: str) -> List[str]:
    """ Image files directly inside `folder`, in natural (numeric) order. Hidden files are ignored. """
    names = [n for n in os.listdir(folder) if not n.startswith('.') and n.lower().endswith(IMG_EXTENSIONS)]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def read_image(path: str, draft_size: Optional[Tuple[int, int]] = None) -> Image.Image:
    """ Read an RGB image; a missing or corrupt file raises `DatasetError` naming it.

    Args:
        path: Image file.
        draft_size: (H, W): decode a JPEG at the smallest of its 1/1, 1/2, 1/4, 1/8 scales that is at least this
            large (PIL's draft mode; other formats ignore it).
    """
    try:
        with Image.open(path) as img:
            if draft_size is not None:
                img.draft('RGB', (draft_size[1], draft_size[0]))
            img.load()  # decode now: a truncated file fails here, not later inside a transform
            return img.convert('RGB')
    except FileNotFoundError:
        raise DatasetError(f'Image file not found: {path}') from None
    except Exception as e:  # PIL raises several unrelated types for broken files
        raise DatasetError(f'Cannot read image file {path}: {type(e).__name__}: {e}') from e


# How clip frames are decoded (benchmarks/train_speed.py measures them; benchmarks/RESULTS.md has the figures):
# 'torchvision': torchvision.io (libjpeg-turbo straight into a uint8 tensor, the same pixels as PIL's);
# 'pil': PIL, then a tensor; 'pil-draft': PIL asked to decode a large JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling)
# where the clip's output size is that much smaller: faster, but not the same pixels as a full decode and resize.
FRAME_DECODERS = ('torchvision', 'pil', 'pil-draft')
_TORCHVISION_FORMATS = ('.jpg', '.jpeg', '.png')
# torchvision 0.29 deprecated its image decoders in favour of TorchCodec's, and warns on every call: a user can do
# nothing about it. Where a release drops them, 'torchvision' falls back to PIL (`_torchvision_decoder`).
warnings.filterwarnings('ignore', message='The image decoding and encoding capabilities of TorchVision are deprecated',
                        category=DeprecationWarning)


@functools.lru_cache(maxsize=None)
def _torchvision_decoder():
    """torchvision.io's (decode_image, read_file, RGB mode), or None where the installed release has none."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:
        return None
    return decode_image, read_file, ImageReadMode.RGB


def check_decoder(decoder: str) -> str:
    """`decoder` if it is one of `FRAME_DECODERS`; ValueError naming them otherwise."""
    if decoder not in FRAME_DECODERS:
        raise ValueError(f'decoder must be one of {FRAME_DECODERS}, got {decoder!r}.')
    return decoder


def read_frame(path: str, decoder: str = 'torchvision', size: Optional[Tuple[int, int]] = None):
    """ A frame for the clip transforms: a uint8 (3, H, W) tensor ('torchvision') or an RGB PIL image ('pil',
    'pil-draft'); a missing or corrupt file raises `DatasetError` naming it.

    Args:
        path: Image file.
        decoder: One of `FRAME_DECODERS`. Formats torchvision does not decode (BMP, TIFF, ...) go through PIL.
        size: (H, W) the frame will be resized to; 'pil-draft' decodes a JPEG at the smallest scale that is not
            smaller than it.
    """
    tv = _torchvision_decoder() if check_decoder(decoder) == 'torchvision' else None
    if tv is None or not path.lower().endswith(_TORCHVISION_FORMATS):
        return read_image(path, size if decoder == 'pil-draft' else None)
    decode_image, read_file, rgb = tv
    try:
        return decode_image(read_file(path), mode=rgb)
    except RuntimeError as e:
        if not os.path.isfile(path):
            raise DatasetError(f'Image file not found: {path}') from None
        raise DatasetError(f'Cannot read image file {path}: {str(e).splitlines()[0]}') from e


def verify_images(tracklets: Iterable[Tracklet]) -> int:
    """ Open every frame of `tracklets` (slow on a full dataset); raises `DatasetError` on the first bad file.

    Returns:
        Number of frames checked.
    """
    n = 0
    for t in tracklets:
        for p in t.paths:
            read_image(p)
            n += 1
    return n


def relabel_tracklets(tracklets: Sequence[Tracklet]) -> Tuple[List[Tracklet], Dict[int, int]]:
    """ Map the person ids of `tracklets` to 0..N-1 in sorted id order. """
    pid2label = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [t._replace(pid=pid2label[t.pid]) for t in tracklets], pid2label


def warn_skipped(name: str, skipped: List[str], what: str = 'empty tracklets'):
    if skipped:
        shown = ', '.join(skipped[:5]) + (', ...' if len(skipped) > 5 else '')
        warnings.warn(f'{name}: skipped {len(skipped)} {what} ({shown})', stacklevel=3)


def _require(exists: bool, what: str, path: str, dataset: str, layout: str, url: Optional[str]):
    if not exists:
        msg = f'{dataset}: {what} not found: {path}\nExpected layout:\n{layout}'
        if url:
            msg += f'\nThe dataset is published at {url}'
        raise DatasetError(msg)


def require_dir(path: str, dataset: str, layout: str, url: Optional[str] = None):
    """ Raise a `DatasetError` that shows the expected layout if `path` is not a folder. """
    _require(os.path.isdir(path), 'folder', path, dataset, layout, url)


def require_file(path: str, dataset: str, layout: str, url: Optional[str] = None):
    """ Raise a `DatasetError` that shows the expected layout if `path` is not a file. """
    _require(os.path.isfile(path), 'file', path, dataset, layout, url)


@dataclass
class VideoReIDDataset:
    """ Train, query and gallery tracklets of one dataset (one split for PRID-2011 / iLIDS-VID).

    Attributes:
        name: Dataset name.
        train: Training tracklets, person ids relabelled to 0..num_train_pids-1.
        query: Query tracklets with the dataset's own person ids.
        gallery: Gallery tracklets with the dataset's own person ids.
        gallery_mode: How the gallery was built, printed with every result (e.g. 'test minus query (torchreid)').
        split_id: Index of the random split used (PRID-2011, iLIDS-VID), else None.
        num_skipped: Number of empty tracklets skipped while loading.
        extra: Loader-specific information (e.g. the folder layout's `pid_names`).
        val: Validation tracklets: identities outside `train`, with their own ids, for choosing the best epoch
            without looking at the test split (`m3d_zoo.data.validation_dataset` splits them into query and
            gallery). Empty for the published datasets, whose protocols have no validation split.
    """
    name: str
    train: List[Tracklet]
    query: List[Tracklet]
    gallery: List[Tracklet]
    gallery_mode: str = 'separate query and gallery'
    split_id: Optional[int] = None
    num_skipped: int = 0
    extra: Dict = field(default_factory=dict)
    val: List[Tracklet] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({t.camid for t in self.train})

    @staticmethod
    def _stats(tracklets: Sequence[Tracklet]) -> Tuple[int, int, int]:
        return len({t.pid for t in tracklets}), len(tracklets), sum(len(t.paths) for t in tracklets)

    def stats(self) -> Dict[str, Tuple[int, int, int]]:
        """ (identities, tracklets, frames) for each subset (`val` only when there is one). """
        subsets = ('train', 'val', 'query', 'gallery') if self.val else ('train', 'query', 'gallery')
        return {k: self._stats(getattr(self, k)) for k in subsets}

    def summary(self) -> str:
        lines = [f'{self.name}' + (f' (split {self.split_id})' if self.split_id is not None else '')]
        lines.append(f'  {"subset":8s} | {"# ids":>6s} | {"# tracklets":>11s} | {"# frames":>9s}')
        for k, (i, t, f) in self.stats().items():
            lines.append(f'  {k:8s} | {i:6d} | {t:11d} | {f:9d}')
        lines.append(f'  gallery: {self.gallery_mode}')
        if self.num_skipped:
            lines.append(f'  skipped empty tracklets: {self.num_skipped}')
        return '\n'.join(lines)

    def __repr__(self) -> str:
        return self.summary()

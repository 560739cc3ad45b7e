""" Feature extraction and evaluation: models from any source, tracklet embeddings (the mean of their clips'),
embeddings files, ReID metrics.

An embeddings file is safetensors with the tensors

    embeddings   float32 (N, D), one row per tracklet (the mean of its clip embeddings, the paper's protocol)
    pids         int64 (N,), person ids (-1 where unknown)
    camids       int64 (N,), camera ids (-1 where unknown)
    split        int64 (N,), 0 = query, 1 = gallery, 2 = train, -1 = none (plain tracklet folders)

and string metadata: model, dataset, num_frames, input_size, gallery_mode, splits (the split codes, JSON) and
tracklets (JSON list of each tracklet's folder), so a file can be evaluated or inspected without the data.

Embeddings of tracklets cut from videos (`extract_videos`, `m3d-zoo extract --video V --tracks T`) also hold

    track_ids     int64 (N,), the tracker's id of each tracklet's track (camids: the camera's index)
    first_frames  int64 (N,), the tracklet's first frame (1-based)
    last_frames   int64 (N,), its last frame
    thumbnails    uint8 (N, 128, 64, 3), the tracklet's middle crop, for pictures

and the metadata `cameras` (JSON list of each camera's name, video and track file).
"""
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from m3d_zoo.data import EvalClipDataset, Tracklet, VideoReIDDataset, create_video_transform, tracklet_labels
from m3d_zoo.data.base import DatasetError, list_images, natural_key, read_image
from m3d_zoo.data.tracks import read_tracks, split_tracks
from m3d_zoo.data.video import (
    CropClipDataset, VideoTracklet, check_tracks_fit_video, probe_video, read_crop_cache, stream_tracklets,
    write_crop_cache)
from m3d_zoo.eval import evaluate_embeddings

from .._io import SafetensorsReadError, file_sha256, read_safetensors, write_safetensors
from .checkpoint import model_from_checkpoint

__all__ = [
    'EmbeddingsError', 'SPLIT_CODES', 'load_inference_model', 'extract_embeddings', 'embed_tracklets',
    'extract_dataset', 'find_tracklet_folders', 'save_embeddings', 'load_embeddings', 'evaluate_dataset',
    'evaluate_embeddings_file', 'results_to_json', 'query_gallery', 'dataset_query_gallery', 'evaluate_query_gallery',
    'QueryGallery', 'extract_videos', 'VideoSource', 'CropOptions', 'THUMBNAIL_SIZE',
]

_logger = logging.getLogger(__name__)

SPLIT_CODES = {'query': 0, 'gallery': 1, 'train': 2, 'none': -1}
THUMBNAIL_SIZE = (128, 64)  # (H, W) of the per-tracklet crop kept for pictures


class EmbeddingsError(ValueError):
    """An embeddings file is missing, unreadable, or cannot be evaluated as given (the message says why)."""


def load_inference_model(
        spec: str,
        pretrained: bool = False,
        pretrained_file: Optional[str] = None,
        device: Union[str, torch.device] = 'cpu',
        **kwargs: Any,
) -> nn.Module:
    """An embedding model (num_classes=0, eval mode) from a name, a Hub repo, a folder or a training checkpoint.

    Args:
        spec: A registered name ('m3d_resnet50'), 'hf-hub:ORG/NAME[@REV]', 'local-dir:PATH', a folder written by
            `save_pretrained`, or a checkpoint written by `m3d-zoo train` (a .safetensors file or its output folder);
            told apart by `m3d_zoo.models.classify_model_spec`.
        pretrained: For registered names: inflate the ImageNet ResNet (an untrained ReID head otherwise).
        pretrained_file: For registered names: a local 2D ResNet file to inflate.
        device: Where to put the model.
        **kwargs: Model arguments (e.g. num_frames for a registered name).
    """
    from m3d_zoo.models import classify_model_spec, create_model
    what = classify_model_spec(spec)
    if what.saved:
        model = create_model(what.name, pretrained=True, num_classes=0, **kwargs)
    elif what.kind == 'checkpoint':
        model = model_from_checkpoint(what.name, num_classes=0, **kwargs)
    else:
        model = create_model(spec, pretrained=pretrained, pretrained_file=pretrained_file, num_classes=0, **kwargs)
        if not (pretrained or pretrained_file):
            _logger.warning(f'{spec}: randomly initialised (no --pretrained, no checkpoint): its embeddings are not '
                            f'trained for re-identification.')
    return model.to(device).eval()


def _model_frames(model: nn.Module, num_frames: Optional[int]) -> int:
    """The clip length: asked for, else the one the model was trained at (its pretrained_cfg's, recorded by a
    checkpoint), else the one it was built for."""
    trained = (getattr(model, 'pretrained_cfg', None) or {}).get('num_frames')
    return int(num_frames or trained or getattr(model, 'num_frames', 8))


@torch.no_grad()
def extract_embeddings(
        model: Callable[[torch.Tensor], torch.Tensor],
        dataset: EvalClipDataset,
        batch_size: int = 16,
        num_workers: int = 0,
        device: Optional[torch.device] = None,
        amp_dtype: Optional[torch.dtype] = None,
        pin_memory: bool = False,
        progress: bool = False,
        desc: str = 'clips embedded',
) -> torch.Tensor:
    """ One embedding per tracklet: the mean of its clip embeddings.

    Args:
        model: Callable mapping a batch (B, 3, T, H, W) to embeddings (B, D); an `nn.Module` is put in eval mode
            for the call and restored afterwards.
        dataset: An `m3d_zoo.data.EvalClipDataset`.
        batch_size: Clips per forward pass.
        num_workers: DataLoader workers.
        device: Where to run the model (default: the model's parameters' device, else CPU).
        amp_dtype: Autocast dtype (e.g. torch.bfloat16), None for full precision.
        pin_memory: Pin host memory of the batches.
        progress: Show a progress bar (tqdm, on stderr) of the clips embedded.
        desc: The progress bar's label.

    Returns:
        Float32 CPU tensor (num_tracklets, D), rows in the order of `dataset.tracklets`.
    """
    from tqdm import tqdm
    if device is None:
        param = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        device = param.device if param is not None else torch.device('cpu')
    device = torch.device(device)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory)
    n = len(dataset.tracklets)
    sums = None
    counts = torch.zeros(n, dtype=torch.float64)
    bar = tqdm(total=len(dataset), desc=desc, unit='clip', disable=not progress, dynamic_ncols=True)
    try:
        for clips, tidx in loader:
            clips = clips.to(device, non_blocking=pin_memory)
            if amp_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=amp_dtype):
                    emb = model(clips)
            else:
                emb = model(clips)
            emb = emb.detach().float().cpu().double()  # float64 sums: thousands of clips per tracklet stay exact
            if sums is None:
                sums = torch.zeros(n, emb.shape[1], dtype=torch.float64)
            sums.index_add_(0, tidx, emb)
            counts.index_add_(0, tidx, torch.ones(len(tidx), dtype=torch.float64))
            bar.update(len(tidx))
    finally:
        bar.close()
        if was_training:
            model.train()
    if sums is None:
        raise ValueError('the test dataset has no clips')
    return (sums / counts.clamp_min(1).unsqueeze(1)).float()


def embed_tracklets(
        model: nn.Module,
        tracklets: Sequence[Tracklet],
        num_frames: Optional[int] = None,
        input_size: Optional[Tuple[int, int]] = None,
        batch_size: int = 16,
        num_workers: int = 0,
        device: Optional[torch.device] = None,
        amp_dtype: Optional[torch.dtype] = None,
        max_clips: Optional[int] = None,
        progress: bool = False,
        desc: str = 'clips embedded',
) -> torch.Tensor:
    """One embedding per tracklet (float32, CPU): the mean over its floor(L/T) clips of T consecutive frames.

    `progress` shows a progress bar of the clips embedded, labelled `desc`; the other arguments are as for
    `extract_embeddings` (frame size and clip length default to the model's).
    """
    if not tracklets:
        return torch.zeros(0, 0)
    transform = create_video_transform(model, is_training=False, **({'input_size': input_size} if input_size else {}))
    ds = EvalClipDataset(tracklets, _model_frames(model, num_frames), transform, max_clips=max_clips)
    return extract_embeddings(
        _embedding_net(model), ds, batch_size=batch_size, num_workers=num_workers, device=device, amp_dtype=amp_dtype,
        pin_memory=device is not None and torch.device(device).type == 'cuda', progress=progress, desc=desc)


def _embedding_net(model: nn.Module) -> nn.Module:
    """The model, or its embedding if it has a classifier (e.g. during training: its forward returns logits)."""
    return _Embedder(model) if getattr(model, 'num_classes', 0) and hasattr(model, 'forward_head') else model


class _Embedder(nn.Module):
    """The embedding of a model that also has a classifier."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def extract_dataset(
        model: nn.Module,
        dataset: VideoReIDDataset,
        splits: Sequence[str] = ('query', 'gallery'),
        **kwargs: Any,
) -> Dict[str, Any]:
    """Embeddings of a dataset's splits, concatenated, with pids, camids and split codes (see module docstring).

    `kwargs` go to `embed_tracklets` (``progress=True``: a progress bar per split).
    """
    embs, pids, camids, codes, paths = [], [], [], [], []
    for name in splits:
        if name not in ('query', 'gallery', 'train'):
            raise ValueError(f"split must be query, gallery or train, got {name!r}")
        tracklets = getattr(dataset, name)
        if not tracklets:
            continue
        embs.append(embed_tracklets(model, tracklets, desc=f'{name}: clips embedded', **kwargs))
        pids += [t.pid for t in tracklets]
        camids += [t.camid for t in tracklets]
        codes += [SPLIT_CODES[name]] * len(tracklets)
        paths += [os.path.dirname(t.paths[0]) for t in tracklets]
    if not embs:
        raise DatasetError(f'{dataset.name}: the splits {list(splits)} hold no tracklets; pick splits the dataset '
                           f'has (--splits).')
    return {
        'embeddings': torch.cat(embs), 'pids': torch.tensor(pids, dtype=torch.int64),
        'camids': torch.tensor(camids, dtype=torch.int64), 'split': torch.tensor(codes, dtype=torch.int64),
        'tracklets': paths, 'gallery_mode': dataset.gallery_mode, 'dataset': dataset.name,
    }


@dataclass
class VideoSource:
    """One camera: its video, the tracker's track file for it (MOTChallenge text), and a name (default: the video's
    file name without its extension)."""
    video: str
    tracks: str
    name: Optional[str] = None


@dataclass
class CropOptions:
    """How tracks become tracklets of crops (see `m3d_zoo.data.tracks.split_tracks` and `m3d_zoo.data.video`)."""
    mode: str = 'stretch'
    min_len: int = 8
    max_len: int = 64
    min_height: float = 0.
    min_conf: float = -math.inf
    min_visibility: float = 0.

    def filters(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != 'mode'}


def _camera_names(sources: Sequence[VideoSource]) -> List[str]:
    names = [s.name or Path(s.video).stem for s in sources]
    if len(set(names)) < len(names):  # cam1/video.mp4, cam2/video.mp4: number them
        names = [f'{n}_{i}' for i, n in enumerate(names)]
    return names


def _cache_key(src: VideoSource, size: Tuple[int, int], crop: CropOptions) -> Dict[str, Any]:
    """What a cached camera's crops depend on: the video file (size, time), the track file's contents, the options."""
    stat = os.stat(src.video)
    return {'video': os.path.abspath(src.video), 'video_bytes': stat.st_size, 'video_mtime_ns': stat.st_mtime_ns,
            'tracks_sha256': file_sha256(src.tracks), 'size': list(size), **asdict(crop)}


def _video_tracklets(src: VideoSource, camera: int, size: Tuple[int, int], crop: CropOptions,
                     cache: Optional[Path]) -> Tuple[Iterable[VideoTracklet], int, Dict[str, Any]]:
    """The camera's tracklets (streamed from the video, or read from the cache), their number, and what was kept."""
    info = probe_video(src.video)
    tracks = read_tracks(src.tracks)
    check_tracks_fit_video(tracks, info)
    pieces, stats = split_tracks(tracks, camera, (info.width, info.height), **crop.filters())
    summary = {'boxes': stats.boxes, 'kept_boxes': stats.kept_boxes, 'skipped_boxes': stats.skipped,
               'num_tracks': stats.tracks, 'short_tracks': stats.short_tracks, 'tracklets': stats.tracklets}
    if not pieces:
        raise DatasetError(f'{src.tracks}: no tracklet is left after the filters ({summary}); lower --min-len, '
                           f'--min-height, --min-conf or --min-visibility.')
    if cache is None:
        return stream_tracklets(src.video, pieces, size, crop.mode), len(pieces), summary
    key = _cache_key(src, size, crop)
    cached = read_crop_cache(str(cache), key)
    if cached is not None:
        return cached, len(cached), dict(summary, cached=True)
    return write_crop_cache(str(cache), key, stream_tracklets(src.video, pieces, size, crop.mode)), len(pieces), summary


def _thumbnail(t: VideoTracklet) -> np.ndarray:
    from PIL import Image
    middle = Image.fromarray(t.crops[len(t.crops) // 2])
    return np.asarray(middle.resize(THUMBNAIL_SIZE[::-1], Image.Resampling.BILINEAR))


def extract_videos(
        model: nn.Module,
        sources: Sequence[VideoSource],
        crop: Optional[CropOptions] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        num_frames: Optional[int] = None,
        input_size: Optional[Tuple[int, int]] = None,
        batch_size: int = 16,
        device: Optional[torch.device] = None,
        amp_dtype: Optional[torch.dtype] = None,
        max_clips: Optional[int] = None,
        chunk: int = 32,
        progress: bool = True,
) -> Dict[str, Any]:
    """Embeddings of the tracklets of each camera's video and track file, one row per tracklet.

    Each video is decoded once; its tracklets are embedded `chunk` at a time as they complete, so memory holds the
    tracklets in flight and one chunk, whatever the video's length.

    Args:
        model: The embedding model.
        sources: One `VideoSource` per camera; its index is the camera id.
        crop: Crop mode and track filters (default `CropOptions()`).
        cache_dir: Keep each camera's crops in `<cache_dir>/<camera name>` and reuse them when the video, the track
            file and the options are unchanged.
        num_frames, input_size, batch_size, device, amp_dtype, max_clips: As for `embed_tracklets`.
        chunk: Tracklets embedded together.
        progress: A progress bar per camera.

    Returns:
        The embeddings file's tensors (see the module docstring) and `cameras`: each camera's name, video, track file
        and counts of what was kept and dropped.
    """
    from tqdm import tqdm
    crop = crop or CropOptions()
    transform = create_video_transform(model, is_training=False, **({'input_size': input_size} if input_size else {}))
    frames, net = _model_frames(model, num_frames), _embedding_net(model)
    rows: Dict[str, list] = {k: [] for k in ('embeddings', 'camids', 'track_ids', 'first_frames', 'last_frames',
                                             'thumbnails')}
    cameras = []

    def embed(batch: List[VideoTracklet], bar):
        ds = CropClipDataset(batch, frames, transform, max_clips=max_clips)
        rows['embeddings'].append(extract_embeddings(net, ds, batch_size=batch_size, device=device,
                                                     amp_dtype=amp_dtype))
        for t in batch:
            rows['camids'].append(t.camera)
            rows['track_ids'].append(t.track_id)
            rows['first_frames'].append(t.first_frame)
            rows['last_frames'].append(t.last_frame)
            rows['thumbnails'].append(_thumbnail(t))
        bar.update(len(batch))
        batch.clear()

    for camera, (src, name) in enumerate(zip(sources, _camera_names(sources))):
        cache = Path(cache_dir) / name if cache_dir is not None else None
        stream, total, summary = _video_tracklets(src, camera, transform.size, crop, cache)
        pending: List[VideoTracklet] = []
        with tqdm(total=total, desc=f'{name}: tracklets embedded', unit='tracklet', disable=not progress) as bar:
            for t in stream:
                pending.append(t)
                if len(pending) >= chunk:
                    embed(pending, bar)
            if pending:
                embed(pending, bar)
        cameras.append({'name': name, 'video': src.video, 'tracks': src.tracks, **summary})
    n = len(rows['camids'])
    long = {k: torch.tensor(rows[k], dtype=torch.int64) for k in ('camids', 'track_ids', 'first_frames', 'last_frames')}
    return {'embeddings': torch.cat(rows['embeddings']), 'pids': torch.full((n,), -1, dtype=torch.int64),
            'split': torch.full((n,), SPLIT_CODES['none'], dtype=torch.int64), **long,
            'thumbnails': torch.from_numpy(np.stack(rows['thumbnails'])), 'cameras': cameras}


def find_tracklet_folders(folders: Sequence[str]) -> List[Tracklet]:
    """Tracklets from plain folders: each given folder that holds images is one tracklet; otherwise every folder
    below it that holds images is.

    Person and camera ids are read where the generic layout gives them (`<pid>/c<cam>...`), else -1.
    """
    from m3d_zoo.data.folder import _TRACKLET_RE, _INT_RE
    out = []
    for top in folders:
        if not os.path.isdir(top):
            raise DatasetError(f'Tracklet folder not found: {top}')
        leaves = []
        for dirpath, dirnames, _ in os.walk(top):
            dirnames.sort(key=natural_key)
            frames = list_images(dirpath)
            if frames:
                leaves.append((dirpath, frames))
        if not leaves:
            raise DatasetError(f'{top}: no image files in it or below it; a tracklet is a folder of frames.')
        for dirpath, frames in leaves:
            m = _TRACKLET_RE.match(os.path.basename(dirpath))
            parent = os.path.basename(os.path.dirname(os.path.normpath(dirpath)))
            pid = int(parent) if m and _INT_RE.match(parent) else -1
            out.append(Tracklet(tuple(frames), pid, int(m.group(1)) if m else -1))
    return out


def save_embeddings(
        path: Union[str, Path],
        embeddings: torch.Tensor,
        pids: torch.Tensor,
        camids: torch.Tensor,
        split: Optional[torch.Tensor] = None,
        metadata: Optional[Dict[str, Any]] = None,
        extra: Optional[Dict[str, torch.Tensor]] = None,
) -> Path:
    """Write an embeddings file (safetensors, atomically); see the module docstring for the keys.

    `extra`: more per-row tensors (first dimension N), e.g. the video columns of `extract_videos`.

    Raises:
        ValueError: The tensors do not have one row per tracklet.
        m3d_zoo._io.WriteError: The file could not be written (e.g. a full disk); a previous file is intact.
    """
    n = embeddings.shape[0]
    split = torch.full((n,), SPLIT_CODES['none'], dtype=torch.int64) if split is None else split
    for name, t in (('pids', pids), ('camids', camids), ('split', split)):
        if t.shape != (n,):
            raise ValueError(f'{name} has shape {tuple(t.shape)}, expected ({n},)')
    meta = {'splits': json.dumps(SPLIT_CODES)}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    tensors = {'embeddings': embeddings.float().contiguous(), 'pids': pids.long().contiguous(),
               'camids': camids.long().contiguous(), 'split': split.long().contiguous()}
    for name, t in (extra or {}).items():
        if name in tensors or t.shape[:1] != (n,):
            raise ValueError(f'extra tensor {name!r} must be new and have {n} rows, got shape {tuple(t.shape)}')
        tensors[name] = t.contiguous()
    return write_safetensors(path, tensors, meta)


def load_embeddings(path: Union[str, Path]) -> Dict[str, Any]:
    """Read an embeddings file: its tensors plus `metadata`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Embeddings file {path} does not exist (m3d-zoo extract writes one).')
    try:
        tensors, metadata = read_safetensors(path)
    except (SafetensorsReadError, OSError) as e:
        raise EmbeddingsError(f'{path} is not a readable safetensors embeddings file ({e}).') from e
    out: Dict[str, Any] = dict(tensors, metadata=metadata)
    missing = [k for k in ('embeddings', 'pids', 'camids') if k not in out]
    if missing:
        raise EmbeddingsError(f'{path} lacks {missing}: not an embeddings file written by m3d-zoo extract.')
    return out


def results_to_json(results: Dict[str, Any]) -> Dict[str, Any]:
    """Results of m3d_zoo.eval with numpy values turned into lists / floats (the cmc curve included)."""
    out = {}
    for k, v in results.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out


def evaluate_dataset(
        model: nn.Module,
        dataset: VideoReIDDataset,
        metric: str = 'euclidean',
        ap_mode: str = 'standard',
        progress: bool = False,
        same_camera: bool = False,
        **kwargs: Any,
) -> Dict[str, Any]:
    """Query/gallery embeddings of `dataset` and their CMC/mAP (the paper's clip-averaging protocol).

    Args:
        model: The model (its embedding is used if it has a classifier).
        dataset: The dataset whose query and gallery are evaluated.
        metric, ap_mode, same_camera: As for `m3d_zoo.eval.evaluate_embeddings` (`same_camera=True`: same-camera
            matches count, for single-camera data).
        progress: A progress bar (tqdm, on stderr) of the query's clips embedded, then one of the gallery's.
        **kwargs: As for `embed_tracklets` (num_frames, input_size, batch_size, num_workers, device, amp_dtype,
            max_clips).
    """
    qg = dataset_query_gallery(model, dataset, progress=progress, **kwargs)
    return evaluate_query_gallery(qg, metric=metric, ap_mode=ap_mode, same_camera=same_camera)


def evaluate_query_gallery(qg: 'QueryGallery', **kwargs: Any) -> Dict[str, Any]:
    """CMC/mAP of a `QueryGallery`; `kwargs` go to `m3d_zoo.eval.evaluate_embeddings` (metric, ap_mode,
    same_camera, ...). A query whose tracklet the gallery also holds never matches itself."""
    return evaluate_embeddings(qg.q_feats, qg.g_feats, qg.q_pids, qg.g_pids, qg.q_camids, qg.g_camids,
                               gallery_mode=qg.gallery_mode, query_gallery_index=qg.q_in_gallery, **kwargs)


class QueryGallery(NamedTuple):
    """Query and gallery rows of embeddings files: features, ids, cameras, each row's frames, the gallery convention,
    and where the gallery holds a query's own tracklet (`q_in_gallery`: its gallery row, -1 if none; None if the
    gallery holds no query)."""
    q_feats: torch.Tensor
    g_feats: torch.Tensor
    q_pids: torch.Tensor
    g_pids: torch.Tensor
    q_camids: torch.Tensor
    g_camids: torch.Tensor
    gallery_mode: Optional[str]
    q_frames: Callable[[int], List[Any]]
    g_frames: Callable[[int], List[Any]]
    q_names: List[str]
    q_in_gallery: Optional[torch.Tensor] = None


def _in_gallery(q_keys: Sequence[Any], g_keys: Sequence[Any]) -> Optional[torch.Tensor]:
    """Each query's gallery row with the same key (its tracklet), -1 where none; None if no query is in the gallery.
    A key of None (not recorded) matches nothing."""
    rows = {k: i for i, k in enumerate(g_keys) if k is not None}
    index = [rows.get(k, -1) if k is not None else -1 for k in q_keys]
    return torch.tensor(index, dtype=torch.int64) if any(i >= 0 for i in index) else None


def _row_folders(data: Dict[str, Any], rows: np.ndarray) -> List[Optional[str]]:
    """The tracklet folder of each row, None where the file does not record it."""
    folders = json.loads(data['metadata'].get('tracklets', 'null')) or []
    return [os.path.normpath(folders[r]) if r < len(folders) else None for r in rows]


def _rows_frames(data: Dict[str, Any], rows: np.ndarray) -> Tuple[Callable[[int], List[Any]], List[str]]:
    """Row -> its tracklet's frames (read from its folder, else its thumbnail), and a name per row."""
    folders = json.loads(data['metadata'].get('tracklets', 'null')) or []
    thumbs = data.get('thumbnails')
    if 'track_ids' in data:
        names = [f'c{int(c)} t{int(t)} f{int(f)}-{int(g)}' for c, t, f, g in zip(
            data['camids'][rows], data['track_ids'][rows], data['first_frames'][rows], data['last_frames'][rows])]
    else:
        names = [os.path.basename(folders[r]) if len(folders) > r else f'row {r}' for r in rows]

    def frames(i: int) -> List[Any]:
        r = int(rows[i])
        if len(folders) > r and os.path.isdir(folders[r]):
            return [read_image(f) for f in list_images(folders[r])]
        if thumbs is not None:
            return [thumbs[r].numpy()]
        raise EmbeddingsError(f'The frames of row {r} are not available: its folder '
                              f'{folders[r] if len(folders) > r else "(not recorded)"} is gone and the file holds no '
                              f'thumbnails.')
    return frames, names


def query_gallery(path: Union[str, Path], gallery_path: Optional[Union[str, Path]] = None) -> QueryGallery:
    """The query and gallery of an embeddings file (by its `split` codes) or of two files (query, gallery)."""
    data = load_embeddings(path)
    if gallery_path is not None:
        gal = load_embeddings(gallery_path)
        qm, gm = np.arange(len(data['pids'])), np.arange(len(gal['pids']))
        gallery_mode = gal['metadata'].get('gallery_mode') or 'gallery file'
    else:
        gal, split = data, data.get('split')
        if split is None or not ((split == 0).any() and (split == 1).any()):
            raise EmbeddingsError(f'{path} does not hold both query (split 0) and gallery (split 1) tracklets: '
                                  f'extract with --splits query gallery, or pass the gallery as a second file.')
        qm, gm = np.flatnonzero(split.numpy() == 0), np.flatnonzero(split.numpy() == 1)
        gallery_mode = data['metadata'].get('gallery_mode')
    if data['embeddings'].shape[1] != gal['embeddings'].shape[1]:
        raise EmbeddingsError(f'query embeddings are {data["embeddings"].shape[1]}-d, gallery ones '
                              f'{gal["embeddings"].shape[1]}-d: they come from different models.')
    if not np.isin(data['pids'][qm].numpy(), gal['pids'][gm].numpy()).any():
        raise EmbeddingsError(f'no query identity of {path} appears in the gallery'
                              + (f' {gallery_path}' if gallery_path is not None else '')
                              + ': the files come from different datasets or splits.')
    (q_frames, q_names), (g_frames, _) = _rows_frames(data, qm), _rows_frames(gal, gm)
    return QueryGallery(data['embeddings'][qm], gal['embeddings'][gm], data['pids'][qm], gal['pids'][gm],
                        data['camids'][qm], gal['camids'][gm], gallery_mode, q_frames, g_frames, q_names,
                        _in_gallery(_row_folders(data, qm), _row_folders(gal, gm)))


def dataset_query_gallery(model: nn.Module, dataset: VideoReIDDataset, **kwargs: Any) -> QueryGallery:
    """The embeddings of a dataset's query and gallery (`kwargs` as for `embed_tracklets`)."""
    q = embed_tracklets(model, dataset.query, desc='query: clips embedded', **kwargs)
    g = embed_tracklets(model, dataset.gallery, desc='gallery: clips embedded', **kwargs)
    (qp, qc), (gp, gc) = tracklet_labels(dataset.query), tracklet_labels(dataset.gallery)

    def frames(tracklets):
        return lambda i: [read_image(p) for p in tracklets[i].paths]
    names = [os.path.basename(os.path.dirname(t.paths[0])) for t in dataset.query]
    return QueryGallery(q, g, torch.from_numpy(qp), torch.from_numpy(gp), torch.from_numpy(qc), torch.from_numpy(gc),
                        dataset.gallery_mode, frames(dataset.query), frames(dataset.gallery), names,
                        _in_gallery([t.paths for t in dataset.query], [t.paths for t in dataset.gallery]))


def evaluate_embeddings_file(
        path: Union[str, Path],
        gallery_path: Optional[Union[str, Path]] = None,
        **kwargs: Any,
) -> Dict[str, Any]:
    """CMC/mAP from an embeddings file (query and gallery by its `split` codes) or from two files (query, gallery);
    `kwargs` go to `m3d_zoo.eval.evaluate_embeddings` (metric, ap_mode, rerank, max_rank, same_camera)."""
    return evaluate_query_gallery(query_gallery(path, gallery_path), **kwargs)

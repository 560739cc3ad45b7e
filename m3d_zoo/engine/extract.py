""" Feature extraction and evaluation: models from any source, tracklet embeddings (the mean of their clips'),
embeddings files, ReID metrics.

An embeddings file is safetensors with the tensors

    embeddings   float32 (N, D), one row per tracklet (the mean of its clip embeddings, the paper's protocol)
    pids         int64 (N,), person ids (-1 where unknown)
    camids       int64 (N,), camera ids (-1 where unknown)
    split        int64 (N,), 0 = query, 1 = gallery, 2 = train, -1 = none (plain tracklet folders)

and string metadata: model, dataset, num_frames, input_size, gallery_mode, splits (the split codes, JSON) and
tracklets (JSON list of each tracklet's folder), so a file can be evaluated or inspected without the data.
"""
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from m3d_zoo.data import EvalClipDataset, Tracklet, VideoReIDDataset, create_video_transform, tracklet_labels
from m3d_zoo.data.base import DatasetError, list_images, natural_key
from m3d_zoo.eval import evaluate_embeddings

from .._io import SafetensorsReadError, read_safetensors, write_safetensors
from .checkpoint import model_from_checkpoint

__all__ = [
    'EmbeddingsError', 'SPLIT_CODES', 'load_inference_model', 'extract_embeddings', 'embed_tracklets',
    'extract_dataset', 'find_tracklet_folders', 'save_embeddings', 'load_embeddings', 'evaluate_dataset',
    'evaluate_embeddings_file', 'results_to_json',
]

_logger = logging.getLogger(__name__)

SPLIT_CODES = {'query': 0, 'gallery': 1, 'train': 2, 'none': -1}


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
    return int(num_frames or getattr(model, 'num_frames', 8))


@torch.no_grad()
def extract_embeddings(
        model: Callable[[torch.Tensor], torch.Tensor],
        dataset: EvalClipDataset,
        batch_size: int = 16,
        num_workers: int = 0,
        device: Optional[torch.device] = None,
        amp_dtype: Optional[torch.dtype] = None,
        pin_memory: bool = False,
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

    Returns:
        Float32 CPU tensor (num_tracklets, D), rows in the order of `dataset.tracklets`.
    """
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
    finally:
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
) -> torch.Tensor:
    """One embedding per tracklet (float32, CPU): the mean over its floor(L/T) clips of T consecutive frames."""
    if not tracklets:
        return torch.zeros(0, 0)
    transform = create_video_transform(model, is_training=False, **({'input_size': input_size} if input_size else {}))
    ds = EvalClipDataset(tracklets, _model_frames(model, num_frames), transform, max_clips=max_clips)
    # a model with a classifier (e.g. during training) returns logits: take its embedding instead
    net = _Embedder(model) if getattr(model, 'num_classes', 0) and hasattr(model, 'forward_head') else model
    return extract_embeddings(
        net, ds, batch_size=batch_size, num_workers=num_workers, device=device, amp_dtype=amp_dtype,
        pin_memory=device is not None and torch.device(device).type == 'cuda')


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
    """Embeddings of a dataset's splits, concatenated, with pids, camids and split codes (see module docstring)."""
    embs, pids, camids, codes, paths = [], [], [], [], []
    for name in splits:
        if name not in ('query', 'gallery', 'train'):
            raise ValueError(f"split must be query, gallery or train, got {name!r}")
        tracklets = getattr(dataset, name)
        if not tracklets:
            continue
        embs.append(embed_tracklets(model, tracklets, **kwargs))
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
) -> Path:
    """Write an embeddings file (safetensors, atomically); see the module docstring for the keys.

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
        **kwargs: Any,
) -> Dict[str, Any]:
    """Query/gallery embeddings of `dataset` and their CMC/mAP (the paper's clip-averaging protocol)."""
    q = embed_tracklets(model, dataset.query, **kwargs)
    g = embed_tracklets(model, dataset.gallery, **kwargs)
    qp, qc = tracklet_labels(dataset.query)
    gp, gc = tracklet_labels(dataset.gallery)
    return evaluate_embeddings(q, g, qp, gp, qc, gc, metric=metric, ap_mode=ap_mode,
                               gallery_mode=dataset.gallery_mode)


def evaluate_embeddings_file(
        path: Union[str, Path],
        gallery_path: Optional[Union[str, Path]] = None,
        metric: str = 'euclidean',
        ap_mode: str = 'standard',
        rerank: bool = False,
        max_rank: int = 20,
) -> Dict[str, Any]:
    """CMC/mAP from an embeddings file (query and gallery by its `split` codes) or from two files (query, gallery)."""
    data = load_embeddings(path)
    if gallery_path is not None:
        gal = load_embeddings(gallery_path)
        q = (data['embeddings'], data['pids'], data['camids'])
        g = (gal['embeddings'], gal['pids'], gal['camids'])
        gallery_mode = gal['metadata'].get('gallery_mode') or 'gallery file'
    else:
        split = data.get('split')
        if split is None or not ((split == 0).any() and (split == 1).any()):
            raise EmbeddingsError(f'{path} does not hold both query (split 0) and gallery (split 1) tracklets: '
                                  f'extract with --splits query gallery, or pass the gallery as a second file.')
        qm, gm = split == 0, split == 1
        q = (data['embeddings'][qm], data['pids'][qm], data['camids'][qm])
        g = (data['embeddings'][gm], data['pids'][gm], data['camids'][gm])
        gallery_mode = data['metadata'].get('gallery_mode')
    if q[0].shape[1] != g[0].shape[1]:
        raise EmbeddingsError(f'query embeddings are {q[0].shape[1]}-d, gallery ones {g[0].shape[1]}-d: they come '
                              f'from different models.')
    if not np.isin(np.asarray(q[1]), np.asarray(g[1])).any():
        raise EmbeddingsError(f'no query identity of {path} appears in the gallery'
                              + (f' {gallery_path}' if gallery_path is not None else '')
                              + ': the files come from different datasets or splits.')
    return evaluate_embeddings(q[0], g[0], q[1], g[1], q[2], g[2], metric=metric, rerank=rerank, ap_mode=ap_mode,
                               gallery_mode=gallery_mode, max_rank=max_rank)

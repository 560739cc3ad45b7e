""" Clip transforms resolved from a model's `pretrained_cfg` (input size, mean, std).

A clip is a list of PIL frames; the output is a float tensor (3, T, H, W). All random choices (crop offset,
horizontal flip, random-erasing rectangle and its fill) are drawn once per clip and applied to every frame: a
flip or an erased patch that changes from frame to frame would be motion the temporal layers learn from.
Random draws use torch's global generator, which DataLoader seeds per worker.
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

__all__ = ['resolve_video_data_config', 'create_video_transform', 'VideoTransform', 'DEFAULT_INPUT_SIZE']

DEFAULT_INPUT_SIZE = (3, 256, 128)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

_INTERP = {
    'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST, 'lanczos': Image.LANCZOS,
}


def _cfg_dict(model_or_cfg: Any) -> Dict[str, Any]:
    if model_or_cfg is None:
        return {}
    if isinstance(model_or_cfg, dict):
        return model_or_cfg
    # a model: timm keeps its config as a dict in `pretrained_cfg` (older code: `default_cfg`)
    for attr in ('pretrained_cfg', 'default_cfg'):
        cfg = getattr(model_or_cfg, attr, None)
        if cfg is not None:
            return _cfg_dict(cfg)
    if hasattr(model_or_cfg, 'to_dict'):  # timm.models.PretrainedCfg
        return model_or_cfg.to_dict()
    raise TypeError(f'Expected a model, a pretrained_cfg dict or None, got {type(model_or_cfg).__name__}')


def resolve_video_data_config(
        model_or_cfg: Any = None,
        input_size: Optional[Tuple[int, ...]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        interpolation: Optional[str] = None,
) -> Dict[str, Any]:
    """ Data config (input_size, mean, std, interpolation) from a model, its `pretrained_cfg` dict, or defaults.

    Explicit arguments win over the config; missing values default to (3, 256, 128), ImageNet mean/std, bilinear.

    Args:
        model_or_cfg: A model with `pretrained_cfg`, a `pretrained_cfg` dict / `PretrainedCfg`, or None.
        input_size: (3, H, W) or (H, W).
    """
    cfg = _cfg_dict(model_or_cfg)
    size = tuple(input_size or cfg.get('input_size') or DEFAULT_INPUT_SIZE)
    if len(size) == 2:
        size = (3,) + size
    if len(size) != 3 or size[0] != 3:
        raise ValueError(f'input_size must be (3, H, W) or (H, W), got {size}')
    mean = tuple(float(m) for m in (mean or cfg.get('mean') or IMAGENET_DEFAULT_MEAN))
    std = tuple(float(s) for s in (std or cfg.get('std') or IMAGENET_DEFAULT_STD))
    interp = interpolation or cfg.get('interpolation') or 'bilinear'
    if interp not in _INTERP:
        interp = 'bilinear'  # e.g. timm's 'random' has no meaning for a fixed ReID resize
    return {'input_size': size, 'mean': mean, 'std': std, 'interpolation': interp}


class VideoTransform:
    """ Resize, (train: pad + random crop, horizontal flip), normalise and (train) random erasing, per clip.

    Args:
        input_size: (3, H, W) or (H, W) output size.
        mean: Per-channel mean (0..1 scale).
        std: Per-channel std.
        interpolation: Resize filter name.
        is_training: Apply the random augmentations.
        hflip: Probability of flipping the whole clip horizontally.
        pad: Zero padding before a random crop back to (H, W) (0 disables it).
        re_prob: Probability of random erasing (Zhong et al.), same rectangle and fill on all frames.
        re_area: Range of the erased area as a fraction of the frame.
        re_ratio: Range of the erased rectangle's aspect ratio (sampled log-uniformly).
        re_mode: 'pixel' (normal noise), 'rand' (one random colour) or 'const' (zeros, i.e. the mean colour).
    """

    def __init__(
            self,
            input_size: Tuple[int, ...] = DEFAULT_INPUT_SIZE,
            mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
            std: Sequence[float] = IMAGENET_DEFAULT_STD,
            interpolation: str = 'bilinear',
            is_training: bool = False,
            hflip: float = 0.5,
            pad: int = 0,
            re_prob: float = 0.,
            re_area: Tuple[float, float] = (0.02, 1 / 3),
            re_ratio: Tuple[float, float] = (0.3, 3.3),
            re_mode: str = 'pixel',
    ):
        self.size = tuple(input_size[-2:])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.interpolation = interpolation
        self.is_training = is_training
        self.hflip = hflip
        self.pad = pad
        self.re_prob = re_prob
        self.re_area = re_area
        self.re_ratio = re_ratio
        if re_mode not in ('pixel', 'rand', 'const'):
            raise ValueError(f're_mode must be pixel, rand or const, got {re_mode!r}')
        self.re_mode = re_mode

    def _to_tensor(self, frames: Sequence[Image.Image]) -> torch.Tensor:
        h, w = self.size
        resample = _INTERP[self.interpolation]
        arrs = []
        for f in frames:
            if f.mode != 'RGB':
                f = f.convert('RGB')
            if f.size != (w, h):
                f = f.resize((w, h), resample)
            arrs.append(np.asarray(f))
        x = torch.from_numpy(np.stack(arrs))  # (T, H, W, 3) uint8
        return x.permute(3, 0, 1, 2).float().div_(255.)  # (3, T, H, W)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        area = h * w
        log_ratio = (math.log(self.re_ratio[0]), math.log(self.re_ratio[1]))
        for _ in range(10):
            target = area * (self.re_area[0] + (self.re_area[1] - self.re_area[0]) * torch.rand(1).item())
            ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand(1).item())
            eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (1,)))
                left = int(torch.randint(0, w - ew + 1, (1,)))
                if self.re_mode == 'pixel':
                    fill = torch.randn(3, 1, eh, ew)
                elif self.re_mode == 'rand':
                    fill = torch.randn(3, 1, 1, 1)
                else:
                    fill = torch.zeros(3, 1, 1, 1)
                # one fill for all frames (broadcast over T), so the patch does not flicker
                x[:, :, top:top + eh, left:left + ew] = fill
                break
        return x

    def __call__(self, frames: Sequence[Image.Image]) -> torch.Tensor:
        """ Transform a clip (list of PIL images) into a normalised float tensor (3, T, H, W). """
        x = self._to_tensor(frames)
        if self.is_training:
            if self.pad > 0:
                h, w = self.size
                x = torch.nn.functional.pad(x, (self.pad,) * 4)
                top = int(torch.randint(0, 2 * self.pad + 1, (1,)))
                left = int(torch.randint(0, 2 * self.pad + 1, (1,)))
                x = x[:, :, top:top + h, left:left + w]
            if self.hflip > 0 and torch.rand(1).item() < self.hflip:
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.is_training and self.re_prob > 0 and torch.rand(1).item() < self.re_prob:
            x = self._erase(x)
        return x.contiguous()

    def __repr__(self) -> str:
        s = f'{self.__class__.__name__}(size={self.size}, interpolation={self.interpolation}'
        if self.is_training:
            s += f', hflip={self.hflip}, pad={self.pad}, re_prob={self.re_prob}, re_mode={self.re_mode}'
        return s + ')'


def create_video_transform(model_or_cfg: Any = None, is_training: bool = False, **kwargs) -> VideoTransform:
    """ Clip transform for a model (or `pretrained_cfg` dict), train or eval.

    Args:
        model_or_cfg: A model, its `pretrained_cfg` dict, or None for the defaults (256x128, ImageNet mean/std).
        is_training: Training augmentations (horizontal flip by default; `pad`, `re_prob` on request).
        **kwargs: `input_size`, `mean`, `std`, `interpolation` override the config; other keys go to `VideoTransform`.
    """
    cfg_keys = ('input_size', 'mean', 'std', 'interpolation')
    cfg = resolve_video_data_config(model_or_cfg, **{k: kwargs.pop(k) for k in cfg_keys if k in kwargs})
    return VideoTransform(
        input_size=cfg['input_size'], mean=cfg['mean'], std=cfg['std'], interpolation=cfg['interpolation'],
        is_training=is_training, **kwargs)

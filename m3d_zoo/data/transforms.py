""" Clip transforms resolved from a model's `pretrained_cfg` (input size, mean, std), built on torchvision's v2 transforms.

A clip is a list of frames (PIL images, or uint8 (3, H, W) tensors as `m3d_zoo.data.read_frame` decodes them); the
output is a float tensor (3, T, H, W). The frames are stacked into one `tv_tensors.Video`, so every random choice
(crop offset, horizontal flip, random-erasing rectangle and its fill) is drawn once per clip and applied to every
frame: a flip or an erased patch that changes from frame to frame would be motion the temporal layers learn from. Random draws use torch's global generator, which DataLoader seeds per worker.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from timm.data import resolve_data_config
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

__all__ = ['resolve_video_data_config', 'create_video_transform', 'VideoTransform', 'DEFAULT_INPUT_SIZE']

DEFAULT_INPUT_SIZE = (3, 256, 128)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

_INTERP = {
    'bilinear': InterpolationMode.BILINEAR, 'bicubic': InterpolationMode.BICUBIC,
    'nearest': InterpolationMode.NEAREST_EXACT, 'lanczos': InterpolationMode.LANCZOS,
}
_DEFAULTS = {'input_size': DEFAULT_INPUT_SIZE, 'interpolation': 'bilinear',
             'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD}
_ERASE_FILL = {'pixel': 'random', 'const': 0.}  # per-pixel normal noise, or zeros (the mean colour)


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


def _input_size(input_size: Optional[Sequence[int]]) -> Optional[Tuple[int, int, int]]:
    if input_size is None:
        return None
    size = tuple(input_size)
    if len(size) == 2:
        size = (3,) + size
    if len(size) != 3 or size[0] != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f'input_size must be (3, H, W) or (H, W) of positive integers, got {tuple(input_size)}')
    return size


def resolve_video_data_config(
        model_or_cfg: Any = None,
        input_size: Optional[Tuple[int, ...]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        interpolation: Optional[str] = None,
) -> Dict[str, Any]:
    """ Data config (input_size, mean, std, interpolation) from a model, its `pretrained_cfg` dict, or defaults.

    Resolved by timm's `resolve_data_config`: explicit arguments win over the config; missing values default to
    (3, 256, 128), ImageNet mean/std and bilinear (a ReID person crop, not timm's 224x224 bicubic).

    Args:
        model_or_cfg: A model with `pretrained_cfg`, a `pretrained_cfg` dict / `PretrainedCfg`, or None.
        input_size: (3, H, W) or (H, W).
    """
    cfg = {**_DEFAULTS, **{k: v for k, v in _cfg_dict(model_or_cfg).items() if v is not None}}
    args = {'input_size': _input_size(input_size), 'mean': mean, 'std': std, 'interpolation': interpolation}
    for key in ('mean', 'std'):
        if args[key] is not None and len(args[key]) not in (1, 3):
            raise ValueError(f'{key} must have 1 or 3 values (one per channel), got {tuple(args[key])}')
    resolved = resolve_data_config(args, pretrained_cfg=cfg)
    interp = resolved['interpolation']
    if interp not in _INTERP:
        interp = 'bilinear'  # e.g. timm's 'random' has no meaning for a fixed ReID resize
    return {'input_size': _input_size(resolved['input_size']), 'interpolation': interp,
            'mean': tuple(float(m) for m in resolved['mean']), 'std': tuple(float(s) for s in resolved['std'])}


class _PixelNoise:
    """Fresh Gaussian noise on every pixel of every frame of a float video in [0, 1], clipped back to [0, 1].
    (torchvision's v2.GaussianNoise does the same from release 0.20; the zoo supports 0.19.)"""

    def __init__(self, std: float):
        self.std = std

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        noisy = (video + torch.randn_like(video) * self.std).clamp_(0, 1)
        return tv_tensors.wrap(noisy, like=video) if isinstance(video, tv_tensors.Video) else noisy


class VideoTransform:
    """ Resize, (train: pad + random crop, horizontal flip, pixel noise), normalise and (train) random erasing, per
    clip.

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
        re_mode: 'pixel' (normal noise) or 'const' (zeros, i.e. the mean colour).
        noise_std: Std of Gaussian noise added to every pixel of every frame, drawn afresh for each clip, as a
            fraction of the pixel range (0 disables it). Files that carry their own fixed noise (sensor, compression)
            let a network memorise training frames by it; fresh noise on top makes that harder.
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
            noise_std: float = 0.,
    ):
        if re_mode not in _ERASE_FILL:
            raise ValueError(f're_mode must be one of {sorted(_ERASE_FILL)}, got {re_mode!r}')
        if interpolation not in _INTERP:
            raise ValueError(f'interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}')
        if not 0 <= noise_std <= 1:
            raise ValueError(f'noise_std must be in [0, 1] (a fraction of the pixel range), got {noise_std!r}')
        self.size = tuple(input_size[-2:])
        self.interpolation = interpolation
        self.is_training = is_training
        self.hflip, self.pad, self.re_prob, self.re_mode, self.noise_std = hflip, pad, re_prob, re_mode, noise_std
        self._resize = v2.Resize(self.size, interpolation=_INTERP[interpolation], antialias=True)
        steps: List[Any] = []
        if is_training and pad > 0:
            steps.append(v2.RandomCrop(self.size, padding=pad, fill=0))
        if is_training and hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if is_training and noise_std > 0:
            steps.append(_PixelNoise(noise_std))
        steps.append(v2.Normalize(list(mean), list(std)))
        if is_training and re_prob > 0:
            steps.append(v2.RandomErasing(re_prob, scale=re_area, ratio=re_ratio, value=_ERASE_FILL[re_mode]))
        self._augment = v2.Compose(steps)

    def _to_video(self, frames: Sequence[Union[Image.Image, torch.Tensor]]) -> torch.Tensor:
        """Frames as one uint8 (T, 3, H, W) video at the output size (one batched resize when the sizes agree)."""
        images = [f if isinstance(f, torch.Tensor) else v2.functional.pil_to_tensor(
            f if f.mode == 'RGB' else f.convert('RGB')) for f in frames]
        if len({im.shape for im in images}) == 1:
            return self._resize(torch.stack(images))
        return torch.stack([self._resize(im) for im in images])

    def __call__(self, frames: Sequence[Union[Image.Image, torch.Tensor]]) -> torch.Tensor:
        """ Transform a clip (PIL images or uint8 (3, H, W) tensors, as `read_frame` gives them) into a normalised
        float tensor (3, T, H, W). """
        x = self._augment(tv_tensors.Video(self._to_video(frames)))
        return x.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        s = f'{self.__class__.__name__}(size={self.size}, interpolation={self.interpolation}'
        if self.is_training:
            s += f', hflip={self.hflip}, pad={self.pad}, re_prob={self.re_prob}, re_mode={self.re_mode}'
            s += f', noise_std={self.noise_std}' if self.noise_std else ''
        return s + ')'


def create_video_transform(model_or_cfg: Any = None, is_training: bool = False, **kwargs) -> VideoTransform:
    """ Clip transform for a model (or `pretrained_cfg` dict), train or eval.

    Args:
        model_or_cfg: A model, its `pretrained_cfg` dict, or None for the defaults (256x128, ImageNet mean/std).
        is_training: Training augmentations (horizontal flip by default; `pad`, `re_prob`, `noise_std` on request).
        **kwargs: `input_size`, `mean`, `std`, `interpolation` override the config; other keys go to `VideoTransform`.
    """
    cfg_keys = ('input_size', 'mean', 'std', 'interpolation')
    cfg = resolve_video_data_config(model_or_cfg, **{k: kwargs.pop(k) for k in cfg_keys if k in kwargs})
    return VideoTransform(
        input_size=cfg['input_size'], mean=cfg['mean'], std=cfg['std'], interpolation=cfg['interpolation'],
        is_training=is_training, **kwargs)

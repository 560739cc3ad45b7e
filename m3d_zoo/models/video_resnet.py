""" Video ResNet: one network for every family of the paper's Tables 1 and 2.

The families (C2D, I3D, P3D-A/B/C, M3D, M3D + RAL) differ only by data: the spatio-temporal unit (`unit`, see
`m3d_zoo.layers.units`) of the stem and of the blocks that have one (`temporal_blocks`), the number of M3D kernels
(`m3d_branches`), where the clip is temporally downsampled (`temporal_strides`), and the Residual Attention Layers
(`ral`). Each family file is a table of these arguments. The 2D parts keep torchvision's ResNet parameter names and
shapes (conv kernels get a temporal axis), so an ImageNet ResNet inflates into any family by reshaping alone.
"""
import inspect
import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, checkpoint_seq

from m3d_zoo.layers import MultiScaleTemporal, ReidHead, ResidualAttention, TemporalConv, TemporalPool, cpu_kernels
from m3d_zoo.layers.temporal import Conv3d, resolve_branches
from m3d_zoo.layers.units import Unit, Unit2d, get_unit
from ..hub.released import released_pretrained_cfgs
from ._inflate import inflate_filter_fn
from ._record import get_model_args, records_args, update_model_args

__all__ = ['VideoResNet', 'VideoBasicBlock', 'VideoBottleneck', 'RESNET_DEPTHS']

# The 2D ResNets a family can inflate: block type and blocks per stage.
RESNET_DEPTHS = {
    'resnet18': dict(block='basic', layers=(2, 2, 2, 2)),
    'resnet34': dict(block='basic', layers=(3, 4, 6, 3)),
    'resnet50': dict(block='bottleneck', layers=(3, 4, 6, 3)),
    'resnet101': dict(block='bottleneck', layers=(3, 4, 23, 3)),
}


class FrameMaxPool(nn.MaxPool3d):
    """nn.MaxPool3d over (1, k, k) windows; on the CPU it runs `cpu_kernels.max_pool_frames`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size[1], self.stride[1], self.padding[1]
        if (self.kernel_size, self.stride, self.padding) == ((1, k, k), (1, s, s), (0, p, p)) \
                and not self.ceil_mode and self.dilation in (1, (1, 1, 1)) and not self.return_indices:
            out = cpu_kernels.max_pool_frames(x, k, s, p)
            if out is not None:
                return out
        return super().forward(x)


def _shortcut(
        inplanes: int,
        outplanes: int,
        stride: int,
        temporal_stride: int,
        unit: Type[Unit],
        norm_layer: Type[nn.Module],
) -> Tuple[nn.Module, Optional[nn.Module]]:
    """(temporal pooling, projection) of a block's shortcut, by the unit's temporal-stride policy.

    A strided-shortcut unit (I3D) strides its 1x1x1 conv in time; the others average-pool the shortcut in time like
    their 2D path. Pooling first (not after the conv) keeps torchvision's `downsample.0/1` names.
    """
    strided = unit.strided_shortcut
    pool = TemporalPool(temporal_stride) if temporal_stride > 1 and not strided else nn.Identity()
    if stride == 1 and temporal_stride == 1 and inplanes == outplanes:
        return pool, None
    conv = Conv3d(inplanes, outplanes, 1, stride=(temporal_stride if strided else 1, stride, stride), bias=False)
    return pool, nn.Sequential(conv, norm_layer(outplanes))


class VideoBasicBlock(nn.Module):
    """ResNet-18/34 block; the unit is the first 3x3 conv's (the second takes the unit's spatial conv too)."""
    expansion = 1

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            temporal_stride: int = 1,
            unit: Type[Unit] = Unit2d,
            num_branches: int = 1,
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.conv1 = unit.spatial_conv(inplanes, planes, 3, stride, temporal_stride)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer(inplace=True)
        self.temporal = unit(inplanes, planes, stride, temporal_stride, num_branches)
        self.conv2 = unit.spatial_conv(planes, planes, 3, 1, 1)
        self.bn2 = norm_layer(planes)
        self.act2 = act_layer(inplace=True)
        self.shortcut_pool, self.downsample = _shortcut(inplanes, planes, stride, temporal_stride, unit, norm_layer)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_pool(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        out = self.temporal(self.act1(self.bn1(self.conv1(x))), x)
        out = self.bn2(self.conv2(out))
        out += shortcut  # in place, as timm's ResNet: a new tensor per block is page faults on the CPU
        return self.act2(out)


class VideoBottleneck(nn.Module):
    """ResNet-50/101 block; the unit is the 3x3 conv's, before the 1x1 expansion (as in the authors' released code)."""
    expansion = 4

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            temporal_stride: int = 1,
            unit: Type[Unit] = Unit2d,
            num_branches: int = 1,
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer(inplace=True)
        self.conv2 = unit.spatial_conv(planes, planes, 3, stride, temporal_stride)
        self.bn2 = norm_layer(planes)
        self.act2 = act_layer(inplace=True)
        self.temporal = unit(planes, planes, stride, temporal_stride, num_branches)
        self.conv3 = Conv3d(planes, outplanes, 1, bias=False)
        self.bn3 = norm_layer(outplanes)
        self.act3 = act_layer(inplace=True)
        self.shortcut_pool, self.downsample = _shortcut(inplanes, outplanes, stride, temporal_stride, unit, norm_layer)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_pool(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.temporal(self.act2(self.bn2(self.conv2(out))), out)
        out = self.bn3(self.conv3(out))
        out += shortcut  # in place, as timm's ResNet: a new tensor per block is page faults on the CPU
        return self.act3(out)


_BLOCKS = {'basic': VideoBasicBlock, 'bottleneck': VideoBottleneck}


@torch.no_grad()
def _fold_batchnorm(layer: nn.Module, bn: nn.Module) -> bool:
    """Fold an eval-mode BatchNorm into the conv or linear layer before it (which gains a bias); False where it cannot.

    BN(f(x)) = f(x) * s + (beta - mean * s), s = gamma / sqrt(var + eps): the scale goes into the layer's output
    channels, the shift into its bias. A norm without running statistics (or not a BatchNorm) is kept.
    """
    if not isinstance(layer, (nn.Conv3d, nn.Linear)) or not isinstance(bn, _BATCH_NORMS) or bn.running_mean is None:
        return False
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    bias = shift if layer.bias is None else layer.bias * scale + shift
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.ndim - 1))))
    layer.bias = nn.Parameter(bias.to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
    return True


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _fold_norms(module: nn.Module) -> None:
    """Fold each BatchNorm that directly follows a conv into it: a block's or the stem's `conv<i>` / `bn<i>`, and
    the pairs of a Sequential (the shortcut's projection, the attention branches)."""
    for i in (1, 2, 3):
        if _fold_batchnorm(getattr(module, f'conv{i}', None), getattr(module, f'bn{i}', None)):
            setattr(module, f'bn{i}', nn.Identity())
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            if _fold_batchnorm(module[i], module[i + 1]):
                module[i + 1] = nn.Identity()


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_int(v: Any, name: str, minimum: int) -> int:
    """`v` as an int >= `minimum`. Strings, floats and bools are refused, not converted: a config file or a command
    line that gives '8' or 8.5 has a bug that a silent conversion would hide."""
    if not _is_int(v):
        whole = isinstance(v, float) and v.is_integer() or isinstance(v, str) and v.strip().isdigit()
        hint = f' Pass {name}={int(float(v))}.' if whole else ''
        raise TypeError(f'{name} must be an int >= {minimum}, got {v!r} ({type(v).__name__}).{hint}')
    if v < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {v}.')
    return int(v)


def _as_tuple4(v: Union[int, Sequence[int]], name: str, broadcast: bool = True) -> Tuple[int, ...]:
    """4 positive ints, one per ResNet stage; with `broadcast`, one int stands for all four."""
    if broadcast and _is_int(v):
        v = (v,) * 4
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not all(_is_int(i) for i in v):
        one = ', or one int for all' if broadcast else ''
        raise TypeError(f'{name} needs 4 positive integers (one per ResNet stage{one}), got {v!r}.')
    v = tuple(int(i) for i in v)
    if len(v) != 4 or any(i < 1 for i in v):
        raise ValueError(f'{name} needs 4 positive integers (one per ResNet stage), got {v}.')
    return v


def _check_m3d_branches(
        m3d_branches: Union[int, Sequence[int]],
        layers: Sequence[int],
        frames: Sequence[int],
        temporal_blocks: str,
        temporal_stem: bool,
) -> None:
    """Refuse M3D kernels that can only read zero padding.

    A kernel of dilation i reads frames t - i, t, t + i; when i >= T, the clip length the layer sees, both outer
    taps fall outside [0, T) for every t. So a layer takes at most T - 1 kernels (and always 1, the least an M3D
    layer has). Where every block of a stage holds the unit ('all'), the blocks after a temporally strided first one
    see the stage's output length, and the stage's limit is set by it.
    """
    names = (['stem'] if temporal_stem else []) + [f'stage {i}' for i in range(1, 5)]
    seen = [frames[0]] if temporal_stem else []
    for i in range(4):
        seen.append(frames[i + 1] if temporal_blocks == 'all' and layers[i] > 1 else frames[i])
    if _is_int(m3d_branches):
        values = (m3d_branches,) * len(names)
    elif isinstance(m3d_branches, Sequence) and not isinstance(m3d_branches, (str, bytes)) \
            and all(_is_int(n) for n in m3d_branches):
        values = tuple(m3d_branches)
        if len(values) != len(names):
            return  # resolve_branches names the expected length
    else:
        raise TypeError(f'm3d_branches must be an int or one int per M3D layer ({", ".join(names)}), got '
                        f'{m3d_branches!r}.')
    if any(n < 1 for n in values):
        raise ValueError(f'm3d_branches must be >= 1 (an M3D layer has at least one temporal kernel), got '
                         f'{m3d_branches!r}.')
    limits = [max(1, t - 1) for t in seen]
    over = [f'{name} (T={t}: at most {lim})' for name, t, lim, n in zip(names, seen, limits, values) if n > lim]
    if over:
        fit = tuple(min(n, lim) for n, lim in zip(values, limits))
        raise ValueError(
            f'm3d_branches={m3d_branches!r} asks for more temporal kernels than the clip length allows at '
            f'{", ".join(over)}: a kernel of dilation i >= T reads only zero padding around each frame. Use at '
            f'most {tuple(limits)} per layer ({", ".join(names)}), e.g. m3d_branches={fit}, or a longer num_frames.')


def _take_indices(num_features: int, indices: Optional[Union[int, Sequence[int]]]) -> List[int]:
    """timm's `indices` of forward_intermediates: None for all, an int n for the last n, or a list (negatives count
    from the end)."""
    if indices is None:
        return list(range(num_features))
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f'indices={indices}: expected 1..{num_features} (the last n feature levels).')
        return list(range(num_features - indices, num_features))
    take = sorted({i % num_features if -num_features <= i < num_features else None for i in indices} - {None}) \
        if all(isinstance(i, int) for i in indices) else None
    if not take or len(take) != len(set(indices)):
        raise ValueError(f'indices={list(indices)}: expected feature levels in 0..{num_features - 1} (stem, stages '
                         f'1-4), or negatives counting from the end.')
    return take


def _make_stage(
        block_cls: Type[nn.Module], inplanes: int, planes: int, num_blocks: int, stride: int, temporal_stride: int,
        unit: Type[Unit], temporal_blocks: str, num_branches: int, norm_layer: Type[nn.Module],
        act_layer: Type[nn.Module]) -> nn.Sequential:
    """One stage: its first block strides (in space and time); the unit goes in every block, or in the first only
    (`temporal_blocks='first'`, the others 2D)."""
    blocks = []
    for j in range(num_blocks):
        block_unit = unit if temporal_blocks == 'all' or j == 0 else Unit2d
        blocks.append(block_cls(
            inplanes, planes,
            stride=stride if j == 0 else 1,
            temporal_stride=temporal_stride if j == 0 else 1,
            unit=block_unit,
            num_branches=num_branches if block_unit is unit else 1,
            norm_layer=norm_layer,
            act_layer=act_layer,
        ))
        inplanes = planes * block_cls.expansion
    return nn.Sequential(*blocks)


class VideoResNet(nn.Module):
    """ResNet over clips (B, 3, T, H, W) with a spatio-temporal unit, Residual Attention Layers and a ReID head.

    Args:
        block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50/101).
        layers: Blocks per stage.
        num_classes: Identities of the classifier; 0 gives a model that returns embeddings.
        in_chans: Input channels.
        num_frames: Clip length T the model is built for: it sets Eq. 6's number of M3D kernels and the RAL's
            temporal branch. Models without RAL take any T the temporal strides divide.
        unit: The spatio-temporal unit (a registered name, see `m3d_zoo.layers.units`): '2d', '3d', 'series',
            'parallel' or 'multiscale'.
        temporal_blocks: The unit goes in 'all' blocks, or in the 'first' block of each stage (M3D); the other blocks
            are 2D.
        temporal_stem: The stem takes the unit too (else it is 2D).
        m3d_branches: Kernels per multiscale layer (stem and stages 1-4, or one int for all); default Eq. 6 on the clip
            length entering each layer where the unit sits in the first block of a stage, 1 where it is in all blocks
            (P3D-C). The released code used log2(T): (3, 3, 3, 2, 1) at T = 8. A layer takes at most T - 1 kernels
            (at least 1), T the clip length it sees: a kernel of dilation T or more reads only zero padding.
        temporal_strides: Temporal stride of the first block of each stage. (1, 2, 2, 2) halves T in stages 2-4 as
            the released code did; (1, 1, 1, 1) keeps T throughout.
        ral: Residual Attention Layers after stages 1-3: None, or the branches to use ('sct', 's', 'c', 't').
        last_stride: Spatial stride of stage 4 (1 is common in ReID).
        head: 'bnneck' or 'paper' (see ReidHead).
        embed_dim: Embedding size (the paper head's 128).
        drop_rate: Dropout before the classifier; default 0.5 for the paper head, 0 for bnneck.
        inflation: How 2D pretrained kernels gain a temporal axis: 'center' (keeps the 2D function) or 'mean'.
        centre_clips: Subtract each clip's temporal mean frame from its frames at the input, so that what does not
            move (background, clothing that stays put) cancels and the network sees only change. Off by default (an
            inflated model then no longer equals its 2D net); it needs clips of 2 frames or more.
        norm_layer: Normalisation layer of the backbone.
        act_layer: Activation layer of the backbone.
    """

    @records_args
    def __init__(
            self,
            block: str = 'bottleneck',
            layers: Sequence[int] = (3, 4, 6, 3),
            num_classes: int = 625,
            in_chans: int = 3,
            num_frames: int = 8,
            unit: Union[str, Type[Unit]] = '2d',
            temporal_blocks: str = 'all',
            temporal_stem: bool = True,
            m3d_branches: Optional[Union[int, Sequence[int]]] = None,
            temporal_strides: Union[int, Sequence[int]] = (1, 2, 2, 2),
            ral: Optional[str] = None,
            last_stride: int = 2,
            head: str = 'bnneck',
            embed_dim: Optional[int] = None,
            drop_rate: Optional[float] = None,
            inflation: str = 'center',
            centre_clips: bool = False,
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        # Every argument is checked before a layer is built, so that a bad value is named here, not deep in torch.
        layers, unit, temporal_strides, frames = self._checked_args(
            block, layers, num_classes, in_chans, num_frames, unit, temporal_blocks, temporal_stem, m3d_branches,
            temporal_strides, ral, last_stride, head, embed_dim, drop_rate, inflation, centre_clips)
        block_cls = _BLOCKS[block]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.temporal_strides = temporal_strides
        self.ral_branches = ral
        self.inflation = inflation
        self.centre_clips = centre_clips
        self.grad_checkpointing = False
        self._fused = False

        # The kernels of each unit that takes them, by the clip length entering it.
        branches = self._resolve_branches(unit, m3d_branches, temporal_blocks, temporal_stem, frames)
        self.m3d_branches = branches if unit.has_branches else None
        stem_branches, stage_branches = (branches[0], branches[1:]) if temporal_stem else (1, branches)

        # Stem: torchvision names (conv1, bn1), the stem's unit (stem_temporal) after the ReLU, then max-pool.
        stem_unit = unit if temporal_stem else Unit2d
        self.conv1 = stem_unit.spatial_conv(in_chans, 64, 7, 2, 1)
        self.bn1 = norm_layer(64)
        self.act1 = act_layer(inplace=True)
        self.stem_temporal = stem_unit(in_chans, 64, 2, 1, stem_branches)
        self.maxpool = FrameMaxPool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

        inplanes, reduction = 64, 4
        self.feature_info = [dict(num_chs=64, reduction=2, module='stem_temporal')]
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else (last_stride if i == 3 else 2)
            reduction *= stride
            self.add_module(f'layer{i + 1}', _make_stage(
                block_cls, inplanes, planes, n, stride, temporal_strides[i], unit, temporal_blocks, stage_branches[i],
                norm_layer, act_layer))
            inplanes = planes * block_cls.expansion
            if ral and i < 3:
                # RAL after stages 1-3 (none after stage 4), at the clip length that stage outputs.
                self.add_module(f'ral{i + 1}', ResidualAttention(inplanes, frames[i + 1], ral))
            module = f'ral{i + 1}' if hasattr(self, f'ral{i + 1}') else f'layer{i + 1}'
            self.feature_info.append(dict(num_chs=inplanes, reduction=reduction, module=module))
        self.num_features = inplanes

        if drop_rate is None:
            drop_rate = 0.5 if head == 'paper' else 0.
        self.head = ReidHead(self.num_features, num_classes, head=head, embed_dim=embed_dim, drop_rate=drop_rate)
        self.head_hidden_size = self.head.embed_dim
        self.init_weights()

    @classmethod
    def check_args(cls, **kwargs: Any) -> None:
        """Raise the error ``VideoResNet(**kwargs)`` would raise for a bad argument, without building a layer.

        Raises:
            TypeError: an unknown argument, or one of the wrong type.
            ValueError: a value the model cannot be built with.
        """
        bound = inspect.signature(cls.__init__).bind(None, **kwargs)
        bound.apply_defaults()
        args = dict(bound.arguments)
        for name in ('self', 'norm_layer', 'act_layer'):
            args.pop(name)
        cls._checked_args(**args)

    @staticmethod
    def _checked_args(
            block: Any, layers: Any, num_classes: Any, in_chans: Any, num_frames: Any, unit: Any, temporal_blocks: Any,
            temporal_stem: Any, m3d_branches: Any, temporal_strides: Any, ral: Any, last_stride: Any, head: Any,
            embed_dim: Any, drop_rate: Any, inflation: Any, centre_clips: Any = False,
    ) -> Tuple[Tuple[int, ...], Type[Unit], Tuple[int, ...], List[int]]:
        """Check every constructor argument; returns the layers, unit class, temporal strides and the clip length
        entering the stem and each stage."""
        if not isinstance(block, str) or block not in _BLOCKS:
            raise ValueError(f'Unknown block {block!r}, expected one of {tuple(_BLOCKS)}.')
        layers = _as_tuple4(layers, 'layers', broadcast=False)
        _check_int(num_classes, 'num_classes', 0)
        _check_int(in_chans, 'in_chans', 1)
        num_frames = _check_int(num_frames, 'num_frames', 1)
        if not isinstance(unit, (str, type)):
            raise TypeError(f'unit must be a registered unit name or a Unit subclass, got {unit!r}.')
        unit = get_unit(unit)
        if not isinstance(temporal_blocks, str) or temporal_blocks not in ('all', 'first'):
            raise ValueError(f"temporal_blocks must be 'all' or 'first', got {temporal_blocks!r}.")
        if not isinstance(temporal_stem, bool):
            raise TypeError(f'temporal_stem must be True or False, got {temporal_stem!r}.')
        if not isinstance(centre_clips, bool):
            raise TypeError(f'centre_clips must be True or False, got {centre_clips!r}.')
        if centre_clips and num_frames < 2:
            raise ValueError(f'centre_clips needs clips of 2 frames or more (a 1-frame clip minus its mean is zero), '
                             f'got num_frames={num_frames}.')
        if not isinstance(inflation, str) or inflation not in ('center', 'mean'):
            raise ValueError(f"inflation must be 'center' or 'mean', got {inflation!r}.")
        if not _is_int(last_stride) or last_stride not in (1, 2):
            raise ValueError(f'last_stride must be 1 or 2, got {last_stride!r}.')
        temporal_strides = _as_tuple4(temporal_strides, 'temporal_strides')
        if num_frames % math.prod(temporal_strides):
            raise ValueError(
                f'num_frames={num_frames} cannot be divided by temporal_strides={temporal_strides} '
                f'(product {math.prod(temporal_strides)}): use a multiple of it, or other strides.')
        if ral is not None and (not isinstance(ral, str) or not ral or set(ral) - set('sct')):
            raise ValueError(f"ral must be None (no attention) or a combination of 's', 'c' and 't' (e.g. 'sct'), got "
                             f"{ral!r}.")
        ReidHead.check_args(num_classes, head, embed_dim, drop_rate)
        frames = [num_frames]
        for s in temporal_strides:
            frames.append(frames[-1] // s)
        if m3d_branches is not None and unit.has_branches:
            _check_m3d_branches(m3d_branches, layers, frames, temporal_blocks, temporal_stem)
        return layers, unit, temporal_strides, frames

    @staticmethod
    def _resolve_branches(
            unit: Type[Unit],
            m3d_branches: Optional[Union[int, Sequence[int]]],
            temporal_blocks: str,
            temporal_stem: bool,
            frames: Sequence[int],
    ) -> Tuple[int, ...]:
        """Kernels of each layer that holds the unit: the stem (if it has the unit), then the first block of stages
        1-4 (where 'all' blocks have it, every block of a stage takes its first block's value)."""
        layer_frames = ([frames[0]] if temporal_stem else []) + list(frames[:4])
        if not unit.has_branches:
            if m3d_branches is not None:
                raise ValueError(f'm3d_branches applies to M3D (multiscale) models, not to unit {unit.__name__}.')
            return (1,) * len(layer_frames)
        if m3d_branches is None and temporal_blocks == 'all':
            m3d_branches = 1  # P3D-C: one kernel in every block
        return resolve_branches(m3d_branches, layer_frames)

    @torch.no_grad()
    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d) and not isinstance(m, TemporalConv):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if hasattr(m, 'zero_init_last'):
                m.zero_init_last()
        # Temporal and attention layers own their (identity-keeping) init; re-apply it after the loop above.
        for m in self.modules():
            if isinstance(m, (TemporalConv, ResidualAttention)):
                m.reset_parameters()

    @property
    def model_args(self) -> Dict[str, Any]:
        """The exact arguments that rebuild this model with `create_model(architecture, **model_args)`."""
        return get_model_args(self)

    @property
    def min_frames(self) -> int:
        """The smallest clip length the model takes; valid lengths are its multiples."""
        return math.prod(self.temporal_strides)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^conv1|^bn1|^stem_temporal',
            blocks=r'^(?:layer|ral)(\d+)' if coarse else [
                (r'^layer(\d+)\.(\d+)', None),
                (r'^ral(\d+)', (99999,)),  # timm's MATCH_PREV_GROUP: a RAL joins its stage's last block
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool not in (None, 'avg'):
            raise ValueError(f"Only global_pool='avg' (over T, H, W) is supported, got '{global_pool}'.")
        self.num_classes = num_classes
        self.head.reset(num_classes)
        update_model_args(self, num_classes=num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the model cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f'Expected a torch.Tensor clip batch (B, {self.in_chans}, T, H, W), got {type(x).__name__}.')
        if x.ndim != 5:
            hint = ' For a single clip (C, T, H, W) use x.unsqueeze(0).' if x.ndim == 4 else ''
            raise ValueError(
                f'Expected a 5-D clip batch (B, {self.in_chans}, T, H, W), got shape {tuple(x.shape)}.{hint}')
        if x.shape[1] != self.in_chans:
            hint = ''
            if x.shape[2] == self.in_chans:
                hint = ' It looks like (B, T, C, H, W): use x.permute(0, 2, 1, 3, 4).'
            raise ValueError(
                f'Expected {self.in_chans} channels in dim 1 of (B, C, T, H, W), got shape {tuple(x.shape)}.{hint}')
        if not x.is_floating_point():
            raise TypeError(
                f'Expected a floating point clip, got dtype {x.dtype}. Convert with x.float() / 255 and normalise '
                f'with the model\'s pretrained_cfg mean and std.')
        dtype = self.conv1.weight.dtype
        # Autocast casts both sides of a conv to its dtype, except float64, which it leaves alone.
        autocast = torch.is_autocast_enabled(x.device.type) and torch.float64 not in (x.dtype, dtype)
        if x.dtype != dtype and not autocast:
            also = ' (torch.autocast leaves float64 alone)' if torch.float64 in (x.dtype, dtype) \
                else ', or run the model under torch.autocast'
            raise TypeError(
                f'The clip is {x.dtype} but the model\'s weights are {dtype}: convert one to the other, '
                f'x.to({dtype}) or model.to({x.dtype}){also}.')
        T = x.shape[2]
        if T % self.min_frames or T < 1:
            raise ValueError(
                f'Clip length T={T} cannot be taken by temporal_strides={self.temporal_strides}: T must be a '
                f'multiple of {self.min_frames}. Sample clips of {self.num_frames} frames, or build the model with '
                f'temporal_strides=(1, 1, 1, 1).')
        if self.ral_branches and T != self.num_frames:
            raise ValueError(
                f'This RAL model was built for num_frames={self.num_frames} and got T={T}: its temporal attention is '
                f'tied to the clip length. Sample clips of {self.num_frames} frames or create the model with '
                f'num_frames={T}.')
        if self.centre_clips and T < 2:
            raise ValueError(f'This model centres its clips (centre_clips=True) and got T={T}: a 1-frame clip minus its '
                             f'mean is zero. Sample clips of 2 frames or more.')

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem up to its unit (the stem feature), before the max-pool."""
        if self.centre_clips:
            x = x - x.mean(2, keepdim=True)
        return self.stem_temporal(self.act1(self.bn1(self.conv1(x))), x)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage i (1-4) and the RAL after it, if any."""
        layer = getattr(self, f'layer{i}')
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(layer, x)
        else:
            x = layer(x)
        ral = getattr(self, f'ral{i}', None)
        return x if ral is None else ral(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clip batch -> (B, num_features, T', H', W') feature map."""
        self.check_input(x)
        x = self.maxpool(self._stem(x))
        for i in range(1, 5):
            x = self._stage(i, x)
        return x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, Sequence[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: Any = 'NCTHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's feature API: the stem feature (after the stem's unit) and each stage's output (after its RAL).

        Args:
            x: Clip batch (B, C, T, H, W).
            indices: Feature levels to return (0 the stem, 1-4 the stages): None for all, n for the last n.
            norm: Unused (no final norm in a ResNet); kept for timm's signature.
            stop_early: Stop after the last level asked for.
            output_fmt: Channels-first (B, C, T, H, W) features; timm's 'NCHW' is taken to mean the same.
            intermediates_only: Return the features only.

        Returns:
            The features, or (final feature map, features).
        """
        if str(getattr(output_fmt, 'value', output_fmt)) not in ('NCTHW', 'NCHW'):
            raise ValueError(f"output_fmt={output_fmt!r}: video ResNets give channels-first (B, C, T, H, W) features.")
        take = _take_indices(len(self.feature_info), indices)
        self.check_input(x)
        x = self._stem(x)
        features = [x] if 0 in take else []
        x = self.maxpool(x)
        for i in range(1, 5):
            if stop_early and i > take[-1]:
                break
            x = self._stage(i, x)
            if i in take:
                features.append(x)
        return features if intermediates_only else (x, features)

    def prune_intermediate_layers(
            self,
            indices: Union[int, Sequence[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last feature level asked for (and the classifier); returns the levels kept."""
        take = _take_indices(len(self.feature_info), indices)
        for i in range(take[-1] + 1, 5):
            setattr(self, f'layer{i}', nn.Identity())
            if hasattr(self, f'ral{i}'):
                setattr(self, f'ral{i}', nn.Identity())
        if prune_head:
            self.reset_classifier(0)
        return take

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> embedding (`pre_logits=True` or num_classes=0) or logits."""
        return self.head(x, pre_logits=pre_logits)

    def forward_train(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Everything a ReID loss needs: `logits` (None without classifier), `feat` (for metric losses), `emb`."""
        return self.head.forward_train(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def is_fused(self) -> bool:
        """Whether `fuse()` was called: the model is then for inference and export only."""
        return self._fused

    @torch.no_grad()
    def fuse(self, batchnorm: bool = True) -> 'VideoResNet':
        """Prepare the model for inference and export, in place: the same function with fewer operations.

        Each M3D layer's n dilated temporal kernels become one (2n+1, 1, 1) kernel, and (with `batchnorm`) every
        BatchNorm of the backbone is folded into the conv before it, using its running statistics. A fused model
        cannot be trained or saved with `save_pretrained` (its tensors are not the model's parameters): fuse a copy.

        Raises:
            RuntimeError: `batchnorm` on a model in training mode (BatchNorm then normalises with batch statistics,
                which cannot be folded): call `model.eval()` first.
        """
        if batchnorm and self.training:
            raise RuntimeError('fuse() folds BatchNorm\'s running statistics into the convs, which is only the same '
                               'function in eval mode: call model.eval() first (or fuse(batchnorm=False)).')
        for m in self.modules():
            if isinstance(m, MultiScaleTemporal):
                m.fuse()
        if batchnorm:
            for m in list(self.modules()):
                _fold_norms(m)
        self._fused = True
        return self


def _create_video_resnet(variant: str, pretrained: bool = False, **kwargs) -> VideoResNet:
    """Build a registered video ResNet; `kwargs` are the family's table, the depth and the user's arguments."""
    return build_model_with_cfg(
        VideoResNet, variant, pretrained,
        pretrained_filter_fn=inflate_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3, 4)),
        **kwargs,
    )


def _cfg(depth: str, tag: str, **kwargs) -> Dict[str, Any]:
    """Pretrained cfg of a model inflated from timm's 2D ImageNet `resnetXX.<tag>` weights on the Hub."""
    return dict(
        hf_hub_id=f'timm/{depth}.{tag}',
        num_classes=625,  # MARS training identities, the paper's classifier
        input_size=(3, 256, 128),  # per frame; the clip length is the `num_frames` model argument
        pool_size=(8, 4),
        crop_pct=1.0,
        interpolation='bilinear',
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv='conv1',
        classifier='head.classifier',
        license='apache-2.0' if tag == 'a1_in1k' else 'bsd-3-clause',
        notes=(f'Backbone inflated from the 2D ImageNet ResNet timm/{depth}.{tag}; temporal, attention and '
               f'ReID head parameters are new (not ReID-trained).',),
        **kwargs,
    )


def family_cfgs(family: str) -> Dict[str, Dict[str, Any]]:
    """Default cfgs of a family for every depth: tv_in1k (the paper's, default), a1_in1k, and released ReID weights."""
    cfgs = {}
    for depth in RESNET_DEPTHS:
        for tag in ('tv_in1k', 'a1_in1k'):
            cfgs[f'{family}_{depth}.{tag}'] = _cfg(depth, tag)
        for name, released in released_pretrained_cfgs(f'{family}_{depth}').items():
            base = _cfg(depth, 'tv_in1k')  # input spec and classifier names; the release sets weights and notes
            base.pop('notes')
            cfgs[name] = dict(base, **released)
    return cfgs

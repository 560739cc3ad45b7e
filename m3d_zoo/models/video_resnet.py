""" Video ResNet: one network for every family of the paper's Tables 1 and 2.

The families (C2D, I3D, P3D-A/B/C, M3D, M3D + RAL) differ only by data: which temporal operator sits in a block
(`temporal`), in which blocks (`temporal_blocks`), how many M3D kernels (`m3d_branches`), and where the clip is
temporally downsampled (`temporal_strides`). The 2D parts keep torchvision's ResNet parameter names and shapes
(conv kernels get a temporal axis), so an ImageNet ResNet inflates into any family by reshaping alone.

Temporal operators, attached to the block's spatial 3x3 conv output S(x) (after its BN and ReLU):
    'none'        S(x)                                             C2D, and M3D's blocks without an M3D layer
    'full'        the 3x3 conv itself is 3x3x3                      I3D
    'series'      T(S(x)), T starts as the identity                 P3D-A
    'parallel'    S(x) + T(x), T on the conv's input               P3D-B
    'multiscale'  S(x) + sum_i T_i(S(x)), dilations 1..n            M3D (Eq. 4-6); P3D-C is n = 1
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, checkpoint_seq

from m3d_zoo.layers import MultiScaleTemporal, ReidHead, ResidualAttention, TemporalConv, TemporalPool
from m3d_zoo.layers.temporal import Conv3d, _cpu_fast_path, resolve_branches
from ._hub import released_pretrained_cfgs
from ._inflate import inflate_filter_fn

__all__ = ['VideoResNet', 'VideoBasicBlock', 'VideoBottleneck', 'TEMPORAL_KINDS']

TEMPORAL_KINDS = ('none', 'full', 'series', 'parallel', 'multiscale')


class ParallelTemporal(nn.Module):
    """P3D-B: a (3, 1, 1) conv on the spatial conv's input, carrying its spatial stride, summed with its output."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1):
        super().__init__()
        self.conv = TemporalConv(in_chs, out_chs, 3, stride=(temporal_stride, stride, stride))
        self.pool = TemporalPool(temporal_stride) if temporal_stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        return self.conv(x_in, residual=self.pool(x))


class FrameMaxPool(nn.MaxPool3d):
    """nn.MaxPool3d over (1, k, k) windows, with a fast path for channels-first tensors on the CPU.

    PyTorch's CPU max-pool kernels for channels-first tensors are scalar loops (35 ms for the ResNet-50 stem output of
    an 8-frame 256x128 clip, 8% of the whole 2D net). A max over a rectangle is separable: a max of k strided slices
    along W, then along H, gives the same values (bit for bit) in about a tenth of the time. Only for eager CPU
    channels-first inputs; elsewhere (GPU, channels_last_3d, compile, export) the stock op is as fast or needed.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size[1], self.stride[1], self.padding[1]
        if not (_cpu_fast_path(x) and x.ndim == 5 and x.is_contiguous() and not self.ceil_mode
                and self.dilation in (1, (1, 1, 1)) and not self.return_indices
                and self.kernel_size == (1, k, k) and self.stride == (1, s, s) and self.padding == (0, p, p)):
            return super().forward(x)
        if (k, s, p) == (3, 2, 1) and not torch.is_grad_enabled():
            # ResNet's stem at inference: no padded copy of the input, H first (whole rows): 2.2 -> 1.4 ms. It writes
            # into its output (out=), which autograd does not allow; training takes the padded path below.
            return _max3_stride2(_max3_stride2(x, -2), -1)
        H, W = x.shape[-2:]
        Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        x = F.pad(x, (p, p, p, p), value=float('-inf'))
        out = x[..., 0:s * (Wo - 1) + 1:s]
        for j in range(1, k):
            out = torch.maximum(out, x[..., j:j + s * (Wo - 1) + 1:s])
        x = out
        out = x[..., 0:s * (Ho - 1) + 1:s, :]
        for j in range(1, k):
            out = torch.maximum(out, x[..., j:j + s * (Ho - 1) + 1:s, :])
        return out


def _max3_stride2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over windows of 3 with stride 2 and padding 1 along `dim`: out[i] = max(x[2i-1], x[2i], x[2i+1]), taken
    over the indices that exist (padding is -inf), written into one buffer without a padded copy of x."""
    n = x.shape[dim]
    n_out, n_odd = (n + 1) // 2, n // 2
    every_2nd = (slice(None),) * (x.ndim + dim) + (slice(None, None, 2),)
    even = x.narrow(dim, 0, n_out * 2 - 1)[every_2nd]  # x[2i], n_out of them
    odd = x.narrow(dim, 1, max(n_odd * 2 - 1, 0))[every_2nd]  # x[2i + 1], n_odd of them
    out = even.clone(memory_format=torch.contiguous_format)
    head = out.narrow(dim, 0, n_odd)
    torch.maximum(head, odd, out=head)  # x[2i + 1]
    if n_out > 1:
        tail = out.narrow(dim, 1, n_out - 1)
        torch.maximum(tail, odd.narrow(dim, 0, n_out - 1), out=tail)  # x[2i - 1]
    return out


def _make_temporal(
        kind: str,
        chs: int,
        in_chs: int,
        stride: int,
        temporal_stride: int,
        num_branches: int,
) -> Optional[nn.Module]:
    """The temporal operator after a spatial conv (see the module docstring); None where there is nothing to add."""
    if kind == 'multiscale':
        return MultiScaleTemporal(chs, num_branches, temporal_stride)
    if kind == 'series':
        return TemporalConv(chs, chs, 3, stride=temporal_stride, init='dirac')
    if kind == 'parallel':
        return ParallelTemporal(in_chs, chs, stride, temporal_stride)
    if kind == 'none' and temporal_stride > 1:
        return TemporalPool(temporal_stride)
    return None  # 'full' (the conv itself is 3D) or 'none' without downsampling


def _conv3x3(in_chs: int, out_chs: int, stride: int, temporal_stride: int, full: bool) -> nn.Conv3d:
    kt = 3 if full else 1
    return Conv3d(
        in_chs, out_chs, (kt, 3, 3), stride=(temporal_stride if full else 1, stride, stride),
        padding=(kt // 2, 1, 1), bias=False)


class _VideoBlock(nn.Module):
    """Shared forward parts of the basic and bottleneck blocks: temporal operator and shortcut."""
    temporal_kind: str

    def _apply_temporal(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        if self.temporal is None:
            return x
        if self.temporal_kind == 'parallel':
            return self.temporal(x, x_in)
        return self.temporal(x)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            return x
        return self.downsample(self.shortcut_pool(x))

    def _init_shortcut(
            self,
            inplanes: int,
            outplanes: int,
            stride: int,
            temporal_stride: int,
            norm_layer: Type[nn.Module],
    ) -> None:
        # I3D (released code) strides its 1x1x1 shortcut conv in time; the others average-pool the shortcut in time,
        # like their 2D path. Pooling first (not after the conv) keeps torchvision's `downsample.0/1` names.
        strided = self.temporal_kind == 'full'
        self.shortcut_pool = TemporalPool(temporal_stride) if temporal_stride > 1 and not strided else nn.Identity()
        self.downsample = None
        if stride != 1 or temporal_stride != 1 or inplanes != outplanes:
            self.downsample = nn.Sequential(
                Conv3d(
                    inplanes, outplanes, 1, stride=(temporal_stride if strided else 1, stride, stride), bias=False),
                norm_layer(outplanes),
            )


class VideoBasicBlock(_VideoBlock):
    """ResNet-18/34 block; the temporal operator follows the first 3x3 conv."""
    expansion = 1

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            temporal_stride: int = 1,
            temporal: str = 'none',
            num_branches: int = 1,
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        full = temporal == 'full'
        self.temporal_kind = temporal
        self.conv1 = _conv3x3(inplanes, planes, stride, temporal_stride, full)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer(inplace=True)
        self.temporal = _make_temporal(temporal, planes, inplanes, stride, temporal_stride, num_branches)
        self.conv2 = _conv3x3(planes, planes, 1, 1, full)
        self.bn2 = norm_layer(planes)
        self.act2 = act_layer(inplace=True)
        self._init_shortcut(inplanes, planes, stride, temporal_stride, norm_layer)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self._shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self._apply_temporal(out, x)
        out = self.bn2(self.conv2(out))
        return self.act2(out + shortcut)


class VideoBottleneck(_VideoBlock):
    """ResNet-50/101 block; the temporal operator follows the 3x3 conv, before the 1x1 expansion (DESIGN §3)."""
    expansion = 4

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            temporal_stride: int = 1,
            temporal: str = 'none',
            num_branches: int = 1,
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        outplanes = planes * self.expansion
        self.temporal_kind = temporal
        self.conv1 = Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer(inplace=True)
        self.conv2 = _conv3x3(planes, planes, stride, temporal_stride, temporal == 'full')
        self.bn2 = norm_layer(planes)
        self.act2 = act_layer(inplace=True)
        self.temporal = _make_temporal(temporal, planes, planes, stride, temporal_stride, num_branches)
        self.conv3 = Conv3d(planes, outplanes, 1, bias=False)
        self.bn3 = norm_layer(outplanes)
        self.act3 = act_layer(inplace=True)
        self._init_shortcut(inplanes, outplanes, stride, temporal_stride, norm_layer)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self._shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out_in = out
        out = self.act2(self.bn2(self.conv2(out)))
        out = self._apply_temporal(out, out_in)
        out = self.bn3(self.conv3(out))
        return self.act3(out + shortcut)


_BLOCKS = {'basic': VideoBasicBlock, 'bottleneck': VideoBottleneck}


def _as_tuple4(v: Union[int, Sequence[int]], name: str) -> Tuple[int, ...]:
    v = (v,) * 4 if isinstance(v, int) else tuple(int(i) for i in v)
    if len(v) != 4 or any(i < 1 for i in v):
        raise ValueError(f'{name} needs 4 positive integers (one per ResNet stage), got {v}.')
    return v


class VideoResNet(nn.Module):
    """ResNet over clips (B, 3, T, H, W) with a configurable temporal operator, RAL and ReID head.

    Args:
        block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50/101).
        layers: Blocks per stage.
        num_classes: Identities of the classifier; 0 gives a model that returns embeddings.
        in_chans: Input channels.
        num_frames: Clip length T the model is built for: it sets Eq. 6's number of M3D kernels and the RAL's
            temporal branch. Models without RAL take any T the temporal strides divide.
        temporal: Temporal operator kind, one of TEMPORAL_KINDS.
        temporal_blocks: 'all' blocks, or the 'first' block of each stage (M3D).
        temporal_stem: Put the temporal operator after the stem conv too.
        m3d_branches: Kernels per M3D layer (stem and stages 1-4; one int for all); default Eq. 6 on the clip
            length entering each layer. The released code used log2(T): (3, 3, 3, 2, 1) at T = 8.
        temporal_strides: Temporal stride of the first block of each stage. (1, 2, 2, 2) halves T in stages 2-4 as
            the released code did; (1, 1, 1, 1) keeps T throughout.
        ral: Residual Attention Layers after stages 1-3: None, or the branches to use ('sct', 's', 'c', 't').
        last_stride: Spatial stride of stage 4 (1 is common in ReID).
        head: 'bnneck' or 'paper' (see ReidHead).
        embed_dim: Embedding size (the paper head's 128).
        drop_rate: Dropout before the classifier; default 0.5 for the paper head, 0 for bnneck.
        inflation: How 2D pretrained kernels gain a temporal axis: 'center' (keeps the 2D function) or 'mean'.
        norm_layer: Normalisation layer of the backbone.
        act_layer: Activation layer of the backbone.
    """

    def __init__(
            self,
            block: str = 'bottleneck',
            layers: Sequence[int] = (3, 4, 6, 3),
            num_classes: int = 625,
            in_chans: int = 3,
            num_frames: int = 8,
            temporal: str = 'none',
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
            norm_layer: Type[nn.Module] = nn.BatchNorm3d,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"Unknown block '{block}', expected one of {tuple(_BLOCKS)}.")
        if temporal not in TEMPORAL_KINDS:
            raise ValueError(f"Unknown temporal kind '{temporal}', expected one of {TEMPORAL_KINDS}.")
        if temporal_blocks not in ('all', 'first'):
            raise ValueError(f"temporal_blocks must be 'all' or 'first', got '{temporal_blocks}'.")
        if inflation not in ('center', 'mean'):
            raise ValueError(f"inflation must be 'center' or 'mean', got '{inflation}'.")
        if last_stride not in (1, 2):
            raise ValueError(f'last_stride must be 1 or 2, got {last_stride}.')
        if num_frames < 1:
            raise ValueError(f'num_frames must be >= 1, got {num_frames}.')
        temporal_strides = _as_tuple4(temporal_strides, 'temporal_strides')
        if num_frames % math.prod(temporal_strides):
            raise ValueError(
                f'num_frames={num_frames} cannot be divided by temporal_strides={temporal_strides} '
                f'(product {math.prod(temporal_strides)}): use a multiple of it, or other strides.')
        block_cls = _BLOCKS[block]
        self.block_type = block
        self.layers = tuple(layers)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.temporal_kind = temporal
        self.temporal_blocks = temporal_blocks
        self.temporal_stem = temporal_stem
        self.temporal_strides = temporal_strides
        self.ral_branches = ral
        self.last_stride = last_stride
        self.inflation = inflation
        self.grad_checkpointing = False

        # Clip length entering the stem and each stage; M3D layers sit at the stem and the first block of each stage.
        frames = [num_frames]
        for s in temporal_strides:
            frames.append(frames[-1] // s)
        # Clip length entering each M3D layer: the stem, then the first block of each stage.
        layer_frames = ([num_frames] if temporal_stem else []) + frames[:4]
        if temporal == 'multiscale':
            # Default: Eq. 6 where M3D layers sit in the first block of a stage (M3D), one kernel everywhere (P3D-C).
            if m3d_branches is None and temporal_blocks == 'all':
                m3d_branches = 1
            branches = resolve_branches(m3d_branches, layer_frames)
        else:
            if m3d_branches is not None:
                raise ValueError(f"m3d_branches applies to M3D (multiscale) models, not to temporal='{temporal}'.")
            branches = (1,) * len(layer_frames)
        self.m3d_branches = branches if temporal == 'multiscale' else None
        stem_branches, stage_branches = (branches[0], branches[1:]) if temporal_stem else (1, branches)

        # Stem: torchvision names (conv1, bn1), a temporal operator after the ReLU, then max-pool.
        stem_full = temporal == 'full'
        self.conv1 = Conv3d(
            in_chans, 64, (3 if stem_full else 1, 7, 7), stride=(1, 2, 2), padding=(1 if stem_full else 0, 3, 3),
            bias=False)
        self.bn1 = norm_layer(64)
        self.act1 = act_layer(inplace=True)
        stem_kind = temporal if temporal_stem else 'none'
        self.stem_temporal = _make_temporal(stem_kind, 64, in_chans, 2, 1, stem_branches)
        self.maxpool = FrameMaxPool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

        inplanes = 64
        self.feature_info = [dict(num_chs=64, reduction=4, module='act1')]
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), self.layers)):
            stride = 1 if i == 0 else (last_stride if i == 3 else 2)
            blocks = []
            for j in range(n):
                with_temporal = temporal_blocks == 'all' or j == 0
                blocks.append(block_cls(
                    inplanes, planes,
                    stride=stride if j == 0 else 1,
                    temporal_stride=temporal_strides[i] if j == 0 else 1,
                    temporal=temporal if with_temporal else 'none',
                    num_branches=stage_branches[i] if with_temporal else 1,
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                ))
                inplanes = planes * block_cls.expansion
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=inplanes, reduction=4 * 2 ** i, module=f'layer{i + 1}'))
            if ral and i < 3:
                # RAL after stages 1-3 (none after stage 4), at the clip length that stage outputs.
                self.add_module(f'ral{i + 1}', ResidualAttention(inplanes, frames[i + 1], ral))
        self.num_features = inplanes

        if drop_rate is None:
            drop_rate = 0.5 if head == 'paper' else 0.
        self.head = ReidHead(self.num_features, num_classes, head=head, embed_dim=embed_dim, drop_rate=drop_rate)
        self.head_hidden_size = self.head.embed_dim
        self.init_weights()

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
        """The user-facing arguments that rebuild this model with `create_model(architecture, **model_args)`."""
        return dict(
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            num_frames=self.num_frames,
            temporal_strides=list(self.temporal_strides),
            m3d_branches=list(self.m3d_branches) if self.m3d_branches is not None else None,
            last_stride=self.last_stride,
            head=self.head.head_type,
            embed_dim=self.head.embed_dim if self.head.embed_dim != self.num_features else None,
            drop_rate=self.head.drop_rate,
            inflation=self.inflation,
        )

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

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x_in = x
        x = self.act1(self.bn1(self.conv1(x)))
        if self.stem_temporal is not None:
            x = self.stem_temporal(x, x_in) if self.temporal_kind == 'parallel' else self.stem_temporal(x)
        return self.maxpool(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clip batch -> (B, num_features, T', H', W') feature map."""
        self.check_input(x)
        x = self.forward_stem(x)
        for i in range(1, 5):
            layer = getattr(self, f'layer{i}')
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(layer, x)
            else:
                x = layer(x)
            ral = getattr(self, f'ral{i}', None)
            if ral is not None:
                x = ral(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> embedding (`pre_logits=True` or num_classes=0) or logits."""
        return self.head(x, pre_logits=pre_logits)

    def forward_train(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Everything a ReID loss needs: `logits` (None without classifier), `feat` (for metric losses), `emb`."""
        return self.head.forward_train(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def fuse(self) -> 'VideoResNet':
        """Merge each M3D layer's n dilated temporal kernels into one (2n+1, 1, 1) kernel, in place, for inference."""
        for m in self.modules():
            if isinstance(m, MultiScaleTemporal):
                m.fuse()
        return self


_DEPTHS = {
    'resnet18': dict(block='basic', layers=(2, 2, 2, 2)),
    'resnet34': dict(block='basic', layers=(3, 4, 6, 3)),
    'resnet50': dict(block='bottleneck', layers=(3, 4, 6, 3)),
    'resnet101': dict(block='bottleneck', layers=(3, 4, 23, 3)),
}


def _create_video_resnet(variant: str, pretrained: bool = False, **kwargs) -> VideoResNet:
    """Build a registered video ResNet; `variant` ends with the 2D depth it inflates (e.g. 'm3d_resnet50')."""
    depth = variant.rsplit('_', 1)[-1]
    model_args = dict(_DEPTHS[depth], **kwargs)
    return build_model_with_cfg(
        VideoResNet, variant, pretrained,
        pretrained_filter_fn=inflate_filter_fn,
        **model_args,
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
    for depth in _DEPTHS:
        for tag in ('tv_in1k', 'a1_in1k'):
            cfgs[f'{family}_{depth}.{tag}'] = _cfg(depth, tag)
        for name, released in released_pretrained_cfgs(f'{family}_{depth}').items():
            base = _cfg(depth, 'tv_in1k')  # input spec and classifier names; the release sets weights and notes
            base.pop('notes')
            cfgs[name] = dict(base, **released)
    return cfgs

""" Two-stream M3D network (Fig. 3, Eq. 1): a C2D spatial stream and an M3D + RAL temporal stream, f = [f_s, f_t].

Both streams are full video ResNets with their own heads, inflated from the same 2D ResNet. The embedding is the
concatenation of the two streams' embeddings; the logits are the mean of the two classifiers', and `forward_train`
returns both streams' logits so that a loss can supervise each stream, as the paper trains them.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..hub.released import released_pretrained_cfgs
from ._inflate import inflate_filter_fn, inflate_state_dict
from ._record import get_model_args, records_args, update_model_args
from .video_resnet import RESNET_DEPTHS, VideoResNet, _cfg

__all__ = ['TwoStreamM3D']


class TwoStreamM3D(nn.Module):
    """C2D + M3D-RAL two-stream network.

    Args:
        block: 'basic' or 'bottleneck'.
        layers: Blocks per stage.
        num_classes: Identities of each stream's classifier; 0 for an embedding extractor.
        temporal_strides: Temporal stream's strides (the spatial stream never downsamples T).
        m3d_branches: Temporal stream's M3D kernels per layer (default Eq. 6).
        ral: Temporal stream's RAL branches.
        **kwargs: Arguments common to both streams (num_frames, in_chans, last_stride, head, embed_dim, drop_rate,
            inflation).
    """

    @records_args
    def __init__(
            self,
            block: str = 'bottleneck',
            layers: Sequence[int] = (3, 4, 6, 3),
            num_classes: int = 625,
            temporal_strides: Union[int, Sequence[int]] = (1, 2, 2, 2),
            m3d_branches: Optional[Union[int, Sequence[int]]] = None,
            ral: str = 'sct',
            **kwargs,
    ):
        super().__init__()
        fixed = sorted(set(kwargs) & {'unit', 'temporal_blocks'})
        if fixed:
            raise TypeError(
                f'TwoStreamM3D does not take {", ".join(fixed)}: its spatial stream is 2D and its temporal stream has '
                f"M3D layers in the first block of each stage. Build a single stream with another unit with "
                f"m3d_zoo.create_model('m3d_resnet50', unit=..., temporal_blocks=...).")
        # The temporal stream's arguments are checked before the spatial stream is built, so that a bad one fails fast.
        VideoResNet.check_args(block=block, layers=layers, num_classes=num_classes, temporal_strides=temporal_strides,
                               m3d_branches=m3d_branches, ral=ral, unit='multiscale', temporal_blocks='first',
                               **kwargs)
        self.spatial_stream = VideoResNet(
            block, layers, num_classes, unit='2d', temporal_strides=1, **kwargs)
        self.temporal_stream = VideoResNet(
            block, layers, num_classes, unit='multiscale', temporal_blocks='first', m3d_branches=m3d_branches,
            temporal_strides=temporal_strides, ral=ral, **kwargs)
        self.num_classes = num_classes
        self.in_chans = self.temporal_stream.in_chans
        self.num_frames = self.temporal_stream.num_frames
        self.inflation = self.temporal_stream.inflation
        self.num_features = self.spatial_stream.num_features + self.temporal_stream.num_features
        self.head_hidden_size = self.spatial_stream.head_hidden_size + self.temporal_stream.head_hidden_size
        self.feature_info = [
            dict(s, num_chs=s['num_chs'] + t['num_chs'], module=f"temporal_stream.{t['module']}")
            for s, t in zip(self.spatial_stream.feature_info, self.temporal_stream.feature_info)]

    @property
    def model_args(self) -> Dict[str, Any]:
        """The exact arguments that rebuild this model with `create_model(architecture, **model_args)`."""
        return get_model_args(self)

    @property
    def min_frames(self) -> int:
        return self.temporal_stream.min_frames

    def inflate_pretrained(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Inflate one 2D ResNet into both streams."""
        out = {}
        for name in ('spatial_stream', 'temporal_stream'):
            stream = getattr(self, name)
            out.update({f'{name}.{k}': v for k, v in inflate_state_dict(state_dict, stream, self.inflation).items()})
        return out

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        prefix = r'^(?:spatial|temporal)_stream\.'
        return dict(
            stem=prefix + r'(?:conv1|bn1|stem_temporal)',
            blocks=prefix + r'(?:layer|ral)(\d+)' if coarse else [
                (prefix + r'layer(\d+)\.(\d+)', None),
                (prefix + r'ral(\d+)', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.spatial_stream.set_grad_checkpointing(enable)
        self.temporal_stream.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return nn.ModuleList([self.spatial_stream.get_classifier(), self.temporal_stream.get_classifier()])

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.spatial_stream.reset_classifier(num_classes, global_pool)
        self.temporal_stream.reset_classifier(num_classes, global_pool)
        update_model_args(self, num_classes=num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        self.temporal_stream.check_input(x)

    @staticmethod
    def _join(xs: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """The spatial stream's map averaged in time to the temporal one's length, concatenated with it."""
        B, C, T, H, W = xs.shape
        xs = xs.view(B, C, xt.shape[2], T // xt.shape[2], H, W).mean(dim=3)  # Eq. 2's temporal average, in part
        return torch.cat([xs, xt], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Both streams' feature maps, joined (`_join`)."""
        self.check_input(x)
        return self._join(self.spatial_stream.forward_features(x), self.temporal_stream.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, Sequence[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: Any = 'NCTHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's feature API: each level's two stream features, joined as in `forward_features`."""
        self.check_input(x)
        kw = dict(indices=indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt)
        xs, fs = self.spatial_stream.forward_intermediates(x, **kw)
        xt, ft = self.temporal_stream.forward_intermediates(x, **kw)
        features = [self._join(s, t) for s, t in zip(fs, ft)]
        return features if intermediates_only else (self._join(xs, xt), features)

    def prune_intermediate_layers(
            self,
            indices: Union[int, Sequence[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        self.spatial_stream.prune_intermediate_layers(indices, prune_norm, prune_head)
        take = self.temporal_stream.prune_intermediate_layers(indices, prune_norm, prune_head)
        if prune_head:
            self.num_classes = 0
            update_model_args(self, num_classes=0)
        return take

    def _split(self, x: torch.Tensor):
        return x.split([self.spatial_stream.num_features, self.temporal_stream.num_features], dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        xs, xt = self._split(x)
        if pre_logits or self.num_classes <= 0:
            return torch.cat([
                self.spatial_stream.forward_head(xs, pre_logits=True),
                self.temporal_stream.forward_head(xt, pre_logits=True)], dim=1)
        return (self.spatial_stream.forward_head(xs) + self.temporal_stream.forward_head(xt)) / 2

    def forward_train(self, x: torch.Tensor) -> Dict[str, Any]:
        """`logits` and `feat` are (spatial, temporal) pairs, one loss term each; `emb` is the concatenation."""
        xs, xt = self._split(self.forward_features(x))
        s = self.spatial_stream.head.forward_train(xs)
        t = self.temporal_stream.head.forward_train(xt)
        return dict(
            logits=(s['logits'], t['logits']), feat=(s['feat'], t['feat']), emb=torch.cat([s['emb'], t['emb']], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def is_fused(self) -> bool:
        return self.spatial_stream.is_fused or self.temporal_stream.is_fused

    @torch.no_grad()
    def fuse(self, batchnorm: bool = True) -> 'TwoStreamM3D':
        """`VideoResNet.fuse` on both streams: for inference and export only."""
        self.spatial_stream.fuse(batchnorm)
        self.temporal_stream.fuse(batchnorm)
        return self


def _create_two_stream(variant: str, pretrained: bool = False, **kwargs) -> TwoStreamM3D:
    return build_model_with_cfg(
        TwoStreamM3D, variant, pretrained,
        pretrained_filter_fn=inflate_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3, 4)),
        **kwargs,
    )


def _ts_cfg(depth: str, tag: str) -> Dict[str, Any]:
    cfg = _cfg(depth, tag)
    cfg['classifier'] = ('spatial_stream.head.classifier', 'temporal_stream.head.classifier')
    cfg['first_conv'] = ('spatial_stream.conv1', 'temporal_stream.conv1')
    return cfg


def _two_stream_cfgs() -> Dict[str, Dict[str, Any]]:
    """ImageNet sources (tv_in1k, the paper's, default; a1_in1k) and released ReID weights, for every depth."""
    cfgs = {}
    for depth in RESNET_DEPTHS:
        arch = 'two_stream_m3d' if depth == 'resnet50' else f'two_stream_m3d_{depth}'
        for tag in ('tv_in1k', 'a1_in1k'):
            cfgs[f'{arch}.{tag}'] = _ts_cfg(depth, tag)
        for name, released in released_pretrained_cfgs(arch).items():
            base = _ts_cfg(depth, 'tv_in1k')  # input spec and classifier names; the release sets weights and notes
            base.pop('notes')
            cfgs[name] = dict(base, **released)
    return cfgs


default_cfgs = generate_default_cfgs(_two_stream_cfgs())


@register_model
def two_stream_m3d(pretrained: bool = False, **kwargs) -> TwoStreamM3D:
    """The paper's full model on ResNet-50: C2D spatial stream + M3D-RAL temporal stream (Eq. 1)."""
    model_args = dict(RESNET_DEPTHS['resnet50'])
    return _create_two_stream('two_stream_m3d', pretrained, **dict(model_args, **kwargs))


@register_model
def two_stream_m3d_resnet18(pretrained: bool = False, **kwargs) -> TwoStreamM3D:
    """Two-stream M3D on ResNet-18."""
    model_args = dict(RESNET_DEPTHS['resnet18'])
    return _create_two_stream('two_stream_m3d_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def two_stream_m3d_resnet34(pretrained: bool = False, **kwargs) -> TwoStreamM3D:
    """Two-stream M3D on ResNet-34."""
    model_args = dict(RESNET_DEPTHS['resnet34'])
    return _create_two_stream('two_stream_m3d_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def two_stream_m3d_resnet101(pretrained: bool = False, **kwargs) -> TwoStreamM3D:
    """Two-stream M3D on ResNet-101."""
    model_args = dict(RESNET_DEPTHS['resnet101'])
    return _create_two_stream('two_stream_m3d_resnet101', pretrained, **dict(model_args, **kwargs))

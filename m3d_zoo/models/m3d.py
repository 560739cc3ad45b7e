""" M3D CNN and M3D + Residual Attention Layers (the paper's temporal stream; Tables 1 and 2).

M3D layers (Eq. 4-6) at the stem and in the first block of each stage; `m3d_branches` defaults to Eq. 6 on the clip
length entering each layer. RAL variants add three Residual Attention Layers after stages 1-3, with all three branches
(`m3d_ral_*`) or one (`m3d_ral_s_*` spatial, `m3d_ral_c_*` channel, `m3d_ral_t_*` temporal: Table 2's ablation).
"""
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

_M3D = dict(unit='multiscale', temporal_blocks='first')
_M3D_RAL = dict(_M3D, ral='sct')
_M3D_RAL_S = dict(_M3D, ral='s')
_M3D_RAL_C = dict(_M3D, ral='c')
_M3D_RAL_T = dict(_M3D, ral='t')

default_cfgs = generate_default_cfgs({
    **family_cfgs('m3d'),
    **family_cfgs('m3d_ral'),
    **family_cfgs('m3d_ral_s'),
    **family_cfgs('m3d_ral_c'),
    **family_cfgs('m3d_ral_t'),
})


@register_model
def m3d_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D CNN on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_M3D)
    return _create_video_resnet('m3d_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D CNN on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_M3D)
    return _create_video_resnet('m3d_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D CNN on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_M3D)
    return _create_video_resnet('m3d_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D CNN on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_M3D)
    return _create_video_resnet('m3d_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + Residual Attention Layers (spatial, channel and temporal branches) on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_M3D_RAL)
    return _create_video_resnet('m3d_ral_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + Residual Attention Layers (spatial, channel and temporal branches) on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_M3D_RAL)
    return _create_video_resnet('m3d_ral_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + Residual Attention Layers (spatial, channel and temporal branches) on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_M3D_RAL)
    return _create_video_resnet('m3d_ral_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + Residual Attention Layers (spatial, channel and temporal branches) on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_M3D_RAL)
    return _create_video_resnet('m3d_ral_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_s_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the spatial branch only on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_M3D_RAL_S)
    return _create_video_resnet('m3d_ral_s_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_s_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the spatial branch only on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_M3D_RAL_S)
    return _create_video_resnet('m3d_ral_s_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_s_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the spatial branch only on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_M3D_RAL_S)
    return _create_video_resnet('m3d_ral_s_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_s_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the spatial branch only on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_M3D_RAL_S)
    return _create_video_resnet('m3d_ral_s_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_c_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the channel branch only on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_M3D_RAL_C)
    return _create_video_resnet('m3d_ral_c_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_c_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the channel branch only on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_M3D_RAL_C)
    return _create_video_resnet('m3d_ral_c_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_c_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the channel branch only on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_M3D_RAL_C)
    return _create_video_resnet('m3d_ral_c_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_c_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the channel branch only on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_M3D_RAL_C)
    return _create_video_resnet('m3d_ral_c_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_t_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the temporal branch only on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_M3D_RAL_T)
    return _create_video_resnet('m3d_ral_t_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_t_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the temporal branch only on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_M3D_RAL_T)
    return _create_video_resnet('m3d_ral_t_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_t_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the temporal branch only on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_M3D_RAL_T)
    return _create_video_resnet('m3d_ral_t_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def m3d_ral_t_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """M3D + RAL with the temporal branch only on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_M3D_RAL_T)
    return _create_video_resnet('m3d_ral_t_resnet101', pretrained, **dict(model_args, **kwargs))

""" P3D-A/B/C: pseudo-3D bottlenecks, a (1, 3, 3) spatial and a (3, 1, 1) temporal conv in every block (Qiu et al.
2017; Table 1). A: in series; B: in parallel on the same input; C: the temporal conv added residually after the
spatial one (an M3D layer with a single kernel, Eq. 4 with n = 1).
"""
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

_P3D_A = dict(unit='series')
_P3D_B = dict(unit='parallel')
_P3D_C = dict(unit='multiscale', temporal_blocks='all', m3d_branches=1)

default_cfgs = generate_default_cfgs({
    **family_cfgs('p3d_a'),
    **family_cfgs('p3d_b'),
    **family_cfgs('p3d_c'),
})


@register_model
def p3d_a_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-A (spatial then temporal conv, in series) on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_P3D_A)
    return _create_video_resnet('p3d_a_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_a_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-A (spatial then temporal conv, in series) on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_P3D_A)
    return _create_video_resnet('p3d_a_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_a_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-A (spatial then temporal conv, in series) on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_P3D_A)
    return _create_video_resnet('p3d_a_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_a_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-A (spatial then temporal conv, in series) on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_P3D_A)
    return _create_video_resnet('p3d_a_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_b_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-B (spatial and temporal conv in parallel) on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_P3D_B)
    return _create_video_resnet('p3d_b_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_b_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-B (spatial and temporal conv in parallel) on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_P3D_B)
    return _create_video_resnet('p3d_b_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_b_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-B (spatial and temporal conv in parallel) on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_P3D_B)
    return _create_video_resnet('p3d_b_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_b_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-B (spatial and temporal conv in parallel) on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_P3D_B)
    return _create_video_resnet('p3d_b_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_c_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-C (temporal conv added residually to the spatial one) on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_P3D_C)
    return _create_video_resnet('p3d_c_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_c_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-C (temporal conv added residually to the spatial one) on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_P3D_C)
    return _create_video_resnet('p3d_c_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_c_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-C (temporal conv added residually to the spatial one) on ResNet-50 (the paper's)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_P3D_C)
    return _create_video_resnet('p3d_c_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def p3d_c_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """P3D-C (temporal conv added residually to the spatial one) on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_P3D_C)
    return _create_video_resnet('p3d_c_resnet101', pretrained, **dict(model_args, **kwargs))

""" I3D: every 3x3 conv inflated to 3x3x3 and the stem to 3x7x7 (Carreira and Zisserman 2017; Table 1). """
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

_I3D = dict(unit='3d')

default_cfgs = generate_default_cfgs(family_cfgs('i3d'))


@register_model
def i3d_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-18."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_I3D)
    return _create_video_resnet('i3d_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def i3d_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-34."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_I3D)
    return _create_video_resnet('i3d_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def i3d_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-50 (Table 1)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_I3D)
    return _create_video_resnet('i3d_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def i3d_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-101."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_I3D)
    return _create_video_resnet('i3d_resnet101', pretrained, **dict(model_args, **kwargs))

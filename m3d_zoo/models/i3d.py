""" I3D: every 3x3 conv inflated to 3x3x3 and the stem to 3x7x7 (Carreira and Zisserman 2017; Table 1). """
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

_I3D = dict(temporal='full')

default_cfgs = generate_default_cfgs(family_cfgs('i3d'))


def _create(variant: str, pretrained: bool, **kwargs) -> VideoResNet:
    return _create_video_resnet(variant, pretrained, **dict(_I3D, **kwargs))


@register_model
def i3d_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-18."""
    return _create('i3d_resnet18', pretrained, **kwargs)


@register_model
def i3d_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-34."""
    return _create('i3d_resnet34', pretrained, **kwargs)


@register_model
def i3d_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-50 (Table 1)."""
    return _create('i3d_resnet50', pretrained, **kwargs)


@register_model
def i3d_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """I3D on ResNet-101."""
    return _create('i3d_resnet101', pretrained, **kwargs)

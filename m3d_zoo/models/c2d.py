""" C2D: the paper's "2D CNN" baseline. Each frame goes through a 2D ResNet; frame features are averaged (Eq. 2). """
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

# The 2D unit everywhere; T is never downsampled, so any clip length is taken.
_C2D = dict(unit='2d', temporal_strides=(1, 1, 1, 1))

default_cfgs = generate_default_cfgs(family_cfgs('c2d'))


@register_model
def c2d_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-18, features averaged over time."""
    model_args = dict(block='basic', layers=(2, 2, 2, 2), **_C2D)
    return _create_video_resnet('c2d_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def c2d_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-34, features averaged over time."""
    model_args = dict(block='basic', layers=(3, 4, 6, 3), **_C2D)
    return _create_video_resnet('c2d_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def c2d_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-50, features averaged over time (the paper's 2D CNN, Table 1)."""
    model_args = dict(block='bottleneck', layers=(3, 4, 6, 3), **_C2D)
    return _create_video_resnet('c2d_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def c2d_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-101, features averaged over time."""
    model_args = dict(block='bottleneck', layers=(3, 4, 23, 3), **_C2D)
    return _create_video_resnet('c2d_resnet101', pretrained, **dict(model_args, **kwargs))

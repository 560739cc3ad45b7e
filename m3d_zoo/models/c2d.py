""" C2D: the paper's "2D CNN" baseline. Each frame goes through a 2D ResNet; frame features are averaged (Eq. 2). """
from timm.models import generate_default_cfgs, register_model

from .video_resnet import VideoResNet, _create_video_resnet, family_cfgs

# No temporal operator; T is never downsampled, so any clip length is taken.
_C2D = dict(temporal='none', temporal_strides=(1, 1, 1, 1))

default_cfgs = generate_default_cfgs(family_cfgs('c2d'))


def _create(variant: str, pretrained: bool, **kwargs) -> VideoResNet:
    return _create_video_resnet(variant, pretrained, **dict(_C2D, **kwargs))


@register_model
def c2d_resnet18(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-18, features averaged over time."""
    return _create('c2d_resnet18', pretrained, **kwargs)


@register_model
def c2d_resnet34(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-34, features averaged over time."""
    return _create('c2d_resnet34', pretrained, **kwargs)


@register_model
def c2d_resnet50(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-50, features averaged over time (the paper's 2D CNN, Table 1)."""
    return _create('c2d_resnet50', pretrained, **kwargs)


@register_model
def c2d_resnet101(pretrained: bool = False, **kwargs) -> VideoResNet:
    """Frame-wise ResNet-101, features averaged over time."""
    return _create('c2d_resnet101', pretrained, **kwargs)

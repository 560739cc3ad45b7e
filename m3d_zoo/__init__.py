""" m3d_zoo: a timm-style model zoo for video person re-identification (M3D, AAAI 2019). """
from .version import __version__
from .models import (
    PretrainedMismatchError,
    TwoStreamM3D,
    UnknownModelError,
    VideoResNet,
    create_model,
    is_model,
    list_models,
    list_pretrained,
    paper_size_mb,
    state_dict_mb,
)

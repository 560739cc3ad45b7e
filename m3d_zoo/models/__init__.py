from . import c2d, i3d, m3d, p3d, two_stream  # register the families
from ._factory import (
    ZOO_MODULES, ModelSpec, UnknownModelError, classify_model_spec, create_model, is_model, list_models,
    list_pretrained)
from ._record import get_model_args
from ._inflate import PretrainedFileError, PretrainedMismatchError, inflate_kernel, inflate_state_dict
from ._size import paper_size_mb, state_dict_mb
from .two_stream import TwoStreamM3D
from .video_resnet import VideoResNet
from ..hub import (
    HF_ORG,
    CorruptWeightsError,
    HubAuthError,
    HubConfigError,
    HubError,
    HubFileNotFoundError,
    HubOfflineError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    UnknownArchitectureError,
    push_to_hub,
    save_pretrained,
)

""" m3d_zoo: a timm-style model zoo for video person re-identification (M3D, AAAI 2019). """
from .version import __version__
from .models import (
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
    PretrainedFileError,
    PretrainedMismatchError,
    TwoStreamM3D,
    UnknownModelError,
    VideoResNet,
    create_model,
    get_model_args,
    is_model,
    list_models,
    list_pretrained,
    paper_size_mb,
    state_dict_mb,
)
from . import data, eval, utils
from .data import create_dataset, list_datasets
from .eval import evaluate_rank

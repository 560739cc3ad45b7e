""" Hugging Face Hub integration: save, push and load m3d_zoo models, and write their model cards.

A saved model is a folder (or Hub repo) in timm's format, so ``timm`` tooling can read it:

    model.safetensors   the state dict; string metadata: architecture, num_frames, source weights, model_args
    config.json         architecture, num_classes, num_features, model_args (every constructor argument needed to
                        rebuild the model), pretrained_cfg (input size, mean/std), and the sha256 of the weights
    README.md           the model card

One module per job:

    constants.py    the project's Hub organisation and the file names above
    released.py     the ReID-trained weights released on the Hub (RELEASED_WEIGHTS), which get registry tags
    errors.py       the `HubError` types, and the translation of huggingface_hub's errors into them
    provenance.py   what a model's weights were loaded from, recorded at load and written at save
    save.py         `save_pretrained` and `push_to_hub`: the folder, config.json, and the upload
    load.py         ``create_model('hf-hub:...' | 'local-dir:...')``: config.json checked, weights verified, loaded
    card.py         the model card: content from a run and its results, written with huggingface_hub's ModelCard
    release.py      a training checkpoint to a Hub repo (the library side of the `hub/release.py` command and of
                    `m3d-zoo push --checkpoint`); import it on its own, it needs the training engine
"""
from .card import card_from_results, generate_model_card, model_card_for_run
from .constants import CONFIG_NAME, HF_ORG, README_NAME, WEIGHTS_NAME
from .errors import (
    CorruptWeightsError,
    HubAuthError,
    HubConfigError,
    HubError,
    HubFileNotFoundError,
    HubOfflineError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    UnknownArchitectureError,
    hub_errors,
)
from .load import create_model_from_source, load_weights, verify_weights
from .provenance import RANDOM_INIT, pretrained_source, record_weights_source, recorded_weights_source, weights_source
from .released import RELEASED_WEIGHTS, released_pretrained_cfgs
from .save import push_folder, push_to_hub, save_pretrained

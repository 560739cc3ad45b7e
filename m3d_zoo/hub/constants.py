""" Names shared by the Hub modules: the project's organisation and the files of a saved model. """

__all__ = ['HF_ORG', 'WEIGHTS_NAME', 'CONFIG_NAME', 'README_NAME']

HF_ORG = 'm3d-zoo'  # the project's Hugging Face organisation, home of the ReID-trained weights
WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.json'
README_NAME = 'README.md'

""" The ReID-trained weights released on the Hub, and the registry tags they give their architectures. """
from typing import Any, Dict

from .constants import HF_ORG

__all__ = ['RELEASED_WEIGHTS', 'released_pretrained_cfgs']

# ReID-trained weights that exist on the Hub, as `<architecture>.<tag>` -> pretrained_cfg fields. A registry tag may
# point at HF_ORG only when its weights are listed here; hub/README.md says how a release adds one. None yet.
RELEASED_WEIGHTS: Dict[str, Dict[str, Any]] = {}


def released_pretrained_cfgs(architecture: str) -> Dict[str, Dict[str, Any]]:
    """The registry entries (``'<architecture>.<tag>'`` -> cfg) of the released ReID weights of an architecture.

    Meant for ``generate_default_cfgs`` in the model files, so that only weights that exist get a tag.
    """
    return {
        name: dict(cfg, hf_hub_id=cfg.get('hf_hub_id', f'{HF_ORG}/{name}'))
        for name, cfg in RELEASED_WEIGHTS.items() if name.split('.')[0] == architecture
    }

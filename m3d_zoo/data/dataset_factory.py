""" `create_dataset(name, root, **kwargs)`: one entry point for the supported layouts. """
from typing import Callable, Dict, List

from .base import VideoReIDDataset
from .folder import load_tracklet_folder
from .ilidsvid import load_ilidsvid
from .mars import load_mars
from .prid2011 import load_prid2011

__all__ = ['create_dataset', 'list_datasets']

_LOADERS: Dict[str, Callable[..., VideoReIDDataset]] = {
    'mars': load_mars,
    'prid2011': load_prid2011,
    'ilidsvid': load_ilidsvid,
    'folder': load_tracklet_folder,
}
_ALIASES = {
    'prid': 'prid2011', 'prid_2011': 'prid2011', 'prid-2011': 'prid2011',
    'ilids': 'ilidsvid', 'ilids-vid': 'ilidsvid', 'ilids_vid': 'ilidsvid', 'i-lids-vid': 'ilidsvid',
    'tracklet_folder': 'folder', 'generic': 'folder', 'synthetic': 'folder',
}


def list_datasets() -> List[str]:
    return sorted(_LOADERS)


def create_dataset(name: str, root: str, **kwargs) -> VideoReIDDataset:
    """ Load a dataset by name.

    Args:
        name: 'mars', 'prid2011', 'ilidsvid' or 'folder' (generic tracklet folders, also used by the synthetic
            generator's output); common aliases such as 'ilids-vid' and 'prid' are accepted.
        root: Dataset root folder.
        **kwargs: Passed to the loader (e.g. `split_id` for PRID-2011 / iLIDS-VID, `gallery_mode` for MARS).
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise ValueError(f'Unknown dataset {name!r}; available: {list_datasets()}')
    return _LOADERS[key](root, **kwargs)

""" Hub error types, and the translation of huggingface_hub's errors into them.

Every failure to fetch from, or push to, the Hub or a local folder is raised as a `HubError` subclass whose message
names what was wrong and what to do.
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Union

from .constants import CONFIG_NAME, HF_ORG, WEIGHTS_NAME

__all__ = [
    'HubError', 'HubRepoNotFoundError', 'HubRevisionNotFoundError', 'HubFileNotFoundError', 'HubOfflineError',
    'HubAuthError', 'HubConfigError', 'CorruptWeightsError', 'UnknownArchitectureError', 'hub_errors', 'push_errors',
]


class HubError(RuntimeError):
    """A model could not be fetched from, or saved to, the Hub or a local folder."""


class HubRepoNotFoundError(HubError):
    """The Hub repo does not exist, or is private/gated and the token does not give access."""


class HubRevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repo."""


class HubFileNotFoundError(HubError, FileNotFoundError):
    """A file the model needs is missing from the repo or folder."""


class HubOfflineError(HubError, ConnectionError):
    """The Hub cannot be reached (or HF_HUB_OFFLINE is set) and the files are not in the local cache."""


class HubAuthError(HubError, PermissionError):
    """The Hub refused a write: no token, an invalid one, or one without write access to the repo."""


class HubConfigError(HubError, ValueError):
    """A saved model's config.json cannot be used: malformed, edited, or naming a file outside its folder or repo."""


class CorruptWeightsError(HubError):
    """The weights file does not match its recorded sha256, or is not a valid safetensors file."""


class UnknownArchitectureError(HubError, ValueError):
    """The saved architecture is not a model m3d_zoo (or timm) knows."""


_OFFLINE_HELP = (
    'To work offline: run once with network access so the files land in the Hugging Face cache (HF_HOME), after '
    'which HF_HUB_OFFLINE=1 reuses them; or load a local copy with '
    "create_model('local-dir:/path/to/folder', pretrained=True) (a folder written by m3d_zoo.save_pretrained "
    'or downloaded with `hf download`); or, for the ImageNet weights that pretrained=True inflates, pass the 2D '
    "ResNet's file: m3d_zoo.create_model(name, pretrained_file='/path/to/model.safetensors') or "
    "pretrained_cfg_overlay=dict(file='/path/to/model.safetensors'). To go online: unset HF_HUB_OFFLINE (or set "
    'HF_HUB_OFFLINE=0) and check the network and HF_ENDPOINT.'
)


def endpoint() -> str:
    """The Hub huggingface_hub talks to (HF_ENDPOINT)."""
    from huggingface_hub import constants
    return constants.ENDPOINT


def is_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _hub_cache_dir() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def transport_errors() -> Tuple[type, ...]:
    """The connection and timeout errors of the HTTP client huggingface_hub uses: requests before 1.0, then httpx."""
    import huggingface_hub
    if int(huggingface_hub.__version__.split('.')[0]) < 1:
        import requests
        return (requests.ConnectionError, requests.Timeout)
    try:
        from huggingface_hub.utils import httpx  # the client it uses, re-exported from 1.31 on
    except ImportError:
        import httpx
    return (httpx.TransportError,)


def push_later_help(repo_id: str) -> str:
    """How to push `repo_id` once the Hub can be reached."""
    return (f'To push later, save the folder now with m3d_zoo.save_pretrained(model, FOLDER) and upload it with '
            f'`hf upload {repo_id} FOLDER`.')


@contextmanager
def hub_errors(
        what: str,
        repo_id: Optional[str] = None,
        filename: Optional[str] = None,
        revision: Optional[str] = None,
) -> Iterator[None]:
    """Turn huggingface_hub's download errors into `HubError` subclasses that say what to do.

    Also meant to wrap ``pretrained=True`` builds that fetch ImageNet weights through timm.

    Args:
        what: What was being fetched, for the message (e.g. ``'hf-hub:m3d-zoo/m3d_resnet50.mars'``).
        repo_id: The Hub repo, if known.
        filename: The file, if known.
        revision: The revision asked for, if any.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    where = f"Hub repo '{repo_id}'" if repo_id else 'the Hub repo'
    file = f"'{filename}'" if filename else 'a file'
    try:
        yield
    except RevisionNotFoundError as e:
        raise HubRevisionNotFoundError(
            f"{what}: revision '{revision or 'main'}' not found in {where} at {endpoint()}. Use a branch, tag or full "
            f"commit id that exists (HfApi().list_repo_refs('{repo_id}') lists them), or drop '@{revision}' for main."
        ) from e
    except RepositoryNotFoundError as e:  # GatedRepoError included
        raise HubRepoNotFoundError(
            f"{what}: {where} not found at {endpoint()}. Check the id (organisation/name, e.g. "
            f"'{HF_ORG}/<model>'); a private or gated repo also answers 'not found' without a token that has "
            f"access (log in with `hf auth login` or set HF_TOKEN)."
        ) from e
    except LocalEntryNotFoundError as e:  # before EntryNotFoundError, of which it is a subclass
        reason = ('HF_HUB_OFFLINE=1 is set' if is_offline() else f'the Hub at {endpoint()} could not be reached')
        raise HubOfflineError(
            f"{what}: cannot fetch {file} of {where}: {reason} and it is not in the local cache "
            f"({_hub_cache_dir()}). {_OFFLINE_HELP}"
        ) from e
    except EntryNotFoundError as e:
        raise HubFileNotFoundError(
            f"{what}: file {file} is missing from {where} at revision '{revision or 'main'}'. An m3d_zoo repo holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} (m3d_zoo.push_to_hub writes both); check the repo id and revision."
        ) from e
    except HFValidationError as e:
        raise HubConfigError(
            f"{what}: '{repo_id}' is not a valid Hub repo id ({e}). Use 'organisation/name' or "
            f"'organisation/name@revision', e.g. 'hf-hub:{HF_ORG}/m3d_resnet50'.") from e
    except OfflineModeIsEnabled as e:
        raise HubOfflineError(f'{what}: HF_HUB_OFFLINE=1 is set and {file} of {where} is not cached. '
                              f'{_OFFLINE_HELP}') from e
    except HfHubHTTPError as e:
        raise HubError(f'{what}: the Hub at {endpoint()} answered an error for {file} of {where}: {e}') from e


@contextmanager
def push_errors(what: str, repo_id: str, token: Optional[Union[str, bool]], caller: str) -> Iterator[None]:
    """Turn huggingface_hub's errors during a push into `HubError` subclasses that say what to do.

    Args:
        what: The push, for the message (e.g. ``"push_to_hub('org/name')"``).
        repo_id: The repo pushed to.
        token: The token given to the push, if any.
        caller: The function whose ``token=`` the message suggests.
    """
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    login = f"log in with `hf auth login`, set the HF_TOKEN environment variable, or pass token='hf_...' to {caller}"
    try:
        yield
    except OfflineModeIsEnabled as e:
        raise HubOfflineError(f'{what}: HF_HUB_OFFLINE=1 is set, and a push needs the Hub. '
                              f'{push_later_help(repo_id)}') from e
    except HfHubHTTPError as e:
        status = getattr(e.response, 'status_code', None)
        answer = f'{status} {str(e).strip().splitlines()[-1]}'
        if status == 401 and not (token if token is not None else get_token()):
            raise HubAuthError(f'{what}: the Hub at {endpoint()} refused the push ({answer}): no Hub token was given '
                               f'or found, and a push needs one with write access. To fix, {login}.') from e
        if status == 401:
            raise HubAuthError(f'{what}: the Hub at {endpoint()} rejected the token ({answer}): it is invalid or '
                               f'expired. Create a token with write access in your Hub settings, then {login}.') \
                from e
        if status == 403:
            raise HubAuthError(f"{what}: the token has no write access to '{repo_id}' ({answer}). Use a token with "
                               f"write access to '{repo_id.split('/')[0]}' ({login}), or push to a repo of your "
                               f"own.") from e
        raise HubError(f'{what}: the Hub at {endpoint()} answered an error: {e}') from e
    except transport_errors() as e:
        raise HubOfflineError(f'{what}: the Hub at {endpoint()} could not be reached ({e}). Check the network and '
                              f'HF_ENDPOINT. {push_later_help(repo_id)}') from e

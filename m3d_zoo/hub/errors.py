""" Hub error types, and the translation of huggingface_hub's errors into them.

Every failure to fetch from, or push to, the Hub or a local folder is raised as a `HubError` subclass whose message
names what was wrong and what to do.

Downloads fail fast when the Hub cannot be reached: huggingface_hub retries a request that gets no answer for about
25 s before it falls back to its cache (timm asks for two files, so twice), so `hub_connection` asks the Hub once,
with a short timeout, and runs the downloads in offline mode (the cache only) when it does not answer.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional, Tuple, Union

from .constants import CONFIG_NAME, HF_ORG, WEIGHTS_NAME

__all__ = [
    'HubError', 'HubRepoNotFoundError', 'HubRevisionNotFoundError', 'HubFileNotFoundError', 'HubOfflineError',
    'HubAuthError', 'HubConfigError', 'CorruptWeightsError', 'UnknownArchitectureError', 'hub_errors', 'push_errors',
    'hub_connection', 'unreachable_reason', 'probe_timeout',
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
    """The Hub cannot be reached (or HF_HUB_OFFLINE is set) and the files are not in the local cache.

    Attributes:
        cli_message: The message with the `m3d-zoo` command's flags instead of Python calls in its advice, if it has
            advice; the command line prints it.
    """

    def __init__(self, message: str, cli_message: Optional[str] = None):
        super().__init__(message)
        self.cli_message = cli_message


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


def _cli_offline_help(repo_id: Optional[str], filename: Optional[str], imagenet: bool) -> str:
    """`_OFFLINE_HELP` for the command line: its flags, and the `hf download` command that fetches the files."""
    repo = repo_id or 'ORG/NAME'
    if imagenet:
        local = (f"or give the 2D ResNet's weights with --pretrained-file PATH instead of --pretrained: download "
                 f'them where there is network (`hf download {repo} {filename or "model.safetensors"} --local-dir '
                 f'DIR`) and pass --pretrained-file DIR/{filename or "model.safetensors"}')
    else:
        local = (f'or download the model where there is network (`hf download {repo} --local-dir DIR`) and pass '
                 f'--model DIR')
    return (f'To work offline: run once with network access so the files land in the Hugging Face cache (HF_HOME), '
            f'after which HF_HUB_OFFLINE=1 reuses them; {local}. To go online: unset HF_HUB_OFFLINE (or set '
            f'HF_HUB_OFFLINE=0) and check the network and HF_ENDPOINT.')


def endpoint() -> str:
    """The Hub huggingface_hub talks to (HF_ENDPOINT)."""
    from huggingface_hub import constants
    return constants.ENDPOINT


def is_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


_PROBE_TIMEOUT = 5.0  # seconds to wait for the Hub's answer when HF_HUB_ETAG_TIMEOUT is not set

# Why the Hub could not be reached in the enclosing `hub_connection` ('' if it answered); None outside one
_unreachable: ContextVar[Optional[str]] = ContextVar('m3d_zoo_hub_unreachable', default=None)


def probe_timeout() -> float:
    """Seconds `unreachable_reason` waits for the Hub: HF_HUB_ETAG_TIMEOUT if set, else 5."""
    from huggingface_hub import constants
    if constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT:
        return float(constants.HF_HUB_ETAG_TIMEOUT)
    return _PROBE_TIMEOUT


def unreachable_reason() -> Optional[str]:
    """Why the Hub at HF_ENDPOINT cannot be reached now, or None if it answers a HEAD request (any status) within
    `probe_timeout` seconds. Uses huggingface_hub's HTTP client, so its proxy settings apply."""
    from huggingface_hub import get_session
    timeout = probe_timeout()
    # requests before huggingface_hub 1.0, httpx from then on: the same call under two spellings
    redirects = {'allow_redirects' if _requests_client() else 'follow_redirects': False}
    try:
        get_session().head(endpoint(), timeout=timeout, **redirects)
    except _timeout_errors():
        return f'no answer within {timeout:g} s; on a slow network, set HF_HUB_ETAG_TIMEOUT to more seconds'
    except transport_errors() as e:
        return str(e) or type(e).__name__
    return None


@contextmanager
def hub_connection() -> Iterator[Optional[str]]:
    """Run a block of Hub downloads in huggingface_hub's offline mode (the cache only) if the Hub does not answer.

    The Hub is asked once (`unreachable_reason`); blocks nested in this one, and `hub_errors` within it, use that
    answer. Offline mode is huggingface_hub's process-wide switch (`huggingface_hub.constants.HF_HUB_OFFLINE`), set
    for the block only.

    Yields:
        Why the Hub could not be reached, '' if it answered, None if HF_HUB_OFFLINE was set already.
    """
    if _unreachable.get() is not None or is_offline():
        yield _unreachable.get()
        return
    reason = unreachable_reason()
    token = _unreachable.set(reason or '')
    if reason:
        _set_offline(True)
    try:
        yield reason or ''
    finally:
        if reason:
            _set_offline(False)
        _unreachable.reset(token)


def _requests_client() -> bool:
    """Whether huggingface_hub talks HTTP with requests (before 1.0) rather than httpx."""
    from importlib.metadata import version
    return int(version('huggingface_hub').split('.')[0]) < 1


def _timeout_errors() -> Tuple[type, ...]:
    """The timeout errors of the HTTP client huggingface_hub uses."""
    if _requests_client():
        import requests
        return (requests.Timeout,)
    try:
        from huggingface_hub.utils import httpx
    except ImportError:
        import httpx
    return (httpx.TimeoutException,)


def _set_offline(offline: bool) -> None:
    """Switch huggingface_hub's offline mode. Before 1.0 its sessions read the switch when they are made, so they are
    made anew (`reset_sessions`); from 1.0 on every request reads it."""
    from huggingface_hub import constants
    constants.HF_HUB_OFFLINE = offline
    if _requests_client():
        from huggingface_hub.utils import reset_sessions
        reset_sessions()


def _offline_reason(unreachable: Optional[str]) -> str:
    """Why a file could not be fetched: `unreachable` (what `hub_connection` found), or HF_HUB_OFFLINE is set."""
    if unreachable:
        return f'the Hub at {endpoint()} could not be reached ({unreachable})'
    return 'HF_HUB_OFFLINE=1 is set' if is_offline() else f'the Hub at {endpoint()} could not be reached'


def _hub_cache_dir() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def transport_errors() -> Tuple[type, ...]:
    """The connection and timeout errors of the HTTP client huggingface_hub uses: requests before 1.0, then httpx."""
    if _requests_client():
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
        imagenet: bool = False,
) -> Iterator[None]:
    """Turn huggingface_hub's download errors into `HubError` subclasses that say what to do, failing fast when the
    Hub cannot be reached (the block runs in `hub_connection`).

    Also meant to wrap ``pretrained=True`` builds that fetch ImageNet weights through timm.

    Args:
        what: What was being fetched, for the message (e.g. ``'hf-hub:m3d-zoo/m3d_resnet50.mars'``).
        repo_id: The Hub repo, if known.
        filename: The file, if known.
        revision: The revision asked for, if any.
        imagenet: The 2D ImageNet weights that ``pretrained=True`` inflates (the offline advice names the local
            file alternative), rather than a saved zoo model.
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
    unreachable = None
    try:
        with hub_connection() as unreachable:
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
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:  # before EntryNotFoundError, a base of the first
        problem = (f'{what}: cannot fetch {file} of {where}: {_offline_reason(unreachable)} and it is not in the '
                   f'local cache ({_hub_cache_dir()}).')
        raise HubOfflineError(f'{problem} {_OFFLINE_HELP}',
                              cli_message=f'{problem} {_cli_offline_help(repo_id, filename, imagenet)}') from e
    except EntryNotFoundError as e:
        raise HubFileNotFoundError(
            f"{what}: file {file} is missing from {where} at revision '{revision or 'main'}'. An m3d_zoo repo holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} (m3d_zoo.push_to_hub writes both); check the repo id and revision."
        ) from e
    except HFValidationError as e:
        raise HubConfigError(
            f"{what}: '{repo_id}' is not a valid Hub repo id ({e}). Use 'organisation/name' or "
            f"'organisation/name@revision', e.g. 'hf-hub:{HF_ORG}/m3d_resnet50'.") from e
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

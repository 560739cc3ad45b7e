"""Test session setup: a Hub-compatible server on loopback, an isolated HF cache, and a loopback guard.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, when it is imported, so the
environment is set here, at conftest import, before any test module imports timm or huggingface_hub. The server
starts here too (the endpoint needs its port), so that a test that reaches the Hub without asking for the
``hub_server`` fixture gets a quick 404 rather than connection retries; tests that use it ask for the fixture.

Keep this file to Hub concerns and generic fixtures; put other fixtures in the test modules that need them.
"""
import atexit
import ipaddress
import os
import re
import shutil
import sys
import tempfile
from urllib.parse import urlsplit

import pytest

pytest_plugins = ['pytester']  # test_hub_server.py runs the loopback guard on a failing test

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hub_server import HubServer, UnreachableEndpoint  # noqa: E402

if 'huggingface_hub' in sys.modules:  # too late to redirect it; the loopback guard would fail every Hub test
    raise RuntimeError('huggingface_hub was imported before tests/conftest.py could point it at the test Hub server')

_HUB = HubServer().start()
_HF_HOME = tempfile.mkdtemp(prefix='m3d_zoo_hf_home_')
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
for _var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_TOKEN_PATH'):
    os.environ.pop(_var, None)
os.environ.update(
    HF_ENDPOINT=_HUB.endpoint,
    HF_HOME=_HF_HOME,
    HF_HUB_DISABLE_TELEMETRY='1',
    HF_HUB_DISABLE_PROGRESS_BARS='1',
    HF_HUB_DISABLE_XET='1',  # the test server serves plain HTTP files only
    HF_TOKEN='hf_m3dzoo_dummy_test_token',  # sent as a Bearer token so that pushes look authenticated
)

_LOOPBACK_NAMES = ('localhost',)


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    host = urlsplit(url).hostname or ''
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hub_endpoints():
    """Every place huggingface_hub takes its endpoint from, as (name, value) pairs."""
    import huggingface_hub.constants as hf_constants
    return [
        ('HF_ENDPOINT', os.environ.get('HF_ENDPOINT', '')),
        ('huggingface_hub.constants.ENDPOINT', hf_constants.ENDPOINT),
        ('huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE', hf_constants.HUGGINGFACE_CO_URL_TEMPLATE),
    ]


def check_loopback_endpoint():
    """Raise AssertionError naming every Hub endpoint setting that is not on loopback."""
    bad = [f'{name}={value!r}' for name, value in hub_endpoints() if not is_loopback_url(value)]
    assert not bad, 'Hub endpoint is not loopback, tests must never reach a real Hub: ' + ', '.join(bad)


@pytest.fixture(autouse=True)
def _hub_loopback_guard():
    """Fail any test whose Hub endpoint is not loopback when it starts."""
    try:
        check_loopback_endpoint()
    except AssertionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fail any test that changed the Hub endpoint away from loopback while it ran.

    A hook, not the guard fixture's teardown: fixtures such as monkeypatch undo the change before that teardown.
    """
    result = yield
    try:
        check_loopback_endpoint()
    except AssertionError as e:
        pytest.fail(str(e), pytrace=False)
    return result


@pytest.fixture(scope='session')
def hub_server():
    """The session's Hub-compatible server on 127.0.0.1, at ``HF_ENDPOINT``; repos persist for the session."""
    yield _HUB


@pytest.fixture(scope='session')
def hf_home():
    """The session's isolated ``HF_HOME`` (Hub cache under ``hub/``)."""
    return _HF_HOME


@pytest.fixture(params=['refused', 'silent'])
def unreachable_hub(request, monkeypatch):
    """For one test, the Hub moved to a loopback port that refuses connections, or to one that never answers, with
    HF_HUB_ETAG_TIMEOUT at 0.5 s (how long a request waits for an answer; also `.timeout`). Yields the
    `UnreachableEndpoint`."""
    import huggingface_hub.constants as c
    dead = UnreachableEndpoint(request.param)
    monkeypatch.setattr(c, 'ENDPOINT', dead.endpoint)
    monkeypatch.setattr(c, 'HUGGINGFACE_CO_URL_TEMPLATE', dead.endpoint + '/{repo_id}/resolve/{revision}/{filename}')
    dead.timeout = 0.5
    monkeypatch.setattr(c, 'HF_HUB_ETAG_TIMEOUT', dead.timeout)
    yield dead
    dead.close()


@pytest.fixture()
def hub_repo_id(request, hub_server):
    """A fresh, not yet created, repo id under the project's organisation, unique to the test."""
    name = re.sub(r'[^A-Za-z0-9._-]+', '-', request.node.name)[:60].strip('-.')
    hub_repo_id.counter = getattr(hub_repo_id, 'counter', 0) + 1
    return f'm3d-zoo/test-{name}-{hub_repo_id.counter}'


def seed_timm_weights(server: HubServer, model_name: str, seed: int = 0) -> str:
    """Put generated weights for a timm model on the test Hub, as the repo timm's pretrained_cfg names.

    ``model_name`` is a timm name with its pretrained tag, e.g. ``resnet50.tv_in1k``; the repo
    ``timm/resnet50.tv_in1k`` gets a ``model.safetensors`` of a randomly initialised model (seeded, so every run
    serves the same tensors) and a ``config.json``. Does nothing if the repo exists.

    Returns:
        The repo id.
    """
    import json

    import timm
    import torch
    from safetensors.torch import save

    if '.' not in model_name:
        raise ValueError(f'{model_name!r}: name the pretrained tag too, e.g. resnet50.tv_in1k')
    repo_id = f'timm/{model_name}'
    if not server.store.create_repo(repo_id):
        return repo_id
    torch.manual_seed(seed)
    model = timm.create_model(model_name.split('.')[0], pretrained=False)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={'format': 'pt'})
    config = {'architecture': model_name.split('.')[0], 'num_classes': model.num_classes,
              'num_features': model.num_features, 'pretrained_cfg': {'tag': model_name.split('.', 1)[1]}}
    server.store.commit(repo_id, 'main', {'model.safetensors': weights, 'config.json': json.dumps(config).encode()},
                        message='generated test weights')
    return repo_id


@pytest.fixture(scope='session')
def timm_hub_weights(hub_server):
    """A function seeding ``timm/<model>.<tag>`` on the test Hub with generated weights, once per session.

    Example: ``timm_hub_weights('resnet50.tv_in1k')`` before ``create_model('two_stream_m3d', pretrained=True)``.
    """
    return lambda model_name, seed=0: seed_timm_weights(hub_server, model_name, seed)

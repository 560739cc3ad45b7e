"""Push and pull zoo models through the real huggingface_hub client and timm, against the loopback test Hub."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from hub_server import HubServer
from huggingface_hub import HfApi
from safetensors import safe_open
from safetensors.torch import save_file

import m3d_zoo
from m3d_zoo import hub
from m3d_zoo._io import file_sha256
from m3d_zoo.hub import (
    CONFIG_NAME,
    HF_ORG,
    RANDOM_INIT,
    README_NAME,
    WEIGHTS_NAME,
    CorruptWeightsError,
    HubAuthError,
    HubConfigError,
    HubFileNotFoundError,
    HubOfflineError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    UnknownArchitectureError,
    push_to_hub,
    save_pretrained,
)
from m3d_zoo.models.video_resnet import VideoResNet

CLIP = (1, 3, 8, 64, 32)  # the models take any H, W; small frames keep the tests fast
SMALL_MODELS = m3d_zoo.list_models('*_resnet18')


def _randomize(model, seed=0):
    """Give every float tensor random values, so that a tensor not saved or not loaded changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point():
                v = torch.randn(t.shape, generator=g) * 0.1
                t.copy_(v.abs() + 0.5 if name.endswith('running_var') else v)
    return model.eval()


def _clip(seed=1):
    return torch.randn(CLIP, generator=torch.Generator().manual_seed(seed))


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_push_pull_runs_for_every_family():
    """The round trip below is parametrized by the registry; a short or empty list would skip families silently."""
    families = ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_t', 'm3d_ral_c',
                'two_stream_m3d']
    assert sorted(SMALL_MODELS) == sorted(f'{f}_resnet18' for f in families)


@pytest.mark.parametrize('name', SMALL_MODELS)
def test_push_pull_bit_identical(name, hub_server, hub_repo_id):
    # one block per stage: every code path of the family, half the bytes over HTTP (the recorded layers rebuild it)
    model = _randomize(m3d_zoo.create_model(name, num_classes=7, layers=(1, 1, 1, 1)))
    x = _clip()
    push_to_hub(model, hub_repo_id)
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True).eval()
    assert type(loaded) is type(model) and loaded.pretrained_cfg['architecture'] == name
    assert loaded.model_args == model.model_args
    _assert_same_state(model, loaded)
    assert torch.equal(_outputs(model, x), _outputs(loaded, x))


def test_repo_contents_config_metadata_and_card(hub_server, hub_repo_id, tmp_path):
    args = dict(num_frames=4, temporal_strides=(1, 1, 2, 1), m3d_branches=1, last_stride=1, head='paper',
                embed_dim=64, num_classes=11)
    model = _randomize(m3d_zoo.create_model('m3d_ral_resnet18', **args))
    card = dict(datasets=['MARS'], metrics={'MARS': {'mAP': 74.06, 'rank-1': 84.39}},
                eval_protocol='Gallery: test set minus queries; non-interpolated AP.')
    push_to_hub(model, hub_repo_id, model_card=card, source_weights='timm/resnet18.tv_in1k')
    api = HfApi()
    assert sorted(api.list_repo_files(hub_repo_id)) == ['.gitattributes', README_NAME, CONFIG_NAME, WEIGHTS_NAME]
    folder = api.snapshot_download(hub_repo_id, local_dir=tmp_path / 'snap')

    with open(os.path.join(folder, CONFIG_NAME)) as f:
        config = json.load(f)
    assert config['architecture'] == 'm3d_ral_resnet18'
    assert config['num_classes'] == 11 and config['num_features'] == model.num_features
    assert config['model_args'] == json.loads(json.dumps(model.model_args))
    assert config['model_args']['num_frames'] == 4 and config['model_args']['temporal_strides'] == [1, 1, 2, 1]
    assert tuple(config['pretrained_cfg']['input_size']) == (3, 256, 128)
    weights = os.path.join(folder, WEIGHTS_NAME)
    assert config['weights']['sha256'] == file_sha256(weights)
    with safe_open(weights, framework='pt') as f:
        meta = f.metadata()
    assert meta['architecture'] == 'm3d_ral_resnet18' and meta['num_frames'] == '4'
    assert meta['source_weights'] == 'timm/resnet18.tv_in1k'
    assert json.loads(meta['model_args']) == config['model_args']

    with open(os.path.join(folder, README_NAME), encoding='utf-8') as f:
        readme = f.read()
    for text in ('(B, 3, 4, 256, 128)', 'ImageNet mean (0.485, 0.456, 0.406)', f'hf-hub:{hub_repo_id}',
                 '| Dataset | mAP | rank-1 |', '| MARS | 74.06 | 84.39 |', 'non-interpolated AP',
                 'surveillance technology', 'Multi-Scale 3D Convolution Network', '@inproceedings', 'Trained on MARS',
                 '## Intended use', 'datasets:\n- mars'):
        assert text in readme, text

    # the downloaded folder is itself a loadable model, rebuilt with its saved (non-default) arguments
    loaded = m3d_zoo.create_model(f'local-dir:{folder}', pretrained=True).eval()
    assert loaded.model_args == model.model_args
    x = torch.randn(1, 3, 4, 64, 32)
    assert torch.equal(_outputs(model, x), _outputs(loaded, x))


def test_local_dir_and_embedding_head(tmp_path):
    model = _randomize(m3d_zoo.create_model('p3d_c_resnet18', num_classes=5))
    save_pretrained(model, tmp_path / 'm')
    x = _clip()
    assert torch.equal(_outputs(model, x), _outputs(m3d_zoo.create_model(f'local-dir:{tmp_path / "m"}',
                                                                        pretrained=True).eval(), x))
    # num_classes=0 loads the trained weights, then drops the classifier: the embedding of the saved model
    emb = m3d_zoo.create_model(f'local-dir:{tmp_path / "m"}', pretrained=True, num_classes=0).eval()
    assert emb.num_classes == 0
    with torch.no_grad():
        assert torch.equal(emb(x), model.forward_head(model.forward_features(x), pre_logits=True))


def test_revisions(hub_server, hub_repo_id):
    x = _clip()
    first = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=3), seed=1)
    second = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=3), seed=2)
    c1 = push_to_hub(first, hub_repo_id, commit_message='first')
    push_to_hub(second, hub_repo_id, revision='dev')  # a new branch, from main
    HfApi().create_tag(hub_repo_id, tag='v1', revision=c1.oid)
    for rev, want in ((c1.oid, first), ('v1', first), ('main', first), ('dev', second)):
        loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}@{rev}', pretrained=True).eval()
        assert torch.equal(_outputs(loaded, x), _outputs(want, x)), rev
    assert loaded.pretrained_cfg['hf_hub_id'] == f'{hub_repo_id}@dev'


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def small_saved(tmp_path_factory):
    """A saved c2d_resnet18 folder and its model."""
    model = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=2))
    folder = tmp_path_factory.mktemp('saved') / 'c2d'
    save_pretrained(model, folder)
    return folder, model


def _upload(repo_id, files, message='edit'):
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    for name, data in files.items():
        api.upload_file(repo_id=repo_id, path_or_fileobj=data, path_in_repo=name, commit_message=message)


def test_error_repo_not_found(hub_server):
    with pytest.raises(HubRepoNotFoundError, match=f"'{HF_ORG}/no-such-model' not found"):
        m3d_zoo.create_model(f'hf-hub:{HF_ORG}/no-such-model', pretrained=True)


def test_error_file_missing(hub_server, hub_repo_id, small_saved):
    folder, _ = small_saved
    _upload(hub_repo_id, {CONFIG_NAME: (folder / CONFIG_NAME).read_bytes()})  # no weights
    with pytest.raises(HubFileNotFoundError, match=f"'{WEIGHTS_NAME}' is missing from Hub repo '{hub_repo_id}'"):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True)
    _upload(f'{hub_repo_id}-noconfig', {WEIGHTS_NAME: (folder / WEIGHTS_NAME).read_bytes()})
    with pytest.raises(HubFileNotFoundError, match=f"'{CONFIG_NAME}' is missing"):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}-noconfig', pretrained=True)
    with pytest.raises(HubFileNotFoundError, match='does not exist'):
        m3d_zoo.create_model(f'local-dir:{folder}-nope', pretrained=True)


def test_error_revision_missing(hub_server, hub_repo_id, small_saved):
    folder, _ = small_saved
    _upload(hub_repo_id, {CONFIG_NAME: (folder / CONFIG_NAME).read_bytes()})
    with pytest.raises(HubRevisionNotFoundError, match="revision 'v9' not found"):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}@v9', pretrained=True)


@pytest.mark.parametrize('damage', ['truncated', 'bitflip'])
def test_error_weights_corrupted_on_hub(damage, hub_server, hub_repo_id, small_saved):
    folder, _ = small_saved
    data = (folder / WEIGHTS_NAME).read_bytes()
    if damage == 'truncated':
        data = data[:len(data) // 2]
    else:
        data = bytearray(data)
        data[-100] ^= 0x01
        data = bytes(data)
    _upload(hub_repo_id, {CONFIG_NAME: (folder / CONFIG_NAME).read_bytes(), WEIGHTS_NAME: data})
    match = 'sha256 mismatch' + ('.*truncated' if damage == 'truncated' else '')
    with pytest.raises(CorruptWeightsError, match=f'{WEIGHTS_NAME} is corrupted: {match}'):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True)


def test_error_not_safetensors_without_checksum(tmp_path, small_saved):
    folder, _ = small_saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config['weights']  # e.g. a folder written by another tool: nothing to verify against
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    (tmp_path / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match=f'{WEIGHTS_NAME} is not a valid safetensors file'):
        m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True)


def test_error_unknown_architecture(tmp_path, small_saved):
    folder, _ = small_saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config['architecture'] = 'm3d_resnet9000'
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(UnknownArchitectureError, match="architecture 'm3d_resnet9000'.*not a model"):
        m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True)


def test_error_offline_and_empty_cache(monkeypatch, hub_server):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(HubOfflineError) as e:
        m3d_zoo.create_model(f'hf-hub:{HF_ORG}/never-downloaded', pretrained=True)
    msg = str(e.value)
    for text in ('HF_HUB_OFFLINE=1 is set', 'not in the local cache', 'local-dir:', 'pretrained_cfg_overlay',
                 'HF_HUB_OFFLINE=0'):
        assert text in msg, text


# An unreachable Hub fails in seconds (one probe of the Hub with HF_HUB_ETAG_TIMEOUT, then the cache only), not after
# huggingface_hub's retries of every file (about 50 s for timm's ImageNet weights, minutes when the Hub never answers).
FAST = 4  # seconds: the probe's 0.5 s timeout (unreachable_hub), with room for a loaded machine


def _fails_fast_offline(create, unreachable):
    start = time.monotonic()
    with pytest.raises(HubOfflineError) as e:
        create()
    assert time.monotonic() - start < FAST
    reason = f'no answer within {unreachable.timeout:g} s' if unreachable.kind == 'silent' else 'Connection refused'
    assert f'the Hub at {unreachable.endpoint} could not be reached (' in str(e.value), str(e.value)
    assert reason in str(e.value) and reason in e.value.cli_message
    return e.value


def test_error_no_network_and_empty_cache(unreachable_hub):
    """A saved zoo model: the Python advice names create_model's forms, the command line's its flags."""
    e = _fails_fast_offline(lambda: m3d_zoo.create_model(f'hf-hub:{HF_ORG}/never-downloaded', pretrained=True),
                            unreachable_hub)
    assert 'not in the local cache' in str(e) and "create_model('local-dir:" in str(e)
    assert f'`hf download {HF_ORG}/never-downloaded --local-dir DIR`) and pass --model DIR' in e.cli_message
    assert 'create_model' not in e.cli_message and 'pretrained_file' not in e.cli_message


def test_error_no_network_imagenet_weights(unreachable_hub):
    e = _fails_fast_offline(lambda: m3d_zoo.create_model('c2d_resnet18', pretrained=True), unreachable_hub)
    assert "pretrained_file='/path/to/model.safetensors'" in str(e)
    assert ('--pretrained-file PATH instead of --pretrained: download them where there is network (`hf download '
            'timm/resnet18.tv_in1k model.safetensors --local-dir DIR`) and pass --pretrained-file '
            'DIR/model.safetensors') in e.cli_message
    assert 'pretrained_cfg_overlay' not in e.cli_message and 'create_model' not in e.cli_message


def test_cached_model_loads_at_once_when_the_hub_is_unreachable(unreachable_hub, hub_server, hub_repo_id, tmp_path):
    """Files in the cache load without waiting for the Hub, and offline mode is left as it was."""
    from huggingface_hub import snapshot_download
    import huggingface_hub.constants as c
    model = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=3))
    save_pretrained(model, tmp_path / 'saved')
    hub_server.store.create_repo(hub_repo_id)  # straight into the test Hub's store: HF_ENDPOINT is unreachable
    hub_server.store.commit(hub_repo_id, 'main', {f.name: f.read_bytes() for f in (tmp_path / 'saved').iterdir()})
    snapshot_download(hub_repo_id, endpoint=hub_server.endpoint)  # now in the cache
    start = time.monotonic()
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True)
    assert time.monotonic() - start < FAST
    _assert_same_state(loaded, model)
    assert not c.HF_HUB_OFFLINE and c.ENDPOINT == unreachable_hub.endpoint


def test_error_offline_imagenet_weights(monkeypatch, hub_server):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(HubOfflineError, match='pretrained_cfg_overlay'):
        m3d_zoo.create_model('c2d_resnet18.a1_in1k', pretrained=True)


def test_no_pickle_weights(tmp_path, small_saved):
    folder, _ = small_saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config['weights']['file'] = 'pytorch_model.bin'
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(Exception, match='never unpickles'):
        m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True)


# --- ImageNet weights through timm, and offline reload --------------------------------------------------------------


def test_two_stream_m3d_pretrained_from_timm_hub_repo(hub_server, timm_hub_weights, hf_home):
    repo_id = timm_hub_weights('resnet50.tv_in1k')
    model = m3d_zoo.create_model('two_stream_m3d', pretrained=True, num_classes=0).eval()
    # fetched over HTTP by timm -> huggingface_hub, from the repo its pretrained_cfg names
    assert ('GET', f'/{repo_id}/resolve/main/{WEIGHTS_NAME}') in [
        (m, p.split('?')[0]) for m, p in hub_server.requests]
    from safetensors.torch import load
    src = load(hub_server.store.files(hub_server.store.repo(repo_id),
                                      hub_server.store.resolve(hub_server.store.repo(repo_id), 'main'))[WEIGHTS_NAME])
    for stream in (model.spatial_stream, model.temporal_stream):
        w3d = stream.conv1.weight
        assert torch.equal(w3d[:, :, w3d.shape[2] // 2], src['conv1.weight'])  # 'center' inflation
        assert torch.equal(stream.layer4[2].conv3.weight[:, :, 0], src['layer4.2.conv3.weight'])
    with torch.no_grad():
        assert model(_clip()).shape == (1, model.num_features)


def test_reload_offline_in_fresh_subprocess_after_server_stopped(monkeypatch, tmp_path, hf_home):
    import huggingface_hub.constants as c
    server = HubServer().start()
    try:
        monkeypatch.setattr(c, 'ENDPOINT', server.endpoint)
        monkeypatch.setattr(c, 'HUGGINGFACE_CO_URL_TEMPLATE',
                            server.endpoint + '/{repo_id}/resolve/{revision}/{filename}')
        model = _randomize(m3d_zoo.create_model('m3d_resnet18', num_classes=4))
        repo_id = f'{HF_ORG}/test-offline-reload'
        push_to_hub(model, repo_id)
        m3d_zoo.create_model(f'hf-hub:{repo_id}', pretrained=True)  # the download fills the cache
    finally:
        server.stop()
    x = _clip()
    torch.save({'x': x, 'y': _outputs(model, x)}, tmp_path / 'ref.pt')
    script = textwrap.dedent(f"""
        import torch, m3d_zoo
        import huggingface_hub.constants as c
        assert c.HF_HUB_OFFLINE and c.ENDPOINT == {server.endpoint!r}
        ref = torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True)
        model = m3d_zoo.create_model('hf-hub:{repo_id}', pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(model(ref['x']), ref['y'])
        print('OFFLINE-RELOAD-OK')
    """)
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_ENDPOINT=server.endpoint, HF_HOME=hf_home)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(m3d_zoo.__file__)),
                                                    env.get('PYTHONPATH')) if p)
    proc = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0 and 'OFFLINE-RELOAD-OK' in proc.stdout, proc.stderr[-3000:]


def test_error_overridden_args_do_not_fit_weights(small_saved):
    folder, _ = small_saved
    with pytest.raises(Exception, match=r"do not fit c2d_resnet18 built with the overridden arguments \['embed_dim'"):
        m3d_zoo.create_model(f'local-dir:{folder}', pretrained=True, head='paper', embed_dim=32)


# --- provenance: what the weights were loaded from ------------------------------------------------------------------


def _assert_source(folder, expected):
    """config.json, the safetensors metadata and the model card all name `expected` as the source weights."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    with safe_open(str(folder / WEIGHTS_NAME), framework='pt') as f:
        meta = f.metadata()
    card = (folder / README_NAME).read_text(encoding='utf-8')
    assert config['m3d_zoo']['source_weights'] == expected
    assert meta['source_weights'] == expected
    assert f'- **Source weights:** {expected}\n' in card
    return card


def test_source_of_a_randomly_initialised_model(tmp_path, hub_server, hub_repo_id):
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=3)
    card = _assert_source(save_pretrained(model, tmp_path / 'm'), RANDOM_INIT)
    assert 'timm/resnet18' not in card  # the registry's default source, which pretrained=False did not load
    push_to_hub(model, hub_repo_id)
    _assert_source(HfApi().snapshot_download(hub_repo_id, local_dir=tmp_path / 'snap'), RANDOM_INIT)
    # a classifier reset or moving to eval changes no weight that was loaded
    model.reset_classifier(0)
    _assert_source(save_pretrained(model.eval(), tmp_path / 'emb'), RANDOM_INIT)


def test_source_of_inflated_imagenet_weights(tmp_path, hub_server, timm_hub_weights):
    timm_hub_weights('resnet18.tv_in1k')
    inflated = 'timm/resnet18.tv_in1k, 2D ResNet weights inflated to 3D'
    model = m3d_zoo.create_model('c2d_resnet18', pretrained=True, num_classes=3)
    _assert_source(save_pretrained(model, tmp_path / 'zoo'), inflated)
    # timm's own create_model loads through the same inflation filter, which records the source too
    model = timm.create_model('m3d_resnet18', pretrained=True, num_classes=3)
    _assert_source(save_pretrained(model, tmp_path / 'timm'), inflated)


def test_source_of_a_pretrained_file(tmp_path):
    path = tmp_path / 'weights' / 'r18.safetensors'
    path.parent.mkdir()
    save_file(timm.create_model('resnet18').state_dict(), str(path))
    expected = f'file r18.safetensors (sha256 {file_sha256(path)}), 2D ResNet weights inflated to 3D'
    for kwargs in (dict(pretrained_file=path), dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))):
        model = m3d_zoo.create_model('i3d_resnet18', num_classes=3, **kwargs)
        card = _assert_source(save_pretrained(model, tmp_path / 'saved'), expected)
        assert str(path.parent) not in card  # the local folder is not published


def test_source_of_a_loaded_model(tmp_path, hub_server, hub_repo_id):
    model = _randomize(m3d_zoo.create_model('p3d_a_resnet18', num_classes=4))
    save_pretrained(model, tmp_path / 'first')
    sha = json.loads((tmp_path / 'first' / CONFIG_NAME).read_text())['weights']['sha256']
    local = m3d_zoo.create_model(f'local-dir:{tmp_path / "first"}', pretrained=True)
    _assert_source(save_pretrained(local, tmp_path / 'second'), f'local-dir:first ({WEIGHTS_NAME} sha256 {sha})')
    commit = push_to_hub(model, hub_repo_id).oid
    hub = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True, num_classes=0)
    _assert_source(save_pretrained(hub, tmp_path / 'third'), f'hf-hub:{hub_repo_id}@{commit}')
    architecture_only = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}')
    _assert_source(save_pretrained(architecture_only, tmp_path / 'fourth'), RANDOM_INIT)


def test_source_says_when_weights_changed_after_loading(tmp_path):
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=2)
    model.load_state_dict(_randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=2)).state_dict())
    _assert_source(save_pretrained(model, tmp_path / 'a'),
                   f'{RANDOM_INIT}, changed since (trained, converted, or other weights loaded into it)')
    _assert_source(save_pretrained(model, tmp_path / 'b', source_weights='run 7 of my recipe'), 'run 7 of my recipe')


# --- model card -----------------------------------------------------------------------------------------------------

HOSTILE = 'a: b "c" \'d\' #e\n---\nlicense: mit\n---'  # would end the YAML block, or add a key, if written as is


def test_card_metadata_escaped_by_huggingface_hub(tmp_path):
    """User values reach the card's YAML through huggingface_hub's ModelCardData: `: `, quotes, newlines and `---`
    parse back as the same values, and neither end the metadata block nor add keys to it."""
    from huggingface_hub import ModelCard
    card = dict(datasets=[f'MARS{HOSTILE}', 'iLIDS-VID: 2'], tags=[HOSTILE, 'video'], license='other',
                notes=HOSTILE, description=HOSTILE)
    save_pretrained(m3d_zoo.create_model('c2d_resnet18', num_classes=2), tmp_path, repo_id=f'org/{HOSTILE}',
                    model_card=card)
    parsed = ModelCard((tmp_path / README_NAME).read_text(encoding='utf-8'))
    assert parsed.data.to_dict() == {
        'license': 'other', 'library_name': 'timm', 'model_name': HOSTILE, 'tags': [HOSTILE, 'video'],
        'datasets': [f'mars{HOSTILE}'.lower(), 'ilids-vid: 2']}
    assert parsed.text.startswith(f'\n# {HOSTILE}\n\n{HOSTILE}\n\n## Model details')
    assert f'## Notes\n\n{HOSTILE}\n' in parsed.text and parsed.text.endswith('```\n')


# --- malformed or edited config.json --------------------------------------------------------------------------------


def _write_config(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(config if isinstance(config, str) else json.dumps(config))


TAMPERED = [
    ('list', lambda c: [c], r"holds a JSON list, not an object with 'architecture' and 'model_args'"),
    ('string', lambda c: '"c2d_resnet18"', r'holds a JSON str, not an object'),
    ('not-json', lambda c: '{"architecture": "c2d_resnet18",', r'is not valid JSON'),
    ('args-list', lambda c: dict(c, model_args=[1, 2]), r"has a list as 'model_args', not an object"),
    ('no-architecture', lambda c: {k: v for k, v in c.items() if k != 'architecture'},
     r"has no 'architecture' \(the registered model name, a string\)"),
    ('architecture-int', lambda c: dict(c, architecture=5), r"has 5 as its 'architecture'"),
    ('weights-string', lambda c: dict(c, weights=WEIGHTS_NAME), r"has a str as 'weights', not an object"),
    ('pretrained-cfg-list', lambda c: dict(c, pretrained_cfg=[]), r"has a list as 'pretrained_cfg'"),
    ('sha256-int', lambda c: dict(c, weights=dict(c['weights'], sha256=12)), r'has weights\.sha256=12, not 64 hex'),
    ('file-int', lambda c: dict(c, weights=dict(c['weights'], file=3)), r'has weights\.file=3, not a file name'),
    ('unknown-arg', lambda c: dict(c, model_args=dict(c['model_args'], foo=1)),
     r"has model_args that do not build c2d_resnet18: c2d_resnet18 has no argument 'foo'"),
    ('string-arg', lambda c: dict(c, model_args=dict(c['model_args'], num_frames='8')),
     r"has model_args that do not build c2d_resnet18: num_frames must be an int >= 1, got '8'"),
    ('negative-arg', lambda c: dict(c, model_args=dict(c['model_args'], embed_dim=-4)),
     r'has model_args that do not build c2d_resnet18: embed_dim must be an int >= 1'),
]


@pytest.mark.parametrize('edit, match', [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_error_tampered_config_in_a_folder(edit, match, tmp_path, small_saved):
    folder, _ = small_saved
    _write_config(tmp_path, edit(json.loads((folder / CONFIG_NAME).read_text())))
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / WEIGHTS_NAME)
    with pytest.raises(HubConfigError, match=rf'^local-dir:{re.escape(str(tmp_path))}: {CONFIG_NAME} {match}') as e:
        m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True)
    assert f'File: {tmp_path / CONFIG_NAME}. m3d_zoo.save_pretrained and push_to_hub write it' in str(e.value)


@pytest.mark.parametrize('edit, match', [c[1:] for c in TAMPERED if c[0] in ('list', 'unknown-arg', 'weights-string')],
                         ids=['list', 'unknown-arg', 'weights-string'])
def test_error_tampered_config_in_a_hub_repo(edit, match, hub_server, hub_repo_id, small_saved):
    folder, _ = small_saved
    config = edit(json.loads((folder / CONFIG_NAME).read_text()))
    _upload(hub_repo_id, {CONFIG_NAME: json.dumps(config).encode(), WEIGHTS_NAME: (folder / WEIGHTS_NAME).read_bytes()})
    with pytest.raises(HubConfigError, match=rf'^hf-hub:{hub_repo_id}: {CONFIG_NAME} {match}.*force_download=True'):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True)


@pytest.mark.parametrize('filename', ['../outside.safetensors', 'sub/../../outside.safetensors', 'ABSOLUTE',
                                      '..\\outside.safetensors', 'C:/outside.safetensors'])
def test_error_weights_file_outside_the_folder(filename, tmp_path, small_saved):
    folder, _ = small_saved
    # the file really is there, outside the folder, with the recorded sha256: it is refused, not merely missing
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / 'outside.safetensors')
    filename = str(tmp_path / 'outside.safetensors') if filename == 'ABSOLUTE' else filename
    config = json.loads((folder / CONFIG_NAME).read_text())
    config['weights']['file'] = filename
    _write_config(tmp_path / 'model', config)
    with pytest.raises(HubConfigError, match=rf"names the weights file {re.escape(repr(filename))}, which leads "
                                             rf'outside its folder'):
        m3d_zoo.create_model(f'local-dir:{tmp_path / "model"}', pretrained=True)


def test_error_weights_file_outside_the_repo(hub_server, hub_repo_id, small_saved):
    folder, _ = small_saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config['weights']['file'] = '../other-repo/model.safetensors'
    _upload(hub_repo_id, {CONFIG_NAME: json.dumps(config).encode()})
    with pytest.raises(HubConfigError, match=r"names the weights file '\.\./other-repo/model\.safetensors', which "
                                             r'leads outside its repo'):
        m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True)


# --- push errors ----------------------------------------------------------------------------------------------------


def test_error_push_without_a_token(monkeypatch, hub_server, hub_repo_id):
    """The test Hub answers a write without a token as the Hub does: 401."""
    monkeypatch.delenv('HF_TOKEN')
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=2)
    with pytest.raises(HubAuthError, match=rf"^push_to_hub\('{hub_repo_id}'\): the Hub at .* refused the push \(401 "
                                           r'.*\): no Hub token was given or found, and a push needs one with write '
                                           r"access\. To fix, log in with `hf auth login`, set the HF_TOKEN "
                                           r"environment variable, or pass token='hf_\.\.\.' to push_to_hub\."):
        push_to_hub(model, hub_repo_id)
    with pytest.raises(HubAuthError, match='no Hub token was given'):
        push_to_hub(model, hub_repo_id, token=False)
    assert not HfApi().repo_exists(hub_repo_id)
    push_to_hub(model, hub_repo_id, token='hf_m3dzoo_dummy_test_token')  # with a token it goes through
    assert HfApi().repo_exists(hub_repo_id)


def test_error_push_offline(monkeypatch, hub_server, hub_repo_id):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(HubOfflineError, match=rf"^push_to_hub\('{hub_repo_id}'\): HF_HUB_OFFLINE=1 is set, and a push "
                                              rf'needs the Hub\. To push later, save the folder now with '
                                              rf'm3d_zoo\.save_pretrained\(model, FOLDER\) and upload it with `hf '
                                              rf'upload {hub_repo_id} FOLDER`\..*unset HF_HUB_OFFLINE'):
        push_to_hub(m3d_zoo.create_model('c2d_resnet18', num_classes=2), hub_repo_id)


def test_error_push_hub_unreachable(monkeypatch):
    import huggingface_hub.constants as c
    import huggingface_hub.utils._http as hf_http
    closed = HubServer()  # binds a free loopback port, never listens
    endpoint = closed.endpoint
    closed.stop()
    monkeypatch.setattr(c, 'ENDPOINT', endpoint)
    monkeypatch.setattr(hf_http, 'time', types.SimpleNamespace(sleep=lambda s: None))  # skip the retry back-off
    with pytest.raises(HubOfflineError, match=rf'the Hub at {endpoint} could not be reached .*Check the network and '
                                              r'HF_ENDPOINT\. To push later, .*hf upload'):
        push_to_hub(m3d_zoo.create_model('c2d_resnet18', num_classes=2), f'{HF_ORG}/unreachable')


@pytest.mark.parametrize('make, match', [
    (lambda: nn.Linear(2, 2), r'Linear is not an m3d_zoo model: only models built by m3d_zoo\.create_model'),
    (lambda: timm.create_model('resnet18'), r'ResNet is not an m3d_zoo model: .*timm\.models\.push_to_hf_hub'),
    (lambda: VideoResNet(block='basic', layers=(2, 2, 2, 2)),
     r'This VideoResNet was built directly, not by m3d_zoo\.create_model.*m3d_zoo\.create_model\(NAME'),
], ids=['linear', 'timm-resnet', 'videoresnet-built-directly'])
def test_error_save_or_push_a_module_that_is_not_a_zoo_model(make, match, hub_server, hub_repo_id, tmp_path):
    module = make()
    with pytest.raises(TypeError, match=match):
        push_to_hub(module, hub_repo_id)
    assert not HfApi().repo_exists(hub_repo_id)  # refused before the repo was created
    with pytest.raises(TypeError, match=match):
        save_pretrained(module, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# --- timm's format through public APIs; weights pinned to the config's commit --------------------------------------


def test_hub_modules_use_public_timm_and_hub_apis_only():
    modules = sorted(Path(hub.__file__).parent.glob('*.py'))
    assert {p.name for p in modules} >= {'errors.py', 'provenance.py', 'save.py', 'load.py', 'card.py', 'release.py'}
    for path in modules:
        source = path.read_text(encoding='utf-8')
        private = [f'{path.name} line {node.lineno}: {node.module}' for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.ImportFrom) and node.module
                   and node.module.split('.')[0] in ('timm', 'huggingface_hub')
                   and any(part.startswith('_') for part in node.module.split('.'))]
        assert not private, f'private modules imported: {private}'
        assert 'parent.name' not in source, f'{path.name}: a commit read from the cache folder name'


def test_timm_reads_the_saved_config(hub_server, hub_repo_id):
    model = _randomize(m3d_zoo.create_model('m3d_ral_resnet18', num_classes=5, num_frames=4,
                                            temporal_strides=(1, 1, 2, 1)))
    push_to_hub(model, hub_repo_id)
    pretrained_cfg, name, model_args = timm.models.load_model_config_from_hf(hub_repo_id)
    assert name == 'm3d_ral_resnet18' and model_args == json.loads(json.dumps(model.model_args))
    assert pretrained_cfg['num_classes'] == 5 and tuple(pretrained_cfg['input_size']) == (3, 256, 128)
    assert not {'hf_hub_id', 'file', 'url', 'notes'} & set(json.loads(
        (Path(HfApi().hf_hub_download(hub_repo_id, CONFIG_NAME))).read_text())['pretrained_cfg'])
    # timm's own hf-hub: loader rebuilds it too, through the filter that checks a video state dict fits
    loaded = timm.create_model(f'hf-hub:{hub_repo_id}', pretrained=True).eval()
    x = torch.randn(1, 3, 4, 64, 32)
    assert torch.equal(_outputs(loaded, x), _outputs(model, x))


def test_weights_pinned_to_the_commit_of_the_config(monkeypatch, hub_server, hub_repo_id):
    """main moves on right after config.json is fetched: config and weights still come from one commit."""
    import huggingface_hub
    first = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=3), seed=1)
    second = _randomize(m3d_zoo.create_model('c2d_resnet18', num_classes=3, head='paper'), seed=2)
    c1 = push_to_hub(first, hub_repo_id).oid
    download, moved = huggingface_hub.hf_hub_download, []

    def download_then_move_main(repo_id, filename, **kwargs):
        path = download(repo_id, filename, **kwargs)
        if filename == CONFIG_NAME and not moved:
            moved.append(push_to_hub(second, hub_repo_id).oid)
        return path

    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', download_then_move_main)
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True).eval()
    assert moved and loaded.pretrained_cfg['revision'] in (c1, moved[0])
    want = first if loaded.pretrained_cfg['revision'] == c1 else second
    assert loaded.model_args == want.model_args
    x = _clip()
    assert torch.equal(_outputs(loaded, x), _outputs(want, x))

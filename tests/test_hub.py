"""Push and pull zoo models through the real huggingface_hub client and timm, against the loopback test Hub."""
import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from hub_server import HubServer
from huggingface_hub import HfApi
from safetensors import safe_open

import m3d_zoo
from m3d_zoo.models._hub import (
    CONFIG_NAME,
    HF_ORG,
    README_NAME,
    WEIGHTS_NAME,
    CorruptWeightsError,
    HubFileNotFoundError,
    HubOfflineError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    UnknownArchitectureError,
    file_sha256,
    push_to_hub,
    save_pretrained,
)

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
    model = _randomize(m3d_zoo.create_model(name, num_classes=7))
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


def test_error_no_network_and_empty_cache(monkeypatch, hub_server):
    """The Hub does not answer at all (nothing listens on the endpoint's port)."""
    import huggingface_hub.constants as c
    import huggingface_hub.utils._http as hf_http
    closed = HubServer()  # binds a free loopback port, never listens
    endpoint = closed.endpoint
    closed.stop()
    monkeypatch.setattr(c, 'ENDPOINT', endpoint)
    monkeypatch.setattr(c, 'HUGGINGFACE_CO_URL_TEMPLATE', endpoint + '/{repo_id}/resolve/{revision}/{filename}')
    monkeypatch.setattr(hf_http, 'time', types.SimpleNamespace(sleep=lambda s: None))  # skip the retry back-off
    with pytest.raises(HubOfflineError, match=f'the Hub at {endpoint} could not be reached.*local-dir:'):
        m3d_zoo.create_model(f'hf-hub:{HF_ORG}/never-downloaded', pretrained=True)


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

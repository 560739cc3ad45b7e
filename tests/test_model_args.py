""" The construction record: any model, built with any arguments, saves and loads back exactly.

Every path that rebuilds a model (save_pretrained -> local-dir:, training checkpoints, `m3d-zoo extract`) must give the
same architecture, the same state dict and the same outputs. State-dict key names are pinned against a manifest
written before the model core was refactored, so that files saved by earlier versions keep loading.
"""
import json
from pathlib import Path

import pytest
import torch

import m3d_zoo
from m3d_zoo.cli import main
from m3d_zoo.data import make_synthetic_gait
from m3d_zoo.engine import load_embeddings
from m3d_zoo.engine.checkpoint import check_resume_compatible, load_checkpoint, model_from_checkpoint, save_checkpoint

DATA = Path(__file__).parent / 'data'
CLIP = (2, 3, 8, 32, 16)

# (architecture, non-default arguments): every family, and each argument that changes the architecture.
GRID = [
    ('m3d_resnet18', dict(ral='s')),
    ('m3d_resnet18', dict(temporal_stem=False)),
    ('m3d_resnet18', dict(temporal_blocks='all', m3d_branches=2, temporal_strides=(1, 1, 2, 1))),
    ('m3d_resnet18', dict(temporal_strides=(1, 1, 1, 1), m3d_branches=(1, 2, 3, 2, 1))),
    ('m3d_resnet18', dict(head='paper', embed_dim=64)),
    ('m3d_resnet18', dict(head='bnneck', embed_dim=96, last_stride=1)),
    ('m3d_resnet18', dict(num_frames=16, inflation='mean', drop_rate=0.3)),
    ('m3d_resnet18', dict(unit='series')),
    ('m3d_resnet18', dict(centre_clips=True, temporal_strides=(1, 1, 1, 1))),
    ('m3d_ral_resnet18', dict(ral='ct', temporal_strides=(1, 2, 1, 2))),
    ('m3d_ral_t_resnet18', dict(num_frames=4, temporal_strides=(1, 2, 2, 1))),
    ('c2d_resnet18', dict(num_frames=5, head='paper')),
    ('i3d_resnet18', dict(temporal_stem=False, temporal_strides=(1, 1, 2, 2))),
    ('p3d_a_resnet18', dict(temporal_blocks='first')),
    ('p3d_b_resnet18', dict(temporal_stem=False, last_stride=1)),
    ('p3d_c_resnet18', dict(m3d_branches=2, temporal_strides=(1, 1, 2, 1))),
    ('m3d_resnet50', dict(ral='c', m3d_branches=1)),
    ('two_stream_m3d_resnet18', dict(ral='s')),
    ('two_stream_m3d_resnet18', dict(m3d_branches=1, head='paper', embed_dim=32, temporal_strides=(1, 1, 1, 1))),
]


def _ids(case):
    name, kwargs = case
    return name + '-' + '-'.join(f'{k}={v}' for k, v in kwargs.items())


def _random_model(name, **kwargs):
    """A model whose every tensor is random: zero-initialised kernels would hide a branch that is not rebuilt."""
    torch.manual_seed(0)
    model = m3d_zoo.create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(mean=1.0 if p.ndim == 1 else 0.0, std=0.05)
    return model.eval()


def _clip(name, kwargs):
    T = kwargs.get('num_frames', 8)
    return torch.randn(CLIP[0], 3, T, *CLIP[3:], generator=torch.Generator().manual_seed(1))


def _assert_same(a, b, x):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.model_args == b.model_args
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize('case', GRID, ids=[_ids(c) for c in GRID])
def test_save_pretrained_round_trip(case, tmp_path):
    name, kwargs = case
    model = _random_model(name, num_classes=7, **kwargs)
    for k, v in kwargs.items():  # the record holds what was asked, as JSON (tuples become lists)
        assert model.model_args[k] == json.loads(json.dumps(v)), k
    m3d_zoo.save_pretrained(model, tmp_path / 'saved', write_card=False)
    loaded = m3d_zoo.create_model(f'local-dir:{tmp_path / "saved"}', pretrained=True).eval()
    _assert_same(model, loaded, _clip(name, kwargs))


@pytest.mark.parametrize('case', GRID[:3] + GRID[-2:], ids=[_ids(c) for c in GRID[:3] + GRID[-2:]])
def test_training_checkpoint_round_trip_and_resume_check(case, tmp_path):
    name, kwargs = case
    model = _random_model(name, num_classes=7, **kwargs)
    path = save_checkpoint(tmp_path, 'last', model)
    _assert_same(model, model_from_checkpoint(path).eval(), _clip(name, kwargs))
    ckpt = load_checkpoint(path, with_train_state=False)
    check_resume_compatible(ckpt, m3d_zoo.create_model(name, num_classes=7, **kwargs))
    other = dict(kwargs, last_stride=1 if kwargs.get('last_stride', 2) == 2 else 2)
    with pytest.raises(Exception, match='last_stride'):
        check_resume_compatible(ckpt, m3d_zoo.create_model(name, num_classes=7, **other))


def test_reset_classifier_is_recorded(tmp_path):
    model = _random_model('two_stream_m3d_resnet18', num_classes=7, ral='t')
    model.reset_classifier(0)
    assert model.model_args['num_classes'] == 0 and model.model_args['ral'] == 't'
    m3d_zoo.save_pretrained(model, tmp_path, write_card=False)
    loaded = m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True).eval()
    assert loaded.num_classes == 0
    _assert_same(model, loaded, _clip('two_stream_m3d_resnet18', {}))


@pytest.mark.parametrize('name,kwargs', [('m3d_ral_resnet18', dict(ral='sc', temporal_stem=False)),
                                         ('p3d_b_resnet18', dict(head='paper', embed_dim=48))])
def test_extract_rebuilds_a_checkpoint_with_its_arguments(name, kwargs, tmp_path):
    """`m3d-zoo extract --model CHECKPOINT` embeds with exactly the trained architecture and weights."""
    from m3d_zoo.engine.extract import embed_tracklets, find_tracklet_folders
    root = tmp_path / 'gait'
    make_synthetic_gait(str(root), num_ids=2, num_train_ids=0, tracklets_per_id=2, length=8, size=(32, 16), seed=3)
    model = _random_model(name, num_classes=4, **kwargs)
    ckpt = save_checkpoint(tmp_path / 'run', 'last', model)
    out = tmp_path / 'emb.safetensors'
    assert main(['extract', '--model', str(ckpt), '--tracklets', str(root / 'gallery'), '--output', str(out),
                 '--workers', '0', '--device', 'cpu', '--img-size', '32', '16']) == 0
    got = load_embeddings(out)['embeddings']
    model.reset_classifier(0)
    ref = embed_tracklets(model, find_tracklet_folders([str(root / 'gallery')]), input_size=(32, 16))
    assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_state_dict_keys_match_the_manifest():
    """Key names and shapes of one model per family (and depth type) are those of earlier releases."""
    manifest = json.loads((DATA / 'state_dict_manifest.json').read_text())
    assert len(manifest) == 19
    for name, expected in manifest.items():
        with torch.device('meta'):
            model = m3d_zoo.create_model(name)
        got = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert got == expected, f'{name}: {sorted(set(got) ^ set(expected))[:5]}'


def test_arguments_saved_by_earlier_releases_still_build():
    """`model_args` that earlier releases wrote to config.json and checkpoints rebuild the same state-dict layout."""
    saved = json.loads((DATA / 'model_args_v0.json').read_text())
    assert len(saved) == 6
    for name, entry in saved.items():
        with torch.device('meta'):
            model = m3d_zoo.create_model(name, **entry['model_args'])
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == entry['state_dict'], name


def test_record_is_json_and_refuses_what_a_config_cannot_hold():
    model = m3d_zoo.create_model('m3d_resnet18', temporal_strides=(1, 1, 2, 2))
    args = model.model_args
    assert args['temporal_strides'] == [1, 1, 2, 2] and args['unit'] == 'multiscale'
    assert json.loads(json.dumps(args)) == args
    args['num_frames'] = 99  # a copy: the model's record does not change
    assert model.model_args['num_frames'] == 8
    custom = m3d_zoo.create_model('m3d_resnet18', act_layer=torch.nn.SiLU)
    with pytest.raises(ValueError, match='config file cannot hold'):
        custom.model_args
    with pytest.raises(TypeError, match='no construction record'):
        m3d_zoo.get_model_args(torch.nn.Linear(2, 2))

"""hub/release.py turns a training checkpoint + results into a Hub repo; registry tags only name released weights."""
import argparse
import importlib.util
import json
import os

import pytest
import timm
import torch
from huggingface_hub import HfApi

import m3d_zoo
from m3d_zoo.engine import CheckpointError
from m3d_zoo.hub import HF_ORG, README_NAME, RELEASED_WEIGHTS, HubError, card_from_results, save_pretrained
from m3d_zoo.hub.release import build_release, load_training_checkpoint, registry_entry

_RELEASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'hub', 'release.py')


@pytest.fixture(scope='module')
def release():
    spec = importlib.util.spec_from_file_location('m3d_zoo_hub_release', _RELEASE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained(num_frames=4):
    model = m3d_zoo.create_model('m3d_resnet18', num_frames=num_frames, temporal_strides=(1, 2, 2, 1),
                                 num_classes=6)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (0.5 if 'running_var' in name else -0.1))
    return model.eval()


def test_release_checkpoint_with_results_and_push(release, hub_server, hub_repo_id, tmp_path):
    model = _trained()
    ckpt = tmp_path / 'last.pth'
    # a DDP training checkpoint: prefixed keys, optimizer state, plain values
    torch.save({'arch': 'm3d_resnet18', 'model_args': dict(model.model_args), 'epoch': 12,
                'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()},
                'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1}]}}, ckpt)
    results = tmp_path / 'eval.json'
    results.write_text(json.dumps({'mAP': 0.7406, 'rank1': 0.8439, 'rank5': 0.9312, 'rank10': 0.9545,
                                   'ap_mode': 'standard', 'gallery_mode': 'test_minus_query',
                                   'metric': 'euclidean'}))
    out = tmp_path / 'release'
    rc = release.main(['--checkpoint', str(ckpt), '--results', str(results), '--dataset', 'MARS',
                       '--repo-id', hub_repo_id, '--output-dir', str(out), '--source-weights', 'timm/resnet18.tv_in1k',
                       '--training', '{"epochs": 12, "loss": "softmax + triplet"}', '--push', '--tag', 'v1.0'])
    assert rc == 0
    assert sorted(HfApi().list_repo_files(hub_repo_id)) == ['.gitattributes', README_NAME, 'config.json',
                                                           'model.safetensors']
    readme = (out / README_NAME).read_text()
    for text in ('| Dataset | mAP (%) | Rank-1 (%) | Rank-5 (%) | Rank-10 (%) |',
                 '| MARS | 74.1 | 84.4 | 93.1 | 95.5 |',
                 'non-interpolated AP', 'gallery: test_minus_query', 'Trained on MARS', '**epochs:** 12',
                 'timm/resnet18.tv_in1k', 'surveillance technology'):
        assert text in readme, text
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}@v1.0', pretrained=True).eval()
    x = torch.randn(1, 3, 4, 64, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_release_results_over_splits_and_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file
    model = _trained(num_frames=8)
    ckpt = tmp_path / 'model.safetensors'
    save_file(model.state_dict(), str(ckpt), metadata={
        'architecture': 'm3d_resnet18', 'model_args': json.dumps(model.model_args)})
    results = tmp_path / 'eval.json'
    split = {'mAP': 0.8, 'mAP_std': 0.021, 'rank1': 0.9, 'rank1_std': 0.03, 'ap_mode': 'trapezoid',
             'num_splits': 10}
    results.write_text(json.dumps({'iLIDS-VID': split, 'PRID-2011': split}))
    folder, repo_id = build_release(str(ckpt), str(results), str(tmp_path / 'out'), drop_classifier=True)
    assert repo_id == f'{HF_ORG}/m3d_resnet18'
    readme = (folder / README_NAME).read_text()
    assert '| iLIDS-VID | 80.0 ± 2.1 | 90.0 ± 3.0 |' in readme and 'mean ± std over 10 random splits' in readme
    assert json.loads((folder / 'config.json').read_text())['num_classes'] == 0
    assert 'NOTE' in registry_entry(repo_id, folder)  # non-default strides: no registry tag


def test_release_refuses_pickled_objects_and_misfit_weights(tmp_path):
    model = _trained()
    bad = tmp_path / 'pickled.pth'
    torch.save({'state_dict': model.state_dict(), 'args': argparse.Namespace(lr=0.1)}, bad)
    with pytest.raises(CheckpointError, match='weights_only=True'):
        load_training_checkpoint(str(bad))
    ckpt = tmp_path / 'ok.pth'
    torch.save(model.state_dict(), ckpt)
    with pytest.raises(CheckpointError, match='does not fit m3d_resnet18'):
        build_release(str(ckpt), None, str(tmp_path / 'out'), model='m3d_resnet18')  # default args differ


def test_registry_tags_are_imagenet_sources_or_released_weights():
    """Every pretrained tag is a timm 2D ImageNet ResNet of the model's depth, or a release in RELEASED_WEIGHTS on
    the project's organisation: a tag never points at weights that were not released."""
    names = m3d_zoo.list_pretrained()
    assert len(names) == 2 * len(m3d_zoo.list_models()) + len(RELEASED_WEIGHTS) > 0
    for name in names:
        arch, tag = name.split('.', 1)
        hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
        if tag in ('tv_in1k', 'a1_in1k'):
            depth = 'resnet50' if arch == 'two_stream_m3d' else arch.rsplit('_', 1)[1]
            assert hub_id == f'timm/{depth}.{tag}', name
        else:
            assert name in RELEASED_WEIGHTS and hub_id.startswith(f'{HF_ORG}/'), f'{name} -> {hub_id}'


def test_released_weights_entry_from_release_tool_gives_a_registry_tag(release, tmp_path, monkeypatch):
    """The line hub/release.py prints for RELEASED_WEIGHTS gives that architecture, and only it, a tag."""
    from m3d_zoo.models.video_resnet import family_cfgs
    save_pretrained(m3d_zoo.create_model('m3d_resnet18', num_classes=6), tmp_path / 'rel', write_card=False)
    entry = release.registry_entry(f'{HF_ORG}/m3d_resnet18.gait', tmp_path / 'rel')
    assert 'NOTE' not in entry  # default model arguments: a registry tag rebuilds the same model
    released = eval('{' + entry + '}', {'__builtins__': {}, 'dict': dict})  # the tool's output: one dict entry
    assert released == {'m3d_resnet18.gait': dict(hf_hub_id=f'{HF_ORG}/m3d_resnet18.gait', num_classes=6)}
    for name, cfg in released.items():
        monkeypatch.setitem(RELEASED_WEIGHTS, name, cfg)
    monkeypatch.setitem(RELEASED_WEIGHTS, 'm3d_ral_resnet50.mars', dict(num_classes=625))  # default hf_hub_id
    cfgs = family_cfgs('m3d')
    assert set(cfgs) == {f'm3d_{d}.{t}' for d in ('resnet18', 'resnet34', 'resnet50', 'resnet101')
                         for t in ('tv_in1k', 'a1_in1k')} | {'m3d_resnet18.gait'}
    gait = cfgs['m3d_resnet18.gait']
    assert gait['hf_hub_id'] == f'{HF_ORG}/m3d_resnet18.gait' and gait['num_classes'] == 6
    assert gait['input_size'] == (3, 256, 128) and gait['classifier'] == 'head.classifier'  # the family's input spec
    assert 'notes' not in gait  # not the ImageNet-inflation note
    assert family_cfgs('m3d_ral')['m3d_ral_resnet50.mars']['hf_hub_id'] == f'{HF_ORG}/m3d_ral_resnet50.mars'
    assert not [n for n in family_cfgs('c2d') if n.split('.', 1)[1] not in ('tv_in1k', 'a1_in1k')]


def test_released_two_stream_weights_get_a_registry_tag(monkeypatch):
    """The paper's full model is released like every other family: a RELEASED_WEIGHTS entry gives it a tag."""
    from m3d_zoo.models.two_stream import _two_stream_cfgs
    monkeypatch.setitem(RELEASED_WEIGHTS, 'two_stream_m3d.mars', dict(num_classes=625))
    monkeypatch.setitem(RELEASED_WEIGHTS, 'two_stream_m3d_resnet18.gait', dict(num_classes=6))
    cfgs = _two_stream_cfgs()
    assert cfgs['two_stream_m3d.mars']['hf_hub_id'] == f'{HF_ORG}/two_stream_m3d.mars'
    gait = cfgs['two_stream_m3d_resnet18.gait']
    assert gait['num_classes'] == 6 and gait['hf_hub_id'] == f'{HF_ORG}/two_stream_m3d_resnet18.gait'
    assert gait['classifier'] == ('spatial_stream.head.classifier', 'temporal_stream.head.classifier')
    assert len(cfgs) == 2 * 4 + 2


def test_card_from_unnamed_results_asks_for_the_dataset():
    with pytest.raises(HubError, match='--dataset'):
        card_from_results({'mAP': 0.5, 'rank1': 0.6})
    metrics, _ = card_from_results({'mAP': 0.5, 'rank1': 0.6}, 'MARS')
    assert metrics == {'MARS': {'mAP (%)': '50.0', 'Rank-1 (%)': '60.0'}}

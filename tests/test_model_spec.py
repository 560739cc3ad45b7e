"""One rule for what a model spec names (registered name, Hub repo, folder, checkpoint), shared by train, extract,
evaluate, export and push."""
import os

import pytest
import torch

import m3d_zoo
from m3d_zoo.engine import load_inference_model
from m3d_zoo.models import ModelSpec, UnknownModelError, classify_model_spec


@pytest.mark.parametrize('spec, expected', [
    ('m3d_resnet18', ModelSpec('name', 'm3d_resnet18')),
    ('m3d_resnet18.tv_in1k', ModelSpec('name', 'm3d_resnet18.tv_in1k')),
    ('hf-hub:org/m3d@v1', ModelSpec('hf-hub', 'hf-hub:org/m3d@v1')),
    ('hf_hub:org/m3d', ModelSpec('hf-hub', 'hf_hub:org/m3d')),  # timm's older spelling
    ('local-dir:/no/such/folder', ModelSpec('local-dir', 'local-dir:/no/such/folder')),  # checked when loaded
])
def test_names_and_sources(spec, expected):
    assert classify_model_spec(spec) == expected


def test_paths(tmp_path, monkeypatch):
    saved = tmp_path / 'saved'
    saved.mkdir()
    (saved / 'config.json').write_text('{}')
    (tmp_path / 'run').mkdir()
    (tmp_path / 'best.safetensors').write_bytes(b'')
    (tmp_path / 'best.pt').write_bytes(b'')
    (tmp_path / 'm3d_resnet18').mkdir()
    monkeypatch.chdir(tmp_path)
    assert classify_model_spec(str(saved)) == ModelSpec('saved-model', f'local-dir:{saved}')
    assert classify_model_spec(str(saved)).saved and not classify_model_spec('m3d_resnet18').saved
    assert classify_model_spec(str(tmp_path / 'run')) == ModelSpec('checkpoint', str(tmp_path / 'run'))
    assert classify_model_spec('best.safetensors') == ModelSpec('checkpoint', 'best.safetensors')
    assert classify_model_spec('best.pt') == ModelSpec('checkpoint', 'best.pt')  # a bare existing file is a path
    # a registered name stays one even beside a folder of that name; './' selects the folder
    assert classify_model_spec('m3d_resnet18').kind == 'name'
    assert classify_model_spec(os.path.join('.', 'm3d_resnet18')).kind == 'checkpoint'
    monkeypatch.setenv('HOME', str(tmp_path))
    assert classify_model_spec('~/run') == ModelSpec('checkpoint', str(tmp_path / 'run'))


@pytest.mark.parametrize('spec', ['run/best.safetensors', 'best.safetensors', '~/no_such_run/best.safetensors'])
def test_missing_path_says_so(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"Model '{spec}' is written as a path, but no such file or folder"):
        classify_model_spec(spec)


def test_neither_name_nor_path():
    with pytest.raises(UnknownModelError, match=r"Unknown m3d_zoo model 'm3d_resnt18'\. Did you mean 'm3d_resnet18'"
                                                r".*No file or folder 'm3d_resnt18' exists either"):
        classify_model_spec('m3d_resnt18')
    with pytest.raises(ValueError, match='no model id'):
        classify_model_spec('hf-hub:')


def test_saved_folder_loads_without_prefix(tmp_path):
    """A folder written by save_pretrained, given as a plain path, loads as 'local-dir:' does."""
    model = m3d_zoo.create_model('m3d_resnet18', num_frames=4, temporal_strides=(1, 1, 1, 1), num_classes=0)
    m3d_zoo.save_pretrained(model, tmp_path / 'saved')
    loaded = load_inference_model(str(tmp_path / 'saved'))
    x = torch.randn(1, 3, 4, 32, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))

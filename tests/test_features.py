""" timm's feature contract on every family: features_only=True and forward_intermediates(). """
import pytest
import torch

import m3d_zoo

FAMILIES = ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_c', 'm3d_ral_t']
NAMES = [f'{f}_resnet18' for f in FAMILIES] + ['two_stream_m3d_resnet18', 'm3d_resnet50']


def _clip(T=8):
    return torch.randn(2, 3, T, 64, 32, generator=torch.Generator().manual_seed(0))


def _reference_levels(model, x):
    """The stem feature (after the stem's unit, before the max-pool) and each stage's output (after its RAL), taken
    by running the model's parts by hand."""
    if isinstance(model, m3d_zoo.TwoStreamM3D):
        s, t = _reference_levels(model.spatial_stream, x), _reference_levels(model.temporal_stream, x)
        return [model._join(a, b) for a, b in zip(s, t)]
    y = model.stem_temporal(model.act1(model.bn1(model.conv1(x))), x)
    levels = [y]
    y = model.maxpool(y)
    for i in range(1, 5):
        y = getattr(model, f'layer{i}')(y)
        if hasattr(model, f'ral{i}'):
            y = getattr(model, f'ral{i}')(y)
        levels.append(y)
    return levels


def _randomise(model):
    """Random temporal and attention weights: at their zero init, features before and after a unit are equal."""
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'temporal' in n or 'ral' in n:
                p.normal_(std=0.05)
    return model.eval()


@pytest.mark.parametrize('name', NAMES)
def test_forward_intermediates_and_features_only(name):
    x = _clip()
    model = _randomise(m3d_zoo.create_model(name, num_classes=0))
    with torch.no_grad():
        ref = _reference_levels(model, x)
        final, feats = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
    assert len(feats) == len(ref) == len(model.feature_info) == 5
    for i, (f, r, info) in enumerate(zip(feats, ref, model.feature_info)):
        assert torch.allclose(f, r, rtol=1e-5, atol=1e-6), f'level {i}'
        assert f.shape[1] == info['num_chs'] and x.shape[-1] // f.shape[-1] == info['reduction'], (i, info)
    if 'ral' in name and 'two_stream' not in name:
        assert [i['module'] for i in model.feature_info[1:4]] == ['ral1', 'ral2', 'ral3']
    assert model.feature_info[0]['module'] == 'stem_temporal' or 'two_stream' in name

    # features_only: timm's wrapper gives the same levels, the pretrained weights loaded first
    fmodel = m3d_zoo.create_model(name, features_only=True, out_indices=(0, 2, 4))
    fmodel.model.load_state_dict(model.state_dict())
    fmodel.eval()
    assert fmodel.feature_info.channels() == [model.feature_info[i]['num_chs'] for i in (0, 2, 4)]
    assert fmodel.feature_info.reduction() == [model.feature_info[i]['reduction'] for i in (0, 2, 4)]
    with torch.no_grad():
        out = fmodel(x)
    assert len(out) == 3
    for f, i in zip(out, (0, 2, 4)):
        assert torch.allclose(f, ref[i], rtol=1e-5, atol=1e-6), i


def test_indices_stop_early_and_pruning():
    x = _clip()
    model = _randomise(m3d_zoo.create_model('m3d_ral_resnet18', num_classes=0))
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
        some = model.forward_intermediates(x, indices=[0, -3], stop_early=True, intermediates_only=True)
    assert [f.shape for f in last2] == [f.shape for f in every[3:]]
    assert all(torch.equal(a, b) for a, b in zip(some, [every[0], every[2]]))
    with pytest.raises(ValueError, match='feature levels'):
        model.forward_intermediates(x, indices=[7])
    kept = model.prune_intermediate_layers(indices=[1, 2])
    assert kept == [1, 2] and isinstance(model.layer3, torch.nn.Identity) and isinstance(model.ral3, torch.nn.Identity)
    with torch.no_grad():
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(pruned, every[1:3]))


def test_last_stride_one_reduction_and_feature_levels_of_a_strided_clip():
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=0, last_stride=1).eval()
    assert [i['reduction'] for i in model.feature_info] == [2, 4, 8, 16, 16]
    with torch.no_grad():
        feats = model.forward_intermediates(_clip(), intermediates_only=True)
    assert [f.shape[2] for f in feats] == [8, 8, 4, 2, 1]  # the default strides halve T in stages 2-4

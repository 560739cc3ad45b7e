""" ImageNet inflation, and identity at initialisation that still trains: a 3D model built from a 2D ResNet gives the
2D net's embedding (any clip with temporal strides 1, constant clips with the default strides), and every temporal
and attention parameter gets a gradient and moves. """
import re

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F

import m3d_zoo
from m3d_zoo.models import PretrainedMismatchError, inflate_kernel, inflate_state_dict
from m3d_zoo.models._inflate import PretrainedFileError, is_new_key

FAMILIES = ['i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_t', 'm3d_ral_c']


def _random_2d_state_dict(depth: str, seed: int = 0):
    """A 2D timm ResNet with every tensor randomised, BN statistics included, so no BN is an identity."""
    g = torch.Generator().manual_seed(seed)
    sd = timm.create_model(depth, pretrained=False).state_dict()
    out = {}
    for k, v in sd.items():
        if k.endswith('running_var'):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(('running_mean', 'bias')):
            out[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith('num_batches_tracked'):
            out[k] = v
        elif v.ndim == 1:  # BN weight
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * (2. / v[0].numel()) ** 0.5
    return out


@pytest.fixture(scope='module')
def ckpt_2d(tmp_path_factory):
    d = tmp_path_factory.mktemp('ckpt2d')
    paths = {}
    for depth in ('resnet18', 'resnet50'):
        paths[depth] = d / f'{depth}.safetensors'
        safetensors.torch.save_file(_random_2d_state_dict(depth), str(paths[depth]))
    return paths


def _embed(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _assert_rel_close(a, b, tol=1e-4):
    err = (a - b).abs().max() / b.abs().max()
    assert err < tol, f'relative error {err:.2e}'


# At ResNet-50 (bottleneck blocks) one family per unit and the RAL and two-stream compositions; the RAL variants
# and P3D-C (the multiscale unit with one kernel) at ResNet-18.
UNIT_FAMILIES = ['i3d', 'p3d_a', 'p3d_b', 'm3d', 'm3d_ral', 'two_stream_m3d']


@pytest.mark.parametrize('family, depth', [(f, 'resnet18') for f in FAMILIES + ['two_stream_m3d']]
                         + [(f, 'resnet50') for f in UNIT_FAMILIES])
def test_identity_at_init(ckpt_2d, family, depth):
    """(a) strides (1,1,1,1): same embedding as C2D on random clips; (b) default strides: on constant clips."""
    name = 'two_stream_m3d' if family == 'two_stream_m3d' and depth == 'resnet50' else f'{family}_{depth}'
    c2d = m3d_zoo.create_model(f'c2d_{depth}', num_classes=0, pretrained_file=ckpt_2d[depth])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 32, 16, generator=g)
    ref = _embed(c2d, x)
    if family == 'two_stream_m3d':
        ref = torch.cat([ref, ref], dim=1)
    keep = m3d_zoo.create_model(name, num_classes=0, temporal_strides=(1, 1, 1, 1), pretrained_file=ckpt_2d[depth])
    _assert_rel_close(_embed(keep, x), ref)
    # (b) the released strides downsample time; a temporally constant clip must still give the 2D embedding
    const = x[:, :, :1].expand_as(x).contiguous()
    ref_const = _embed(c2d, const)
    if family == 'two_stream_m3d':
        ref_const = torch.cat([ref_const, ref_const], dim=1)
    strided = m3d_zoo.create_model(name, num_classes=0, pretrained_file=ckpt_2d[depth])
    _assert_rel_close(_embed(strided, const), ref_const)


@pytest.mark.parametrize('name', [f'{f}_resnet18' for f in FAMILIES] + ['two_stream_m3d_resnet18'])
def test_new_parameters_train(ckpt_2d, name):
    """(c) Every temporal and attention parameter gets a non-zero gradient and moves.

    Temporal kernels get one on the very first step. A RAL mask is a product S*C*T that starts at zero through one
    factor (C); that factor moves on step 1, and from step 2 the other branches receive gradients too.
    """
    torch.manual_seed(0)
    # 16 frames, so that stage 4 still sees 2 and no temporal tap looks at padding only
    model = m3d_zoo.create_model(name, num_classes=0, num_frames=16, pretrained_file=ckpt_2d['resnet18'])
    # float64: the first updates of a RAL branch are ~1e-9 (they scale with the zero factor's first step), below what
    # float32 can record on a weight of 1; the test is about gradient flow, not rounding.
    model = model.double().train()
    # (name, parameter, the part of it that is temporal): new tensors whole; I3D's off-centre kernel taps
    watched = [(n, p, slice(None)) for n, p in model.named_parameters() if p.requires_grad and _is_new_backbone(n)]
    if name.startswith('i3d'):
        watched = [(n, p, [0, 2]) for n, p in model.named_parameters() if p.ndim == 5 and p.shape[2] == 3]
    assert watched, 'a 3D family without temporal parameters'
    init = {n: p.detach()[:, :, t].clone() if p.ndim == 5 else p.detach().clone() for n, p, t in watched}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # no weight decay: only gradients move parameters
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 16, 32, 16, generator=g, dtype=torch.float64)
    # Regression of the embedding onto random targets: a loss that two steps cannot drive to zero (a 4-way
    # classifier on 4 clips is fitted in one step, and then every gradient vanishes).
    y = torch.randn(4, model.head_hidden_size, generator=g, dtype=torch.float64)
    grads = []
    for _ in range(2):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        grads.append({n: (p.grad[:, :, t] if p.ndim == 5 else p.grad).abs().sum().item() for n, p, t in watched})
        opt.step()
    step1_zero = [n for n, _, _ in watched if grads[0][n] == 0 and 'ral' not in n]
    assert not step1_zero, f'temporal parameters without gradient on the first step: {step1_zero}'
    step2_zero = [n for n, _, _ in watched if grads[1][n] == 0]
    assert not step2_zero, f'parameters without gradient after one step: {step2_zero}'
    now = {n: p.detach()[:, :, t] if p.ndim == 5 else p.detach() for n, p, t in watched}
    unmoved = [n for n in now if torch.equal(now[n], init[n])]
    assert not unmoved, f'parameters that did not move: {unmoved}'


def _is_new_backbone(name: str) -> bool:
    """Temporal and attention parameters (new keys that are not the ReID head)."""
    return is_new_key(name.split('_stream.', 1)[-1]) and '.head.' not in f'.{name}' and not name.startswith('head.')


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'p3d_a_resnet18', 'i3d_resnet18', 'two_stream_m3d_resnet18'])
def test_every_backbone_tensor_is_loaded(ckpt_2d, name):
    sd2d = safetensors.torch.load_file(str(ckpt_2d['resnet18']))
    model = m3d_zoo.create_model(name, pretrained_file=ckpt_2d['resnet18'])
    fresh = m3d_zoo.create_model(name)
    fresh_sd = fresh.state_dict()
    left_at_init = []
    for key, value in model.state_dict().items():
        local = key.split('_stream.', 1)[-1]
        if is_new_key(local):
            left_at_init.append(key)
            if 'temporal' in local or local.startswith('ral'):
                # new temporal/attention parameters keep their deterministic initial values (zeros, dirac, or the
                # random init of RAL branches that are not zeroed), i.e. they were not touched by the loader
                if local.endswith(('.weight', '.bias')) and ('branches' in local or local.endswith('conv.weight')):
                    torch.testing.assert_close(value, fresh_sd[key])
            continue
        if key.endswith('num_batches_tracked'):
            continue
        src = sd2d[local]
        if src.ndim == 4:
            src = inflate_kernel(src, value.shape[2], 'center')
        torch.testing.assert_close(value, src, msg=f'{key} was not loaded from the 2D checkpoint')
    assert left_at_init, 'no new keys at all?'
    assert all(is_new_key(k.split('_stream.', 1)[-1]) for k in left_at_init)
    heads = [k for k in left_at_init if '.head.' in f'.{k}']
    assert heads, 'the ReID head is new'
    # I3D's temporal taps are part of inflated kernels; every other family adds temporal tensors
    assert name.startswith('i3d') or set(left_at_init) - set(heads), 'temporal keys are new'
    # the weights used by the 2D path are all loaded: count them
    loaded = len(model.state_dict()) - len(left_at_init)
    n_streams = 2 if 'two_stream' in name else 1
    backbone_2d = [k for k in sd2d if not k.startswith('fc.')]
    assert loaded >= n_streams * len([k for k in backbone_2d if not k.endswith('num_batches_tracked')])


def test_mean_inflation_sums_to_the_2d_kernel(ckpt_2d):
    sd2d = safetensors.torch.load_file(str(ckpt_2d['resnet18']))
    model = m3d_zoo.create_model('i3d_resnet18', inflation='mean', pretrained_file=ckpt_2d['resnet18'])
    w = model.layer1[0].conv1.weight
    assert w.shape[2] == 3
    torch.testing.assert_close(w.sum(dim=2), sd2d['layer1.0.conv1.weight'])
    torch.testing.assert_close(w[:, :, 0], w[:, :, 1])
    center = m3d_zoo.create_model('i3d_resnet18', pretrained_file=ckpt_2d['resnet18']).layer1[0].conv1.weight
    assert center[:, :, 0].abs().sum() == 0 and torch.equal(center[:, :, 1], sd2d['layer1.0.conv1.weight'])


def test_torch_checkpoint_file_loads_with_weights_only(ckpt_2d, tmp_path):
    sd = safetensors.torch.load_file(str(ckpt_2d['resnet18']))
    path = tmp_path / 'r18.pth'
    torch.save({'state_dict': sd}, path)
    model = m3d_zoo.create_model('m3d_resnet18', pretrained_file=path)
    torch.testing.assert_close(model.conv1.weight[:, :, 0], sd['conv1.weight'])


@pytest.mark.parametrize('prefix', ['module.', '_orig_mod.', '_orig_mod.module.'])
def test_a_2d_state_dict_saved_from_ddp_or_compile_inflates(ckpt_2d, prefix):
    sd = safetensors.torch.load_file(str(ckpt_2d['resnet18']))
    model = m3d_zoo.create_model('i3d_resnet18')
    out = inflate_state_dict({prefix + k: v for k, v in sd.items()}, model)
    torch.testing.assert_close(out['layer1.0.conv1.weight'][:, :, 1], sd['layer1.0.conv1.weight'])


def test_mismatched_checkpoint_names_keys(ckpt_2d, tmp_path):
    with pytest.raises(PretrainedMismatchError, match=r'shapes that do not fit: .*layer1\.0\.conv1\.weight'):
        m3d_zoo.create_model('m3d_resnet18', pretrained_file=ckpt_2d['resnet50'])
    sd = safetensors.torch.load_file(str(ckpt_2d['resnet18']))
    sd['extra.weight'] = torch.zeros(3)
    del sd['layer4.1.bn2.running_var']
    path = tmp_path / 'bad.safetensors'
    safetensors.torch.save_file(sd, str(path))
    with pytest.raises(PretrainedMismatchError) as e:
        m3d_zoo.create_model('m3d_resnet18', pretrained_file=path)
    assert 'layer4.1.bn2.running_var' in str(e.value) and 'extra.weight' in str(e.value)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        m3d_zoo.create_model('m3d_resnet18', pretrained_file=tmp_path / 'missing.safetensors')


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory, ckpt_2d):
    """Files that are not a readable state dict, each named for what is wrong with it."""
    d = tmp_path_factory.mktemp('bad')
    data = ckpt_2d['resnet18'].read_bytes()
    (d / 'truncated.safetensors').write_bytes(data[:len(data) // 2])
    (d / 'notes.safetensors').write_text('not weights\n')
    (d / 'empty.pth').write_bytes(b'')
    (d / 'notes.pth').write_text('not weights\n')
    (d / 'safetensors.pth').write_bytes(data)
    torch.save(torch.zeros(3), d / 'tensor.pth')
    torch.save(safetensors.torch.load_file(str(ckpt_2d['resnet18'])), d / 'whole.pth')
    whole = (d / 'whole.pth').read_bytes()
    (d / 'truncated.pth').write_bytes(whole[:len(whole) // 2])
    return d


@pytest.mark.parametrize('name, problem', [
    ('truncated.safetensors', r'is not a valid safetensors file \(.*\); it may be truncated or damaged'),
    ('notes.safetensors', r'is not a valid safetensors file \(Error while deserializing header: .*\); it may be '
                          r'truncated or damaged'),
    ('empty.pth', r'is empty \(0 bytes\)'),
    ('notes.pth', r'is not a torch checkpoint \(torch\.save\) nor a safetensors file'),
    ('safetensors.pth', r'looks like a safetensors file without the \.safetensors extension.*rename it'),
    ('tensor.pth', r'holds a Tensor, not a dict of named tensors'),
    ('truncated.pth', r'cannot be read as a torch checkpoint with weights_only=True \(RuntimeError: .*\); it may be '
                      r'truncated, damaged, or hold objects other than tensors'),
])
def test_unreadable_pretrained_file_is_named(bad_files, name, problem):
    path = bad_files / name
    with pytest.raises(PretrainedFileError, match=rf"^pretrained_file {re.escape(repr(str(path)))} {problem}: "
                                                  r'expected a 2D ResNet state dict \(a \.safetensors file, or a '
                                                  r'torch\.save file of a dict of tensors'):
        m3d_zoo.create_model('m3d_resnet18', pretrained_file=path)


@pytest.fixture(scope='module')
def m3d_file(tmp_path_factory):
    """The state dict of an m3d_resnet18 with 5 classes: a video model's file, not a 2D ResNet's."""
    path = tmp_path_factory.mktemp('video') / 'm3d.safetensors'
    torch.manual_seed(0)
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=5)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    safetensors.torch.save_file(model.state_dict(), str(path))
    return path


def test_video_checkpoint_of_another_family(m3d_file):
    path = re.escape(repr(str(m3d_file)))
    advice = r'create_model\("local-dir:FOLDER", pretrained=True\)'
    with pytest.raises(PretrainedMismatchError, match=rf'^pretrained_file {path}: The checkpoint holds a video model '
                                                      rf'\(5-D kernels\), not a 2D ResNet, and it does not fit '
                                                      rf'i3d_resnet18: 11 checkpoint keys with no place in the model: '
                                                      rf'layer1\.0\.temporal\.branches\.0\.weight.*{advice}'):
        m3d_zoo.create_model('i3d_resnet18', pretrained_file=m3d_file)
    # num_classes differs from the cfg's: timm drops the classifier and loads the rest non-strictly
    with pytest.raises(PretrainedMismatchError, match=r'shapes that do not fit: conv1\.weight: checkpoint '
                                                      r'\(64, 3, 1, 7, 7\) vs model \(64, 3, 3, 7, 7\)'):
        m3d_zoo.create_model('i3d_resnet18', num_classes=0, pretrained_file=m3d_file)
    # same shapes, extra keys: this loaded without its temporal kernels, with a log line only
    with pytest.raises(PretrainedMismatchError, match=r'does not fit c2d_resnet18: 11 checkpoint keys with no place in '
                                                      r'the model: layer1\.0\.temporal\.branches\.0\.weight'):
        m3d_zoo.create_model('c2d_resnet18', num_classes=0, pretrained_file=m3d_file)
    with pytest.raises(PretrainedMismatchError, match=r'head\.classifier\.weight: checkpoint \(5, 512\) vs model '
                                                      r'\(625, 512\).*pass num_classes=5'):
        m3d_zoo.create_model('m3d_resnet18', pretrained_file=m3d_file)
    with pytest.raises(PretrainedMismatchError, match=r'spatial_stream\.conv1\.weight'):
        m3d_zoo.create_model('two_stream_m3d_resnet18', pretrained_file=m3d_file)


def test_video_checkpoint_of_the_same_architecture_loads_as_it_is(m3d_file):
    saved = safetensors.torch.load_file(str(m3d_file))
    for num_classes in (5, 0):  # timm loads the classifier only when num_classes is its cfg's (625)
        state = m3d_zoo.create_model('m3d_resnet18', num_classes=num_classes, pretrained_file=m3d_file).state_dict()
        for key, value in saved.items():
            if not key.startswith('head.classifier'):
                assert torch.equal(state[key], value), key

""" Every registered model: forward, backward, embedding mode, gradient checkpointing, timm's contract. """
import json

import pytest
import timm
import torch

import m3d_zoo
from m3d_zoo.layers import TemporalPool, Unit, register_unit

ALL_MODELS = m3d_zoo.list_models()
# Small clips: B=2 because training-mode BatchNorm1d needs two samples per channel; 32x16 pixels.
CLIP = (2, 3, 8, 32, 16)


def _clip(shape=CLIP, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _randomised(model):
    """Random BN affine parameters and statistics, temporal kernels and attention weights (the 2D convs keep their
    He init). At initialisation each block's last BN scale is zero, temporal kernels are zero and the RAL mask is 1/2,
    so the blocks would add nothing and a comparison would check only the stem and the head."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(std=0.1)
                m.running_mean.normal_(std=0.1)
                m.running_var.uniform_(0.5, 1.5)
        for n, p in model.named_parameters():
            if ('temporal.' in n or 'ral' in n.split('.')[0] or '.ral' in n) and 'bn' not in n:
                p.normal_(std=0.05)
    return model


def test_registry_lists_every_family_and_depth():
    families = ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_t', 'm3d_ral_c']
    expected = {f'{f}_resnet{d}' for f in families for d in (18, 34, 50, 101)}
    expected |= {'two_stream_m3d', 'two_stream_m3d_resnet18', 'two_stream_m3d_resnet34', 'two_stream_m3d_resnet101'}
    assert set(ALL_MODELS) == expected
    assert m3d_zoo.is_model('m3d_resnet50') and m3d_zoo.is_model('m3d_resnet50.a1_in1k')
    assert not m3d_zoo.is_model('resnet50')  # timm's, not the zoo's
    assert 'two_stream_m3d.tv_in1k' in m3d_zoo.list_pretrained()
    assert set(m3d_zoo.list_pretrained('m3d_resnet50')) == {'m3d_resnet50.tv_in1k', 'm3d_resnet50.a1_in1k'}


# ResNet-34 and -101 differ from ResNet-18 and -50 only in the number of blocks per stage: their models are built and
# run below, the training-path checks run on the other depths.
DEEP_MODELS = [n for n in ALL_MODELS if n.endswith(('resnet34', 'resnet101'))]


@pytest.mark.parametrize('name', DEEP_MODELS)
def test_resnet34_and_101_models_build_and_embed(name):
    model = m3d_zoo.create_model(name, num_classes=0).eval()
    streams = [model.spatial_stream, model.temporal_stream] if hasattr(model, 'temporal_stream') else [model]
    blocks = [3, 4, 23, 3] if name.endswith('resnet101') else [3, 4, 6, 3]
    assert all([len(getattr(m, f'layer{i}')) for i in range(1, 5)] == blocks for m in streams)
    with torch.no_grad():
        emb = model(_clip())
    assert emb.shape == (2, model.head_hidden_size) and torch.isfinite(emb).all()


@pytest.mark.parametrize('name', [n for n in ALL_MODELS if n not in DEEP_MODELS])
def test_model_forward_backward_embedding_checkpointing(name):
    torch.manual_seed(0)
    model = m3d_zoo.create_model(name, num_classes=7)
    x = _clip()
    # forward: logits, finite
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    # backward: every trainable parameter is in the graph and gets a finite gradient
    out.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without gradient: {no_grad[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # gradient checkpointing recomputes the blocks in the backward pass (a block runs twice) and gives the same
    # outputs and gradients (eval mode: BN statistics are not updated twice)
    _randomised(model).eval()
    block = (model.temporal_stream if hasattr(model, 'temporal_stream') else model).layer2[0]
    calls = []
    # a pre-hook: the recomputation stops once it has what backward needs, before the block's forward returns
    block.register_forward_pre_hook(lambda *_: calls.append(1))
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        calls.clear()
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        out.sum().backward()
        grads.append((out.detach(), xg.grad))
        assert len(calls) == (2 if enable else 1), f'grad checkpointing {enable}: block ran {len(calls)} times'
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    model.set_grad_checkpointing(False)
    # reset_classifier(0): the model returns the embedding, equal to forward_head(pre_logits=True)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        model.reset_classifier(0)
        emb = model(x)
    assert model.num_classes == 0 and emb.shape == (2, model.head_hidden_size)
    torch.testing.assert_close(emb, pre)
    assert feats.ndim == 5 and feats.shape[1] == model.num_features


def test_timm_contract_and_registry_integration():
    model = timm.create_model('m3d_resnet18', num_classes=5)  # the zoo's models are timm models
    assert isinstance(model, m3d_zoo.VideoResNet)
    assert model.pretrained_cfg['architecture'] == 'm3d_resnet18'
    assert model.pretrained_cfg['hf_hub_id'] == 'timm/resnet18.tv_in1k'  # the paper's torchvision weights
    assert model.pretrained_cfg['input_size'] == (3, 256, 128)
    assert m3d_zoo.create_model('m3d_resnet50.a1_in1k').pretrained_cfg['hf_hub_id'] == 'timm/resnet50.a1_in1k'
    assert model.get_classifier().out_features == 5
    model.reset_classifier(11)
    assert model.get_classifier().out_features == 11 and model.num_classes == 11
    assert model.model_args['num_frames'] == 8


def test_no_timm_model_is_shadowed():
    import subprocess
    import sys
    code = (
        'import timm; before = set(timm.list_models()); import m3d_zoo; after = set(timm.list_models()); '
        'zoo = set(m3d_zoo.list_models()); assert before.isdisjoint(zoo), before & zoo; '
        'assert after == before | zoo; '
        'm = timm.create_model("resnet50"); assert type(m).__module__ == "timm.models.resnet", type(m); print("ok")'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and 'ok' in out.stdout, out.stderr


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'two_stream_m3d_resnet18'])
def test_group_matcher_puts_head_last(name):
    from timm.models import group_parameters
    model = m3d_zoo.create_model(name)
    groups = group_parameters(model, model.group_matcher())
    named = dict(model.named_parameters())
    assert sum(len(g) for g in groups.values()) == len(named)
    last = groups[max(groups)]
    head = {n for n in named if '.head.' in f'.{n}'}
    assert set(last) == head, 'the last group must be exactly the ReID head (for a 10x head learning rate)'
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 6  # stem, 4 stages (RAL with its stage), head


@pytest.mark.parametrize('name', ['m3d_resnet18', 'm3d_ral_resnet18', 'i3d_resnet18', 'two_stream_m3d_resnet18'])
def test_channels_last_3d(name):
    model = _randomised(m3d_zoo.create_model(name, num_classes=0)).eval()
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        out = model(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'two_stream_m3d_resnet18'])
def test_torch_compile_traces_without_graph_breaks(name):
    # one block per stage: every kind of layer, half the graph to trace
    model = _randomised(m3d_zoo.create_model(name, num_classes=0, layers=(1, 1, 1, 1))).eval()
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        # fullgraph: a graph break anywhere in the model is an error; aot_eager runs AOTAutograd's traced graph.
        compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
        out = compiled(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'm3d_ral_s_resnet18', 'm3d_ral_c_resnet18',
                                  'm3d_ral_t_resnet18', 'p3d_b_resnet18', 'p3d_c_resnet18'])
def test_cpu_inference_paths_match_autograd_path(name):
    # Inference on the CPU takes other code paths (cached kernels, the RAL mask per frame, in-place sums); they must
    # compute what the training path computes. All parameters random, so that no branch is an identity.
    torch.manual_seed(0)
    model = m3d_zoo.create_model(name, num_classes=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(mean=1.0 if p.ndim == 1 else 0.0, std=0.1)
    x = _clip()
    ref = model(x).detach()
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name', ['c2d_resnet18', 'm3d_resnet18', 'two_stream_m3d_resnet18'])
def test_centred_clips_hide_what_does_not_move(name):
    """centre_clips: the model equals the same weights run on the clip minus its temporal mean frame, so content that
    is the same in every frame changes nothing; a frame-averaging model stays blind to order, M3D does not."""
    torch.manual_seed(0)
    small = dict(num_classes=0, temporal_strides=1, layers=(1, 1, 1, 1))
    centred = m3d_zoo.create_model(name, centre_clips=True, **small)
    with torch.no_grad():
        for p in centred.parameters():
            p.normal_(mean=1.0 if p.ndim == 1 else 0.0, std=0.05)
    plain = m3d_zoo.create_model(name, **small)
    plain.load_state_dict(centred.state_dict())
    centred.eval(), plain.eval()
    x = torch.randn(2, 3, 8, 32, 16)
    static = torch.randn(2, 3, 1, 32, 16) * 3  # a background, the same in every frame
    with torch.no_grad():
        out = centred(x)
        torch.testing.assert_close(out, plain(x - x.mean(2, keepdim=True)))
        torch.testing.assert_close(centred(x + static), out, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(plain(x + static), plain(x), rtol=1e-2, atol=1e-2)
        shuffled = centred(x[:, :, torch.randperm(8, generator=torch.Generator().manual_seed(0))])
        assert torch.allclose(shuffled, out, atol=1e-4) == (name == 'c2d_resnet18')
    with pytest.raises(ValueError, match='centre_clips=True.*got T=1'):
        m3d_zoo.create_model('c2d_resnet18', num_classes=0, centre_clips=True)(torch.randn(1, 3, 1, 32, 16))


def test_paper_head_and_drop_rate():
    model = m3d_zoo.create_model('m3d_resnet18', head='paper', embed_dim=128, num_classes=625)
    out = model.forward_train(_clip())
    assert out['logits'].shape == (2, 625) and out['emb'].shape == (2, 128) and model.head_hidden_size == 128
    # the paper head drops half of the classifier's inputs in training: zeros among its 128 (after ReLU) inputs
    # beyond those of eval mode, and fresh draws on each forward; none in eval mode
    feats = model.forward_features(_clip()).detach()
    head = model.head
    pre = head.features(feats)['pre_cls']
    assert (head.drop(pre) == 0).sum() > (pre == 0).sum() + 30
    assert not torch.equal(head(feats), head(feats))
    head.eval()
    assert torch.equal(head(feats), head(feats)) and torch.equal(head.drop(pre), pre)
    # bnneck with a set drop rate: the same dropout, at that rate
    bn = m3d_zoo.create_model('m3d_resnet18', drop_rate=0.2)
    assert bn.head_hidden_size == 512
    ones = torch.ones(100_000)
    assert (bn.head.drop(ones) == 0).float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert (model.head.drop.train()(ones) == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_two_stream_forward_train_gives_each_stream_a_loss():
    model = m3d_zoo.create_model('two_stream_m3d_resnet18', num_classes=4)
    out = model.forward_train(_clip())
    assert len(out['logits']) == 2 and all(lg.shape == (2, 4) for lg in out['logits'])
    assert out['emb'].shape == (2, 1024)


@pytest.mark.parametrize('name,kwargs,paper,tol', [
    ('c2d_resnet50', {}, 95.7, 0.15),
    ('i3d_resnet50', {}, 186.3, 0.15),
    ('p3d_a_resnet50', {}, 110.9, 0.15),
    # Table 1 gives P3D-A/B/C one size; B's stem temporal conv maps 3 -> 64 channels where A's and C's map 64 -> 64
    ('p3d_b_resnet50', {}, 110.9, 0.2),
    ('p3d_c_resnet50', {}, 110.9, 0.15),
    ('m3d_resnet50', dict(m3d_branches=1), 99.9, 0.15),  # the paper's M3D size is that of one kernel per layer
])
def test_paper_sizes(name, kwargs, paper, tol):
    """Table 1's sizes (float32 state dict, decimal MB, 128-d head, 625-way classifier), to its rounding."""
    assert abs(m3d_zoo.paper_size_mb(name, **kwargs) - paper) < tol


def test_m3d_branches_follow_eq6():
    # T entering the stem and stages 1-4 is 8, 8, 8, 4, 2 with the default strides: n = 3, 3, 3, 1, 1.
    assert m3d_zoo.create_model('m3d_resnet18').m3d_branches == (3, 3, 3, 1, 1)
    assert m3d_zoo.create_model('m3d_resnet18', temporal_strides=1).m3d_branches == (3, 3, 3, 3, 3)
    assert m3d_zoo.create_model('m3d_resnet18', num_frames=16).m3d_branches == (7, 7, 7, 3, 1)
    model = m3d_zoo.create_model('m3d_resnet18', m3d_branches=(3, 3, 3, 2, 1))
    assert len(model.layer3[0].temporal.branches) == 2 and len(model.layer4[0].temporal.branches) == 1
    assert [c.dilation[0] for c in model.stem_temporal.branches] == [1, 2, 3]


def test_temporal_downsampling_schedule():
    x = _clip((2, 3, 16, 32, 16))
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=0).eval()
    assert model.forward_features(x).shape[2] == 2  # 16 / 8
    keep = m3d_zoo.create_model('m3d_resnet18', num_classes=0, temporal_strides=(1, 1, 1, 1)).eval()
    assert keep.forward_features(x).shape[2] == 16
    # T must be a multiple of the strides' product (8): 8 and 24 run, 4 and 12 are refused with the reason
    assert model.forward_features(_clip((2, 3, 24, 32, 16))).shape[2] == 3
    for T in (4, 12):
        with pytest.raises(ValueError, match='must be a multiple of 8'):
            model(_clip((2, 3, T, 32, 16)))


class _ShiftUnit(Unit):
    """A temporal operator from outside the zoo: s plus a learnt share of the previous frame's features."""

    def __init__(self, in_chs, out_chs, stride=1, temporal_stride=1, num_branches=1):
        super().__init__()
        self.gate = torch.nn.Parameter(torch.zeros(out_chs))
        self.pool = TemporalPool(temporal_stride) if temporal_stride > 1 else torch.nn.Identity()

    def forward(self, s, x):
        prev = torch.cat([s[:, :, :1], s[:, :, :-1]], dim=2)
        return self.pool(s + self.gate.view(1, -1, 1, 1, 1) * prev)


def test_a_new_unit_plugs_in_without_touching_the_network(tmp_path):
    register_unit('test_shift')(_ShiftUnit)
    model = m3d_zoo.create_model('m3d_resnet18', unit='test_shift', num_classes=0).eval()
    gates = [n for n, _ in model.named_parameters() if n.endswith('temporal.gate')]
    assert gates == ['stem_temporal.gate'] + [f'layer{i}.0.temporal.gate' for i in range(1, 5)]
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith('gate'):
                p.fill_(0.5)
    x = _clip()
    with torch.no_grad():
        out = model(x)
        shuffled = model(x.flip(2))
    assert not torch.allclose(out, shuffled, atol=1e-4)  # the unit sees the frame order
    m3d_zoo.save_pretrained(model, tmp_path, write_card=False)
    assert json.loads((tmp_path / 'config.json').read_text())['model_args']['unit'] == 'test_shift'
    loaded = m3d_zoo.create_model(f'local-dir:{tmp_path}', pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    with pytest.raises(ValueError, match='Unknown unit'):
        m3d_zoo.create_model('m3d_resnet18', unit='no_such_unit')
    with pytest.raises(ValueError, match='registered already'):
        register_unit('multiscale')(_ShiftUnit)

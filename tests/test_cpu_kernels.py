""" m3d_zoo.layers.cpu_kernels: every CPU fast path against PyTorch's stock op, where each path is taken and where it
steps aside (autograd, other dtypes, FLOP counters, switched off, PyTorch internals missing). """
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import m3d_zoo
from m3d_zoo.layers import cpu_kernels
from m3d_zoo.layers.temporal import Conv3d, TemporalConv, TemporalPool
from m3d_zoo.models.video_resnet import FrameMaxPool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fast_paths_on():
    previous = cpu_kernels.set_enabled(True)
    yield
    cpu_kernels.set_enabled(previous)


def _ops(fn) -> set:
    """Names of the aten operators `fn()` runs."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def _both_formats(x):
    return [x, x.contiguous(memory_format=torch.channels_last_3d)]


@pytest.mark.parametrize('cfg', [
    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    dict(kernel_size=1),
    dict(kernel_size=3, stride=(2, 1, 1), padding=1),
])
def test_conv_matches_stock_and_takes_onednn(cfg):
    torch.manual_seed(0)
    conv = Conv3d(8, 16, bias=True, **cfg)
    x = torch.randn(1, 8, 4, 9, 7, requires_grad=True)
    for xx in _both_formats(x):
        ref = F.conv3d(xx, conv.weight, conv.bias, conv.stride, conv.padding)
        torch.testing.assert_close(conv(xx), ref, rtol=1e-5, atol=1e-5)
    if torch.backends.mkldnn.is_available():
        assert 'aten::mkldnn_convolution' in _ops(lambda: conv(x))
    conv(x).sum().backward()  # trains too
    assert x.grad is not None and conv.weight.grad is not None


@pytest.mark.parametrize('chs', [3, 32])  # 3: the im2col GEMM path (few input channels), 32: oneDNN
@pytest.mark.parametrize('stride,dilation', [(1, 1), (1, 3), (2, 1), ((2, 2, 2), 1)])
def test_temporal_conv_matches_stock(stride, dilation, chs):
    torch.manual_seed(0)
    conv = TemporalConv(chs, 8, 3, stride=stride, dilation=dilation)
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, chs, 8, 6, 5, requires_grad=True)
    ref = F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    for xx in _both_formats(x):
        torch.testing.assert_close(conv(xx), ref, rtol=1e-5, atol=1e-5)
    residual = torch.randn_like(ref)  # P3D-B's parallel sum, fused into the GEMM on the CPU
    torch.testing.assert_close(conv(x, residual=residual), ref + residual, rtol=1e-5, atol=1e-5)
    conv(x, residual=residual).square().sum().backward()  # trains too
    gx, gw = x.grad, conv.weight.grad
    x.grad = conv.weight.grad = None
    (F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation) + residual).square().sum().backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, conv.weight.grad, rtol=1e-4, atol=1e-4)
    # the GEMM path is the one taken for few channels, and a FLOP counter sees a plain convolution
    gemm = cpu_kernels.temporal_conv_gemm(x.detach(), conv.weight, conv.stride[0], conv.padding[0],
                                          conv.dilation[0], None)
    assert (gemm is not None) == (chs < 16)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert counter.get_total_flops() == 2 * ref.numel() * chs * 3


def test_pools_match_stock():
    pool = FrameMaxPool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))  # ResNet's stem: its own CPU path
    pool5 = FrameMaxPool((1, 5, 5), stride=(1, 3, 3), padding=(0, 2, 2))  # the general CPU path
    for shape in [(2, 4, 3, 11, 6), (1, 2, 2, 1, 1), (1, 2, 2, 2, 3), (1, 3, 1, 6, 7)]:
        x = torch.randn(*shape)
        ref, ref5 = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1)), F.max_pool3d(x, (1, 5, 5), (1, 3, 3), (0, 2, 2))
        for xx in _both_formats(x):
            assert torch.equal(pool(xx), ref) and torch.equal(pool5(xx), ref5)
            with torch.no_grad():  # inference has its own path for the stem's pool
                assert torch.equal(pool(xx), ref)
        assert cpu_kernels.max_pool_frames(x, 5, 3, 2) is not None  # the paths above were the fast ones
        with torch.no_grad():
            assert torch.equal(cpu_kernels.max_pool_frames(x, 3, 2, 1), ref)
    x = torch.randn(2, 4, 8, 11, 6)
    for s in (2, 4):
        ref = F.avg_pool3d(x, (s, 1, 1), (s, 1, 1))
        torch.testing.assert_close(TemporalPool(s)(x), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(TemporalPool(2)(x), F.avg_pool3d(x, (2, 1, 1), (2, 1, 1)))


def test_masked_per_frame_matches_the_mask_formula():
    g = torch.Generator().manual_seed(0)
    x, sc, t = torch.randn(2, 6, 4, 5, 3, generator=g), torch.randn(2, 6, 1, 5, 3, generator=g), \
        torch.randn(2, 1, 4, 1, 1, generator=g)
    ref = x * (0.5 + torch.sigmoid(sc * t))
    assert cpu_kernels.masked_per_frame(x, sc, t) is None  # autograd on: the stock formula runs
    with torch.no_grad():
        torch.testing.assert_close(cpu_kernels.masked_per_frame(x, sc, t), ref, rtol=1e-6, atol=1e-6)
        assert cpu_kernels.masked_per_frame(x, sc[:, :1], t) is None  # another mask shape: not this path


def test_paths_step_aside():
    x = torch.randn(1, 4, 4, 5, 5)
    with torch.no_grad():
        assert cpu_kernels.applies(x) and cpu_kernels.weights_key(x, [x]) is not None
        assert not cpu_kernels.applies(x.double())
        with FlopCounterMode(display=False):
            assert not cpu_kernels.applies(x) and cpu_kernels.weights_key(x, [x]) is None
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not cpu_kernels.applies(x)
        cpu_kernels.set_enabled(False)
        assert not cpu_kernels.enabled() and not cpu_kernels.applies(x)
        assert cpu_kernels.max_pool_frames(x, 3, 2, 1) is None and cpu_kernels.weights_key(x, [x]) is None
        conv = Conv3d(4, 4, 3, padding=1)
        assert 'aten::mkldnn_convolution' not in _ops(lambda: conv(x))
    assert cpu_kernels.weights_key(x, [x]) is None  # autograd on


def test_missing_torch_internals_fall_back_to_stock_ops(monkeypatch):
    torch.manual_seed(0)
    conv = Conv3d(4, 8, 3, padding=1)
    x = torch.randn(1, 4, 4, 6, 5)
    ref = F.conv3d(x, conv.weight, conv.bias, 1, 1)
    monkeypatch.setattr(cpu_kernels, '_HAS_MKLDNN_CONV', False)
    assert 'aten::mkldnn_convolution' not in _ops(lambda: conv(x))
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(cpu_kernels, '_get_current_dispatch_mode', None)
    assert not cpu_kernels.applies(x)  # cannot tell whether a FLOP counter is listening: stock ops only
    monkeypatch.setattr(cpu_kernels, '_HAS_VERSION', False)
    with torch.no_grad():
        assert cpu_kernels.weights_key(x, [x]) is None


def test_inference_kernel_cache_follows_weight_changes():
    # Without autograd an M3D layer keeps its assembled kernel between forwards; any change of the weights (in place,
    # by an optimiser, or a new Parameter) must be seen by the next forward.
    torch.manual_seed(0)
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=0, m3d_branches=(3, 3, 3, 2, 1)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.ones_(m.weight)  # zero_init_last would hide the block's temporal layer
    layer = model.layer2[0].temporal
    x = torch.randn(2, 3, 8, 32, 16, generator=torch.Generator().manual_seed(0))

    def check():
        with torch.no_grad():
            cached = model(x)
        assert layer.__dict__.get('_cpu_kernels_cache') is not None
        torch.testing.assert_close(cached, model(x).detach(), rtol=0, atol=0)  # autograd on: assembled afresh
        return cached

    first = check()
    torch.testing.assert_close(check(), first, rtol=0, atol=0)
    with torch.no_grad():
        layer.branches[2].weight.normal_(std=0.05)  # in place
    changed = check()
    assert not torch.allclose(changed, first)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().sum().backward()
    opt.step()  # an optimiser step
    stepped = check()
    assert not torch.allclose(stepped, changed)
    layer.branches[0].weight = torch.nn.Parameter(torch.randn_like(layer.branches[0].weight) * 0.05)  # replaced
    assert not torch.allclose(check(), stepped)


def test_environment_variable_switches_the_paths_off():
    code = ('import torch, m3d_zoo; from m3d_zoo.layers import cpu_kernels; '
            'print(cpu_kernels.enabled(), cpu_kernels.applies(torch.zeros(1)))')
    env = dict(os.environ, PYTHONPATH=str(ROOT), M3D_ZOO_CPU_KERNELS='0')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ['False', 'False'], out.stderr


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'p3d_b_resnet18', 'i3d_resnet18'])
def test_model_outputs_with_and_without_fast_paths(name):
    torch.manual_seed(0)
    model = m3d_zoo.create_model(name, num_classes=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(mean=1.0 if p.ndim == 1 else 0.0, std=0.05)
    x = torch.randn(2, 3, 8, 32, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model(x)
        cpu_kernels.set_enabled(False)
        stock = model(x)
    torch.testing.assert_close(fast, stock, rtol=1e-4, atol=1e-4)  # float rounding through a random deep net

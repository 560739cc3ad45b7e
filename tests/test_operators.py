""" The zoo's operators against reference implementations written here, plainly, from the papers' equations.

- M3D layer (`MultiScaleTemporal`) vs Eq. 4-5: n separate dilated (3, 1, 1) convolutions summed onto S(x), the
  strided 2D path average-pooled; training (outputs and gradients), inference (twice: the second forward may use a
  cached kernel), after an in-place weight update, and after `fuse()`.
- Video ResNet blocks, one per unit (C2D, I3D, P3D-A/B/C of Qiu et al. 2017, M3D), vs a functional block written
  from the papers' descriptions and the authors' released code (see README, "Deviations"), in eval and train mode,
  outputs and every gradient.
- The stems of the families, through the public feature API (level 0).
- Residual Attention Layer vs Eq. 7-12, every subset of branches.
- Parameter counts of whole models vs a per-family formula on torchvision's 2D ResNet.

The zoo initialises temporal kernels (and one RAL factor) at zero, which would make a wrong tap look right, so every
parameter and BN statistic is randomised (seeded). The operators run in float32, so that the CPU fast paths
(`m3d_zoo.layers.cpu_kernels`) apply; every comparison runs with them on and off. The references run in float64.
"""
import math
import zlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import m3d_zoo
from m3d_zoo.layers import MultiScaleTemporal, ResidualAttention, cpu_kernels
from m3d_zoo.layers.units import MultiScaleUnit, ParallelUnit, SeriesUnit, Unit2d, Unit3d
from m3d_zoo.models.video_resnet import VideoBasicBlock, VideoBottleneck

TOL = 1e-4  # float32 operator vs float64 reference, relative to the reference's largest magnitude
BN_EPS = 1e-5


# --------------------------------------------------------------------------------------------------------------------
# helpers

@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """One intra-op thread for these tiny tensors: on a shared 2-core machine two threads cost about 8x the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(params=[True, False], ids=['fast', 'stock'])
def fast(request):
    """Run the test with the CPU fast paths on, then off; restore the previous setting."""
    previous = cpu_kernels.set_enabled(request.param)
    try:
        yield request.param
    finally:
        cpu_kernels.set_enabled(previous)


def _gen(*key) -> torch.Generator:
    """A generator seeded from the test's parameters (crc32: str hashes change between processes)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _randn(gen, *shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype)


@torch.no_grad()
def randomize_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-zero random values in every parameter and BN statistic: weights ~ N(0, 1/fan_in), BN scales and running
    variances in [0.5, 1.5], biases and running means ~ N(0, 0.2^2)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(0.2 * _randn(gen, *m.bias.shape))
            m.running_mean.copy_(0.2 * _randn(gen, *m.running_mean.shape))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            continue
        for p in m.parameters(recurse=False):
            fan_in = p[0].numel() if p.ndim > 1 else 25
            p.copy_(_randn(gen, *p.shape) / math.sqrt(fan_in))
    return module


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: float = TOL) -> None:
    """Same shape, and max |actual - expected| <= tol * max(1, max |expected|)."""
    assert actual is not None, f'{what}: no value (no gradient reached it?)'
    actual, expected = actual.detach().double(), expected.detach().double()
    assert actual.shape == expected.shape, f'{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}'
    err = (actual - expected).abs().max().item() if expected.numel() else 0.
    bound = tol * max(1., expected.abs().max().item() if expected.numel() else 0.)
    assert err <= bound, f'{what}: max abs error {err:.3g} > {bound:.3g}'


def float64_copies(module: nn.Module):
    """(parameters, buffers) of `module` as float64 leaf copies, by name; the parameters require grad."""
    params = {k: p.detach().double().requires_grad_() for k, p in module.named_parameters()}
    buffers = {k: b.detach().double().clone() for k, b in module.named_buffers()}
    return params, buffers


def compare_grads(module: nn.Module, x: torch.Tensor, x64: torch.Tensor, params64: dict, where: str) -> None:
    """The input's and every parameter's gradient vs the reference's (which must have used every parameter)."""
    assert_close(x.grad, x64.grad, f'{where}: d/dx')
    for name, p in module.named_parameters():
        assert params64[name].grad is not None, f'{where}: the reference did not use {name}'
        assert_close(p.grad, params64[name].grad, f'{where}: d/d {name}')


# --------------------------------------------------------------------------------------------------------------------
# references

def temporal_pool_ref(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The 2D path (and shortcut) of a temporally strided layer: average pooling over `stride` frames."""
    return x if stride == 1 else F.avg_pool3d(x, (stride, 1, 1), (stride, 1, 1))


def m3d_ref(s: torch.Tensor, kernels, stride: int = 1) -> torch.Tensor:
    """Eq. 4: y = S(x) + sum_{i=1..n} T^(i)(S(x)), with Eq. 5's T^(i): y_t = sum_{a=-1..1} W_a^(i) x_{t + a*i}, a
    (3, 1, 1) kernel of temporal dilation i, zero-padded by i (length kept), full channel mixing, no bias.
    Temporally strided: each T^(i) strides by `stride`, and S(x) is average-pooled by `stride`."""
    y = temporal_pool_ref(s, stride)
    for i, w in enumerate(kernels, start=1):
        assert w.shape[2:] == (3, 1, 1)
        y = y + F.conv3d(s, w, stride=(stride, 1, 1), padding=(i, 0, 0), dilation=(i, 1, 1))
    return y


def bn_ref(z: torch.Tensor, P: dict, B: dict, name: str, training: bool) -> torch.Tensor:
    """BatchNorm over dim 1: batch statistics (biased variance) in training, running statistics in eval."""
    dims = [d for d in range(z.ndim) if d != 1]
    shape = [1, -1] + [1] * (z.ndim - 2)
    if training:
        mean, var = z.mean(dims, keepdim=True), z.var(dims, unbiased=False, keepdim=True)
    else:
        mean, var = B[f'{name}.running_mean'].view(shape), B[f'{name}.running_var'].view(shape)
    return (z - mean) / torch.sqrt(var + BN_EPS) * P[f'{name}.weight'].view(shape) + P[f'{name}.bias'].view(shape)


def unit_ref(family: str, s, x, P, prefix, stride, ts, n):
    """The temporal part of a block (s: the spatial conv's output after BN and ReLU, x: that conv's input).

    C2D: s (temporally average-pooled where the block is strided). I3D: s (the spatial conv itself was 3x3x3).
    P3D-A: T(s), in series. P3D-B: s + T(x), in parallel on the spatial conv's input, T carrying the spatial stride.
    P3D-C / M3D: Eq. 4-5 on s, with n = 1 for P3D-C.
    """
    if family in ('c2d', 'p3d_b'):
        y = temporal_pool_ref(s, ts)
        if family == 'c2d':
            return y
        w = P[f'{prefix}conv.weight']
        assert w.shape[2:] == (3, 1, 1)
        return y + F.conv3d(x, w, stride=(ts, stride, stride), padding=(1, 0, 0))
    if family == 'i3d':
        return s
    if family == 'p3d_a':
        w = P[f'{prefix}weight']
        assert w.shape[2:] == (3, 1, 1)
        return F.conv3d(s, w, stride=(ts, 1, 1), padding=(1, 0, 0))
    assert family in ('p3d_c', 'm3d')
    return m3d_ref(s, [P[f'{prefix}branches.{i}.weight'] for i in range(n)], ts)


def spatial_conv_ref(family, x, w, stride, ts, k=3):
    """The (1, k, k) spatial conv; I3D's is (3, k, k), padded in time, and carries the block's temporal stride."""
    kt = 3 if family == 'i3d' else 1
    assert w.shape[2:] == (kt, k, k)
    return F.conv3d(x, w, stride=(ts if kt == 3 else 1, stride, stride), padding=(kt // 2, k // 2, k // 2))


def shortcut_ref(family, x, P, B, stride, ts, outplanes, training):
    """Identity where the shape is kept; else a 1x1x1 conv (spatially strided) and BN, after temporal average pooling,
    except I3D's, whose 1x1x1 conv strides in time."""
    if stride == 1 and ts == 1 and x.shape[1] == outplanes:
        assert 'downsample.0.weight' not in P
        return x
    w = P['downsample.0.weight']
    assert w.shape == (outplanes, x.shape[1], 1, 1, 1)
    if family == 'i3d':
        x = F.conv3d(x, w, stride=(ts, stride, stride))
    else:
        x = F.conv3d(temporal_pool_ref(x, ts), w, stride=(1, stride, stride))
    return bn_ref(x, P, B, 'downsample.1', training)


def bottleneck_ref(family, x, P, B, stride, ts, n, training):
    """1x1 conv, BN, ReLU; the unit's spatial 3x3 conv, BN, ReLU and its temporal part; 1x1 conv, BN; + shortcut; ReLU.
    """
    out = F.relu(bn_ref(F.conv3d(x, P['conv1.weight']), P, B, 'bn1', training))
    s = F.relu(bn_ref(spatial_conv_ref(family, out, P['conv2.weight'], stride, ts), P, B, 'bn2', training))
    out = unit_ref(family, s, out, P, 'temporal.', stride, ts, n)
    out = bn_ref(F.conv3d(out, P['conv3.weight']), P, B, 'bn3', training)
    return F.relu(out + shortcut_ref(family, x, P, B, stride, ts, out.shape[1], training))


def basic_ref(family, x, P, B, stride, ts, n, training):
    """The unit's spatial 3x3 conv, BN, ReLU and its temporal part; a second 3x3 conv (the unit's kind, unstrided), BN;
    + shortcut; ReLU."""
    s = F.relu(bn_ref(spatial_conv_ref(family, x, P['conv1.weight'], stride, ts), P, B, 'bn1', training))
    out = unit_ref(family, s, x, P, 'temporal.', stride, ts, n)
    out = bn_ref(spatial_conv_ref(family, out, P['conv2.weight'], 1, 1), P, B, 'bn2', training)
    return F.relu(out + shortcut_ref(family, x, P, B, stride, ts, out.shape[1], training))


def ral_ref(x, P, B, branches, training):
    """Eq. 7-8: y = x / 2 + sigmoid(S_m * C_m * T_m) * x, over the branches present. Each branch is
    conv -> BN -> ReLU -> conv (the module's documented order; the paper's Fig. 5 has BN after ReLU):
    Eq. 9-10: S_m from x_s, the mean over T: 3x3 conv C -> 1 (no bias), BN, ReLU, 1x1 conv 1 -> 1; (B, 1, 1, H, W).
    Eq. 11-12: C_m from x_c, the mean over T, H, W: 1x1 conv C -> C/16 (no bias), BN, ReLU, 1x1 conv C/16 -> C.
    T_m, "the same architecture as the channel branch": mean over C, H, W, then T -> 2T (no bias), BN, ReLU, 2T -> T.
    """
    Bn, C, T, H, W = x.shape
    shapes = dict(s={'spatial.0.weight': (1, C, 1, 3, 3), 'spatial.3.weight': (1, 1, 1, 1, 1)},
                  c={'channel.0.weight': (C // 16, C, 1, 1, 1), 'channel.3.weight': (C, C // 16, 1, 1, 1)},
                  t={'temporal.0.weight': (2 * T, T), 'temporal.3.weight': (T, 2 * T)})
    for b in branches:
        for name, shape in shapes[b].items():
            assert P[name].shape == shape, f'{name}: {tuple(P[name].shape)}, expected {shape}'
    logit = torch.ones((), dtype=x.dtype)
    if 's' in branches:
        x_s = x.mean(2)  # Eq. 9
        z = F.conv2d(x_s, P['spatial.0.weight'][:, :, 0], padding=1)
        z = F.relu(bn_ref(z, P, B, 'spatial.1', training))
        s_m = z * P['spatial.3.weight'].view(()) + P['spatial.3.bias'].view(())  # Eq. 10
        logit = logit * s_m.view(Bn, 1, 1, H, W)
    if 'c' in branches:
        x_c = x.mean((2, 3, 4))  # Eq. 11
        z = F.relu(bn_ref(x_c @ P['channel.0.weight'].flatten(1).t(), P, B, 'channel.1', training))
        c_m = z @ P['channel.3.weight'].flatten(1).t() + P['channel.3.bias']  # Eq. 12
        logit = logit * c_m.view(Bn, C, 1, 1, 1)
    if 't' in branches:
        x_t = x.mean((1, 3, 4))
        z = F.relu(bn_ref(x_t @ P['temporal.0.weight'].t(), P, B, 'temporal.1', training))
        t_m = z @ P['temporal.3.weight'].t() + P['temporal.3.bias']
        logit = logit * t_m.view(Bn, 1, T, 1, 1)
    return x / 2 + torch.sigmoid(logit) * x  # Eq. 7-8


# --------------------------------------------------------------------------------------------------------------------
# 1. M3D layer vs Eq. 4-5

M3D_GRID = (
    [(n, s, T) for n in (1, 2, 3) for s in (1, 2) for T in (2, 4, 8)]
    + [(n, 1, T) for n in (1, 2, 3) for T in (1, 5, 7)]  # odd lengths (and T = 1) keep their length unstrided
    # strides above n + 1: the 2D path no longer folds into the kernel's taps (pooled separately) for n < stride - 1
    + [(n, 3, 6) for n in (1, 2, 3)] + [(n, 4, 8) for n in (1, 2, 3)]
)


@pytest.mark.parametrize('chs', [5, 16], ids=['c5', 'c16'])  # < 16 and >= 16 channels take different CPU paths
@pytest.mark.parametrize('n,stride,T', M3D_GRID)
def test_m3d_layer_matches_eq4(fast, n, stride, T, chs):
    gen = _gen('m3d', n, stride, T, chs)
    layer = randomize_(MultiScaleTemporal(chs, n, stride), gen).train()
    x = _randn(gen, 2, chs, T, 6, 5)
    assert cpu_kernels.applies(x) == fast
    kernels64 = [b.weight.detach().double().requires_grad_() for b in layer.branches]
    x64 = x.double().requires_grad_()
    ref = m3d_ref(x64, kernels64, stride)

    # training: outputs and gradients w.r.t. the input and every dilated kernel
    xg = x.clone().requires_grad_()
    y = layer(xg)
    assert_close(y, ref, 'train output')
    grad_out = _randn(gen, *ref.shape, dtype=torch.float64)
    y.backward(grad_out.float())
    ref.backward(grad_out)
    assert_close(xg.grad, x64.grad, 'd/dx')
    for i, (b, w64) in enumerate(zip(layer.branches, kernels64)):
        assert_close(b.weight.grad, w64.grad, f'd/d branches[{i}] (dilation {i + 1})')

    # inference: twice (the second forward may reuse a kernel assembled by the first)
    layer.eval()
    with torch.no_grad():
        assert_close(layer(x), ref, 'no_grad output')
        assert_close(layer(x), ref, 'no_grad output, second forward')
        # an optimiser-style in-place update and a replaced weight must both be seen by the next forward
        layer.branches[-1].weight.mul_(-2.)
        layer.branches[0].weight = nn.Parameter(_randn(gen, chs, chs, 3, 1, 1) / math.sqrt(3 * chs))
        ref = m3d_ref(x.double(), [b.weight.double() for b in layer.branches], stride)
        assert_close(layer(x), ref, 'no_grad output after the weights changed')

        layer.fuse()
        assert_close(layer(x), ref, 'fused output')
        assert_close(layer(x), ref, 'fused output, second forward')


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'documented limit of the no_grad kernel cache (cpu_kernels.weights_key): weight.data gets its own version counter, '
    'so a write through it is not seen; this fails (and must be unmarked) once the cache sees it'))
def test_m3d_layer_sees_weight_data_copy():
    previous = cpu_kernels.set_enabled(True)
    try:
        gen = _gen('m3d data copy')
        layer = randomize_(MultiScaleTemporal(4, 2), gen).eval()
        x = _randn(gen, 1, 4, 8, 3, 2)
        with torch.no_grad():
            layer(x)
            layer.branches[0].weight.data.copy_(_randn(gen, 4, 4, 3, 1, 1))
            ref = m3d_ref(x.double(), [b.weight.double() for b in layer.branches])
            assert_close(layer(x), ref, 'output after weight.data.copy_')
    finally:
        cpu_kernels.set_enabled(previous)


# --------------------------------------------------------------------------------------------------------------------
# 2. Blocks, one per unit, vs the papers' descriptions

# family -> (unit, n)
UNITS = {
    'c2d': (Unit2d, 1),
    'i3d': (Unit3d, 1),
    'p3d_a': (SeriesUnit, 1),
    'p3d_b': (ParallelUnit, 1),
    'p3d_c': (MultiScaleUnit, 1),
    'm3d_n2': (MultiScaleUnit, 2),
    'm3d_n3': (MultiScaleUnit, 3),
}
# block -> (class, reference, inplanes, planes): the bottleneck keeps its 16 channels unstrided (identity shortcut),
# the basic block changes 4 -> 6 (projection shortcut even unstrided)
BLOCKS = {
    'bottleneck': (VideoBottleneck, bottleneck_ref, 16, 4),
    'basic': (VideoBasicBlock, basic_ref, 4, 6),
}


@pytest.mark.parametrize('T', [4, 8], ids=lambda T: f'T{T}')
@pytest.mark.parametrize('ts', [1, 2], ids=lambda s: f'ts{s}')
@pytest.mark.parametrize('stride', [1, 2], ids=lambda s: f's{s}')
@pytest.mark.parametrize('kind', list(BLOCKS))
@pytest.mark.parametrize('name', list(UNITS))
def test_block_matches_reference(fast, name, kind, stride, ts, T):
    unit, n = UNITS[name]
    family = name.split('_n')[0]  # m3d_n2, m3d_n3 -> m3d
    block_cls, block_ref, inplanes, planes = BLOCKS[kind]
    gen = _gen('block', name, kind, stride, ts, T)
    block = randomize_(block_cls(inplanes, planes, stride, ts, unit=unit, num_branches=n), gen)
    x = _randn(gen, 2, inplanes, T, 6, 5)
    for training in (False, True):
        where = f"{'train' if training else 'eval'} mode"
        block.train(training)
        block.zero_grad(set_to_none=True)
        P, B = float64_copies(block)
        x64 = x.double().requires_grad_()
        ref = block_ref(family, x64, P, B, stride, ts, n, training)
        assert ref.shape[2] == T // ts
        xg = x.clone().requires_grad_()
        y = block(xg)
        assert_close(y, ref, f'{where}: output')
        grad_out = _randn(gen, *ref.shape, dtype=torch.float64)
        y.backward(grad_out.float())
        ref.backward(grad_out)
        compare_grads(block, xg, x64, P, where)
        if not training:
            with torch.no_grad():
                assert_close(block(x), ref, 'no_grad output')
                assert_close(block(x), ref, 'no_grad output, second forward')


STEMS = ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d']


@pytest.mark.parametrize('family', STEMS)
def test_stem_matches_reference(fast, family):
    """The stem: the 7x7 conv (I3D 3x7x7), BN, ReLU and the unit, as returned at feature level 0 (before max-pool).
    P3D-B's parallel conv is 3 -> 64 on the clip, with the conv's spatial stride."""
    gen = _gen('stem', family)
    model = m3d_zoo.create_model(f'{family}_resnet18', temporal_strides=1, num_classes=0).eval()
    stem = nn.ModuleDict(dict(conv1=model.conv1, bn1=model.bn1, stem_temporal=model.stem_temporal))
    randomize_(stem, gen)
    n = model.m3d_branches[0] if model.m3d_branches else 1
    assert n == (3 if family == 'm3d' else 1)  # Eq. 6 at T = 8
    x = _randn(gen, 2, 3, 8, 12, 10)
    P, B = float64_copies(stem)
    s = F.relu(bn_ref(spatial_conv_ref(family, x.double(), P['conv1.weight'], 2, 1, k=7), P, B, 'bn1', False))
    ref = unit_ref(family, s, x.double(), P, 'stem_temporal.', 2, 1, n)
    with torch.no_grad():
        out, = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)
    assert_close(out, ref, 'stem feature')


# --------------------------------------------------------------------------------------------------------------------
# 3. Residual Attention Layer vs Eq. 7-12

@pytest.mark.parametrize('branches', ['s', 'c', 't', 'sc', 'st', 'ct', 'sct'])
def test_ral_matches_eq7(fast, branches, monkeypatch):
    gen = _gen('ral', branches)
    C, T = 32, 4  # C/16 = 2 channels in the channel branch's bottleneck
    ral = randomize_(ResidualAttention(C, T, branches), gen)
    x = _randn(gen, 3, C, T, 6, 5)
    for training in (True, False):
        where = f"{'train' if training else 'eval'} mode"
        ral.train(training)
        ral.zero_grad(set_to_none=True)
        P, B = float64_copies(ral)
        x64 = x.double().requires_grad_()
        ref = ral_ref(x64, P, B, branches, training)
        xg = x.clone().requires_grad_()
        y = ral(xg)
        assert_close(y, ref, f'{where}: output')
        grad_out = _randn(gen, *ref.shape, dtype=torch.float64)
        y.backward(grad_out.float())
        ref.backward(grad_out)
        compare_grads(ral, xg, x64, P, where)

    # inference without autograd: with S, C and T the CPU path computes the mask frame by frame
    per_frame = []
    masked = cpu_kernels.masked_per_frame
    monkeypatch.setattr(cpu_kernels, 'masked_per_frame', lambda *a: per_frame.append(masked(*a)) or per_frame[-1])
    with torch.no_grad():
        assert_close(ral(x), ref, 'no_grad output')
    if not fast:
        assert all(o is None for o in per_frame), 'a CPU fast path ran although switched off'
    elif branches == 'sct':
        assert any(o is not None for o in per_frame), 'the per-frame path was not exercised'


# --------------------------------------------------------------------------------------------------------------------
# 4. Parameter counts vs a per-family formula on torchvision's ResNet

NUM_CLASSES = 625
NUM_FRAMES = 8
TEMPORAL_STRIDES = (1, 2, 2, 2)  # the zoo's default schedule (the released code's)


def eq6(T: int) -> int:
    """Eq. 6: n = floor((T - 1) / 2), at least 1."""
    return max(1, (T - 1) // 2)


def ral_params(C: int, T: int, branches: str = 'sct') -> int:
    """S: 3x3 conv C -> 1, BN(1), 1x1 conv 1 -> 1 with bias; C: 1x1 C -> C/16, BN, 1x1 C/16 -> C with bias;
    T: T -> 2T, BN1d(2T), 2T -> T with bias. The first conv of each branch has no bias (BN follows it)."""
    mid = max(1, C // 16)
    return (('s' in branches) * (9 * C + 2 + 2)
            + ('c' in branches) * (C * mid + 2 * mid + mid * C + C)
            + ('t' in branches) * (2 * T * T + 4 * T + 2 * T * T + T))


def expected_params(family: str, depth: str, m3d_branches=None) -> int:
    """torchvision's 2D ResNet without its fc, the bnneck head (BN1d weight and bias, a bias-free 625-way classifier),
    and the family's extra tensors, all counted from torchvision's layers."""
    if family == 'two_stream_m3d':  # Eq. 1: a C2D spatial stream and an M3D + RAL temporal stream, one head each
        return expected_params('c2d', depth) + expected_params('m3d_ral', depth, m3d_branches)
    with torch.device('meta'):
        tv = getattr(torchvision.models, depth)(weights=None)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    nf = tv.fc.in_features
    total = count(tv) - count(tv.fc) + 2 * nf + nf * NUM_CLASSES
    bottleneck = isinstance(tv.layer1[0], torchvision.models.resnet.Bottleneck)

    # clip length entering the stem and each stage; Eq. 6's n per M3D layer (stem, first block of stages 1-4)
    frames = [NUM_FRAMES]
    for s in TEMPORAL_STRIDES:
        frames.append(frames[-1] // s)
    branches = m3d_branches or [eq6(frames[0])] + [eq6(T) for T in frames[:4]]

    stem_in, stem_out = tv.conv1.in_channels, tv.conv1.out_channels
    if family == 'i3d':  # every 3x3 conv and the 7x7 stem get 3 temporal taps (2 more per tap); shortcuts stay 1x1x1
        convs3 = [m for m in tv.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        return total + 2 * (tv.conv1.weight.numel() + sum(m.weight.numel() for m in convs3))
    if family == 'c2d':
        return total
    # the (3, 1, 1) temporal convs: P3D at the stem and in every block, M3D at the stem and in each stage's first block
    if family in ('p3d_a', 'p3d_c'):  # on the spatial conv's output: out -> out
        total += 3 * stem_out * stem_out
    elif family == 'p3d_b':  # on the spatial conv's input: in -> out
        total += 3 * stem_in * stem_out
    else:  # m3d*
        total += branches[0] * 3 * stem_out * stem_out
    for i, layer in enumerate((tv.layer1, tv.layer2, tv.layer3, tv.layer4)):
        for j, block in enumerate(layer):
            conv = block.conv2 if bottleneck else block.conv1  # the 3x3 conv that carries the unit
            cin, cout = conv.in_channels, conv.out_channels
            if family in ('p3d_a', 'p3d_c'):
                total += 3 * cout * cout
            elif family == 'p3d_b':
                total += 3 * cin * cout
            elif j == 0:
                total += branches[i + 1] * 3 * cout * cout
        if family.startswith('m3d_ral') and i < 3:  # a RAL after stages 1-3, at the length that stage outputs
            ral = family[len('m3d_ral_'):] or 'sct'
            last = layer[-1]
            chs = (last.conv3 if bottleneck else last.conv2).out_channels
            total += ral_params(chs, frames[i + 1], ral)
    return total


FAMILIES = ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_c', 'm3d_ral_t',
            'two_stream_m3d']


def _model_name(family: str, depth: str) -> str:
    return 'two_stream_m3d' if (family, depth) == ('two_stream_m3d', 'resnet50') else f'{family}_{depth}'


@pytest.mark.parametrize('depth', ['resnet18', 'resnet50'])
@pytest.mark.parametrize('family', FAMILIES)
def test_param_count_matches_formula(family, depth):
    with torch.device('meta'):
        model = m3d_zoo.create_model(_model_name(family, depth))
    got = sum(p.numel() for p in model.parameters())
    assert got == expected_params(family, depth), f'{family}_{depth}: {got} parameters'
    if family.startswith('m3d'):  # Eq. 6 at T = 8 with the default strides: T = 8, 8, 8, 4, 2 enters the layers
        assert tuple(model.m3d_branches) == (3, 3, 3, 1, 1)


@pytest.mark.parametrize('depth', ['resnet18', 'resnet50'])
@pytest.mark.parametrize('family', ['m3d', 'm3d_ral', 'two_stream_m3d'])
def test_param_count_with_explicit_m3d_branches(family, depth):
    branches = (2, 1, 4, 3, 1)
    with torch.device('meta'):
        model = m3d_zoo.create_model(_model_name(family, depth), m3d_branches=branches)
    got = sum(p.numel() for p in model.parameters())
    assert got == expected_params(family, depth, branches), f'{family}_{depth}: {got} parameters'

""" Export (ONNX in onnxruntime, torch.export) and fused M3D inference. Small clips: ResNet-18, 8 x 64 x 32. """
import importlib.util

import pytest
import torch
import torch.nn.functional as F

import m3d_zoo
from m3d_zoo.export import export_model
from m3d_zoo.layers import MultiScaleTemporal

HW = (64, 32)
# Every family with M3D layers (P3D-C is one kernel per layer), and both temporal stride schedules.
M3D_FAMILIES = ['m3d', 'm3d_ral', 'm3d_ral_s', 'm3d_ral_c', 'm3d_ral_t', 'p3d_c', 'two_stream_m3d']


def _name(family: str) -> str:
    return f'{family}_resnet18'


def _model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = m3d_zoo.create_model(name, num_classes=0, **kwargs).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            # The zero-initialised temporal and attention parameters would make any check look right. Matched on the
            # name within a stream: every parameter of the two-stream net's `temporal_stream` has 'temporal' in its
            # full name, and small random BN weights there would leave that stream's output blind to its M3D layers.
            local = n.split('_stream.', 1)[-1]
            if 'temporal' in local or local.startswith('ral') or 'branches' in local:
                p.normal_(0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                # Not only the statistics: zero_init_last leaves each block's last BN weight at zero, which makes the
                # block (its temporal layer included) an identity, and any check of that layer look right.
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def _clip(b: int = 2, t: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, t, *HW, generator=torch.Generator().manual_seed(seed))


def _eq4(s: torch.Tensor, weights, stride: int) -> torch.Tensor:
    """Eq. 4-5 written out, independent of the layer's kernel assembly: the 2D path (average-pooled in time where the
    layer is strided) plus each dilated (3, 1, 1) kernel as its own conv, dilation i, zero-padded by i."""
    y = s if stride == 1 else F.avg_pool3d(s, (stride, 1, 1), (stride, 1, 1))
    for i, w in enumerate(weights, start=1):
        y = y + F.conv3d(s, w, None, (stride, 1, 1), (i, 0, 0), (i, 1, 1))
    return y


def _eq4_reference(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output with every M3D layer computed by `_eq4` (forward hooks replace each layer's output)."""
    hooks = []
    for m in model.modules():
        if isinstance(m, MultiScaleTemporal):
            weights = [b.weight.detach().clone() for b in m.branches]
            hooks.append(m.register_forward_hook(lambda m, args, out, w=weights: _eq4(args[0], w, m.stride)))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize('family,strides', [(f, None) for f in M3D_FAMILIES] + [
    ('m3d', (1, 1, 1, 1)), ('two_stream_m3d', (1, 1, 1, 1))])
def test_fused_model_computes_eq4_every_m3d_family(family, strides):
    """Fused and unfused, every M3D layer computes Eq. 4 (dilated kernels as separate convs, strided 2D path pooled):
    the reference does not go through the layer's kernel assembly, which both the fused and unfused paths use."""
    kwargs = {} if strides is None else dict(temporal_strides=strides)
    model = _model(_name(family), **kwargs)
    layers = [m for m in model.modules() if isinstance(m, MultiScaleTemporal)]
    assert layers and (family == 'p3d_c' or max(m.num_branches for m in layers) == 3)  # Eq. 6 at T = 8
    if strides is None:  # the strided layers are covered (their 2D path is a temporal average)
        assert any(m.stride == 2 for m in layers)
    x = _clip()
    ref = _eq4_reference(model, x)
    with torch.no_grad():
        unfused = model(x)
        assert model.fuse() is model
        out = model(x)
    assert all(m.fused is not None and len(m.branches) == 0 for m in layers)
    assert all(m.fused.kernel_size[0] == 2 * m.num_branches + 1 for m in layers)
    torch.testing.assert_close(unfused, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fused_m3d_16_frames_and_log2_branches():
    model = _model('m3d_resnet18', num_frames=16, m3d_branches=(4, 4, 3, 2, 1))
    x = _clip(t=16)
    ref = _eq4_reference(model, x)
    with torch.no_grad():
        out = model.fuse()(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('family', ['c2d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c', 'm3d', 'm3d_ral', 'two_stream_m3d'])
def test_fuse_folds_every_batchnorm_into_its_conv(family):
    model = _model(_name(family), head='paper', embed_dim=16)
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        assert not model.is_fused and model.fuse() is model and model.is_fused
        out = model(x)
    norms = [n.split('_stream.')[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    # The backbone's and the attention branches' are folded; the head's BN is on the classifier's path only (the
    # paper head's embedding is its Linear's output), not after a conv.
    assert set(norms) == {'head.bn'}
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fuse_without_batchnorm_and_its_errors(tmp_path):
    model = _model('p3d_b_resnet18')
    n_norms = sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        out = model.fuse(batchnorm=False)(x)
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == n_norms
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match=r'eval\(\)'):  # batch statistics cannot be folded
        _model('c2d_resnet18').train().fuse()
    with pytest.raises(ValueError, match='fused'):  # its tensors would not load back into the architecture
        m3d_zoo.save_pretrained(model, tmp_path / 'fused')
    assert not (tmp_path / 'fused').exists()


def _onnx_session(path):
    ort = pytest.importorskip('onnxruntime')
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('name', ['m3d_ral_resnet18', 'two_stream_m3d_resnet18'])
def test_onnx_runs_in_onnxruntime_with_dynamic_batch(name, tmp_path):
    onnx = pytest.importorskip('onnx')
    model = _model(name, layers=(1, 1, 1, 1))  # one block per stage: every kind of layer, half the graph
    path = export_model(model, tmp_path / f'{name}.onnx', input_size=HW, batch_size=2, opset=18)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')) >= 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not a fixed size
    session = _onnx_session(path)
    # The export fused the M3D layers of a copy: the caller's model still has its branches.
    assert all(m.fused is None for m in model.modules() if isinstance(m, MultiScaleTemporal))
    for b in (1, 3):
        x = _clip(b, seed=b)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = model(x)
        assert got.shape == tuple(ref.shape)
        torch.testing.assert_close(torch.from_numpy(got), ref, rtol=1e-4, atol=1e-4)


def test_onnx_verify_and_static_batch(tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime')
    import m3d_zoo.export as export_mod
    checks = []

    def spy(*args, **kwargs):  # the real check, recorded
        checks.append(real_verify(*args, **kwargs))
        return checks[-1]
    real_verify = export_mod.verify_onnx
    monkeypatch.setattr(export_mod, 'verify_onnx', spy)
    model = _model('m3d_resnet18', temporal_strides=(1, 1, 1, 1), num_frames=4)
    path = export_model(
        model, tmp_path / 'm3d.onnx', num_frames=4, input_size=HW, batch_size=1, dynamic_batch=False, verify=True)
    assert len(checks) == 1 and checks[0] <= 1e-4  # verify=True ran the check, and it passed
    session = _onnx_session(path)
    assert session.get_inputs()[0].shape == [1, 3, 4, *HW]
    # the check compares values: the same file against a model with one weight changed fails it
    with torch.no_grad():
        model.layer4[1].conv2.weight.add_(0.1)
    with pytest.raises(RuntimeError, match='onnxruntime and PyTorch differ by'):
        real_verify(path, model, _clip(1, t=4), dynamic_batch=False)


# The families' distinct code paths: 3D convs (I3D), the parallel branch with a spatial stride (P3D-B), M3D + RAL, two
# streams. C2D, P3D-A/C and M3D are covered by the other export tests (and CLI-side by the model name test).
@pytest.mark.parametrize('family', ['i3d', 'p3d_b', 'm3d_ral', 'two_stream_m3d'])
def test_torch_export_families(family, tmp_path):
    name = _name(family)
    model = _model(name, layers=(1, 1, 1, 1))  # one block per stage: every kind of layer, half the graph
    path = export_model(
        model, tmp_path / f'{name}.pt2', format='torch_export', input_size=HW, verify=family == 'm3d_ral')
    program = torch.export.load(str(path))
    x = _clip(3, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any('mkldnn' in str(n.target) for n in program.graph.nodes)  # plain convolutions in the graph


def test_export_accepts_a_model_name_and_checks_arguments(tmp_path):
    path = export_model('c2d_resnet18', tmp_path / 'sub' / 'c2d.pt2', format='torch_export', input_size=HW)
    assert path.is_file()
    with pytest.raises(ValueError, match='format'):
        export_model('c2d_resnet18', tmp_path / 'x.bin', format='tflite', input_size=HW)
    with pytest.raises(ValueError, match='opset'):
        export_model('c2d_resnet18', tmp_path / 'x.onnx', opset=13, input_size=HW)
    with pytest.raises(ValueError, match='batch_size >= 2'):
        export_model('c2d_resnet18', tmp_path / 'x.pt2', format='torch_export', batch_size=1, input_size=HW)
    with pytest.raises(ValueError, match='T=4'):  # the model's own input check, before any tracing
        export_model('m3d_ral_resnet18', tmp_path / 'x.pt2', format='torch_export', num_frames=4, input_size=HW)
    assert not list(tmp_path.glob('x*')) and not list(tmp_path.glob('.x*'))


def test_missing_onnx_packages_name_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda n, *a: None if n == 'onnxscript' else real(n, *a))
    with pytest.raises(ImportError, match=r'm3d_zoo\[export\]'):
        export_model('c2d_resnet18', tmp_path / 'c2d.onnx', input_size=HW)

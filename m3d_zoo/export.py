""" Export zoo models for deployment: ONNX (opset >= 17, dynamo exporter) and `torch.export` programs (.pt2).

    from m3d_zoo.export import export_model
    model = m3d_zoo.create_model('m3d_ral_resnet50', num_classes=0)
    export_model(model, 'm3d_ral.onnx', verify=True)            # ONNX, batch dimension dynamic, checked in onnxruntime
    export_model(model, 'm3d_ral.pt2', format='torch_export')    # torch.export.load('m3d_ral.pt2').module()(clips)

The exported graph takes clips (B, 3, T, H, W) with T and H x W fixed at export time (the temporal strides, RAL and
M3D kernels are built for one clip length) and B dynamic. M3D layers are fused first (one (2n+1, 1, 1) kernel per
layer; same output) on a copy of the model: the caller's model is left as it was. Files are written atomically.
"""
import copy
import importlib.util
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ._io import atomic_path

__all__ = ['export_model', 'export_onnx', 'export_program', 'verify_onnx', 'EXPORT_FORMATS']

EXPORT_FORMATS = ('onnx', 'torch_export')
_EXTRA_HINT = 'pip install m3d_zoo[export]  (or: pip install onnx onnxscript onnxruntime)'


def _require(*modules: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} needs {', '.join(missing)}, which is not installed: {_EXTRA_HINT}")


def _prepare(
        model: Union[nn.Module, str],
        num_frames: Optional[int],
        input_size: Sequence[int],
        batch_size: int,
        fuse: bool,
) -> Tuple[nn.Module, torch.Tensor]:
    """An eval-mode copy of the model (fused if asked) on the CPU, and an example clip batch for it."""
    if isinstance(model, str):
        from .models import create_model
        model = create_model(model)
    else:
        model = copy.deepcopy(model)
    model = model.cpu().eval()
    if fuse and hasattr(model, 'fuse'):
        model.fuse()
    if len(input_size) != 2:
        raise ValueError(f'input_size is (H, W), got {tuple(input_size)}.')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
    num_frames = num_frames or getattr(model, 'num_frames', 8)
    in_chans = getattr(model, 'in_chans', 3)
    x = torch.randn(batch_size, in_chans, num_frames, *input_size, generator=torch.Generator().manual_seed(0))
    if hasattr(model, 'check_input'):
        model.check_input(x)  # a clear error now rather than a tracing error later
    return model, x


def _dynamic_shapes(dynamic_batch: bool, batch_size: int):
    if not dynamic_batch:
        return None
    if batch_size < 2:
        # torch.export specialises a dimension whose example size is 0 or 1: the example must have B >= 2.
        raise ValueError('A dynamic batch needs an example batch_size >= 2 (torch.export specialises size 1).')
    return ({0: torch.export.Dim('batch', min=1, max=4096)},)


def _output_name(model: nn.Module) -> str:
    return 'embeddings' if getattr(model, 'num_classes', 0) <= 0 else 'logits'


def export_onnx(
        model: Union[nn.Module, str],
        output: Union[str, os.PathLike],
        num_frames: Optional[int] = None,
        input_size: Sequence[int] = (256, 128),
        batch_size: int = 2,
        opset: int = 18,
        dynamic_batch: bool = True,
        fuse: bool = True,
        verify: bool = False,
        atol: float = 1e-4,
) -> Path:
    """Export to an ONNX file with torch's dynamo exporter (onnxscript); the weights are stored inside the file.

    Args:
        model: A zoo model (left unchanged) or a registered model name.
        output: The .onnx file to write.
        num_frames: Clip length T of the graph; default the model's `num_frames`.
        input_size: (H, W) of the graph.
        batch_size: Batch of the example input; with `dynamic_batch` the graph takes any batch size.
        opset: ONNX opset, >= 17.
        dynamic_batch: Make the batch dimension dynamic.
        fuse: Fuse M3D layers first (`model.fuse()`; same output, fewer convs).
        verify: Run the file in onnxruntime (at another batch size when dynamic) and compare with PyTorch.
        atol: Tolerance of `verify`.

    Returns:
        The path written.
    """
    _require('onnx', 'onnxscript', what='ONNX export')
    if opset < 17:
        raise ValueError(f'opset must be >= 17 (LayerNormalization, dynamo exporter), got {opset}.')
    output = Path(output)
    model, x = _prepare(model, num_frames, input_size, batch_size, fuse)
    dynamic_shapes = _dynamic_shapes(dynamic_batch, batch_size)
    with torch.no_grad():
        program = torch.onnx.export(
            model, (x,), dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
            input_names=['clips'], output_names=[_output_name(model)], verbose=False)
    with atomic_path(output) as tmp:
        # One self-contained file (the largest zoo model is far below protobuf's 2 GB limit).
        program.save(str(tmp), external_data=False)
    if verify:
        verify_onnx(output, model, x, dynamic_batch=dynamic_batch, atol=atol)
    return output


def verify_onnx(
        path: Union[str, os.PathLike],
        model: nn.Module,
        x: torch.Tensor,
        dynamic_batch: bool = True,
        atol: float = 1e-4,
) -> float:
    """Run an exported file in onnxruntime and compare with the PyTorch model; returns the largest difference.

    With `dynamic_batch`, the check uses a batch one larger than `x`'s, so that it also proves the batch is dynamic.
    """
    _require('onnxruntime', what='Verifying an ONNX export')
    import onnxruntime as ort
    if dynamic_batch:
        x = torch.cat([x, x[:1].flip(2)])
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    if got.shape != ref.shape:
        raise RuntimeError(f'ONNX export check failed: onnxruntime gave shape {got.shape}, PyTorch {ref.shape}.')
    err = float(abs(got - ref).max())
    if not err <= atol:
        raise RuntimeError(f'ONNX export check failed: onnxruntime and PyTorch differ by {err:.3g} > {atol:g}.')
    return err


def export_program(
        model: Union[nn.Module, str],
        output: Union[str, os.PathLike],
        num_frames: Optional[int] = None,
        input_size: Sequence[int] = (256, 128),
        batch_size: int = 2,
        dynamic_batch: bool = True,
        fuse: bool = True,
        verify: bool = False,
        atol: float = 1e-4,
) -> Path:
    """Export with `torch.export` and save the ExportedProgram (`torch.export.save`, a .pt2 file).

    Load it with `torch.export.load(path).module()`. Arguments as `export_onnx`; `verify` reloads the file and compares
    its output with the model's.
    """
    output = Path(output)
    model, x = _prepare(model, num_frames, input_size, batch_size, fuse)
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=_dynamic_shapes(dynamic_batch, batch_size))
    with atomic_path(output) as tmp:
        torch.export.save(program, str(tmp))
    if verify:
        xv = torch.cat([x, x[:1].flip(2)]) if dynamic_batch else x
        with torch.no_grad():
            got = torch.export.load(str(output)).module()(xv)
            ref = model(xv)
        err = float((got - ref).abs().max())
        if not err <= atol:
            raise RuntimeError(f'torch.export check failed: the saved program and the model differ by {err:.3g}.')
    return output


def export_model(
        model: Union[nn.Module, str],
        output: Union[str, os.PathLike],
        format: str = 'onnx',
        num_frames: Optional[int] = None,
        input_size: Sequence[int] = (256, 128),
        batch_size: int = 2,
        opset: int = 18,
        dynamic_batch: bool = True,
        fuse: bool = True,
        verify: bool = False,
) -> Path:
    """Export a zoo model to `format` 'onnx' (an .onnx file) or 'torch_export' (a .pt2 ExportedProgram).

    Args:
        model: A zoo model (left unchanged: export works on a copy) or a registered model name.
        output: File to write (atomically).
        format: 'onnx' or 'torch_export'.
        num_frames: Clip length T of the graph; default the model's `num_frames`.
        input_size: (H, W) of the graph.
        batch_size: Batch of the example input (>= 2 for a dynamic batch).
        opset: ONNX opset (>= 17); ignored for torch_export.
        dynamic_batch: Make the batch dimension dynamic.
        fuse: Fuse M3D layers first (same output, one temporal conv per layer).
        verify: Check the written file against PyTorch (onnxruntime for ONNX, when installed).

    Returns:
        The path written.
    """
    if format == 'onnx':
        verify = verify and importlib.util.find_spec('onnxruntime') is not None
        return export_onnx(
            model, output, num_frames=num_frames, input_size=input_size, batch_size=batch_size, opset=opset,
            dynamic_batch=dynamic_batch, fuse=fuse, verify=verify)
    if format == 'torch_export':
        return export_program(
            model, output, num_frames=num_frames, input_size=input_size, batch_size=batch_size,
            dynamic_batch=dynamic_batch, fuse=fuse, verify=verify)
    raise ValueError(f"Unknown export format '{format}', expected one of {EXPORT_FORMATS}.")

""" CPU speed paths of the video ResNets: the one module that may use PyTorch internals.

Model and layer code computes with stock operators and calls the public functions here where a CPU path is faster.
Each function computes what the stock operator computes (tests/test_cpu_kernels.py compares every path with it) and
takes its fast path only when:

- the fast paths are on: `set_enabled(False)`, or the environment variable ``M3D_ZOO_CPU_KERNELS=0`` read at import,
  switches them off;
- the PyTorch internals the path needs exist in the installed torch (detected once, at import); a torch release that
  moves one loses that speed path, not the model;
- the input is a plain float32 CPU tensor in eager mode: nothing compiles, exports, traces or counts the operators
  (torch.compile, torch.export, FLOP counters and fake tensors always see stock operators), and autocast is off.

The internals used: ``torch.ops.aten.mkldnn_convolution`` (oneDNN's convolution, where PyTorch's CPU dispatch would pick
its slower reference kernel), ``torch.utils._python_dispatch._get_current_dispatch_mode`` (is a dispatch mode such as
a FLOP counter active?) and ``Tensor._version`` (has a weight changed in place since a kernel was assembled from it?).
Measurements of each path are in benchmarks/RESULTS.md.
"""
import os
from typing import Callable, Hashable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    'enabled', 'set_enabled', 'applies', 'conv', 'temporal_conv_gemm', 'max_pool_frames', 'masked_per_frame',
    'weights_key',
]

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - depends on the torch release
    _get_current_dispatch_mode = None

_HAS_MKLDNN_CONV = hasattr(torch.ops.aten, 'mkldnn_convolution')
_HAS_VERSION = hasattr(torch.empty(0), '_version')
_enabled = os.environ.get('M3D_ZOO_CPU_KERNELS', '1').strip().lower() not in ('0', 'false', 'off', 'no')


def enabled() -> bool:
    """Whether the CPU fast paths are switched on (they still apply only where `applies` says so)."""
    return _enabled


def set_enabled(flag: bool) -> bool:
    """Switch the CPU fast paths on or off for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(flag)
    return previous


def _plain_eager(x: torch.Tensor) -> bool:
    """A plain tensor in eager mode: not compiling, exporting or tracing, no dispatch mode, no tensor subclass."""
    return (
        _get_current_dispatch_mode is not None
        and not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
        and not torch.jit.is_tracing()
        and type(x) is torch.Tensor
    )


def applies(x: torch.Tensor) -> bool:
    """Whether a CPU fast path may run on `x`: switched on, plain eager float32 on the CPU, autocast off."""
    return (
        _enabled
        and x.device.type == 'cpu'
        and x.dtype == torch.float32
        and _plain_eager(x)
        and not torch.is_autocast_enabled('cpu')
    )


def _onednn(x: torch.Tensor) -> bool:
    # applies() first: it keeps torch.compile from tracing into the torch.backends queries
    return applies(x) and _HAS_MKLDNN_CONV and torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()


def conv(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int = 1,
) -> torch.Tensor:
    """F.conv2d / F.conv3d (by `x.ndim`) with explicit integer padding; oneDNN's kernel on the CPU.

    PyTorch's CPU dispatch sends a float32 conv to its reference (im2col) kernel for small B * C * T * H at batch 1,
    and 1x1 convs there whenever one thread is used. The temporally downsampled 3D nets hit that rule in stages 2-4
    (T = 4, 2, 1) where C2D (T = 8) does not. oneDNN computes the same convolution (to float rounding) and has autograd
    support.
    """
    if _onednn(x):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
    fn = F.conv3d if x.ndim in (4, 5) and weight.ndim == 5 else F.conv2d
    return fn(x, weight, bias, stride, padding, dilation, groups)


def temporal_conv_gemm(
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: int,
        padding: int,
        dilation: int,
        residual: Optional[torch.Tensor],
) -> Optional[torch.Tensor]:
    """A bias-free (k, 1, 1) conv of (B, Ci, T, H, W) with few input channels, plus `residual`, as one GEMM; None
    where the path does not apply (the caller then runs the stock conv).

    For P3D-B's stem (3 -> 64 channels) oneDNN pads the input channels to a block of 16 and the sum is a second pass
    over the output; an im2col in time with the residual as the GEMM's beta term does neither.
    """
    if x.ndim != 5 or x.shape[1] >= 16 or not applies(x):
        return None
    B, Ci, T, H, W = x.shape
    Co, k = weight.shape[0], weight.shape[2]
    To = (T + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    xp = F.pad(x.flatten(3), (0, 0, padding, padding))  # (B, Ci, T + 2p, H*W)
    cols = torch.stack([xp[:, :, j * dilation:j * dilation + stride * (To - 1) + 1:stride] for j in range(k)], 2)
    cols = cols.reshape(B, Ci * k, To * H * W)  # row (i, j): channel i at t * stride + j * dilation - padding
    w = weight.reshape(Co, Ci * k).expand(B, Co, Ci * k)
    if residual is None:
        y = torch.bmm(w, cols)
    else:
        y = torch.baddbmm(residual.reshape(B, Co, To * H * W), w, cols)
    return y.view(B, Co, To, H, W)


def max_pool_frames(x: torch.Tensor, kernel: int, stride: int, padding: int) -> Optional[torch.Tensor]:
    """Max-pool every frame of a contiguous (B, C, T, H, W) over k x k windows; None where the path does not apply.

    PyTorch's CPU max-pool kernels for channels-first tensors are scalar loops. A max over a rectangle is separable:
    a max of k strided slices along W, then along H, gives the same values, bit for bit.
    """
    if x.ndim != 5 or not x.is_contiguous() or not applies(x):
        return None
    if (kernel, stride, padding) == (3, 2, 1) and not torch.is_grad_enabled():
        # ResNet's stem at inference: written into one buffer (out=, which autograd does not allow), no padded copy.
        return _max3_stride2(_max3_stride2(x, -2), -1)
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * padding - kernel) // stride + 1, (W + 2 * padding - kernel) // stride + 1
    x = F.pad(x, (padding,) * 4, value=float('-inf'))
    out = x[..., 0:stride * (Wo - 1) + 1:stride]
    for j in range(1, kernel):
        out = torch.maximum(out, x[..., j:j + stride * (Wo - 1) + 1:stride])
    x = out
    out = x[..., 0:stride * (Ho - 1) + 1:stride, :]
    for j in range(1, kernel):
        out = torch.maximum(out, x[..., j:j + stride * (Ho - 1) + 1:stride, :])
    return out


def _max3_stride2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over windows of 3 with stride 2 and padding 1 along `dim`: out[i] = max(x[2i-1], x[2i], x[2i+1]) over the
    indices that exist."""
    n = x.shape[dim]
    n_out, n_odd = (n + 1) // 2, n // 2
    every_2nd = (slice(None),) * (x.ndim + dim) + (slice(None, None, 2),)
    even = x.narrow(dim, 0, n_out * 2 - 1)[every_2nd]  # x[2i], n_out of them
    odd = x.narrow(dim, 1, max(n_odd * 2 - 1, 0))[every_2nd]  # x[2i + 1], n_odd of them
    out = even.clone(memory_format=torch.contiguous_format)
    head = out.narrow(dim, 0, n_odd)
    torch.maximum(head, odd, out=head)  # x[2i + 1]
    if n_out > 1:
        tail = out.narrow(dim, 1, n_out - 1)
        torch.maximum(tail, odd.narrow(dim, 0, n_out - 1), out=tail)  # x[2i - 1]
    return out


def masked_per_frame(x: torch.Tensor, sc: torch.Tensor, temporal: torch.Tensor) -> Optional[torch.Tensor]:
    """x * (1/2 + sigmoid(sc * temporal)) for inference, one frame at a time; None where the path does not apply.

    `sc` is (B, C, 1, H, W) and `temporal` (B, 1, T, 1, 1). The full mask would be four passes over memory of x's size;
    per frame the mask stays in the cache. Same values, computed in the same order.
    """
    if torch.is_grad_enabled() or sc.shape[1:] != (x.shape[1], 1) + x.shape[3:] or not applies(x):
        return None
    out = torch.empty_like(x)
    for t in range(x.shape[2]):
        m = sc * temporal[:, :, t:t + 1]
        torch.mul(m.sigmoid_().add_(0.5), x[:, :, t:t + 1], out=out[:, :, t:t + 1])
    return out


def weights_key(x: torch.Tensor, weights: Sequence[torch.Tensor]) -> Optional[Hashable]:
    """A key that changes whenever one of `weights` changes (in place, by an optimiser, or replaced), for caching a
    tensor derived from them across inference forwards; None where no cache may be used (autograd on, not plain
    eager, fast paths off, or this torch has no tensor version counter).

    One write goes unseen: an in-place change through ``weight.data``, which PyTorch gives a version counter of its
    own. Write weights under ``torch.no_grad()`` or with ``load_state_dict`` (as optimisers and EMA helpers do), or
    switch the fast paths off.
    """
    if not (_enabled and _HAS_VERSION and not torch.is_grad_enabled() and _plain_eager(x)):
        return None
    return tuple((w.data_ptr(), w._version, w.device, w.dtype) for w in weights)


def cached(owner: object, key: Optional[Hashable], build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`build()`, kept on `owner` (as `_cpu_kernels_cache`) while `key` (from `weights_key`) stays the same."""
    if key is None:
        return build()
    entry: Optional[Tuple[Hashable, torch.Tensor]] = owner.__dict__.get('_cpu_kernels_cache')
    if entry is None or entry[0] != key:
        entry = (key, build())
        owner.__dict__['_cpu_kernels_cache'] = entry
    return entry[1]

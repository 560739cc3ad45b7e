""" Temporal building blocks of the video ResNets.

Every temporal operator here is added to a pretrained 2D ResNet without changing what that network computes at
initialisation: residual temporal kernels start at zero, series kernels start as the identity (a centred Dirac).
None of them is followed by BatchNorm or ReLU. The authors' released code put BN + ReLU after each zero-initialised
temporal conv; the branch then outputs exactly 0, ReLU passes no gradient at 0, and it never leaves zero. A bare zero
conv keeps the identity and still receives a gradient on the first step (dL/dW = dL/dy * x, x != 0).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cpu_kernels

__all__ = ['Conv3d', 'TemporalConv', 'temporal_conv', 'MultiScaleTemporal', 'TemporalPool', 'eq6_branches']


class Conv3d(nn.Conv3d):
    """nn.Conv3d (same parameters, same output); on the CPU it runs `cpu_kernels.conv`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if self.padding_mode != 'zeros' or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        return cpu_kernels.conv(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def eq6_branches(num_frames: int) -> int:
    """Number of temporal kernels of an M3D layer by the paper's Eq. 6, n = floor((T - 1) / 2), at least 1."""
    return max(1, (num_frames - 1) // 2)


class TemporalConv(Conv3d):
    """A (k, 1, 1) temporal convolution with full channel mixing, padded to keep (or stride) the clip length.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        kernel_size: Temporal kernel size (odd).
        stride: Temporal stride; a spatial stride may be given as a (t, h, w) tuple (P3D-B's parallel branch).
        dilation: Temporal dilation.
        init: 'zero' (residual branch) or 'dirac' (series branch, identity at the centre tap).
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 3,
            stride=1,
            dilation: int = 1,
            init: str = 'zero',
    ):
        stride = (stride, 1, 1) if isinstance(stride, int) else tuple(stride)
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            in_chs, out_chs, (kernel_size, 1, 1), stride=stride, padding=(pad, 0, 0), dilation=(dilation, 1, 1),
            bias=False)
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not hasattr(self, 'init'):
            return  # called from nn.Conv3d.__init__ before self.init exists
        nn.init.zeros_(self.weight)
        if self.init == 'dirac':
            if self.in_channels != self.out_channels:
                raise ValueError('A series (dirac) temporal conv needs in_chs == out_chs.')
            centre = self.kernel_size[0] // 2
            with torch.no_grad():
                self.weight[:, :, centre, 0, 0].copy_(torch.eye(self.out_channels))
        elif self.init != 'zero':
            raise ValueError(f"Unknown temporal init '{self.init}', expected 'zero' or 'dirac'.")

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The conv of `input`, plus `residual` (same shape as the output) if given: P3D-B's parallel sum."""
        if input.ndim != 5:  # unbatched (C, T, H, W)
            y = super().forward(input)
            return y if residual is None else y + residual
        if self.stride[1:] != (1, 1):
            # A 1x1 spatial kernel with a spatial stride reads every s-th pixel: subsample, then convolve in time
            # (P3D-B's parallel branch): the strided Conv3d would compute the skipped pixels' rows too.
            input = input[..., ::self.stride[1], ::self.stride[2]]
        return temporal_conv(
            input, self.weight, self.bias, self.stride[0], self.padding[0], self.dilation[0], residual=residual)


def temporal_conv(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """A (k, 1, 1) convolution of (B, C, T, H, W), computed as a (k, 1) conv2d on the free view (B, C, T, H * W).

    A (k, 1, 1) kernel never mixes H and W, and Conv3d kernels handle these thin kernels poorly; the 2D kernels do not.
    `residual`, if given, is added.
    """
    if bias is None:
        y = cpu_kernels.temporal_conv_gemm(x, weight, stride, padding, dilation, residual)
        if y is not None:
            return y
    H, W = x.shape[-2:]
    y = cpu_kernels.conv(x.flatten(3), weight.flatten(3), bias, (stride, 1), (padding, 0), (dilation, 1))
    y = y.unflatten(3, (H, W))
    return y if residual is None else y.add_(residual)  # in place: the conv's output is ours, and autograd allows it


class TemporalPool(nn.Module):
    """Temporal average pooling by `stride` (the 2D path and shortcut of a temporally strided block)."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, T = self.stride, x.shape[2]
        if T % s:
            return F.avg_pool3d(x, (s, 1, 1), (s, 1, 1))
        # Same result as avg_pool3d (for s = 2 bit for bit), and faster on the CPU, whose avg_pool3d kernel is
        # scalar code; elementwise ops on strided views are vectorised on every device and export as plain ops.
        if s == 2:
            return torch.add(x[:, :, 0::2], x[:, :, 1::2]).mul_(0.5)  # one new tensor, not two
        return x.unflatten(2, (T // s, s)).mean(3)


class MultiScaleTemporal(nn.Module):
    """An M3D layer's temporal part (Eq. 4-5): y = S(x) + sum_i T_i(S(x)), T_i a (3, 1, 1) conv of dilation i.

    The module takes S(x), the spatial conv's output (after its BN and ReLU), and returns y. With `stride` 2 the
    2D path is temporally average-pooled and the temporal kernels are strided. With n = 1 this is P3D-C.

    The parameters are the paper's n dilated kernels, but the forward pass runs one conv: the dilated kernels sum to a
    single (2n+1, 1, 1) kernel, and the 2D path is a kernel too (the identity at the centre tap, or the temporal
    average of a strided layer spread over the taps it reads). Assembling that kernel is differentiable, so training
    sees exactly Eq. 4's function and gradients, at the cost of one conv instead of n convs, a pooling and n sums.
    `fuse()` stores the assembled kernel as a plain conv, for inference and export.

    Args:
        chs: Channels of S(x).
        num_branches: n, the number of dilated temporal kernels (dilations 1..n).
        stride: Temporal stride.
    """

    def __init__(self, chs: int, num_branches: int = 1, stride: int = 1):
        super().__init__()
        if num_branches < 1:
            raise ValueError(f'An M3D layer needs at least one temporal kernel, got num_branches={num_branches}.')
        self.num_branches = num_branches
        self.stride = stride
        self.branches = nn.ModuleList([
            TemporalConv(chs, chs, 3, stride=stride, dilation=i + 1) for i in range(num_branches)])
        # The 2D path folds into the kernel when the taps it averages (t*s .. t*s + s-1) are among the 2n+1 read.
        self.fold_2d = stride <= num_branches + 1
        self.pool = nn.Identity() if self.fold_2d or stride == 1 else TemporalPool(stride)
        self.fused: Optional[TemporalConv] = None

    def kernel(self) -> torch.Tensor:
        """The (C, C, 2n+1, 1, 1) kernel of the layer: the n dilated kernels summed, plus the 2D path if folded."""
        n = self.num_branches
        taps = [None] * (2 * n + 1)
        for i, conv in enumerate(self.branches):
            d = i + 1
            for a in (-1, 0, 1):  # Eq. 5: taps at t + a * d
                w = conv.weight[:, :, a + 1, 0, 0]
                taps[n + a * d] = w if taps[n + a * d] is None else taps[n + a * d] + w
        if self.fold_2d:
            # A constant, made here rather than kept as a buffer: it is no state to save, load or randomise.
            eye = torch.eye(taps[n].shape[0], dtype=taps[n].dtype, device=taps[n].device) / self.stride
            for k in range(n, n + self.stride):  # identity (stride 1) or the mean of frames t*s .. t*s + s-1
                taps[k] = taps[k] + eye
        zero = torch.zeros_like(taps[n])
        return torch.stack([zero if t is None else t for t in taps], dim=2)[..., None, None]

    @torch.no_grad()
    def fuse(self) -> 'MultiScaleTemporal':
        """Store the assembled kernel as one plain conv, for inference; training after fusing is not supported."""
        if self.fused is None:
            w = self.kernel()
            self.fused = TemporalConv(w.shape[1], w.shape[0], w.shape[2], stride=self.stride).to(w)
            self.fused.weight.copy_(w)
            self.branches = nn.ModuleList()
        return self

    def _forward_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """kernel(); without autograd, kept between forwards until a weight changes (in place or replaced).

        Assembling is a pass over all (2n+1) C^2 taps per forward. Training (autograd on) always assembles, so that
        gradients flow to the n kernels.
        """
        key = cpu_kernels.weights_key(x, [b.weight for b in self.branches])
        return cpu_kernels.cached(self, key, self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            y = self.fused(x)
        else:
            y = temporal_conv(x, self._forward_kernel(x), None, self.stride, self.num_branches, 1)
        return y if self.fold_2d else y.add_(self.pool(x))


def resolve_branches(
        m3d_branches: Optional[Sequence[int]],
        layer_frames: Sequence[int],
) -> Tuple[int, ...]:
    """Branches per M3D layer: explicit values, or Eq. 6 on the clip length entering each layer."""
    if m3d_branches is None:
        return tuple(eq6_branches(t) for t in layer_frames)
    if isinstance(m3d_branches, int):
        return (m3d_branches,) * len(layer_frames)
    m3d_branches = tuple(int(n) for n in m3d_branches)
    if len(m3d_branches) != len(layer_frames):
        raise ValueError(
            f'm3d_branches needs one value per M3D layer ({len(layer_frames)}: the stem, if it has one, and stages '
            f'1-4), or one int for all, got {m3d_branches}.')
    return m3d_branches

""" Residual Attention Layer (RAL, Eq. 7-12): y = x / 2 + sigmoid(S * C * T) * x.

Identity at initialisation needs sigmoid(S * C * T) = 1/2, i.e. a product of zero. The released code zeroed the
last conv of all three branches, so every factor's gradient is a product of zeros and the layer never trains.
Here only the channel factor starts at zero (its last conv's weight and bias). On the first step that conv gets
the gradient dL/dM * S * T != 0 and moves; from the second step on every branch receives a gradient.
Zeroing exactly one factor is the least any product needs to start at zero.
"""
from typing import Optional, Type

import torch
import torch.nn as nn

from . import cpu_kernels
from .temporal import Conv3d

__all__ = ['ResidualAttention']


class ResidualAttention(nn.Module):
    """Residual Attention Layer with spatial, channel and temporal branches (any subset, for Table 2's ablation).

    Args:
        chs: Channels C of the input (B, C, T, H, W).
        num_frames: Temporal length T the layer is built for; the temporal branch maps T -> 2T -> T, so another T
            cannot be taken.
        branches: Which branches to use, a string of 's', 'c' and 't'.
        reduction: Channel bottleneck reduction r (the paper's 16).
        norm_layer: Normalisation after the first conv of each branch (BN, as in the paper's Fig. 5).
        act_layer: Activation after the first conv of each branch.
    """

    def __init__(
            self,
            chs: int,
            num_frames: int,
            branches: str = 'sct',
            reduction: int = 16,
            norm_layer: Optional[Type[nn.Module]] = None,
            act_layer: Type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        if not branches or set(branches) - set('sct'):
            raise ValueError(f"RAL branches must be a non-empty combination of 's', 'c', 't', got '{branches}'.")
        self.branches = branches
        self.num_frames = num_frames
        # Each branch is conv -> BN -> ReLU -> conv. The released order, conv -> ReLU -> BN, let the first conv die for
        # a whole batch: the channel branch's C/16 units were all negative for every clip of a batch (the pooled input
        # is positive and alike across clips), so the branch got no gradient. BN first centres them, and makes a bias
        # in that conv redundant.
        # 3D convs on singleton axes (not 2D ones), so that the model converts to channels_last_3d as a whole. Conv3d
        # is nn.Conv3d with oneDNN's kernel on the CPU: PyTorch's default there, for these (B, C, 1, H, W) maps, is its
        # slower reference kernel.
        # S_m: temporal mean -> 3x3 conv C -> 1 -> BN -> ReLU -> 1x1 conv (Eq. 9-10).
        if 's' in branches:
            self.spatial = nn.Sequential(
                Conv3d(chs, 1, (1, 3, 3), padding=(0, 1, 1), bias=False), nn.BatchNorm3d(1), act_layer(),
                Conv3d(1, 1, 1))
        # C_m: mean over T, H, W -> 1x1 conv C -> C/r -> BN -> ReLU -> 1x1 conv C/r -> C (Eq. 11-12).
        if 'c' in branches:
            mid = max(1, chs // reduction)
            self.channel = nn.Sequential(
                Conv3d(chs, mid, 1, bias=False), nn.BatchNorm3d(mid), act_layer(), Conv3d(mid, chs, 1))
        # T_m: mean over C, H, W -> T -> 2T -> BN -> ReLU -> 2T -> T ("same architecture as the channel branch").
        if 't' in branches:
            self.temporal = nn.Sequential(
                nn.Linear(num_frames, 2 * num_frames, bias=False), nn.BatchNorm1d(2 * num_frames), act_layer(),
                nn.Linear(2 * num_frames, num_frames))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The factor that starts at zero; the other branches keep PyTorch's default (random) init.
        last = {'c': 'channel', 't': 'temporal', 's': 'spatial'}
        zero_branch = next(last[b] for b in 'cts' if b in self.branches)
        final = getattr(self, zero_branch)[-1]
        nn.init.zeros_(final.weight)
        nn.init.zeros_(final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        if T != self.num_frames:
            raise ValueError(
                f'This Residual Attention Layer was built for {self.num_frames} frames at its depth but got {T}: '
                f'a RAL model takes only the clip length it was built for (num_frames). Build the model with '
                f'num_frames matching your clips, or use an M3D model without RAL.')
        spatial = channel = temporal = None
        if 's' in self.branches or 'c' in self.branches:
            x_s = x.mean(dim=2, keepdim=True)  # (B, C, 1, H, W), Eq. 9; its spatial mean is Eq. 11's x_c
            if 's' in self.branches:
                spatial = self.spatial(x_s)  # S_m (B, 1, 1, H, W)
            if 'c' in self.branches:
                channel = self.channel(x_s.mean(dim=(3, 4), keepdim=True))  # C_m (B, C, 1, 1, 1)
        if 't' in self.branches:
            temporal = self.temporal(x.mean(dim=(1, 3, 4))).view(B, 1, T, 1, 1)  # T_m (B, 1, T, 1, 1)
        sc = _product(spatial, channel)
        if sc is not None and temporal is not None:
            out = cpu_kernels.masked_per_frame(x, sc, temporal)
            if out is not None:
                return out
        # Eq. 8: M = sigmoid(S_m * C_m * T_m); Eq. 7: y = x / 2 + M * x, i.e. half of x is always kept and the mask
        # can at most double it.
        return x * (0.5 + torch.sigmoid(_product(sc, temporal)))


def _product(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """a * b of the attention factors present (an absent branch is None)."""
    return b if a is None else a if b is None else a * b

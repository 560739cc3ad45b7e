""" Spatio-temporal units: what each family of the paper does around a 2D ResNet's spatial conv.

A video ResNet block (and its stem) has one spatial conv followed by BatchNorm and ReLU: the block's 3x3 conv, the
stem's 7x7 conv. A unit says what a family makes of it, and nothing else differs between the families:

- the spatial conv it needs (`spatial_conv`): (1, k, k) for all but I3D's (3, k, k);
- its temporal part, applied to s = act(norm(conv(x))), the spatial conv's output after its BN and ReLU, with x the
  conv's input: ``unit(s, x)``, one call for every unit;
- its temporal-stride policy: what the unit does where the block halves the clip length, and whether the block's
  shortcut conv strides in time (`strided_shortcut`) or is average-pooled like the 2D path.

    unit          temporal part (s = S(x))                               family
    '2d'          s (average-pooled in time where the block is strided)  C2D; M3D's blocks without an M3D layer
    '3d'          s, the spatial conv itself being 3 x k x k             I3D
    'series'      T(s), T a dirac-initialised (3, 1, 1) conv              P3D-A
    'parallel'    s + T(x), T on the conv's input                        P3D-B
    'multiscale'  s + sum_i T_i(s), dilations 1..n (Eq. 4-5)            M3D; P3D-C is n = 1

Why the spatial conv, its BN and ReLU are not the unit's own children: the network keeps torchvision's parameter names
(`layer1.0.conv2.weight`, `layer1.0.bn2.weight`), so that ImageNet weights inflate by reshaping alone and saved files
keep their keys. The block holds them under those names; the unit holds the temporal part under the block's
`temporal` (the stem's `stem_temporal`).

A new temporal operator is a `Unit` subclass registered with `register_unit`, and a family that names it.
"""
from typing import Callable, Dict, Type, Union

import torch
import torch.nn as nn

from .temporal import Conv3d, MultiScaleTemporal, TemporalConv, TemporalPool

__all__ = [
    'Unit', 'Unit2d', 'Unit3d', 'SeriesUnit', 'ParallelUnit', 'MultiScaleUnit', 'register_unit', 'get_unit',
    'list_units',
]


class Unit(nn.Module):
    """Base class of the spatio-temporal units.

    Subclasses take ``(in_chs, out_chs, stride=1, temporal_stride=1, num_branches=1)``: the spatial conv's input and
    output channels, its spatial stride, the block's temporal stride, and the number of temporal kernels (only units
    with `has_branches` use it).
    """
    spatial_kt: int = 1  # temporal taps of the spatial conv
    strided_shortcut: bool = False  # the block's 1x1 shortcut conv strides in time (else it is average-pooled)
    has_branches: bool = False  # takes num_branches (M3D's n)

    @classmethod
    def spatial_conv(cls, in_chs: int, out_chs: int, kernel_size: int, stride: int, temporal_stride: int) -> Conv3d:
        """The (spatial_kt, k, k) conv this unit follows; temporally strided only when it is 3D (I3D)."""
        kt = cls.spatial_kt
        return Conv3d(
            in_chs, out_chs, (kt, kernel_size, kernel_size),
            stride=(temporal_stride if kt > 1 else 1, stride, stride),
            padding=(kt // 2, kernel_size // 2, kernel_size // 2), bias=False)

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """s: the spatial conv's output after its BN and ReLU; x: the spatial conv's input."""
        raise NotImplementedError


_UNITS: Dict[str, Type[Unit]] = {}


def register_unit(name: str) -> Callable[[Type[Unit]], Type[Unit]]:
    """Class decorator: make a unit available to `VideoResNet(unit=name)` (and so to a saved model's arguments)."""
    def register(cls: Type[Unit]) -> Type[Unit]:
        if not (isinstance(cls, type) and issubclass(cls, Unit)):
            raise TypeError(f'register_unit({name!r}) takes a subclass of m3d_zoo.layers.Unit, got {cls!r}.')
        if name in _UNITS and _UNITS[name] is not cls:
            raise ValueError(f'A unit named {name!r} is registered already ({_UNITS[name].__qualname__}).')
        _UNITS[name] = cls
        return cls
    return register


def get_unit(unit: Union[str, Type[Unit]]) -> Type[Unit]:
    """A registered unit by name (a Unit subclass passes through)."""
    if isinstance(unit, type) and issubclass(unit, Unit):
        return unit
    if unit not in _UNITS:
        raise ValueError(f'Unknown unit {unit!r}, expected one of {list_units()} (or a registered Unit subclass).')
    return _UNITS[unit]


def list_units() -> tuple:
    return tuple(_UNITS)


def unit_name(cls: Type[Unit]) -> str:
    """The registered name of a unit class, for a model's construction record."""
    for name, registered in _UNITS.items():
        if registered is cls:
            return name
    raise ValueError(f'{cls.__qualname__} is not registered: decorate it with @register_unit(name) so that models '
                     f'built with it can be saved and rebuilt.')


@register_unit('2d')
class Unit2d(Unit):
    """No temporal modelling: s itself, average-pooled in time where the block is temporally strided."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1, num_branches: int = 1):
        super().__init__()
        self.pool = TemporalPool(temporal_stride) if temporal_stride > 1 else nn.Identity()

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.pool(s)


@register_unit('3d')
class Unit3d(Unit):
    """I3D: the spatial conv is 3 x k x k and carries the temporal stride, as does the shortcut conv."""
    spatial_kt = 3
    strided_shortcut = True

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1, num_branches: int = 1):
        super().__init__()

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return s


@register_unit('series')
class SeriesUnit(Unit, TemporalConv):
    """P3D-A: T(s), T a (3, 1, 1) conv that starts as the identity (a centred Dirac) and strides in time.

    The unit is the conv itself (`temporal.weight`, the key P3D-A models have always had).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1, num_branches: int = 1):
        TemporalConv.__init__(self, out_chs, out_chs, 3, stride=temporal_stride, init='dirac')

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return TemporalConv.forward(self, s)


@register_unit('parallel')
class ParallelUnit(Unit):
    """P3D-B: s + T(x), T a zero-initialised (3, 1, 1) conv on the spatial conv's input, carrying its spatial stride;
    where the block is temporally strided T strides too and s is average-pooled."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1, num_branches: int = 1):
        super().__init__()
        self.conv = TemporalConv(in_chs, out_chs, 3, stride=(temporal_stride, stride, stride))
        self.pool = TemporalPool(temporal_stride) if temporal_stride > 1 else nn.Identity()

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, residual=self.pool(s))


@register_unit('multiscale')
class MultiScaleUnit(Unit, MultiScaleTemporal):
    """M3D layer (Eq. 4-5): s + sum_i T_i(s), n zero-initialised (3, 1, 1) convs of dilation i = 1..n; strided, the 2D
    path is average-pooled and the kernels stride. P3D-C is n = 1."""
    has_branches = True

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, temporal_stride: int = 1, num_branches: int = 1):
        MultiScaleTemporal.__init__(self, out_chs, num_branches, temporal_stride)

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return MultiScaleTemporal.forward(self, s)

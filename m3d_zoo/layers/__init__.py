from . import cpu_kernels
from .heads import ReidHead
from .ral import ResidualAttention
from .temporal import MultiScaleTemporal, TemporalConv, TemporalPool, eq6_branches, resolve_branches
from .units import (
    MultiScaleUnit, ParallelUnit, SeriesUnit, Unit, Unit2d, Unit3d, get_unit, list_units, register_unit)

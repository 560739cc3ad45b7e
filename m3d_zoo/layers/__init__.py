from .heads import ReidHead
from .ral import ResidualAttention
from .temporal import MultiScaleTemporal, TemporalConv, TemporalPool, eq6_branches, resolve_branches

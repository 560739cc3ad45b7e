""" The construction record: every zoo model knows the exact arguments it was built with.

A saved model (Hub repo, local folder, training checkpoint) stores `get_model_args(model)`, and every path that
rebuilds a model calls `create_model(architecture, **args)` with it and nothing else, so a model built with any
arguments loads back as the same architecture.
"""
import functools
import inspect
import json
from typing import Any, Callable, Dict

import torch.nn as nn

__all__ = ['records_args', 'get_model_args', 'has_model_args', 'update_model_args']

_RECORD = '_m3d_zoo_model_args'


def records_args(init: Callable) -> Callable:
    """Decorator for a zoo model's ``__init__``: keep the arguments it was called with, defaults filled in.

    Layer types left at their default (``norm_layer``, ``act_layer``) are not recorded: a class is not a value a
    config file can hold, and the default is what a rebuild gets anyway.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        record = {}
        for name, value in list(bound.arguments.items())[1:]:
            param = signature.parameters[name]
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                record.update(value)
            elif not (isinstance(value, type) and value is param.default):
                record[name] = value
        # The outermost __init__ finishes last, so a subclass's record replaces its base class's.
        object.__setattr__(self, _RECORD, record)

    return wrapper


def _jsonable(value: Any) -> Any:
    from ..layers.units import Unit, unit_name
    if isinstance(value, type) and issubclass(value, Unit):
        return unit_name(value)
    raise TypeError(f'{value!r} ({type(value).__name__}) is not a JSON value')


def has_model_args(model: nn.Module) -> bool:
    """Whether `model` was built by m3d_zoo and so has a construction record."""
    return hasattr(model, _RECORD)


def get_model_args(model: nn.Module) -> Dict[str, Any]:
    """The arguments that rebuild `model`: ``create_model(model.pretrained_cfg['architecture'], **args)``.

    JSON types only (tuples become lists), as a config file holds them; ``num_classes`` is the current one (a
    classifier reset after construction counts).

    Raises:
        TypeError: `model` was not built by m3d_zoo (it has no construction record).
        ValueError: an argument cannot be written to a config file (e.g. a custom ``norm_layer`` class).
    """
    if not has_model_args(model):
        raise TypeError(f'{type(model).__name__} has no construction record: only m3d_zoo models '
                        f'(m3d_zoo.create_model) can be saved and rebuilt by m3d_zoo.')
    args = dict(getattr(model, _RECORD), num_classes=model.num_classes)
    try:
        return json.loads(json.dumps(args, default=_jsonable))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f'{type(model).__name__} was built with an argument that a config file cannot hold ({e}); use the '
            f'registered names (e.g. unit="multiscale") and default layer types to save and rebuild it.') from e


def update_model_args(model: nn.Module, **changes: Any) -> None:
    """Record a change made after construction that a rebuild must repeat (e.g. a new classifier size)."""
    object.__setattr__(model, _RECORD, dict(getattr(model, _RECORD, {}), **changes))

""" Charts as PNG, drawn with matplotlib (the optional `plot` extra): CMC curves, one or several overlaid, and the
curves of a training run (loss, accuracy, validation and test mAP) from its metrics.jsonl.

Figures are drawn with matplotlib's object-oriented API (no pyplot: no global state, no display needed), saved with
a tight bounding box so that nothing is cut, legends included, and written atomically.
"""
import json
import logging
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from .._io import atomic_path

__all__ = ['MatplotlibMissingError', 'require_matplotlib', 'save_cmc_png', 'save_training_curves']

_logger = logging.getLogger(__name__)

_DPI = 100
_LEGEND_WIDTH = 80  # characters per line of a legend entry; longer labels (paths) wrap


class MatplotlibMissingError(ImportError):
    """A chart was asked for, and matplotlib (the `plot` extra) is not installed."""


def require_matplotlib(what: str = 'Drawing charts') -> ModuleType:
    """matplotlib, or `MatplotlibMissingError` naming the install command where it cannot be imported."""
    try:
        import matplotlib
    except ImportError as e:
        raise MatplotlibMissingError(f'{what} needs matplotlib, which is not installed: pip install "m3d_zoo[plot]" '
                                     f'(or pip install matplotlib).') from e
    return matplotlib


def _figure(size: Sequence[float], rows: int = 1):
    """A matplotlib Figure of `size` (width, height) pixels and its axes, `rows` of them sharing the x axis."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, color='0.88')
    return fig, axes


def _save(fig, path: Union[str, Path]) -> Path:
    """Save `fig` as PNG at `path` atomically, the bounding box grown to hold everything drawn (long legends too)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=_DPI, bbox_inches='tight', pad_inches=0.15, facecolor='white')
    return path


def _legend_below(ax) -> None:
    """The legend under the axes and their x label (3.5 font sizes down), one entry per line: outside the curves,
    and never cut (see `_save`)."""
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, 0), borderaxespad=3.5, ncol=1, frameon=False)


def save_cmc_png(
        path: Union[str, Path],
        curves: Mapping[str, Sequence[float]],
        title: str = 'CMC',
        size: Sequence[int] = (640, 480),
) -> Path:
    """Draw CMC curves (fractions in [0, 1] at ranks 1..R) on one chart and save it as PNG.

    Several curves (runs, models, files) are overlaid for comparison; the legend, below the chart, gives each its
    Rank-1 (labels longer than 80 characters wrap).

    Args:
        path: Output file.
        curves: Legend label -> CMC values.
        title: Chart title.
        size: (width, height) in pixels of the chart; the picture grows to hold the legend.

    Raises:
        ValueError: No curve, or an empty one.
        MatplotlibMissingError: matplotlib is not installed.
    """
    require_matplotlib()
    if not curves:
        raise ValueError('no CMC curve to draw')
    empty = [label for label, cmc in curves.items() if len(cmc) == 0]
    if empty:
        raise ValueError(f'empty CMC curve for {empty}')
    fig, (ax,) = _figure(size)
    max_rank = max(len(c) for c in curves.values())
    for label, cmc in curves.items():
        values = 100 * np.asarray(cmc, dtype=np.float64)
        ax.plot(np.arange(1, len(values) + 1), values, marker='o' if max_rank <= 30 else None, markersize=3,
                linewidth=1.8, label=textwrap.fill(f'{label} (Rank-1 {values[0]:.1f}%)', _LEGEND_WIDTH))
    ax.set(title=title, xlabel='rank', ylabel='matches within rank (%)', xlim=(0.5, max_rank + 0.5), ylim=(0, 101))
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_below(ax)
    return _save(fig, path)


def _read_metrics(path: Path) -> List[Dict[str, Any]]:
    """The JSON objects of a metrics.jsonl; a line that is not one (e.g. cut by a kill while written) is skipped."""
    records, bad = [], 0
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif line.strip():
                bad += 1
    if bad:
        _logger.warning(f'{path}: {bad} line(s) that are not JSON objects skipped')
    return records


def _series(records: Sequence[Mapping[str, Any]], x: str, y: str) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of the records that have both, one point per x (the last logged: a resumed run logs some again)."""
    points = {r[x]: r[y] for r in records if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))}
    xs = sorted(points)
    return np.asarray(xs, dtype=np.float64), np.asarray([points[k] for k in xs], dtype=np.float64)


def save_training_curves(
        metrics_path: Union[str, Path],
        path: Union[str, Path],
        size: Sequence[int] = (720, 780),
) -> Path:
    """Draw a training run's curves from its metrics.jsonl and save them as PNG: the training loss, the training
    accuracy, and the mAP and Rank-1 of each evaluated split (validation solid, test dashed), against the optimizer
    step (the epoch for logs without steps).

    Args:
        metrics_path: The run's metrics.jsonl (`epoch` events with loss/acc, `eval` events with mAP/rank1 and their
            `split`).
        path: Output file.
        size: (width, height) in pixels of the three charts; the picture grows to hold the legends.

    Raises:
        FileNotFoundError: `metrics_path` does not exist.
        ValueError: It holds no epoch yet.
        MatplotlibMissingError: matplotlib is not installed.
    """
    require_matplotlib()
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        raise FileNotFoundError(f'{metrics_path} does not exist: give the metrics.jsonl that m3d-zoo train writes.')
    records = _read_metrics(metrics_path)
    epochs = [r for r in records if r.get('event') == 'epoch']
    if not epochs:
        raise ValueError(f'{metrics_path} holds no epoch yet: nothing to draw.')
    evals = [r for r in records if r.get('event') == 'eval' and r.get('weights', 'last') == 'last']
    x = 'step' if all('step' in r for r in epochs + evals) else 'epoch'
    fig, (ax_loss, ax_acc, ax_map) = _figure(size, rows=3)
    ax_loss.plot(*_series(epochs, x, 'loss'), marker='o', markersize=3, color='C0')
    ax_loss.set(ylabel='training loss', title=f'Training curves: {metrics_path.parent.name or metrics_path.name}')
    acc_x, acc = _series(epochs, x, 'acc')
    if len(acc):
        ax_acc.plot(acc_x, 100 * acc, marker='o', markersize=3, color='C1')
    else:
        ax_acc.text(0.5, 0.5, 'no accuracy logged', transform=ax_acc.transAxes, ha='center', va='center')
    ax_acc.set(ylabel='training accuracy (%)')
    splits = list(dict.fromkeys(r.get('split', 'test') for r in evals))
    for i, split in enumerate(sorted(splits, key=lambda s: (s != 'val', s))):
        runs = [r for r in evals if r.get('split', 'test') == split]
        style = '-' if split == 'val' else '--'
        for key, label, colour in (('mAP', 'mAP', f'C{2 + 2 * i}'), ('rank1', 'Rank-1', f'C{3 + 2 * i}')):
            xs, ys = _series(runs, x, key)
            ax_map.plot(xs, 100 * ys, style, marker='o', markersize=3, color=colour,
                        label=f'{"validation" if split == "val" else split} {label}')
    if evals:
        _legend_below(ax_map)
    else:
        ax_map.text(0.5, 0.5, 'no evaluation yet', transform=ax_map.transAxes, ha='center', va='center')
    ax_map.set(ylabel='evaluation (%)', xlabel='optimizer step' if x == 'step' else 'epoch', ylim=(0, 101))
    ax_map.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)

""" What every benchmark script shares: the machine's description, device synchronisation, and the markdown / csv /
json output of a report (a dict with `machine`, `settings`, `rows` and optionally `checks`).

The scripts import it from their own folder (`python benchmarks/<script>.py` puts that folder on sys.path).
"""
import csv
import io
import json
import os
import platform
import statistics
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

Columns = Sequence[Tuple[str, str]]  # (header, row key)


def machine_info(device: torch.device) -> Dict[str, Any]:
    """Python, torch, platform, CPU model and thread count, and the GPU's name on CUDA."""
    info = dict(
        python=platform.python_version(), torch=torch.__version__, platform=platform.platform(),
        cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(), threads=torch.get_num_threads(),
        device=str(device))
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')]
        if names:
            info['cpu'] = names[0]
    except OSError:
        pass
    if device.type == 'cuda':
        info['device_name'] = torch.cuda.get_device_name(device)
    return info


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer sees the work done."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elif device.type != 'cpu' and hasattr(torch, device.type) and hasattr(getattr(torch, device.type), 'synchronize'):
        getattr(torch, device.type).synchronize()


def fmt(v: Any) -> str:
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, float):
        return f'{v:.3f}' if abs(v) < 10 else f'{v:.1f}'
    return str(v)


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Columns, text_keys: Sequence[str] = ('label',)) -> str:
    """A markdown table of `rows`: text columns left-aligned, numbers right-aligned, None as '-'."""
    lines = ['| ' + ' | '.join(c for c, _ in columns) + ' |',
             '|' + '|'.join('---' if k in text_keys else '---:' for _, k in columns) + '|']
    lines += ['| ' + ' | '.join(fmt(r.get(k)) for _, k in columns) + ' |' for r in rows]
    return '\n'.join(lines)


def checks_markdown(checks: Sequence[Dict[str, Any]]) -> str:
    """The targets a run was checked against, one line each, 'ok' or 'MISSED'."""
    if not checks:
        return ''
    lines = ['', 'Targets:', '']
    lines += [f"- {c['check']}: {c['value']:.3f} {'ok' if c['ok'] else 'MISSED'}" for c in checks]
    return '\n'.join(lines)


def to_csv(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as csv (list-valued fields left out)."""
    if not rows:
        return ''
    buf = io.StringIO()
    keys = [k for k, v in rows[0].items() if not isinstance(v, (list, tuple, dict))]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def emit(report: Dict[str, Any], fmt_name: str, to_markdown: Callable[[Dict[str, Any]], str],
         output: Optional[str] = None) -> str:
    """Print the report as markdown, csv or json (and write it to `output`); returns the text."""
    text = dict(md=to_markdown, csv=lambda r: to_csv(r['rows']), json=lambda r: json.dumps(r, indent=2))[fmt_name](
        report)
    print(text)
    if output:
        with open(output, 'w') as f:
            f.write(text + '\n')
    return text


def stderr_logger(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr (the table goes to stdout), or nothing."""
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def add_output_args(p: Any) -> None:
    """--format, --output and --quiet, the same in every benchmark."""
    p.add_argument('--format', default='md', choices=('md', 'csv', 'json'), help='output format (default: md)')
    p.add_argument('--output', default=None, help='also write the output to this file')
    p.add_argument('--quiet', action='store_true', help='no progress on stderr')


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the per-round ratios: a ratio is only ever taken between two figures of the same round."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))

""" Results as text: the one place that formats mAP / Rank-k, for the summary line, the CLI's table, the benchmarks'
tables and the model card.

Results are m3d_zoo.eval's dicts (fractions in [0, 1]; `aggregate_results` adds `<metric>_std` and `num_splits`).
Every text shows them as percentages with one decimal, '80.0 ± 2.1' for a mean and std over splits, and names the
protocol (AP formula, gallery convention) next to the numbers.
"""
from typing import Any, Dict, Mapping, Optional

from .metrics import AP_MODES

__all__ = ['METRIC_LABELS', 'format_protocol', 'format_results', 'format_table', 'results_row']

# Result key -> label, in the order every text shows them.
METRIC_LABELS = {'mAP': 'mAP', 'rank1': 'Rank-1', 'rank5': 'Rank-5', 'rank10': 'Rank-10', 'rank20': 'Rank-20',
                 'mINP': 'mINP'}


def _percent(results: Mapping[str, Any], key: str) -> str:
    text = f'{100 * results[key]:.1f}'
    if f'{key}_std' in results:
        text += f' ± {100 * results[key + "_std"]:.1f}'
    return text


def results_row(results: Mapping[str, Any]) -> Dict[str, str]:
    """The metrics `results` hold, as table cells: {'mAP (%)': '74.1', 'Rank-1 (%)': '84.4', ...}."""
    return {f'{label} (%)': _percent(results, key) for key, label in METRIC_LABELS.items() if key in results}


def format_protocol(results: Mapping[str, Any]) -> str:
    """How the numbers were obtained: AP formula, gallery convention, distance, splits and the queries counted.

    Results read back from a JSON file may lack some of these; what is missing is left out, and an unknown AP
    formula is said to be so.
    """
    ap_mode = results.get('ap_mode')
    parts = [f'AP: {AP_MODES.get(ap_mode, ap_mode or "formula not recorded")}',
             f'gallery: {results.get("gallery_mode") or "as given"}']
    if results.get('same_camera'):
        parts.append('same-camera matches counted')
    if results.get('metric'):
        parts.append(f'distance: {results["metric"]}')
    if results.get('num_splits'):
        parts.append(f'mean ± std over {results["num_splits"]} random splits')
    if 'num_queries' in results:
        queries = f'{results["num_valid_queries"]}/{results["num_queries"]} queries with a match'
        if results.get('num_skipped_queries'):
            queries += f', {results["num_skipped_queries"]} skipped'
        parts.append(queries)
    return '; '.join(parts)


def format_table(rows: Mapping[str, Mapping[str, Any]], label: str) -> str:
    """A Markdown table with one row per name.

    Args:
        rows: {name: {column: cell}}, e.g. {dataset: results_row(results)}. The columns are the rows' keys in the
            order they first appear; a row without a column leaves its cell empty. Floats show two decimals, other
            cells as they are.
        label: Header of the first column (the names).
    """
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = [f'| {label} | ' + ' | '.join(columns) + ' |', '|---|' + '---|' * len(columns)]
    for name, row in rows.items():
        cells = (_cell(row[c]) if c in row else '' for c in columns)
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _cell(value: Any) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)


def format_results(results: Mapping[str, Any], name: Optional[str] = None, table: bool = False) -> str:
    """The text of one evaluation: its metrics and, always, the protocol they were computed with.

    Args:
        results: Results of `evaluate_rank` / `evaluate_embeddings`, or of `aggregate_results`.
        name: What was evaluated, e.g. 'MARS'.
        table: A Markdown table (one row, headed by `name`) and the protocol on the line below; otherwise one line,
            'MARS: mAP 74.1 | Rank-1 84.4 | ... [AP: non-interpolated AP; gallery: ...]'.
    """
    if table:
        return format_table({name or '': results_row(results)}, 'results') + '\n' + format_protocol(results)
    metrics = ' | '.join(f'{label} {_percent(results, key)}' for key, label in METRIC_LABELS.items() if key in results)
    return (f'{name}: ' if name else '') + f'{metrics} [{format_protocol(results)}]'

""" ReID evaluation: CMC, mAP (two AP formulas), split aggregation, k-reciprocal re-ranking, and results as text. """
from .metrics import (
    AP_MODES, EvaluationError, FeatureDistance, aggregate_results, compute_distance_matrix, evaluate_embeddings,
    evaluate_rank)
from .report import METRIC_LABELS, format_protocol, format_results, format_table, results_row
from .rerank import re_ranking

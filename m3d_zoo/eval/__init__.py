""" ReID evaluation: CMC, mAP (two AP formulas), split aggregation and k-reciprocal re-ranking. """
from .metrics import (
    AP_MODES, EvaluationError, FeatureDistance, aggregate_results, compute_distance_matrix, evaluate_embeddings,
    evaluate_rank, format_results)
from .rerank import re_ranking

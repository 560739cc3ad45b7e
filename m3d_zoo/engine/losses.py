""" ReID losses: identity cross-entropy (optionally label-smoothed) and batch-hard triplet, over `forward_train`.

`ReidLoss` takes the dict a zoo model's `forward_train` returns. Two-stream models give `logits` and `feat` as
(spatial, temporal) pairs: each stream gets its own loss terms, summed, as the paper trains both streams.
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['batch_hard_triplet_loss', 'TripletLoss', 'ReidLoss']


def batch_hard_triplet_loss(
        feat: torch.Tensor,
        targets: torch.Tensor,
        margin: float = 0.3,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Batch-hard triplet loss (Hermans et al., 2017) on Euclidean distances.

    For every anchor: its farthest positive and its closest negative in the batch. Anchors without a positive or a
    negative in the batch are left out (a random batch can hold a single tracklet of an identity).

    Args:
        feat: Features (B, D).
        targets: Identity labels (B,).
        margin: Hinge margin; <= 0 uses the soft margin log(1 + exp(d_ap - d_an)).

    Returns:
        (loss, fraction of anchors whose closest negative is farther than their farthest positive).
    """
    feat = feat.float()  # distances in fp32 even under autocast: squared norms overflow fp16
    sq = feat.pow(2).sum(1)
    dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * feat @ feat.t()).clamp_min(1e-12).sqrt()
    same = targets.unsqueeze(1) == targets.unsqueeze(0)
    eye = torch.eye(len(targets), dtype=torch.bool, device=feat.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        zero = feat.sum() * 0.  # keeps the graph connected, so DDP sees a gradient for every parameter
        return zero, zero.detach()
    d_ap = torch.where(pos, dist, torch.zeros_like(dist)).amax(1)[valid]
    d_an = torch.where(neg, dist, torch.full_like(dist, float('inf'))).amin(1)[valid]
    if margin > 0:
        loss = F.relu(d_ap - d_an + margin).mean()
    else:
        loss = F.softplus(d_ap - d_an).mean()
    return loss, (d_an > d_ap).float().mean().detach()


class TripletLoss(nn.Module):
    """Module form of `batch_hard_triplet_loss`; returns the loss only."""

    def __init__(self, margin: float = 0.3):
        super().__init__()
        self.margin = margin

    def forward(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet_loss(feat, targets, self.margin)[0]


def _streams(x: Union[torch.Tensor, Sequence[torch.Tensor], None]):
    if x is None:
        return []
    return list(x) if isinstance(x, (tuple, list)) else [x]


class ReidLoss(nn.Module):
    """Weighted cross-entropy on the logits plus batch-hard triplet on the metric feature.

    Args:
        ce_weight: Weight of the cross-entropy term (0: none).
        label_smoothing: Label smoothing of the cross-entropy.
        triplet_weight: Weight of the triplet term (0: none).
        triplet_margin: Triplet margin (<= 0: soft margin).
    """

    def __init__(
            self,
            ce_weight: float = 1.0,
            label_smoothing: float = 0.0,
            triplet_weight: float = 0.0,
            triplet_margin: float = 0.3,
    ):
        super().__init__()
        self.ce_weight = ce_weight
        self.label_smoothing = label_smoothing
        self.triplet_weight = triplet_weight
        self.triplet_margin = triplet_margin

    def forward(self, out: Dict[str, object], targets: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """
        Args:
            out: `model.forward_train(x)`: `logits` (tensor, pair of tensors or None) and `feat`.
            targets: Identity labels (B,).

        Returns:
            (total loss, logged values: loss, loss_ce, loss_triplet, acc, triplet_acc as floats).
        """
        total = 0.
        logs: Dict[str, float] = {}
        if self.ce_weight > 0:
            logits = _streams(out.get('logits'))
            if not logits:
                raise ValueError('cross-entropy needs logits: build the model with num_classes > 0 (the number of '
                                 'training identities)')
            ce = sum(F.cross_entropy(lg.float(), targets, label_smoothing=self.label_smoothing) for lg in logits)
            total = total + self.ce_weight * ce
            logs['loss_ce'] = float(ce.detach())
            with torch.no_grad():
                mean_logits = sum(lg.float() for lg in logits) / len(logits)
                logs['acc'] = float((mean_logits.argmax(1) == targets).float().mean())
        if self.triplet_weight > 0:
            feats = _streams(out.get('feat'))
            parts = [batch_hard_triplet_loss(f, targets, self.triplet_margin) for f in feats]
            tri = sum(p[0] for p in parts)
            total = total + self.triplet_weight * tri
            logs['loss_triplet'] = float(tri.detach())
            logs['triplet_acc'] = float(sum(p[1] for p in parts) / len(parts))
        logs['loss'] = float(total.detach())
        return total, logs

""" ReID heads: global average pooling over (T, H, W), then an embedding and an optional identity classifier.

`bnneck` is the modern ReID head (Luo et al., "Bag of Tricks"): BN on the pooled feature, a bias-free classifier after
it; the triplet loss sees the feature before the BN, the test embedding is the BN output. `paper` is the released
code's: Linear 2048 -> 128 -> (training only) BN -> ReLU -> Dropout -> classifier; the test embedding is the 128-d
linear output. Both are linear maps in eval mode, so averaging before or after the head gives the same embedding.
"""
import numbers
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

__all__ = ['ReidHead']


def _check_int(name: str, value: Any, minimum: int, what: str) -> None:
    """Raise TypeError unless `value` is an int (bools, floats and strings are not converted), ValueError if small."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{name} must be an int >= {minimum} ({what}), got {value!r} ({type(value).__name__}).')
    if value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum} ({what}), got {value}.')


class ReidHead(nn.Module):
    """Pooling, embedding and classifier.

    Args:
        in_chs: Channels of the backbone's feature map.
        num_classes: Identities of the classifier; 0 for no classifier (the model then returns embeddings).
        head: 'bnneck' or 'paper'.
        embed_dim: Size of the embedding; `None` keeps in_chs for bnneck. The paper head uses 128.
        drop_rate: Dropout before the classifier.
    """

    def __init__(
            self,
            in_chs: int,
            num_classes: int = 0,
            head: str = 'bnneck',
            embed_dim: Optional[int] = None,
            drop_rate: float = 0.,
    ):
        super().__init__()
        _check_int('in_chs', in_chs, 1, "the backbone's feature channels")
        self.check_args(num_classes, head, embed_dim, drop_rate)
        self.head_type = head
        self.in_chs = in_chs
        self.drop_rate = drop_rate
        if head == 'paper':
            embed_dim = embed_dim or 128
            self.fc = nn.Linear(in_chs, embed_dim)
            self.bn = nn.BatchNorm1d(embed_dim)
            self.act = nn.ReLU()
        else:
            self.fc = nn.Linear(in_chs, embed_dim) if embed_dim else nn.Identity()
            self.bn = nn.BatchNorm1d(embed_dim or in_chs)
            self.bn.bias.requires_grad_(False)  # BNNeck: no shift, so the classifier sees a centred feature
        self.embed_dim = embed_dim or in_chs
        self.drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    @staticmethod
    def check_args(num_classes: Any, head: Any, embed_dim: Any, drop_rate: Any) -> None:
        """Raise a clear error for a head argument the head cannot be built with (before any layer is built).

        Raises:
            TypeError: an argument of the wrong type (e.g. a string or float where an int is needed).
            ValueError: a value out of range or an unknown head.
        """
        _check_int('num_classes', num_classes, 0, '0 for a model without classifier')
        if embed_dim is not None:
            _check_int('embed_dim', embed_dim, 1, 'or None for the default size')
        if not isinstance(head, str) or head not in ('bnneck', 'paper'):
            raise ValueError(f"Unknown head {head!r}, expected 'bnneck' or 'paper'.")
        if drop_rate is not None:
            if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real):
                raise TypeError(f'drop_rate must be a number in [0, 1) (the dropout probability), got {drop_rate!r} '
                                f'({type(drop_rate).__name__}).')
            if not 0 <= drop_rate < 1:
                raise ValueError(f'drop_rate must be in [0, 1) (the dropout probability; 1 would drop every '
                                 f'feature), got {drop_rate}.')

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.embed_dim, num_classes, bias=self.head_type == 'paper')
        nn.init.normal_(fc.weight, std=0.001)
        if fc.bias is not None:
            nn.init.zeros_(fc.bias)
        return fc

    def reset(self, num_classes: int) -> None:
        self.check_args(num_classes, self.head_type, None, None)
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4)) if x.ndim == 5 else x

    def features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pooled feature `feat` (for a metric loss), embedding `emb` (retrieval), `pre_cls` (classifier input)."""
        feat = self.pool(x)
        if self.head_type == 'paper':
            emb = self.fc(feat)
            return dict(feat=emb, emb=emb, pre_cls=self.act(self.bn(emb)))
        feat = self.fc(feat)
        emb = self.bn(feat)
        return dict(feat=feat, emb=emb, pre_cls=emb)

    def forward_train(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.features(x)
        out['logits'] = self.classifier(self.drop(out['pre_cls'])) if self.num_classes > 0 else None
        return out

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        out = self.features(x)
        if pre_logits or self.num_classes <= 0:
            return out['emb']
        return self.classifier(self.drop(out['pre_cls']))

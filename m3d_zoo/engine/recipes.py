""" Training recipes: every hyper-parameter of a run, in one dataclass, with the paper's and a modern preset.

`paper` is the M3D paper's 3D-model recipe (AAAI 2019, Sec. "Implementation details"): cross-entropy on the paper
head, SGD with lr 0.01 (the head at 10x, as fine-tuning from ImageNet usually does), weight decay 5e-4, batches of 24
tracklets, 8 consecutive frames, lr divided by 10 after 300 of 400 epochs. `modern` is the "Bag of Tricks" ReID
recipe (Luo et al., 2019) applied to clips: cross-entropy with label smoothing on a BN-neck plus batch-hard triplet
on the pre-BN feature, Adam with linear warm-up, P x K identity batches, horizontal flip and random erasing.

Command-line flags override single fields: ``get_recipe('modern', epochs=60, lr=1e-3)``.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ['TrainRecipe', 'RECIPES', 'get_recipe', 'list_recipes', 'UnknownRecipeError']


class UnknownRecipeError(ValueError):
    """A recipe name that does not exist."""


@dataclass
class TrainRecipe:
    """Hyper-parameters of a training run.

    Attributes:
        name: Recipe name, recorded with checkpoints and model cards.
        head: ReID head of the model ('paper' or 'bnneck').
        num_frames: Clip length T.
        clip_sampling: 'consecutive' (paper) or 'segments'.
        sampler: 'random' (batches of random tracklets) or 'pk' (P identities x K tracklets).
        batch_size: Clips per optimisation step, summed over all processes.
        num_instances: K, tracklets per identity in a P x K batch (P = batch_size / K).
        epochs: Training epochs.
        opt: 'sgd' or 'adam' (also 'adamw').
        lr: Base learning rate (backbone).
        head_lr_mult: Learning-rate multiplier of the head (last parameter group of `model.group_matcher()`).
        temporal_lr_mult: Learning-rate multiplier of the temporal kernels (every `TemporalConv`: M3D's, P3D's); they
            start at zero (or as the identity) and are few, so from scratch they may need a larger step than the rest.
        momentum: SGD momentum.
        weight_decay: Weight decay.
        nesterov: Nesterov momentum for SGD.
        decay_epochs: Epochs after which the lr is multiplied by `decay_rate` (step decay, from the next step on).
        decay_rate: Step decay factor.
        warmup_epochs: Linear warm-up from `warmup_lr_init` to `lr`, step by step over the steps of these epochs.
        warmup_lr_init: Learning rate at the start of the warm-up.
        ce_weight: Weight of the cross-entropy loss.
        label_smoothing: Cross-entropy label smoothing.
        triplet_weight: Weight of the batch-hard triplet loss (0: none).
        triplet_margin: Triplet margin (<= 0: soft margin, log(1 + exp(d_ap - d_an))).
        hflip: Probability of flipping a clip horizontally.
        pad: Padding before a random crop back to the frame size (0: none).
        re_prob: Random erasing probability.
        noise_std: Std of fresh Gaussian pixel noise on every training frame, a fraction of the pixel range (0: none;
            see `VideoTransform`).
        input_size: Frame (H, W).
        grad_clip: Clip the gradient norm to this value (None: no clipping).
        eval_interval: Evaluate every this many epochs and after the last one (0: never).
        eval_max_clips: Cap on test clips per tracklet during training-time evaluation (None: all, the paper's).
        seed: Base seed (batches, clip sampling, augmentation, dropout).
    """
    name: str = 'custom'
    head: str = 'bnneck'
    num_frames: int = 8
    clip_sampling: str = 'consecutive'
    sampler: str = 'pk'
    batch_size: int = 32
    num_instances: int = 4
    epochs: int = 120
    opt: str = 'adam'
    lr: float = 3.5e-4
    head_lr_mult: float = 1.0
    temporal_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    decay_epochs: List[int] = field(default_factory=lambda: [40, 70])
    decay_rate: float = 0.1
    warmup_epochs: int = 10
    warmup_lr_init: float = 3.5e-6
    ce_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    hflip: float = 0.5
    pad: int = 10
    re_prob: float = 0.5
    noise_std: float = 0.
    input_size: Tuple[int, int] = (256, 128)
    grad_clip: Optional[float] = None
    eval_interval: int = 10
    eval_max_clips: Optional[int] = None
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> 'TrainRecipe':
        """Raise ValueError naming the first field with an impossible value."""
        def bad(name, why):
            raise ValueError(f'recipe {self.name!r}: {name}={getattr(self, name)!r} {why}')
        if self.head not in ('paper', 'bnneck'):
            bad('head', "must be 'paper' or 'bnneck'")
        if self.clip_sampling not in ('consecutive', 'segments'):
            bad('clip_sampling', "must be 'consecutive' or 'segments'")
        if self.sampler not in ('random', 'pk'):
            bad('sampler', "must be 'random' or 'pk'")
        if self.opt not in ('sgd', 'adam', 'adamw'):
            bad('opt', "must be 'sgd', 'adam' or 'adamw'")
        for name in ('num_frames', 'batch_size', 'num_instances', 'epochs'):
            if int(getattr(self, name)) < 1:
                bad(name, 'must be >= 1')
        if self.lr <= 0:
            bad('lr', 'must be > 0')
        for name in ('head_lr_mult', 'temporal_lr_mult'):
            if not getattr(self, name) > 0:
                bad(name, 'must be > 0')
        if self.sampler == 'pk' and self.batch_size % self.num_instances:
            bad('batch_size', f'must be a multiple of num_instances={self.num_instances} for P x K batches '
                              f'(P identities x K tracklets)')
        if self.ce_weight <= 0 and self.triplet_weight <= 0:
            bad('ce_weight', 'and triplet_weight are both 0: there is nothing to train')
        if self.triplet_weight > 0 and self.sampler != 'pk':
            bad('triplet_weight', "needs sampler='pk': a random batch rarely holds two tracklets of one identity")
        if not 0 <= self.label_smoothing < 1:
            bad('label_smoothing', 'must be in [0, 1)')
        for name in ('hflip', 're_prob'):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, 'must be a probability in [0, 1]')
        if not 0 <= self.noise_std <= 1:
            bad('noise_std', 'must be in [0, 1] (a fraction of the pixel range)')
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            bad('input_size', 'must be (H, W)')
        self.decay_epochs = sorted(int(e) for e in self.decay_epochs)
        self.input_size = tuple(int(v) for v in self.input_size)
        return self

    @property
    def num_pids(self) -> int:
        """P, identities per P x K batch."""
        return self.batch_size // self.num_instances

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d['input_size'] = list(self.input_size)
        return d

    def replace(self, **overrides: Any) -> 'TrainRecipe':
        """A copy with fields replaced (None values are ignored, so unset command-line flags keep the recipe's)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f'unknown recipe field(s) {unknown}; fields: {[f.name for f in dataclasses.fields(self)]}')
        return dataclasses.replace(self, **overrides)


RECIPES: Dict[str, TrainRecipe] = {
    'paper': TrainRecipe(
        name='paper', head='paper', num_frames=8, clip_sampling='consecutive', sampler='random', batch_size=24,
        epochs=400, opt='sgd', lr=0.01, head_lr_mult=10., momentum=0.9, weight_decay=5e-4, decay_epochs=[300],
        decay_rate=0.1, warmup_epochs=0, warmup_lr_init=0., ce_weight=1., label_smoothing=0., triplet_weight=0.,
        hflip=0., pad=0, re_prob=0., eval_interval=50),
    'modern': TrainRecipe(
        name='modern', head='bnneck', num_frames=8, clip_sampling='consecutive', sampler='pk', batch_size=32,
        num_instances=4, epochs=120, opt='adam', lr=3.5e-4, head_lr_mult=1., weight_decay=5e-4, decay_epochs=[40, 70],
        decay_rate=0.1, warmup_epochs=10, warmup_lr_init=3.5e-6, ce_weight=1., label_smoothing=0.1,
        triplet_weight=1., triplet_margin=0.3, hflip=0.5, pad=10, re_prob=0.5, eval_interval=10),
}


def list_recipes() -> List[str]:
    return sorted(RECIPES)


def get_recipe(name: str, **overrides: Any) -> TrainRecipe:
    """The named recipe with fields overridden (None values ignored)."""
    if name not in RECIPES:
        raise UnknownRecipeError(f'Unknown recipe {name!r}; available: {", ".join(list_recipes())}.')
    return RECIPES[name].replace(**overrides)

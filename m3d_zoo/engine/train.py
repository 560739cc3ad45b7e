""" The training loop: one process or torchrun DDP, recipes, AMP, checkpoints, evaluation and metrics.

    from m3d_zoo.engine import train
    summary = train('m3d_resnet50', 'mars', root='/data/MARS', recipe='modern', output_dir='out/m3d_mars',
                    pretrained=True)

The same call under `torchrun --nproc_per_node N` trains with DistributedDataParallel: every rank builds the
same global batches and takes its slice; rank 0 evaluates, writes checkpoints and metrics, the others wait (for up to
`dist_timeout` minutes, `--dist-timeout`).

`train` takes the output folder's lock and runs a `Trainer`, whose steps are short methods: setup (constructor),
`train_epoch` / `train_step`, `should_evaluate` / `evaluate`, `save_checkpoints`, `should_stop`, `final_evaluation`,
`finish`.

Model selection: with validation data (`val_ids` held out of the training identities, or the folder layout's `val/`
folder) `best` is the evaluation with the highest validation mAP, and the test split (query/gallery) is evaluated only
at the end, for the last and the best weights (or at every evaluation with `eval_test`). Without, `best` is chosen on
the test split itself, as papers on these datasets do, and the run says so in a warning.

Budgets: the run stops after `epochs`, or earlier after `max_steps` optimizer steps in all or `time_budget` minutes of
this process, at the end of a step; it then evaluates and saves as at the end. The learning rate follows the recipe
per optimizer step: warm-up over the steps of the first `warmup_epochs` epochs, decay at the first step of each of
`decay_epochs`. The number of steps of every epoch is known in advance (the batches depend only on the seed and the
epoch), and the run header gives them.

One run at a time per output folder: the run (rank 0) holds `train.lock` there, which names its pid, host and start
time, from start to end. A second run on the folder is refused; a lock left by a run that died on this host (its pid
is gone) is taken over with a warning; `force_unlock` (`--force-unlock`) takes over one left on another host.

Determinism: every epoch reseeds Python, NumPy and torch from (seed, epoch, rank), and the batches depend only
on (seed, epoch), so `--resume` from the checkpoint of epoch k continues exactly as the uninterrupted run would
(bit for bit on the CPU in float32 and float16 AMP; bfloat16 AMP on the CPU, like GPU kernels, is not bit-repeatable
between runs, so there the resumed run matches up to rounding). A run stopped by a budget inside an epoch
resumes at that epoch's next batch; its clips and augmentations then differ from the uninterrupted run's.
The run treats subnormal floats as zero on the CPU (`m3d_zoo.utils.flush_denormals`): weights that get no gradient
decay into them under Adam with weight decay, and would slow every later step.

A fresh run (no `resume`) refuses a folder that holds an earlier run's checkpoint or metrics, unless `overwrite`,
which moves the earlier run's files into `replaced-<date>-<time>/` inside the folder.

Output folder:
    last.safetensors (+ last.state-*.pt)   the latest checkpoint, resumable (see checkpoint.py); its metadata holds
                                           the frame size, clip length and mean/std that extraction then uses
    best.safetensors                       weights of the best evaluation so far (validation mAP, else test mAP)
    metrics.jsonl                          one JSON object per line: config, epoch, eval (its `split`: val or
                                           test), done events; `step` counts optimizer steps
    eval.json                              the latest test-split evaluation (m3d_zoo.eval format, hub/release.py)
    best_eval.json                         the test-split results of best.safetensors
    recipe.json                            the resolved recipe and run options
    training_curves.png                    loss, accuracy and mAP against step (m3d_zoo.engine.plot, matplotlib)
    train.lock                             while the run is going: its pid, host and start time
"""
import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from timm.utils import distribute_bn, unwrap_model

from m3d_zoo.data import (
    ClipDataset, DatasetError, PKBatchSampler, RandomBatchSampler, VideoReIDDataset, create_dataset,
    create_video_transform, hold_out_identities, validation_dataset)
from m3d_zoo.utils import default_num_workers, flush_denormals

from .._io import move_into
from ..layers import TemporalConv
from .checkpoint import (
    Checkpoint, CheckpointError, apply_preprocessing, atomic_write_text, check_resume_compatible, load_checkpoint,
    model_from_checkpoint, save_checkpoint)
from .distributed import (
    DistInfo, all_gather_object, barrier, broadcast_object, cleanup_distributed, init_distributed, state_dict_sha256)
from .extract import evaluate_dataset, results_to_json
from .lock import LOCK_NAME, OutputFolderError, OutputLock, OutputLockedError
from .losses import ReidLoss
from .recipes import TrainRecipe, UnknownRecipeError, get_recipe

__all__ = ['train', 'Trainer', 'TrainOptions', 'build_model', 'build_optimizer', 'build_scheduler',
           'build_train_loader', 'seed_everything', 'TrainingError', 'OutputLockedError', 'OutputFolderError',
           'OutputLock', 'LOCK_NAME', 'RUN_FILES', 'CURVES_NAME']

_logger = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A training run cannot start with the given options (the message says which and what to do)."""


CURVES_NAME = 'training_curves.png'
# What a run writes in its output folder besides its lock; the first three mean that the folder holds a run
RUN_FILES = ('last.safetensors', 'best.safetensors', 'metrics.jsonl', 'last.state-*.pt', 'eval.json',
             'best_eval.json', 'recipe.json', CURVES_NAME)


def _clear_for_fresh_run(output_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that holds an earlier run, or with `overwrite` move that run's files aside."""
    found = sorted({p for pattern in RUN_FILES for p in output_dir.glob(pattern) if p.is_file()})
    if not any(p.name in RUN_FILES[:3] for p in found):
        return
    if not overwrite:
        raise TrainingError(
            f'{output_dir} holds an earlier training run ({", ".join(p.name for p in found[:4])}'
            f'{", ..." if len(found) > 4 else ""}). Continue it with --resume {output_dir}, start over with '
            f'--overwrite (its files are moved into a replaced-<date>-<time>/ folder there), or choose another '
            f'--output.')
    aside = output_dir / time.strftime('replaced-%Y%m%d-%H%M%S')
    while aside.exists():
        aside = aside.with_name(aside.name + '+')
    move_into(found, aside)
    _logger.warning(f'--overwrite: moved the earlier run\'s {len(found)} files from {output_dir} into {aside}')


def _lock_output(output_dir: Path, info: DistInfo, force: bool, fresh: bool = False,
                 overwrite: bool = False) -> Optional[OutputLock]:
    """Rank 0 takes the output folder's lock and, for a `fresh` run, checks that the folder holds no earlier run
    (`_clear_for_fresh_run`); every rank learns whether it did, so that all stop if it did not."""
    lock, error = None, None
    if info.is_main:
        try:
            lock = OutputLock(output_dir, force=force).acquire()
            if fresh:
                _clear_for_fresh_run(output_dir, overwrite)
        except Exception as e:  # any failure: the other ranks must hear of it, not wait at the next collective
            if lock is not None:
                lock.release()
                lock = None
            error = e
    if info.distributed:
        message = broadcast_object(None if error is None else str(error))
        if message is not None and error is None:
            raise TrainingError(f'rank 0 could not take the output folder: {message}')
    if error is not None:
        raise error
    return lock


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> None:
    """Seed Python, NumPy and torch from (seed, epoch, rank): batches, clip starts, augmentation, dropout."""
    s = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class _TrainStep(nn.Module):
    """Wraps a zoo model so that DDP's forward runs `forward_train` (DDP syncs gradients of `forward` only)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor):
        return self.module.forward_train(x)


def _load_dataset(name: str, root: str, kwargs: Dict[str, Any]) -> VideoReIDDataset:
    """`create_dataset`, its checks of the name and loader options turned into `TrainingError`s."""
    try:
        return create_dataset(name, root, **kwargs)
    except (ValueError, TypeError) as e:
        if type(e).__module__.startswith('m3d_zoo'):
            raise  # already one of the zoo's errors (DatasetError ...)
        # an unknown name, or options the loader refuses
        raise TrainingError(f'--dataset {name}' + (f' with {kwargs}' if kwargs else '') + f': {e}') from e


def build_model(
        model_name: str,
        num_classes: int,
        recipe: TrainRecipe,
        pretrained: bool = False,
        pretrained_file: Optional[str] = None,
        **model_kwargs: Any,
) -> nn.Module:
    """The model to train: a registered name (clip length and head from the recipe), a saved model
    ('hf-hub:', 'local-dir:') or a training checkpoint to fine-tune, with a classifier of `num_classes`."""
    from m3d_zoo.models import classify_model_spec, create_model
    what = classify_model_spec(model_name)
    if what.saved:
        model = create_model(what.name, pretrained=True, num_classes=num_classes, **model_kwargs)
    elif what.kind == 'checkpoint':
        model = model_from_checkpoint(what.name, num_classes=num_classes, **model_kwargs)
    else:
        kwargs = dict(num_frames=recipe.num_frames, head=recipe.head)
        kwargs.update(model_kwargs)
        try:
            model = create_model(model_name, pretrained=pretrained, pretrained_file=pretrained_file,
                                 num_classes=num_classes, **kwargs)
        except (ValueError, TypeError) as e:
            if not model_kwargs or type(e).__module__.startswith('m3d_zoo'):
                raise  # no user arguments to blame, or already one of the zoo's errors
            raise TrainingError(f'{model_name} does not take --model-kwargs {model_kwargs}: {e}') from e
    if isinstance(getattr(model, 'model_args', None), dict) and model.model_args.get('num_classes') != num_classes:
        raise TrainingError(f'{model_name}: the model has {model.model_args.get("num_classes")} classes, the '
                            f'training set {num_classes} identities.')
    return model


def build_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """SGD or Adam over timm's parameter groups of the model, the head (last group) at `head_lr_mult` x lr and the
    backbone's temporal kernels (its `TemporalConv`s) at `temporal_lr_mult` x lr, a group of their own only then
    (so that optimizer states saved without it still load)."""
    from timm.models import group_parameters
    named = dict(model.named_parameters())
    groups = group_parameters(model, model.group_matcher())
    temporal_ids = set() if recipe.temporal_lr_mult == 1 else {
        id(p) for m in model.modules() if isinstance(m, TemporalConv) for p in m.parameters()}
    head_id = max(groups)
    body, temporal, head = [], [], []
    for gid, names in sorted(groups.items()):
        for p in (named[n] for n in names if named[n].requires_grad):
            (head if gid == head_id else temporal if id(p) in temporal_ids else body).append(p)
    param_groups = [{'params': body, 'lr': recipe.lr, 'name': 'backbone'},
                    {'params': temporal, 'lr': recipe.lr * recipe.temporal_lr_mult, 'name': 'temporal'},
                    {'params': head, 'lr': recipe.lr * recipe.head_lr_mult, 'name': 'head'}]
    param_groups = [g for g in param_groups if g['params']]
    if recipe.opt == 'sgd':
        return torch.optim.SGD(param_groups, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    cls = torch.optim.AdamW if recipe.opt == 'adamw' else torch.optim.Adam
    return cls(param_groups, lr=recipe.lr, weight_decay=recipe.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: TrainRecipe, steps_per_epoch: Sequence[int]):
    """timm's multi-step scheduler, per optimizer step (`step_update(num_updates)`, t_in_epochs=False).

    The lr rises linearly from `warmup_lr_init` over the steps of the first `warmup_epochs` epochs, then is
    multiplied by `decay_rate` from the first step of each epoch in `decay_epochs` (an epoch k there: after k epochs;
    one at or past the end of `steps_per_epoch` is never reached).

    Args:
        optimizer: The optimizer whose groups' lr it sets.
        recipe: The recipe's warm-up and decay.
        steps_per_epoch: Optimizer steps of every epoch, from the first, for at least `schedule_epochs(recipe)`
            epochs.
    """
    from timm.scheduler import MultiStepLRScheduler
    if len(steps_per_epoch) < schedule_epochs(recipe):
        raise ValueError(f'steps_per_epoch covers {len(steps_per_epoch)} epochs, the schedule needs '
                         f'{schedule_epochs(recipe)}')
    start = [int(x) for x in np.cumsum([0, *steps_per_epoch])]  # start[k]: steps before epoch k (0-based)
    # timm applies a milestone m from step m - 1 on: m = start + 1 decays from the epoch's first step
    return MultiStepLRScheduler(
        optimizer, decay_t=[start[e] + 1 for e in recipe.decay_epochs if e < len(steps_per_epoch)],
        decay_rate=recipe.decay_rate, warmup_t=start[recipe.warmup_epochs], warmup_lr_init=recipe.warmup_lr_init,
        warmup_prefix=False, t_in_epochs=False)


def schedule_epochs(recipe: TrainRecipe) -> int:
    """The epochs whose steps the lr schedule needs: the run's, or its warm-up's if that is longer."""
    return max(recipe.epochs, recipe.warmup_epochs)


def build_train_loader(
        dataset: VideoReIDDataset,
        model: nn.Module,
        recipe: TrainRecipe,
        info: DistInfo,
        num_workers: Optional[int] = None,
        decoder: str = 'torchvision',
):
    """DataLoader of training clips with a batch sampler that splits each global batch across ranks; `decoder` is how
    frames are decoded (`m3d_zoo.data.FRAME_DECODERS`)."""
    if not dataset.train:
        raise TrainingError(f'{dataset.name} has no training tracklets: check --root (a folder dataset needs a '
                            f'train/ folder) and the dataset name.')
    transform = create_video_transform(
        model, is_training=True, input_size=recipe.input_size, hflip=recipe.hflip, pad=recipe.pad,
        re_prob=recipe.re_prob, noise_std=recipe.noise_std)
    clips = ClipDataset(dataset.train, recipe.num_frames, recipe.clip_sampling, transform, decoder)
    try:
        if recipe.sampler == 'pk':
            num_ids = dataset.num_train_pids
            if recipe.num_pids > num_ids:
                raise TrainingError(
                    f'--batch-size {recipe.batch_size} with --num-instances {recipe.num_instances} needs '
                    f'P = {recipe.num_pids} identities per batch, but {dataset.name} has {num_ids} training '
                    f'identities{_held_out(dataset)}. Use --batch-size <= {num_ids * recipe.num_instances} (a '
                    f'multiple of {recipe.num_instances}), or fewer --num-instances.')
            sampler = PKBatchSampler(clips.pids, recipe.num_pids, recipe.num_instances, seed=recipe.seed,
                                     num_replicas=info.world_size, rank=info.rank)
        else:
            sampler = RandomBatchSampler(len(clips), recipe.batch_size, seed=recipe.seed,
                                         num_replicas=info.world_size, rank=info.rank)
    except ValueError as e:
        if isinstance(e, TrainingError):
            raise
        raise TrainingError(f'{e}') from e
    if len(sampler) == 0:
        raise TrainingError(
            f'--batch-size {recipe.batch_size} cannot be filled from {dataset.name}\'s {len(clips)} training '
            f'tracklets ({dataset.num_train_pids} identities{_held_out(dataset)}) with the {recipe.sampler!r} '
            f'sampler: not one batch per epoch. Use a smaller --batch-size'
            + (' or --num-instances.' if recipe.sampler == 'pk' else '.'))
    return torch.utils.data.DataLoader(
        clips, batch_sampler=sampler, num_workers=default_num_workers() if num_workers is None else num_workers,
        pin_memory=info.device.type == 'cuda',
        persistent_workers=False)  # workers are re-created (and re-seeded) every epoch: exact resume


def _held_out(dataset: VideoReIDDataset) -> str:
    held = dataset.extra.get('val_held_out')
    return f', after {held} held out for validation' if held else ''


def _amp_setup(device: torch.device, amp: Optional[bool], amp_dtype: Optional[str]):
    """(autocast dtype or None, GradScaler or None). AMP is on by default on GPUs, off on CPUs."""
    if amp is None:
        amp = device.type == 'cuda'
    if not amp:
        return None, None
    if amp_dtype is None:
        amp_dtype = 'bfloat16' if device.type != 'cuda' or torch.cuda.is_bf16_supported() else 'float16'
    dtype = {'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16, 'float16': torch.float16,
             'fp16': torch.float16}.get(amp_dtype)
    if dtype is None:
        raise TrainingError(f'--amp-dtype must be bfloat16 or float16, got {amp_dtype!r}')
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return dtype, scaler


def _reduce_means(logs: Dict[str, float], info: DistInfo) -> Dict[str, float]:
    """Average per-rank epoch means over ranks (every rank runs the same number of steps)."""
    if not info.distributed:
        return logs
    import torch.distributed as dist
    keys = sorted(k for k in logs if k != 'steps')
    t = torch.tensor([logs[k] for k in keys], dtype=torch.float64,
                     device=info.device if info.backend == 'nccl' else 'cpu')
    dist.all_reduce(t)
    out = {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}
    out['steps'] = logs['steps']
    return out


class _MetricsLog:
    """JSON lines in `<output>/metrics.jsonl` (rank 0 only), and a short human line on stdout."""

    def __init__(self, path: Optional[Path], enabled: bool):
        self.path = path
        self.enabled = enabled

    def write(self, record: Dict[str, Any], echo: Optional[str] = None):
        if not self.enabled:
            return
        record = dict(record, time=round(time.time(), 3))
        if self.path is not None:
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(record) + '\n')
        if echo:
            print(echo, flush=True)


@dataclass
class TrainOptions:
    """What a run trains and how, besides the recipe; the fields are `train`'s arguments of the same names."""
    model: Union[str, nn.Module, None]
    dataset: Union[str, VideoReIDDataset]
    root: Optional[str] = None
    resume: Optional[Union[str, Path]] = None
    pretrained: bool = False
    pretrained_file: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    dataset_kwargs: Dict[str, Any] = field(default_factory=dict)
    amp: Optional[bool] = None
    amp_dtype: Optional[str] = None
    grad_checkpointing: bool = False
    sync_bn: bool = False
    num_workers: Optional[int] = None
    eval_batch_size: int = 16
    progress: bool = True
    push_to_hub: Optional[str] = None
    val_ids: Optional[Union[int, float]] = None
    eval_test: bool = False
    max_steps: Optional[int] = None
    time_budget: Optional[float] = None
    save_interval: int = 1


def _check_budgets(opts: TrainOptions) -> None:
    steps, minutes = opts.max_steps, opts.time_budget
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise TrainingError(f'--max-steps must be a whole number of optimizer steps >= 1, got {steps!r}.')
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0 and math.isfinite(minutes)):
        raise TrainingError(f'--time-budget must be a positive number of minutes, got {minutes!r}.')
    interval = opts.save_interval
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise TrainingError(f'--save-interval must be a whole number of epochs >= 1, got {interval!r}.')


class Trainer:
    """One training run (one process or a torchrun rank), from its options to its summary.

    Construction sets the run up: resume checkpoint, data (and the validation split), model, optimisation, the resumed
    state, DDP, and the run's config (recipe.json). `run` then repeats `train_epoch`, `evaluate` (when
    `should_evaluate`) and `save_checkpoints` until `should_stop`, and ends with `final_evaluation` and `finish`. The
    learning rate follows the recipe's schedule per optimizer step (`_end_step`).

    Attributes:
        epoch: Epochs done (the next epoch's 0-based index).
        epoch_step: Steps done in epoch `epoch` by a run a budget stopped inside it (0 at an epoch's start).
        num_updates: Optimizer steps done.
        steps_per_epoch: Optimizer steps of every epoch of the recipe (P x K batches vary by epoch).
        val_data: The validation query/gallery, or None (best is then selected on the test split).
        best_map: Best selection mAP so far (-1 before any evaluation); `best_epoch` and `best_step` say when.
        stopped: What stopped the run before its last epoch ('--max-steps N', '--time-budget M min'), else None.
    """

    def __init__(self, info: DistInfo, recipe: TrainRecipe, output_dir: Union[str, Path], opts: TrainOptions):
        self.start_time = time.time()
        self.info, self.recipe, self.opts = info, recipe, opts
        self.output_dir = Path(output_dir)
        self.log = _MetricsLog(self.output_dir / 'metrics.jsonl', info.is_main)
        _check_budgets(opts)
        if opts.sync_bn and info.device.type != 'cuda':
            raise TrainingError('--sync-bn needs GPUs (nccl); on CPUs DDP keeps rank 0\'s BatchNorm statistics.')
        self.epoch, self.epoch_step, self.num_updates = 0, 0, 0
        self.best_map, self.best_epoch, self.best_step = -1.0, None, None
        self.stopped: Optional[str] = None
        self.last_results: Optional[Dict[str, Any]] = None  # the latest test-split results
        self.best_results: Optional[Dict[str, Any]] = None  # the test-split results of best.safetensors
        self._curves_failed = False
        ckpt = self._read_resume()  # first, so that a wrong file fails before anything is loaded or written
        spec = ckpt.architecture if opts.model is None and ckpt is not None else opts.model
        if spec is None:
            raise TrainingError('No model: pass --model NAME (m3d-zoo list), or --resume a checkpoint.')
        self.val_ids = self._resolve_val_ids(ckpt)
        self.data, self.val_data = self._load_data()
        self.model = _TrainStep(self._build_net(spec, ckpt))
        self._build_optimization()
        if ckpt is not None:
            self._restore(ckpt)
        self.scheduler.step_update(self.num_updates)  # the lr of the next step: the first, or the resumed one
        if info.distributed:
            # buffers (BatchNorm statistics) are broadcast from rank 0 at every forward, DDP's default
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.device] if info.device.type == 'cuda' else None)
        self._write_config(ckpt)

    @property
    def net(self) -> nn.Module:
        """The zoo model being trained, outside its DDP and `forward_train` wrappers."""
        return unwrap_model(self.model)

    # --- setup

    def _read_resume(self) -> Optional[Checkpoint]:
        if self.opts.resume is None:
            return None
        ckpt = load_checkpoint(self.opts.resume)
        if ckpt.train_state is None:
            raise CheckpointError(f'{ckpt.path} holds weights only (no training state): it cannot be resumed. '
                                  f'Resume from last.safetensors, or fine-tune from it with --model {ckpt.path}.')
        return ckpt

    def _resolve_val_ids(self, ckpt: Optional[Checkpoint]) -> Optional[Union[int, float]]:
        """The identities to hold out: as asked, and for a resumed run as its checkpoint's (they set the classes)."""
        asked = self.opts.val_ids
        if ckpt is None:
            return asked
        saved = ckpt.train_state.get('val_ids')
        if asked is None or asked == saved:
            return saved
        was = f'--val-ids/--val-split {saved}' if saved is not None else 'no held-out validation identities'
        raise TrainingError(f'{ckpt.path} was trained with {was}, not {asked}: the training identities depend on it. '
                            f'Resume without --val-ids/--val-split (the checkpoint\'s are kept), or start a new run.')

    def _load_data(self):
        """(training data, validation query/gallery or None); held-out identities leave the training data."""
        opts = self.opts
        if isinstance(opts.dataset, str):
            if opts.root is None:
                raise TrainingError(f'--root is required with --dataset {opts.dataset}.')
            data = _load_dataset(opts.dataset, opts.root, opts.dataset_kwargs)
        else:
            data = opts.dataset
        if self.val_ids is not None and data.train:
            if data.val:
                raise TrainingError(
                    f'{data.name} has validation identities of its own (a val/ folder of '
                    f'{len({t.pid for t in data.val})}): leave out --val-ids/--val-split, or the val/ folder.')
            try:
                data = hold_out_identities(data, self.val_ids, self.recipe.seed)
            except ValueError as e:
                if isinstance(e, DatasetError):
                    raise  # it names the dataset and what to hold out
                raise TrainingError(f'--val-ids/--val-split {self.val_ids!r}: {e}') from e
        if not data.train:
            raise TrainingError(f'{data.name} has no training tracklets: check --root (a folder dataset needs a '
                                f'train/ folder of identities) and --dataset.')
        val = validation_dataset(data.val, f'{data.name} validation', self.recipe.seed) if data.val else None
        if val is None and self.recipe.eval_interval > 0 and self.info.is_main:
            _logger.warning(
                f'{data.name} has no validation data: best.safetensors is selected on the test split (query/gallery), '
                f'so its test score is an optimistic one. Hold out training identities with --val-ids N or '
                f'--val-split FRACTION, or add a val/ folder (tracklet-folder layout).')
        return data, val

    def _build_net(self, spec: Union[str, nn.Module], ckpt: Optional[Checkpoint]) -> nn.Module:
        opts, recipe = self.opts, self.recipe
        seed_everything(recipe.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        if isinstance(spec, nn.Module):
            net = spec
        else:
            net = build_model(spec, self.data.num_train_pids, recipe, opts.pretrained, opts.pretrained_file,
                              **opts.model_kwargs)
        self.arch = (getattr(net, 'pretrained_cfg', None) or {}).get('architecture', type(net).__name__)
        self.source_weights = _source_weights(spec, opts.pretrained, opts.pretrained_file, net, ckpt)
        if ckpt is not None:
            check_resume_compatible(ckpt, net)
        # what the model is trained on, which its checkpoints record for extraction
        apply_preprocessing(net, {'input_size': (3, *recipe.input_size), 'num_frames': recipe.num_frames,
                                  'clip_sampling': recipe.clip_sampling})
        if opts.grad_checkpointing:
            net.set_grad_checkpointing(True)
        net.to(self.info.device)
        if opts.sync_bn and self.info.distributed:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return net

    def _build_optimization(self):
        recipe = self.recipe
        self.optimizer = build_optimizer(self.net, recipe)
        self.amp_dtype, self.scaler = _amp_setup(self.info.device, self.opts.amp, self.opts.amp_dtype)
        self.loss_fn = ReidLoss(recipe.ce_weight, recipe.label_smoothing, recipe.triplet_weight, recipe.triplet_margin)
        self.loader = build_train_loader(self.data, self.net, recipe, self.info, self.opts.num_workers)
        sampler = self.loader.batch_sampler
        self.steps_per_epoch = []
        for e in range(schedule_epochs(recipe)):  # the batches depend on (seed, epoch) alone: counted in advance
            sampler.set_epoch(e)
            self.steps_per_epoch.append(len(sampler))
        self.scheduler = build_scheduler(self.optimizer, recipe, self.steps_per_epoch)

    def _restore(self, ckpt: Checkpoint):
        """Weights, optimizer, grad scaler and counters of the checkpoint.

        The lr schedule is a function of the recipe and the step: rebuilt from the recipe (not loaded), so a resumed
        run may extend --epochs or move --decay-epochs; with the same recipe it is the saved one.
        """
        state = ckpt.train_state
        self.net.load_state_dict(ckpt.state_dict, strict=True)
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        self.epoch = int(state['epoch'])
        self.epoch_step = int(state.get('epoch_step', 0))
        self.num_updates = int(state.get('num_updates', 0))
        self.best_map = float(state.get('best_map', -1.0))
        self.best_epoch = state.get('best_epoch')
        self.best_step = state.get('best_step')
        saved = state.get('recipe') or {}
        changed = {k: (saved[k], v) for k, v in self.recipe.to_dict().items()
                   if k in saved and saved[k] != v and k not in ('epochs', 'eval_interval', 'eval_max_clips')}
        if changed and self.info.is_main:
            _logger.warning(f'Resuming with a recipe that differs from the checkpoint\'s: {changed} (checkpoint, '
                            f'now); the new values apply from epoch {self.epoch + 1}.')

    def _planned_steps(self) -> int:
        """The optimizer steps this process will take, budgets aside from time."""
        left = sum(self.steps_per_epoch[self.epoch:self.recipe.epochs]) - self.epoch_step
        if self.opts.max_steps is not None:
            left = min(left, self.opts.max_steps - self.num_updates)
        return max(0, left)

    def _write_config(self, ckpt: Optional[Checkpoint]):
        info, recipe, data, opts = self.info, self.recipe, self.data, self.opts
        steps = self.steps_per_epoch[:recipe.epochs]
        val = self.val_data
        run_cfg = {'event': 'config', 'model': self.arch, 'model_args': getattr(self.net, 'model_args', None),
                   'dataset': data.name, 'num_train_ids': data.num_train_pids, 'num_train_tracklets': len(data.train),
                   'recipe': recipe.to_dict(), 'world_size': info.world_size, 'device': str(info.device),
                   'amp': str(self.amp_dtype) if self.amp_dtype else None,
                   'grad_checkpointing': opts.grad_checkpointing, 'start_epoch': self.epoch,
                   'start_step': self.num_updates, 'resumed_from': str(ckpt.path) if ckpt else None,
                   'steps_per_epoch': steps, 'planned_steps': self._planned_steps(), 'max_steps': opts.max_steps,
                   'time_budget_min': opts.time_budget, 'selected_on': 'val' if val is not None else 'test',
                   'validation': None if val is None else {
                       'source': 'val/ folder' if self.val_ids is None else f'held out: {self.val_ids}',
                       'ids': len({t.pid for t in data.val}), 'queries': len(val.query), 'gallery': len(val.gallery)},
                   'dist_timeout_min': info.timeout_min if info.distributed else None}
        if info.is_main:
            atomic_write_text(self.output_dir / 'recipe.json', json.dumps(run_cfg, indent=2, default=str) + '\n')
        per_epoch = (f'{steps[0]} steps/epoch' if len(set(steps)) == 1 else
                     f'{min(steps)}-{max(steps)} steps/epoch (P x K batches vary by epoch)')
        stop = (f', stopping after step {opts.max_steps}' if opts.max_steps is not None else '') + \
               (f', or after {opts.time_budget:g} min' if opts.time_budget is not None else '')
        held = f', {run_cfg["validation"]["ids"]} validation ids' if val is not None else ''
        self.log.write(run_cfg, echo=f'Training {self.arch} on {data.name} ({data.num_train_pids} ids, '
                                     f'{len(data.train)} tracklets{held}), recipe {recipe.name}, {per_epoch} x '
                                     f'{info.world_size} process(es), epochs {self.epoch + 1}..{recipe.epochs}: '
                                     f'{self._planned_steps()} steps{stop}; output {self.output_dir}')

    # --- the loop

    def run(self) -> Dict[str, Any]:
        """Train to the end of the recipe or of a budget; the summary (see `finish`)."""
        while not self.should_stop():
            self.train_epoch()
            results = self.evaluate() if self.should_evaluate() else None
            self.save_checkpoints(results)
            self.save_curves()
            barrier()  # the other ranks wait for evaluation and checkpoints
        self.final_evaluation()
        barrier()
        return self.finish()

    def should_stop(self) -> bool:
        """Whether the run is over (its epochs, or a budget), asked before each epoch."""
        max_steps = self.opts.max_steps
        return (self.epoch >= self.recipe.epochs or self.stopped is not None
                or (max_steps is not None and self.num_updates >= max_steps))

    def should_evaluate(self) -> bool:
        """Whether to evaluate after the epoch just done: every `eval_interval` epochs, after the last, and when a
        budget stopped the run."""
        interval = self.recipe.eval_interval
        return interval > 0 and (self.stopped is not None or self.epoch % interval == 0
                                 or self.epoch == self.recipe.epochs)

    def _out_of_budget(self) -> bool:
        """Whether `max_steps` or `time_budget` is used up, asked after each step; sets `stopped`."""
        opts = self.opts
        if opts.max_steps is not None and self.num_updates >= opts.max_steps:
            self.stopped = f'--max-steps {opts.max_steps}'
        elif opts.time_budget is not None:
            up = time.time() - self.start_time >= 60 * opts.time_budget
            if broadcast_object(up):  # rank 0's clock for all: every rank stops at the same step
                self.stopped = f'--time-budget {opts.time_budget:g} min'
        return self.stopped is not None

    def _start_epoch(self):
        """Reseed everything and set the sampler for epoch `self.epoch` (0-based), after its steps already done."""
        seed_everything(self.recipe.seed, self.epoch + 1, self.info.rank)
        self.loader.batch_sampler.set_epoch(self.epoch, start=self.epoch_step)

    def _end_step(self):
        """Count the optimizer step and set the lr of the next one (timm's per-step schedule)."""
        self.num_updates += 1
        self.scheduler.step_update(self.num_updates)

    def train_epoch(self) -> Dict[str, float]:
        """One pass over the epoch's batches (up to a budget); the mean of each logged value over all ranks' steps
        (and `steps`)."""
        t0 = time.time()
        self._start_epoch()
        self.model.train()
        sums: Dict[str, float] = {}
        steps = 0
        bar = self._progress_bar()
        for clips, pids, _ in bar if bar is not None else self.loader:
            logs = self.train_step(clips, pids)
            self._end_step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.) + v
            steps += 1
            if bar is not None:
                bar.set_postfix(loss=f'{logs["loss"]:.3f}', refresh=False)
            if self._out_of_budget():
                break
        if bar is not None:
            bar.close()
        logs = _reduce_means(dict({k: v / max(steps, 1) for k, v in sums.items()}, steps=steps), self.info)
        if self.info.distributed:  # every rank ends the epoch with rank 0's BatchNorm statistics
            distribute_bn(self.model, self.info.world_size)
        number = self.epoch + 1
        self.epoch_step += steps
        partial = self.epoch_step < self.steps_per_epoch[self.epoch]
        if not partial:
            self.epoch, self.epoch_step = number, 0
        self._log_epoch(number, logs, t0, partial)
        return logs

    def _progress_bar(self):
        if not (self.opts.progress and self.info.is_main):
            return None
        from tqdm.auto import tqdm
        return tqdm(self.loader, desc=self._epoch_name(), leave=False, dynamic_ncols=True)

    def _epoch_name(self) -> str:
        return f'epoch {self.epoch + 1}/{self.recipe.epochs}'

    def train_step(self, clips: torch.Tensor, pids: torch.Tensor) -> Dict[str, float]:
        """One optimizer step on a batch; the values the loss logs.

        Raises:
            FloatingPointError: The loss is not finite; the weights are left as they were.
        """
        device = self.info.device
        clips = clips.to(device, non_blocking=True)
        pids = pids.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext():
            out = self.model(clips)
        loss, logs = self.loss_fn(out, pids)
        if not math.isfinite(logs['loss']):
            raise FloatingPointError(f'the loss is {logs["loss"]} at step {self.num_updates + 1} '
                                     f'({self._epoch_name()}): lower --lr, or check the data.')
        self._optimize(loss)
        return logs

    def _optimize(self, loss: torch.Tensor):
        """Backward pass, gradient clipping and the optimizer step, through the grad scaler under float16."""
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.recipe.grad_clip:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _log_epoch(self, number: int, logs: Dict[str, float], t0: float, partial: bool):
        lrs = {g.get('name', str(i)): g['lr'] for i, g in enumerate(self.optimizer.param_groups)}
        cut = f' ({self.stopped}: {self.epoch_step} of {self.steps_per_epoch[self.epoch]} steps)' if partial else ''
        self.log.write(dict(event='epoch', epoch=number, step=self.num_updates, lr=lrs,
                            time_s=round(time.time() - t0, 2), **logs, **({'partial': True} if partial else {})),
                       echo=f'epoch {number}/{self.recipe.epochs}{cut}  loss {logs.get("loss", float("nan")):.4f}'
                            + (f'  acc {logs["acc"]:.3f}' if 'acc' in logs else '')
                            + f'  lr {lrs.get("backbone", next(iter(lrs.values()))):.2e}  {time.time() - t0:.1f}s')

    # --- evaluation, checkpoints, the end

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Rank 0: the results that select `best` (the validation split, else the test split), and with `eval_test`
        the test split too; None on the other ranks."""
        if not self.info.is_main:
            return None
        if self.val_data is None:
            res = self._evaluate_split('test')
        else:
            res = self._evaluate_split('val')
            if self.opts.eval_test:
                self._evaluate_split('test')
        if res['mAP'] > self.best_map:
            self.best_map, self.best_epoch, self.best_step = res['mAP'], self.epoch, self.num_updates
        return res

    def _evaluate_split(self, split: str, net: Optional[nn.Module] = None) -> Dict[str, Any]:
        """The results of the weights being trained (or `net`, those of best.safetensors) on split 'val' or 'test';
        written to the metrics log, and the current weights' test results to eval.json."""
        t0 = time.time()
        recipe = self.recipe
        res = results_to_json(evaluate_dataset(
            net or self.net, self.val_data if split == 'val' else self.data, num_frames=recipe.num_frames,
            input_size=recipe.input_size, batch_size=self.opts.eval_batch_size, device=self.info.device,
            amp_dtype=self.amp_dtype, max_clips=recipe.eval_max_clips,
            progress=self.opts.progress and self.info.is_main))
        best = net is not None
        res.update(split=split, epoch=self.best_epoch if best else self.epoch,
                   step=self.best_step if best else self.num_updates, weights='best' if best else 'last')
        self.log.write(dict(event='eval', **{k: v for k, v in res.items() if k != 'cmc'}, cmc=res['cmc'][:20],
                            eval_time_s=round(time.time() - t0, 2)),
                       echo=f'eval {split} ({res["weights"]} weights, epoch {res["epoch"]}, step {res["step"]}): '
                            f'mAP {100 * res["mAP"]:.1f}  rank-1 {100 * res["rank1"]:.1f}  '
                            f'rank-5 {100 * res.get("rank5", float("nan")):.1f}  ({res["gallery_mode"]}, '
                            f'{res["ap_mode"]} AP)')
        if split == 'test' and not best:
            self.last_results = res
            atomic_write_text(self.output_dir / 'eval.json', json.dumps(res, indent=1) + '\n')
        return res

    def save_checkpoints(self, results: Optional[Dict[str, Any]] = None):
        """Rank 0: `last` (resumable) every `save_interval` epochs and at the end; `best` (weights) when `results` are
        the best so far (and, selected on the test split, their results in best_eval.json)."""
        if not self.info.is_main:
            return
        meta = {'epoch': self.epoch, 'step': self.num_updates, 'recipe': self.recipe.name, 'dataset': self.data.name,
                'source_weights': self.source_weights}
        if results is not None and self.best_step == self.num_updates:
            if results['split'] == 'test':
                self.best_results = results
                atomic_write_text(self.output_dir / 'best_eval.json', json.dumps(results, indent=1) + '\n')
            save_checkpoint(self.output_dir, 'best', self.net, None,
                            dict(meta, mAP=results['mAP'], rank1=results['rank1'], selected_on=results['split']))
        if self.epoch % self.opts.save_interval == 0 or self.should_stop():
            save_checkpoint(self.output_dir, 'last', self.net, self._train_state(), meta)

    def _train_state(self) -> Dict[str, Any]:
        return {'epoch': self.epoch, 'epoch_step': self.epoch_step, 'num_updates': self.num_updates,
                'optimizer': self.optimizer.state_dict(), 'scheduler': self.scheduler.state_dict(),
                'scaler': self.scaler.state_dict() if self.scaler is not None else None,
                'recipe': self.recipe.to_dict(), 'best_map': self.best_map, 'best_epoch': self.best_epoch,
                'best_step': self.best_step, 'val_ids': self.val_ids, 'architecture': self.arch,
                'world_size': self.info.world_size}

    def final_evaluation(self):
        """Rank 0, with validation data: the test split, for the last weights and for best.safetensors (its results
        in best_eval.json), unless evaluations are off (`eval_interval` 0)."""
        if not (self.info.is_main and self.val_data is not None and self.recipe.eval_interval > 0):
            return
        if self.last_results is None or self.last_results['step'] != self.num_updates:
            self._evaluate_split('test')
        best = self.output_dir / 'best.safetensors'
        if self.best_map < 0 or not best.is_file():
            return
        if self.best_step == self.num_updates:
            res = dict(self.last_results, weights='best')
        else:
            res = self._evaluate_split('test', model_from_checkpoint(best).to(self.info.device))
        self.best_results = dict(res, selected_on='val', val_mAP=self.best_map)
        atomic_write_text(self.output_dir / 'best_eval.json', json.dumps(self.best_results, indent=1) + '\n')

    def save_curves(self):
        """Rank 0: training_curves.png from metrics.jsonl; without matplotlib, one warning and no picture."""
        if not self.info.is_main or self._curves_failed:
            return
        try:
            from .plot import save_training_curves
            save_training_curves(self.log.path, self.output_dir / CURVES_NAME)
        except ImportError as e:
            self._curves_failed = True
            _logger.warning(f'no {CURVES_NAME}: {e}')

    def finish(self) -> Dict[str, Any]:
        """The summary (metrics.jsonl's `done` event): epochs and steps, what stopped the run, best and last results,
        checkpoints, the ranks' state hashes; then the push to the Hub, if asked for."""
        hashes = all_gather_object(state_dict_sha256(self.net))
        in_sync = len(set(hashes)) == 1
        out, has_best = self.output_dir, self.best_map >= 0
        summary = {'event': 'done', 'epochs': self.recipe.epochs, 'last_epoch': self.epoch, 'steps': self.num_updates,
                   'stopped_by': self.stopped, 'selected_on': 'val' if self.val_data is not None else 'test',
                   'best_mAP': self.best_map if has_best else None, 'best_epoch': self.best_epoch,
                   'best_step': self.best_step, 'results': _without_cmc(self.last_results),
                   'best_results': _without_cmc(self.best_results), 'state_sha256': hashes, 'ranks_in_sync': in_sync,
                   'output_dir': str(out), 'last': str(out / 'last.safetensors'),
                   'best': str(out / 'best.safetensors') if has_best else None}
        if not in_sync and self.info.is_main:
            _logger.warning(f'the ranks\' weights differ at the end of training: {hashes}')
        self.log.write(summary, echo=self._done_line(summary))
        self.save_curves()
        if self.opts.push_to_hub and self.info.is_main:
            summary['hub_commit'] = self._push(summary['best'] or summary['last'], has_best)
        barrier()
        return summary

    def _done_line(self, summary: Dict[str, Any]) -> str:
        line = f'done: {self.output_dir}' + (f', stopped by {self.stopped} at step {self.num_updates}'
                                             if self.stopped else '')
        if summary['best'] is not None:
            line += (f' (best {summary["selected_on"]} mAP {100 * self.best_map:.1f} at epoch {self.best_epoch}, '
                     f'step {self.best_step}')
            if self.best_results is not None and summary['selected_on'] == 'val':
                line += f'; its test mAP {100 * self.best_results["mAP"]:.1f}'
            line += ')'
        return line

    def _push(self, src: str, best: bool) -> str:
        """Push checkpoint `src` with its results to `push_to_hub`; the commit id."""
        from ..hub.release import push_checkpoint
        repo = self.opts.push_to_hub
        results = self.output_dir / ('best_eval.json' if best else 'eval.json')
        commit = push_checkpoint(src, repo, results=results if results.is_file() else None, dataset=self.data.name,
                                 commit_message=f'{self.arch} trained on {self.data.name} ({self.recipe.name} recipe)')
        print(f'Pushed {src} to {repo} at commit {commit.oid}: m3d_zoo.create_model("hf-hub:{repo}@{commit.oid}", '
              f'pretrained=True)', flush=True)
        return commit.oid


def _without_cmc(results: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return {k: v for k, v in results.items() if k != 'cmc'} if results else None


def train(
        model: Union[str, nn.Module],
        dataset: Union[str, VideoReIDDataset],
        root: Optional[str] = None,
        recipe: Union[str, TrainRecipe] = 'modern',
        output_dir: Union[str, Path] = 'output/train',
        resume: Optional[Union[str, Path]] = None,
        pretrained: bool = False,
        pretrained_file: Optional[str] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        dataset_kwargs: Optional[Dict[str, Any]] = None,
        device: Optional[str] = None,
        amp: Optional[bool] = None,
        amp_dtype: Optional[str] = None,
        grad_checkpointing: bool = False,
        sync_bn: bool = False,
        num_workers: Optional[int] = None,
        eval_batch_size: int = 16,
        progress: bool = True,
        push_to_hub: Optional[str] = None,
        force_unlock: bool = False,
        dist_timeout: Optional[float] = None,
        val_ids: Optional[Union[int, float]] = None,
        eval_test: bool = False,
        max_steps: Optional[int] = None,
        time_budget: Optional[float] = None,
        overwrite: bool = False,
        save_interval: int = 1,
        **recipe_overrides: Any,
) -> Dict[str, Any]:
    """Train (or fine-tune) a zoo model for video ReID; see the module docstring for what it writes.

    Args:
        model: A registered name, 'hf-hub:'/'local-dir:' saved model, a checkpoint to fine-tune, or None with
            `resume` (the checkpoint's architecture).
        dataset: 'mars', 'prid2011', 'ilidsvid', 'folder', or a loaded `VideoReIDDataset`.
        root: Dataset root folder (for a dataset name).
        recipe: 'paper', 'modern' or a `TrainRecipe`.
        output_dir: Folder for checkpoints and metrics.
        resume: A checkpoint (or output folder) of an interrupted run of the same model to continue.
        pretrained: Inflate the ImageNet 2D ResNet (registered names).
        pretrained_file: Local 2D ResNet weights to inflate instead.
        model_kwargs: Extra model arguments (temporal_strides, m3d_branches, last_stride, ...).
        dataset_kwargs: Extra dataset arguments (split_id for PRID/iLIDS, gallery_mode for MARS).
        device: 'cuda', 'cpu' or None (a GPU if there is one; under torchrun, the local rank's GPU).
        amp: Mixed precision (default: on GPUs).
        amp_dtype: 'bfloat16' or 'float16' (default bfloat16 where supported).
        grad_checkpointing: Recompute activations in the backward pass to save memory.
        sync_bn: SyncBatchNorm across ranks (GPUs).
        num_workers: DataLoader workers per process (default: `m3d_zoo.utils.default_num_workers()`, which fits
            the CPUs this process may use).
        eval_batch_size: Clips per forward pass when evaluating.
        progress: tqdm progress bars (rank 0).
        push_to_hub: Hub repo ('org/name') to push the trained model (best, else last) to at the end.
        force_unlock: Take the output folder's lock over from a run that cannot be checked (another host) or whose
            lock file is unreadable. A dead run's lock on this host is taken over without it.
        dist_timeout: Under torchrun, how long (minutes) a rank waits at a collective, e.g. for rank 0's
            evaluation; default `DEFAULT_DIST_TIMEOUT_MIN`.
        val_ids: Training identities to hold out for validation, drawn from the recipe's seed: a count (10) or a
            fraction in (0, 1) (0.1). Validation then selects `best`, and the test split is evaluated at the end.
            A folder dataset's `val/` folder does the same without it.
        eval_test: With validation data, also evaluate the test split at every evaluation (not only at the end).
        max_steps: Stop after this many optimizer steps in all (a resumed run's included).
        time_budget: Stop at the first step that ends this many minutes after this process started the run.
        overwrite: For a run without `resume` into a folder that holds an earlier run: move that run's files into
            `replaced-<date>-<time>/` there and start over (otherwise the run is refused).
        save_interval: Write the resumable `last` checkpoint every this many epochs (and at the end): a short run
            spends much of its time writing weights and optimizer state; a crash then repeats up to this many epochs.
        **recipe_overrides: Recipe fields to override (epochs=..., lr=..., batch_size=...).

    Returns:
        Summary: epochs run, final/best results, checkpoint paths, the ranks' state hashes.

    Raises:
        OutputLockedError: Another run holds `output_dir`.
        TrainingError, CheckpointError, DatasetError: Options, checkpoint or data that cannot be used, or a fresh
            run into a folder that holds an earlier one (without `overwrite`).
    """
    if dist_timeout is not None and not float(dist_timeout) > 0:
        raise TrainingError(f'--dist-timeout must be a positive number of minutes, got {dist_timeout}.')
    if overwrite and resume is not None:
        raise TrainingError('--overwrite starts a new run in the output folder; it does not go with --resume.')
    info = init_distributed(device, timeout_min=dist_timeout)
    lock = None
    try:
        lock = _lock_output(Path(output_dir), info, force_unlock, fresh=resume is None, overwrite=overwrite)
        opts = TrainOptions(
            model=model, dataset=dataset, root=root, resume=resume, pretrained=pretrained,
            pretrained_file=pretrained_file, model_kwargs=dict(model_kwargs or {}),
            dataset_kwargs=dict(dataset_kwargs or {}), amp=amp, amp_dtype=amp_dtype,
            grad_checkpointing=grad_checkpointing, sync_bn=sync_bn, num_workers=num_workers,
            eval_batch_size=eval_batch_size, progress=progress, push_to_hub=push_to_hub, val_ids=val_ids,
            eval_test=eval_test, max_steps=max_steps, time_budget=time_budget, save_interval=save_interval)
        with flush_denormals():  # dead taps' weights decay into subnormals, which slow CPU arithmetic several-fold
            return Trainer(info, _resolve_recipe(recipe, recipe_overrides), output_dir, opts).run()
    finally:
        if lock is not None:
            lock.release()
        cleanup_distributed()


def _resolve_recipe(recipe: Union[str, TrainRecipe], overrides: Dict[str, Any]) -> TrainRecipe:
    """The recipe by name or as given, with `overrides`; its checks of the values as `TrainingError`s."""
    try:
        return recipe.replace(**overrides) if isinstance(recipe, TrainRecipe) else get_recipe(recipe, **overrides)
    except UnknownRecipeError:
        raise
    except ValueError as e:  # the recipe's own checks of the options: a user error, not a bug
        raise TrainingError(f'{e}') from e


def _source_weights(spec, pretrained, pretrained_file, net, ckpt) -> str:
    """What the trained weights started from, for the model card."""
    if ckpt is not None and ckpt.metadata.get('source_weights'):
        return ckpt.metadata['source_weights']
    from m3d_zoo.models import classify_model_spec
    if isinstance(spec, str) and classify_model_spec(spec).kind != 'name':
        return spec
    if pretrained_file:
        return f'file {os.path.basename(str(pretrained_file))}'
    if pretrained:
        return (getattr(net, 'pretrained_cfg', None) or {}).get('hf_hub_id') or 'ImageNet'
    return 'random initialisation'

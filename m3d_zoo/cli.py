""" The `m3d-zoo` command line: train, extract, evaluate, list, export, push.

    m3d-zoo train --model m3d_resnet50 --dataset mars --root /data/MARS --recipe modern --pretrained --output out/m3d
    torchrun --nproc_per_node 4 -m m3d_zoo.cli train ...                 # the same run with DDP
    m3d-zoo train --resume out/m3d/last.safetensors --dataset mars --root /data/MARS --recipe modern --output out/m3d
    m3d-zoo extract --model out/m3d/best.safetensors --dataset mars --root /data/MARS --output mars_emb.safetensors
    m3d-zoo evaluate mars_emb.safetensors --cmc-png mars_cmc.png
    m3d-zoo evaluate run_a.safetensors run_b.safetensors --cmc-png compare.png      # one row and one curve each
    m3d-zoo list 'm3d_*'
    m3d-zoo export --model out/m3d/best.safetensors --output m3d.onnx
    m3d-zoo push --checkpoint out/m3d/best.safetensors --repo-id me/m3d_resnet50.mars --results out/m3d/best_eval.json

Errors a user can fix (a wrong path, an unknown name, impossible options, a missing GPU, an output that cannot be
written) are printed as one message and exit with status 2; `--debug` (or M3D_ZOO_DEBUG=1) shows the traceback
instead. Any other exception is a bug and keeps its traceback. Outputs are checked before the work starts: a missing
output folder is created, one that cannot be written is refused.
"""
import argparse
import json
import logging
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from ._io import atomic_write_text

__all__ = ['main', 'build_parser']


class CliError(Exception):
    """An error in the command's input, printed without a traceback."""


def _kv(items: Optional[List[str]]) -> Dict[str, Any]:
    """['a=1', 'b=(1,2)', 'c=paper'] -> {'a': 1, 'b': [1, 2], 'c': 'paper'} (values parsed as JSON when they can be)."""
    out = {}
    for item in items or []:
        if '=' not in item:
            raise CliError(f'expected KEY=VALUE, got {item!r}')
        k, v = item.split('=', 1)
        v = v.strip()
        if v.startswith('(') and v.endswith(')'):
            v = '[' + v[1:-1] + ']'
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Argument groups several commands share, each beside what reads it


def _add_model_args(p: argparse.ArgumentParser, required: bool = True):
    p.add_argument('--model', required=required,
                   help='model name (m3d-zoo list), hf-hub:ORG/NAME[@REV], local-dir:PATH, a folder written by '
                        'save_pretrained, or a checkpoint written by m3d-zoo train (file or output folder)')
    p.add_argument('--pretrained', action='store_true', help='inflate the ImageNet 2D ResNet (registered names)')
    p.add_argument('--pretrained-file', help='local 2D ResNet weights to inflate (offline alternative)')
    p.add_argument('--model-kwargs', nargs='*', metavar='KEY=VALUE',
                   help='model arguments, e.g. temporal_strides=1,2,2,2 m3d_branches=1 last_stride=1')


def _model_kwargs(a) -> Dict[str, Any]:
    kw = _kv(a.model_kwargs)
    for k, v in list(kw.items()):
        if isinstance(v, str) and ',' in v:  # temporal_strides=1,1,1,1
            try:
                kw[k] = [int(x) for x in v.split(',')]
            except ValueError:
                pass
    return kw


def _add_seed_arg(p: argparse.ArgumentParser):
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the weights a model without pretrained weights starts from (default 0), so that '
                        'random-initialisation baselines repeat')


def _inference_model(a, device):
    """The embedding model of --model and its options; arguments it refuses become a `CliError`."""
    import torch
    from m3d_zoo.engine import load_inference_model
    from m3d_zoo.models import classify_model_spec
    torch.manual_seed(a.seed)
    kwargs = _model_kwargs(a)
    if a.num_frames and classify_model_spec(a.model).kind == 'name':  # a saved model keeps its clip length
        kwargs.setdefault('num_frames', a.num_frames)
    try:
        return load_inference_model(a.model, pretrained=a.pretrained, pretrained_file=a.pretrained_file,
                                    device=device, **kwargs)
    except (ValueError, TypeError) as e:
        if not kwargs or type(e).__module__.startswith('m3d_zoo'):
            raise  # no user arguments to blame, or already one of the zoo's errors
        raise CliError(f'{a.model} does not take the model arguments {kwargs} (--model-kwargs, --num-frames): '
                       f'{e}') from e


def _add_dataset_args(p: argparse.ArgumentParser, required: bool = True, choice=None):
    """--dataset and its loader options; `choice`: a mutually exclusive group --dataset joins (extract's)."""
    from m3d_zoo.data import list_datasets
    (choice or p).add_argument('--dataset', required=required, help=f'dataset layout: {", ".join(list_datasets())}')
    p.add_argument('--root', help='dataset root folder')
    p.add_argument('--split-id', type=int, help='PRID-2011 / iLIDS-VID: which of the 10 random splits (default 0)')
    p.add_argument('--gallery-mode', help='MARS gallery convention (see m3d_zoo.data.MARS_GALLERY_MODES)')
    p.add_argument('--dataset-kwargs', nargs='*', metavar='KEY=VALUE', help='more dataset loader arguments')


def _dataset_kwargs(a) -> Dict[str, Any]:
    kw = _kv(a.dataset_kwargs)
    if a.split_id is not None:
        kw['split_id'] = a.split_id
    if a.gallery_mode is not None:
        kw['gallery_mode'] = a.gallery_mode
    return kw


def _dataset(a):
    """The dataset of --dataset/--root and their options; the loaders' refusals of those options become `CliError`s."""
    from m3d_zoo.data import create_dataset
    if not a.root:
        raise CliError(f'--root is required with --dataset {a.dataset}.')
    kwargs = _dataset_kwargs(a)
    try:
        return create_dataset(a.dataset, a.root, **kwargs)
    except (ValueError, TypeError) as e:
        if type(e).__module__.startswith('m3d_zoo'):
            raise  # already one of the zoo's errors (DatasetError ...)
        # an unknown name, or loader options it does not take
        raise CliError(f'--dataset {a.dataset}' + (f' with {kwargs}' if kwargs else '') + f': {e}') from e


def _add_clip_args(p: argparse.ArgumentParser):
    """How tracklets are cut into clips and batched for a forward pass, and its progress bars (extract, evaluate)."""
    p.add_argument('--num-frames', type=int, help='clip length (default: the model\'s)')
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'), help='frame size (default: the model\'s)')
    p.add_argument('--batch-size', '-b', type=int, default=16, help='clips per forward pass')
    p.add_argument('--max-clips', type=int, help='cap on clips per tracklet (default all, the paper\'s protocol)')
    p.add_argument('--no-progress', action='store_true', help='no tqdm progress bars (on stderr)')


def _input_size(a) -> Optional[tuple]:
    return tuple(a.img_size) if a.img_size else None


def _add_device_args(p, amp: bool = True):
    """--device, --amp (where the command runs mixed precision) and --workers; `p` a parser or an argument group."""
    from m3d_zoo.utils import MAX_DEFAULT_WORKERS, available_cpus, default_num_workers
    p.add_argument('--device', help='cuda, cuda:N or cpu (default: a GPU if there is one)')
    if amp:
        p.add_argument('--amp', action=argparse.BooleanOptionalAction, default=None,
                       help='mixed precision (default: on GPUs)')
    p.add_argument('--workers', '-j', type=int, default=default_num_workers(),
                   help=f'data loading processes, per rank under torchrun (default {default_num_workers()} here: '
                        f'min({MAX_DEFAULT_WORKERS}, CPUs - 1), with {available_cpus()} CPUs available)')


def _device(name: Optional[str]):
    """The device for `--device`, refused with a `DeviceError` if this machine does not have it."""
    from m3d_zoo.engine.distributed import resolve_device
    return resolve_device(name)


def _add_output_arg(p: argparse.ArgumentParser, help: str, default: Optional[str] = None):
    """--output/-o, required unless it has a default."""
    p.add_argument('--output', '-o', required=default is None, default=default, help=help)


def _check_output_dir(path: str, flag: str) -> None:
    """Create the output folder `path` if needed, and refuse one the command could not write, before any work."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CliError(f'{flag} {path} is a file; give a folder.')
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f'{flag} {path}: cannot create the folder ({e.strerror or e}); choose a writable location.') \
            from e
    _check_output(str(folder / 'identities.csv'), flag, 'identities.csv')


def _check_output(path: str, flag: str, example: str) -> None:
    """Refuse an output file the command could not write, before any work is done.

    A missing folder is fine (it is created when the file is written) if the nearest existing folder above it
    takes a new file; an existing folder is refused as the output, so is a path through a file.

    Args:
        path: The output file.
        flag: The option that gave it, for the message.
        example: A file name to suggest when `path` is a folder.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise CliError(f'{flag} {path} is a folder; give a file name, e.g. {target / example}.')
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CliError(f'{flag} {path}: {folder} is a file, not a folder.')
    probe = folder / f'.m3d-zoo-write-test-{uuid.uuid4().hex[:8]}'
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        raise CliError(f'{flag} {path}: cannot write in {folder} ({e.strerror or e}); choose a writable location.') \
            from e
    os.close(fd)
    os.unlink(probe)


# ---------------------------------------------------------------------------------------------------------------------
# Commands: each one's arguments, then what it does


def _recipe_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ' '.join(map(str, value)) or 'none'
    if isinstance(value, float):
        return f'{value:g}'
    return 'none' if value is None else str(value)


def _recipe_defaults(field: str) -> str:
    """'default: modern 120, paper 400' (or 'default: 8' where the recipes agree), read from the recipes."""
    from m3d_zoo.engine.recipes import RECIPES
    values = {name: _recipe_value(getattr(recipe, field)) for name, recipe in sorted(RECIPES.items())}
    if len(set(values.values())) == 1:
        return f'default: {next(iter(values.values()))}'
    return 'default: ' + ', '.join(f'{name} {value}' for name, value in values.items())


# Recipe overrides: (flags, argparse options, help before the recipes' defaults); the recipe field is the flag's name
_RECIPE_FLAGS = (
    (('--epochs',), dict(type=int), ''),
    (('--batch-size', '-b'), dict(type=int), 'clips per step, all processes together'),
    (('--num-instances',), dict(type=int), 'K, tracklets per identity in a P x K batch'),
    (('--sampler',), dict(choices=('pk', 'random')), ''),
    (('--lr',), dict(type=float), 'learning rate of the backbone'),
    (('--head-lr-mult',), dict(type=float), 'the head\'s lr is this times --lr'),
    (('--temporal-lr-mult',), dict(type=float), 'the temporal kernels\' lr is this times --lr'),
    (('--opt',), dict(choices=('sgd', 'adam', 'adamw')), ''),
    (('--momentum',), dict(type=float), 'SGD momentum'),
    (('--weight-decay',), dict(type=float), ''),
    (('--decay-epochs',), dict(type=int, nargs='*'), 'epochs after which the lr is multiplied by --decay-rate'),
    (('--decay-rate',), dict(type=float), ''),
    (('--warmup-epochs',), dict(type=int), 'the lr rises step by step from --warmup-lr-init over these epochs'),
    (('--warmup-lr-init',), dict(type=float), ''),
    (('--num-frames',), dict(type=int), 'clip length T'),
    (('--clip-sampling',), dict(choices=('consecutive', 'segments')), ''),
    (('--head',), dict(choices=('paper', 'bnneck')), ''),
    (('--ce-weight',), dict(type=float), 'weight of the cross-entropy loss'),
    (('--label-smoothing',), dict(type=float), ''),
    (('--triplet-weight',), dict(type=float), 'weight of the batch-hard triplet loss (0: none)'),
    (('--triplet-margin',), dict(type=float), ''),
    (('--hflip',), dict(type=float), 'probability of a horizontal flip'),
    (('--pad',), dict(type=int), 'padding before a random crop (0: none)'),
    (('--re-prob',), dict(type=float), 'random erasing probability'),
    (('--noise-std',), dict(type=float), 'fresh Gaussian pixel noise on training frames, std as a fraction of the '
                                          'pixel range (0: none)'),
    (('--grad-clip',), dict(type=float), 'clip the gradient norm to this'),
    (('--eval-interval',), dict(type=int), 'evaluate every N epochs and after the last (0: never)'),
    (('--eval-max-clips',), dict(type=int), 'cap on clips per tracklet when evaluating while training (none: all)'),
    (('--seed',), dict(type=int), 'seed of the weights, batches, clips, augmentation and --val-ids draw'),
)


def add_train_args(p: argparse.ArgumentParser):
    from m3d_zoo.engine.distributed import DEFAULT_DIST_TIMEOUT_MIN
    from m3d_zoo.engine.recipes import list_recipes
    from m3d_zoo.engine.train import LOCK_NAME
    _add_model_args(p, required=False)
    _add_dataset_args(p)
    p.add_argument('--recipe', default='modern', help=f'training recipe: {", ".join(list_recipes())} (default modern)')
    _add_output_arg(p, 'output folder (checkpoints, metrics)', default='output/train')
    p.add_argument('--resume', help='continue an interrupted run from its checkpoint (file or output folder)')
    p.add_argument('--overwrite', action='store_true',
                   help='start a new run in an --output folder that holds an earlier one, whose files are moved into '
                        'replaced-<date>-<time>/ there (without it, such a folder is refused)')
    r = p.add_argument_group('recipe overrides', 'Each flag replaces one field of --recipe; its default is the '
                                                 'recipe\'s own.')
    overrides = [r.add_argument(*flags, **options, help=(f'{text}; ' if text else '') + _recipe_defaults(
        flags[0][2:].replace('-', '_'))) for flags, options, text in _RECIPE_FLAGS]
    r.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'),
                   help='frame size; ' + _recipe_defaults('input_size'))
    p.set_defaults(recipe_overrides=[action.dest for action in overrides])  # recipe field = flag name
    v = p.add_argument_group('model selection and budgets')
    held = v.add_mutually_exclusive_group()
    held.add_argument('--val-ids', type=int, metavar='N',
                      help='hold out N training identities (drawn from --seed) as a validation split that selects '
                           'best.safetensors; the test split is then evaluated at the end (a folder dataset\'s val/ '
                           'folder does the same). Without validation data, best is selected on the test split')
    held.add_argument('--val-split', type=float, metavar='FRACTION',
                      help='as --val-ids, a fraction of the training identities (e.g. 0.1)')
    v.add_argument('--eval-test', action='store_true',
                   help='with validation data, also evaluate the test split at every evaluation (default: at the end)')
    v.add_argument('--max-steps', type=int, metavar='N',
                   help='stop after N optimizer steps in all, then evaluate and save as at the end')
    v.add_argument('--time-budget', type=float, metavar='MINUTES',
                   help='stop at the first step that ends MINUTES after the start, then evaluate and save as at the '
                        'end')
    v.add_argument('--save-interval', type=int, default=1, metavar='EPOCHS',
                   help='write the resumable last checkpoint every EPOCHS epochs and at the end (default: 1)')
    o = p.add_argument_group('run options')
    _add_device_args(o)
    o.add_argument('--amp-dtype', choices=('bfloat16', 'float16'))
    o.add_argument('--grad-checkpointing', action='store_true', help='trade compute for activation memory')
    o.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm across GPUs')
    o.add_argument('--eval-batch-size', type=int, default=16)
    o.add_argument('--no-progress', action='store_true', help='no tqdm progress bars')
    o.add_argument('--push-to-hub', metavar='REPO', help='push the trained model (best, else last) to this Hub repo')
    o.add_argument('--force-unlock', action='store_true',
                   help=f'take the output folder over from a run whose lock ({LOCK_NAME}) cannot be checked from here '
                        f'(another host) or is unreadable; a dead run\'s lock on this host is taken over without it')
    o.add_argument('--dist-timeout', type=float, metavar='MINUTES',
                   help=f'torchrun: how long ranks wait for each other, e.g. for rank 0\'s evaluation '
                        f'(default {DEFAULT_DIST_TIMEOUT_MIN:g})')


def cmd_train(a) -> int:
    from m3d_zoo.engine import train
    if a.model is None and a.resume is None:
        raise CliError('train needs --model NAME (see m3d-zoo list), or --resume CHECKPOINT.')
    if a.val_split is not None and not 0 < a.val_split < 1:
        raise CliError(f'--val-split {a.val_split:g}: give a fraction of the training identities in (0, 1), e.g. '
                       f'0.1, or a number of identities with --val-ids.')
    summary = train(
        a.model, a.dataset, root=a.root, recipe=a.recipe, output_dir=a.output, resume=a.resume,
        pretrained=a.pretrained, pretrained_file=a.pretrained_file, model_kwargs=_model_kwargs(a),
        dataset_kwargs=_dataset_kwargs(a), device=a.device, amp=a.amp, amp_dtype=a.amp_dtype,
        grad_checkpointing=a.grad_checkpointing, sync_bn=a.sync_bn, num_workers=a.workers,
        eval_batch_size=a.eval_batch_size, progress=not a.no_progress, push_to_hub=a.push_to_hub,
        force_unlock=a.force_unlock, dist_timeout=a.dist_timeout, input_size=_input_size(a),
        val_ids=a.val_ids if a.val_ids is not None else a.val_split, eval_test=a.eval_test, max_steps=a.max_steps,
        time_budget=a.time_budget, overwrite=a.overwrite, save_interval=a.save_interval, **{k: getattr(a, k) for k in a.recipe_overrides})
    return 0 if summary.get('ranks_in_sync', True) else 1


def add_extract_args(p: argparse.ArgumentParser):
    from m3d_zoo.data import CROP_MODES
    _add_model_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument('--tracklets', nargs='+', metavar='DIR',
                   help='tracklet folders (a folder of frames, or a folder of such folders)')
    g.add_argument('--video', action='append', metavar='VIDEO',
                   help='a camera\'s video; repeat --video/--tracks for each camera')
    _add_dataset_args(p, required=False, choice=g)
    _add_seed_arg(p)
    p.add_argument('--splits', nargs='+', default=['query', 'gallery'], choices=('query', 'gallery', 'train'))
    _add_output_arg(p, 'embeddings file (.safetensors)')
    _add_clip_args(p)
    _add_device_args(p)
    v = p.add_argument_group('video input (--video)')
    v.add_argument('--tracks', action='append', metavar='FILE',
                   help='the tracker\'s output for the --video at the same position (MOTChallenge text: '
                        'frame,id,left,top,width,height,conf,x,y,z)')
    v.add_argument('--camera-names', nargs='+', metavar='NAME', help='one per --video (default: the video file names)')
    v.add_argument('--crop-mode', choices=CROP_MODES, default='stretch',
                   help='stretch each box to the model\'s input (as the published datasets did) or pad it to keep '
                        'its aspect ratio (default stretch)')
    v.add_argument('--min-len', type=int, default=8, help='drop tracks with fewer frames (default 8)')
    v.add_argument('--max-len', type=int, default=64,
                   help='cut longer tracks into tracklets of at most this many frames (default 64)')
    v.add_argument('--min-height', type=float, default=0., help='drop boxes lower than this, in pixels')
    v.add_argument('--min-conf', type=float, default=-math.inf, help='drop boxes with a lower confidence')
    v.add_argument('--min-visibility', type=float, default=0.,
                   help='drop boxes with less of them inside the frame (0..1; times the file\'s visibility field '
                        'where it has one)')
    v.add_argument('--crop-cache', metavar='DIR',
                   help='keep the crops here (one folder per camera) and reuse them when the video, tracks and '
                        'options are unchanged')


def _video_sources(a) -> list:
    from m3d_zoo.engine import VideoSource
    if not a.tracks or len(a.tracks) != len(a.video):
        raise CliError(f'each --video needs its --tracks file, in the same order: got {len(a.video)} --video and '
                       f'{len(a.tracks or [])} --tracks.')
    names = a.camera_names or [None] * len(a.video)
    if len(names) != len(a.video):
        raise CliError(f'--camera-names takes one name per --video: got {len(names)} names for {len(a.video)} videos.')
    return [VideoSource(v, t, n) for v, t, n in zip(a.video, a.tracks, names)]


def _embedding_meta(a, model) -> Dict[str, Any]:
    arch = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture')
    return {'model': a.model, 'architecture': arch, 'num_frames': a.num_frames or getattr(model, 'num_frames', None),
            'input_size': list(a.img_size) if a.img_size else list(model.pretrained_cfg.get('input_size', ()))[1:]}


def _extract_videos(a, model, device, amp_dtype) -> None:
    from m3d_zoo.engine import CropOptions, extract_videos, save_embeddings
    sources = _video_sources(a)
    crop = CropOptions(a.crop_mode, a.min_len, a.max_len, a.min_height, a.min_conf, a.min_visibility)
    out = extract_videos(model, sources, crop=crop, cache_dir=a.crop_cache, num_frames=a.num_frames,
                         input_size=_input_size(a), batch_size=a.batch_size, device=device, amp_dtype=amp_dtype,
                         max_clips=a.max_clips, progress=not a.no_progress)
    meta = dict(_embedding_meta(a, model), dataset='videos', gallery_mode='none', cameras=out['cameras'])
    extra = {k: out[k] for k in ('track_ids', 'first_frames', 'last_frames', 'thumbnails')}
    path = save_embeddings(a.output, out['embeddings'], out['pids'], out['camids'], out['split'], meta, extra)
    for cam in out['cameras']:
        skipped = ''.join(f'; {n} {why}' for why, n in cam['skipped_boxes'].items())
        print(f'{cam["name"]}: {cam["tracklets"]} tracklets from {cam["num_tracks"] - cam["short_tracks"]} tracks '
              f'({cam["short_tracks"]} shorter than --min-len dropped; {cam["kept_boxes"]}/{cam["boxes"]} boxes kept'
              f'{skipped})' + (' [crops from the cache]' if cam.get('cached') else ''))
    print(f'{path}: {out["embeddings"].shape[0]} tracklets x {out["embeddings"].shape[1]}-d embeddings from '
          f'{len(sources)} camera(s); next: m3d-zoo match {path} --output matches')


def cmd_extract(a) -> int:
    import torch
    from m3d_zoo.data import VideoReIDDataset
    from m3d_zoo.engine import extract_dataset, find_tracklet_folders, save_embeddings
    from m3d_zoo.utils import tune_cpu_allocator
    device = _device(a.device)
    _check_output(a.output, '--output', 'embeddings.safetensors')
    if a.tracks and not a.video:
        raise CliError('--tracks goes with --video: give each camera\'s video and its track file.')
    tune_cpu_allocator()  # this process only runs forwards: keep their memory instead of page-faulting it back in
    amp = (device.type == 'cuda') if a.amp is None else a.amp
    amp_dtype = torch.bfloat16 if amp else None
    if a.video:
        _extract_videos(a, _inference_model(a, device), device, amp_dtype)
        return 0
    if a.dataset:
        dataset = _dataset(a)
        splits = a.splits
    else:
        tracklets = find_tracklet_folders(a.tracklets)
        dataset = VideoReIDDataset(name='tracklets', train=[], query=tracklets, gallery=[], gallery_mode='none')
        splits = ['query']
    model = _inference_model(a, device)
    out = extract_dataset(
        model, dataset, splits=splits, num_frames=a.num_frames, input_size=_input_size(a), batch_size=a.batch_size,
        num_workers=a.workers, device=device, amp_dtype=amp_dtype, max_clips=a.max_clips, progress=not a.no_progress)
    if not a.dataset:
        out['split'][:] = -1  # plain folders: neither query nor gallery
    meta = dict(_embedding_meta(a, model), dataset=out['dataset'], gallery_mode=out['gallery_mode'],
                tracklets=out['tracklets'])
    path = save_embeddings(a.output, out['embeddings'], out['pids'], out['camids'], out['split'], meta)
    counts = {name: int((out['split'] == code).sum()) for name, code in (('query', 0), ('gallery', 1), ('train', 2))}
    print(f'{path}: {out["embeddings"].shape[0]} tracklets x {out["embeddings"].shape[1]}-d embeddings '
          f'({", ".join(f"{k} {v}" for k, v in counts.items() if v) or "tracklet folders"})')
    return 0


def add_match_args(p: argparse.ArgumentParser):
    p.add_argument('embeddings', help='embeddings file of m3d-zoo extract --video V --tracks T [--video V2 ...]')
    _add_output_arg(p, 'output folder: identities.csv/.json, identities.png, tracks/<camera>.txt')
    p.add_argument('--threshold', type=float, default=0.3,
                   help='largest cosine distance (0..2) at which tracks of two cameras are one person (default 0.3; '
                        'identities.json lists the distance of every match, to tune it)')
    p.add_argument('--no-relink', action='store_true', help='do not re-link tracks the tracker broke within a camera')
    p.add_argument('--relink-threshold', type=float, help='largest distance for a re-link (default: --threshold)')
    p.add_argument('--max-gap', type=int, help='most frames between a broken track\'s end and its continuation')
    p.add_argument('--video-out', action='store_true',
                   help='also write each camera\'s video with every box labelled with its global identity')


def cmd_match(a) -> int:
    from m3d_zoo.engine.match import match_embeddings_file, write_matches
    _check_output_dir(a.output, '--output')
    settings = {'embeddings': a.embeddings, 'threshold': a.threshold, 'relink': not a.no_relink,
                'relink_threshold': a.relink_threshold, 'max_gap': a.max_gap}
    try:
        result, data = match_embeddings_file(a.embeddings, a.threshold, not a.no_relink, a.relink_threshold,
                                             a.max_gap)
    except ValueError as e:
        if type(e).__module__.startswith('m3d_zoo'):
            raise
        raise CliError(str(e)) from e  # match_tracks' checks of the thresholds
    files = write_matches(a.output, result, data, settings, video=a.video_out)
    print(f'{len(result.global_ids)} tracks -> {result.num_identities} identities ({len(result.matches)} cross-camera '
          f'matches, {len(result.links)} re-links); wrote {len(files)} files to {a.output}:')
    for f in files:
        print(f'  {f}')
    return 0


def add_evaluate_args(p: argparse.ArgumentParser):
    p.add_argument('embeddings', nargs='*',
                   help='embeddings files from m3d-zoo extract (query + gallery); with several, one table row and one '
                        'CMC curve each, all in one picture')
    p.add_argument('--gallery', help='a second embeddings file holding the gallery (the one file given is then the '
                                     'query)')
    _add_model_args(p, required=False)
    _add_seed_arg(p)
    _add_dataset_args(p, required=False)
    _add_clip_args(p)
    _add_device_args(p, amp=False)
    p.add_argument('--metric', default='euclidean', choices=('euclidean', 'sqeuclidean', 'cosine'))
    p.add_argument('--ap-mode', default='standard', choices=('standard', 'trapezoid'))
    p.add_argument('--rerank', action='store_true', help='k-reciprocal re-ranking')
    p.add_argument('--same-camera', action='store_true',
                   help='count gallery tracklets of the query\'s person in the query\'s own camera as true matches '
                        '(single-camera data); by default only other cameras\' count, as in MARS, PRID-2011 and '
                        'iLIDS-VID, and same-camera ones are ignored')
    p.add_argument('--max-rank', type=int, default=20)
    p.add_argument('--cmc-png', help='draw the CMC curves here (needs matplotlib: pip install "m3d_zoo[plot]"; '
                                     'default, where it is installed: next to the first embeddings file, _cmc.png)')
    p.add_argument('--results', help='write the results as JSON here (hub/release.py reads it); with several '
                                     'embeddings files, an object of results by file')
    r = p.add_argument_group('ranked lists')
    r.add_argument('--ranked-png', metavar='DIR', help='draw ranked lists here: each query\'s frames and its top '
                                                       'gallery tracklets, green for a true match, red for a false one')
    r.add_argument('--ranked-num', type=int, default=10, help='queries to draw, spread over the query set (default 10)')
    r.add_argument('--ranked-k', type=int, default=5, help='gallery tracklets per query (default 5)')


def _file_labels(paths: List[str]) -> List[str]:
    """A label per embeddings file: its name, or the path as given where two files share a name."""
    names = [os.path.basename(p) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def _cmc_png(a, default: str) -> Optional[str]:
    """Where to draw the CMC curves, checked before any work: --cmc-png (matplotlib required), else `default` if
    matplotlib is installed, else nowhere (said so)."""
    from m3d_zoo.engine.plot import MatplotlibMissingError, require_matplotlib
    try:
        require_matplotlib('--cmc-png' if a.cmc_png else 'The CMC curve')
    except MatplotlibMissingError as e:
        if a.cmc_png:
            raise
        print(f'no CMC curve: {e}')
        return None
    png = a.cmc_png or default
    _check_output(png, '--cmc-png' if a.cmc_png else 'the CMC curve (--cmc-png)', 'cmc.png')
    return png


def _evaluate_inputs(a) -> Tuple[Dict[str, Any], Optional[str]]:
    """The query/gallery sets to evaluate, by label, and where to draw their CMC curves."""
    from m3d_zoo.engine.extract import dataset_query_gallery, query_gallery
    if a.embeddings:
        png = _cmc_png(a, os.path.splitext(a.embeddings[0])[0] + '_cmc.png')
        return {label: query_gallery(path, a.gallery)
                for label, path in zip(_file_labels(a.embeddings), a.embeddings)}, png
    if not (a.model and a.dataset):
        raise CliError('evaluate needs an embeddings file (m3d-zoo extract ... -o FILE), or --model with --dataset and '
                       '--root.')
    device = _device(a.device)
    dataset = _dataset(a)
    png = _cmc_png(a, f'{dataset.name}_cmc.png')
    model = _inference_model(a, device)
    qg = dataset_query_gallery(model, dataset, num_frames=a.num_frames, input_size=_input_size(a),
                               batch_size=a.batch_size, num_workers=a.workers, device=device, max_clips=a.max_clips,
                               progress=not a.no_progress)
    return {f'{a.model} on {dataset.name}': qg}, png


def _print_results(results: Dict[str, Dict[str, Any]]) -> None:
    """One table row per evaluation, and the protocol: once if all share it, else one line each."""
    from m3d_zoo.eval import format_protocol, format_results, format_table, results_row
    if len(results) == 1:
        name, res = next(iter(results.items()))
        print(format_results(res, name, table=True))
        return
    print(format_table({name: results_row(res) for name, res in results.items()}, 'results'))
    protocols = {name: format_protocol(res) for name, res in results.items()}
    if len(set(protocols.values())) == 1:
        print(next(iter(protocols.values())))
    else:
        print('\n'.join(f'{name}: {protocol}' for name, protocol in protocols.items()))


def cmd_evaluate(a) -> int:
    from m3d_zoo.engine import save_cmc_png
    from m3d_zoo.engine.extract import evaluate_query_gallery, results_to_json
    if a.embeddings and a.model:
        raise CliError('evaluate takes embeddings files or --model with --dataset, not both.')
    if len(a.embeddings) > 1 and (a.gallery or a.ranked_png):
        raise CliError(f'{"--gallery" if a.gallery else "--ranked-png"} goes with one embeddings file; to compare '
                       f'several, give files that each hold a query and a gallery (m3d-zoo extract --splits query '
                       f'gallery).')
    if a.results:
        _check_output(a.results, '--results', 'results.json')
    if a.ranked_png:
        _check_output_dir(a.ranked_png, '--ranked-png')
    sets, png = _evaluate_inputs(a)
    results = {name: evaluate_query_gallery(qg, metric=a.metric, ap_mode=a.ap_mode, rerank=a.rerank,
                                            max_rank=a.max_rank, same_camera=a.same_camera)
               for name, qg in sets.items()}
    _print_results(results)
    if png:
        title = f'CMC: {next(iter(results))}' if len(results) == 1 else 'CMC'
        save_cmc_png(png, {name: res['cmc'] for name, res in results.items()}, title=title)
        print(f'CMC curve{"s" if len(results) > 1 else ""}: {png}')
    if a.ranked_png:
        _save_ranked(a, next(iter(sets.values())))
    if a.results:
        out = {name: results_to_json(res) for name, res in results.items()}
        atomic_write_text(a.results, json.dumps(out if len(out) > 1 else next(iter(out.values())), indent=1) + '\n')
        print(f'results: {a.results}')
    return 0


def _save_ranked(a, qg) -> None:
    from m3d_zoo.pictures import save_ranked_lists
    if a.rerank:
        print('ranked lists: drawn from the plain distances (not re-ranked)')
    files = save_ranked_lists(a.ranked_png, qg.q_feats, qg.g_feats, qg.q_pids, qg.g_pids, qg.q_camids, qg.g_camids,
                              qg.q_frames, qg.g_frames, metric=a.metric, num_queries=a.ranked_num, top_k=a.ranked_k,
                              q_names=qg.q_names)
    print(f'ranked lists: {len(files)} pictures in {a.ranked_png}')


def add_list_args(p: argparse.ArgumentParser):
    p.add_argument('filter', nargs='?', default='')
    p.add_argument('--pretrained', action='store_true', help='only models with weights, with their tags')


def cmd_list(a) -> int:
    import m3d_zoo
    from m3d_zoo.engine import list_recipes
    names = m3d_zoo.list_pretrained(a.filter) if a.pretrained else m3d_zoo.list_models(a.filter)
    print('\n'.join(names) if names else f'no model matches {a.filter!r}')
    if not a.filter:
        print(f'\nrecipes: {", ".join(list_recipes())}\ndatasets: {", ".join(m3d_zoo.list_datasets())}')
    return 0


def add_export_args(p: argparse.ArgumentParser):
    _add_model_args(p)
    _add_seed_arg(p)
    _add_output_arg(p, 'the exported file (.onnx, or .pt2 for torch_export)')
    p.add_argument('--format', default='onnx', choices=('onnx', 'torch_export'))
    p.add_argument('--num-frames', type=int, help='clip length (default: the model\'s)')
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'), default=(256, 128), help='frame size')
    p.add_argument('--batch-size', type=int, default=2, help='example batch size')
    p.add_argument('--opset', type=int, default=18)
    p.add_argument('--static-batch', action='store_true', help='fixed batch size (default dynamic)')
    p.add_argument('--no-fuse', action='store_true', help='keep the M3D kernels unfused')
    p.add_argument('--verify', action='store_true', help='check the exported model against PyTorch')


def cmd_export(a) -> int:
    try:
        from m3d_zoo.export import export_model  # lazy: export brings onnx / onnxscript
    except ImportError as e:
        raise CliError(f'export is unavailable: {e}. Install the export extras (pip install onnx onnxscript).') from e
    # export.py's own checks of these options, made before the model is loaded
    if a.format == 'onnx' and a.opset < 17:
        raise CliError(f'--opset {a.opset}: the export needs opset 17 or later (LayerNormalization, dynamo exporter).')
    if a.batch_size < (1 if a.static_batch else 2):
        raise CliError(f'--batch-size {a.batch_size}: the example batch must hold at least '
                       + ('1 clip.' if a.static_batch else '2 clips for a dynamic batch (or pass --static-batch).'))
    _check_output(a.output, '--output', 'model.onnx' if a.format == 'onnx' else 'model.pt2')
    device = _device('cpu')
    model = _inference_model(a, device)
    path = export_model(model, a.output, format=a.format, num_frames=a.num_frames, input_size=tuple(a.img_size),
                        batch_size=a.batch_size, opset=a.opset, dynamic_batch=not a.static_batch, fuse=not a.no_fuse,
                        verify=a.verify)
    print(f'exported {a.model} to {path}')
    return 0


def add_push_args(p: argparse.ArgumentParser):
    p.add_argument('--checkpoint', help='checkpoint from m3d-zoo train (.safetensors)')
    p.add_argument('--model', help='or a model name / hf-hub: / local-dir: source / saved folder to push as is')
    p.add_argument('--repo-id', required=True, help='organisation/name')
    p.add_argument('--results', help='evaluation results JSON (eval.json / best_eval.json) for the model card')
    p.add_argument('--dataset', help='training dataset name for the card')
    p.add_argument('--drop-classifier', action='store_true', help='push the embedding model only')
    p.add_argument('--revision', help='branch (default main)')
    p.add_argument('--private', action='store_true')
    p.add_argument('--commit-message')


def cmd_push(a) -> int:
    if bool(a.checkpoint) == bool(a.model):
        raise CliError('push needs exactly one of --checkpoint (from m3d-zoo train) or --model.')
    if a.checkpoint:
        from m3d_zoo.hub.release import push_checkpoint
        info = push_checkpoint(a.checkpoint, a.repo_id, results=a.results, dataset=a.dataset,
                               drop_classifier=a.drop_classifier, commit_message=a.commit_message,
                               revision=a.revision, private=a.private or None)
    else:
        import m3d_zoo
        from m3d_zoo.hub.card import model_card_for_run
        from m3d_zoo.models import classify_model_spec
        what = classify_model_spec(a.model)
        if what.kind == 'checkpoint':
            raise CliError(f'--model {a.model} is a training checkpoint: push it with --checkpoint {a.model}.')
        model = m3d_zoo.create_model(what.name, pretrained=what.saved)
        if a.drop_classifier:
            model.reset_classifier(0)
        results = _read_results(a.results) if a.results else None
        info = m3d_zoo.push_to_hub(model, a.repo_id, commit_message=a.commit_message or f'Add {a.model}',
                                   revision=a.revision, private=a.private or None,
                                   model_card=model_card_for_run(None, a.dataset, results))
    print(f'pushed to {a.repo_id} at commit {info.oid}: m3d_zoo.create_model("hf-hub:{a.repo_id}@{info.oid}", '
          f'pretrained=True)')
    return 0


def _read_results(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError as e:
        raise CliError(f'--results {path} is not a JSON results file ({e}); pass the eval.json or best_eval.json '
                       f'that m3d-zoo train or evaluate --results wrote.') from e


class _Command(NamedTuple):
    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: Optional[str] = None  # the help's, if None


_COMMANDS = (
    _Command('train', 'train or fine-tune a model (also under torchrun)', add_train_args, cmd_train,
             'Train a model. Recipe fields can be overridden by the flags below.'),
    _Command('extract', 'embeddings of a dataset or of tracklet folders -> safetensors', add_extract_args,
             cmd_extract),
    _Command('match', 'who is who across cameras: tracks of extracted videos -> global identities', add_match_args,
             cmd_match),
    _Command('evaluate', 'CMC/mAP table and CMC curve (PNG) from embeddings, or from a model', add_evaluate_args,
             cmd_evaluate),
    _Command('list', 'list models (wildcard filter), recipes and datasets', add_list_args, cmd_list),
    _Command('export', 'export a model to ONNX or torch.export', add_export_args, cmd_export),
    _Command('push', 'push a trained checkpoint (or a zoo model) to the Hugging Face Hub', add_push_args, cmd_push),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='m3d-zoo', description='Video person re-identification model zoo (M3D, AAAI 2019).',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n')[1])
    parser.add_argument('--debug', action='store_true', help='show tracebacks')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for command in _COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.add_args(p)
        p.set_defaults(func=command.run)
    return parser


def _is_user_error(e: BaseException) -> bool:
    """Whether `e`'s message is enough: the zoo's own errors (every exception class defined in m3d_zoo, e.g.
    CliError, DatasetError, CheckpointError, TrainingError, DeviceError, EmbeddingsError, UnknownModelError,
    HubError, PretrainedMismatchError: each says what was wrong and what to do) and FileNotFoundError for a path the
    user gave. A plain ValueError, KeyError or any other exception is a bug and keeps its traceback."""
    if isinstance(e, (CliError, FileNotFoundError)):  # CliError by name: under `python -m` it lives in __main__
        return True
    return any(c.__module__.split('.')[0] == 'm3d_zoo' for c in type(e).__mro__)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    debug = a.debug or os.environ.get('M3D_ZOO_DEBUG') == '1'
    try:
        return a.func(a)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not _is_user_error(e):
            raise
        rank = os.environ.get('RANK')
        prefix = f'm3d-zoo {a.command}' + (f' [rank {rank}]' if rank and os.environ.get('WORLD_SIZE', '1') != '1'
                                          else '')
        # the message's command-line form where it has one (advice naming flags rather than Python calls)
        print(f'{prefix}: error: {getattr(e, "cli_message", None) or e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())

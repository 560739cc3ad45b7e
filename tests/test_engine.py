"""Training engine: recipes, losses, optimizer groups, atomic checkpoints, exact resume, the output folder's lock
and bad-input errors."""
import dataclasses
import errno
import importlib
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import m3d_zoo
from m3d_zoo.data import make_synthetic_gait
from m3d_zoo.engine import (
    CheckpointError, ReidLoss, TrainingError, TrainRecipe, UnknownRecipeError, batch_hard_triplet_loss,
    build_optimizer, build_scheduler, get_recipe, load_checkpoint, load_inference_model, model_from_checkpoint,
    save_checkpoint, train)
from m3d_zoo import _io as io_mod
from m3d_zoo.data import create_video_transform
from m3d_zoo.engine.distributed import DEFAULT_DIST_TIMEOUT_MIN, init_distributed
from m3d_zoo.engine.extract import _model_frames
from m3d_zoo.engine.train import LOCK_NAME, OutputLock, OutputLockedError
from _fake_datasets import write_fake_folder
from _lock_procs import CONTENDER, holding, start


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning OpenMP threads per process are several times
    slower than one, and these runs are too small to gain from two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A run small enough for a test: 32x16 frames, 4-frame clips, batches of 2 identities x 2 tracklets.
TINY = dict(epochs=2, batch_size=4, num_instances=2, num_frames=4, input_size=(32, 16), eval_interval=0,
            warmup_epochs=1, decay_epochs=[1], eval_max_clips=1)
TINY_MODEL = dict(temporal_strides=(1, 1, 1, 1))


@pytest.fixture(scope='module')
def gait_root(tmp_path_factory):
    """A tiny order-only synthetic set in the generic folder layout: 6 train ids, 3 test ids."""
    root = tmp_path_factory.mktemp('gait') / 'gait'
    make_synthetic_gait(str(root), num_ids=9, num_train_ids=6, tracklets_per_id=3, length=8, size=(32, 16),
                        seed=0)
    return str(root)


def _run(gait_root, out, model='m3d_resnet18', **kw):
    args = dict(TINY, **kw)
    opts = {k: args.pop(k) for k in ('resume', 'push_to_hub', 'force_unlock', 'overwrite', 'val_ids', 'eval_test',
                                     'max_steps', 'time_budget', 'save_interval', 'dataset') if k in args}
    dataset = opts.pop('dataset', 'folder')
    return train(model, dataset, root=gait_root, recipe=args.pop('recipe', 'modern'), output_dir=out,
                 model_kwargs=args.pop('model_kwargs', TINY_MODEL), device='cpu', num_workers=0, progress=False,
                 **opts, **args)


def _weights(path):
    with safe_open(str(path), framework='pt') as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _events(out, kind=None):
    events = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    return [e for e in events if kind is None or e['event'] == kind]


# ---------------------------------------------------------------------------------------------------------------------
# Recipes, losses, optimizer


def test_paper_and_modern_recipes():
    paper = get_recipe('paper')
    assert (paper.opt, paper.lr, paper.head_lr_mult, paper.weight_decay, paper.num_frames) == ('sgd', 0.01, 10, 5e-4, 8)
    assert paper.clip_sampling == 'consecutive' and paper.decay_epochs == [300] and paper.decay_rate == 0.1
    assert paper.triplet_weight == 0 and paper.label_smoothing == 0 and paper.head == 'paper'
    modern = get_recipe('modern')
    assert modern.opt == 'adam' and modern.warmup_epochs > 0 and modern.sampler == 'pk'
    assert modern.label_smoothing > 0 and modern.triplet_weight > 0 and modern.head == 'bnneck'
    assert modern.hflip > 0 and modern.re_prob > 0
    assert get_recipe('modern', lr=1e-3, epochs=None).lr == 1e-3  # None: flag not given, keep the recipe's
    with pytest.raises(UnknownRecipeError, match="Unknown recipe 'fancy'; available: modern, paper"):
        get_recipe('fancy')
    with pytest.raises(ValueError, match='batch_size=30 must be a multiple of num_instances=4'):
        get_recipe('modern', batch_size=30)
    with pytest.raises(ValueError, match="triplet_weight=1.0 needs sampler='pk'"):
        get_recipe('modern', sampler='random')


def test_batch_hard_triplet():
    y = torch.tensor([0, 0, 1, 1])
    far = torch.tensor([[0., 0.], [0., 0.1], [10., 0.], [10., 0.1]])
    loss, acc = batch_hard_triplet_loss(far, y, margin=0.3)
    assert loss.item() == 0 and acc.item() == 1
    mixed = torch.tensor([[0., 0.], [10., 0.], [0., 0.1], [10., 0.1]])
    loss, acc = batch_hard_triplet_loss(mixed, y, margin=0.3)
    # every anchor: farthest positive at 10, closest negative at 0.1 -> 10 - 0.1 + 0.3
    assert loss.item() == pytest.approx(10.2, abs=1e-4) and acc.item() == 0
    # anchors without a positive in the batch are left out; none at all gives 0 with a graph
    loss, _ = batch_hard_triplet_loss(torch.randn(3, 2, requires_grad=True), torch.tensor([0, 1, 2]))
    assert loss.item() == 0 and loss.requires_grad


def test_reid_loss_two_streams_sum_per_stream():
    y = torch.tensor([0, 0, 1, 1])
    logits = torch.randn(4, 2)
    feat = torch.randn(4, 8)
    fn = ReidLoss(ce_weight=1., label_smoothing=0.1, triplet_weight=1.)
    single, _ = fn({'logits': logits, 'feat': feat}, y)
    double, logs = fn({'logits': (logits, logits), 'feat': (feat, feat)}, y)
    assert torch.allclose(double, 2 * single) and set(logs) >= {'loss', 'loss_ce', 'loss_triplet', 'acc'}


def test_head_gets_ten_times_the_lr_in_the_paper_recipe():
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=5, head='paper')
    opt = build_optimizer(model, get_recipe('paper'))
    body, head = opt.param_groups
    assert body['lr'] == 0.01 and head['lr'] == 0.1 and head['weight_decay'] == 5e-4
    head_ids = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in head['params']} == head_ids
    assert not head_ids & {id(p) for p in body['params']}


def test_temporal_kernels_get_their_own_lr_multiplier():
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=5)
    temporal_ids = {id(p) for n, p in model.named_parameters() if '.branches.' in n}
    # no group of their own at 1x: optimizer states saved before the option existed still load
    body1, head1 = build_optimizer(model, get_recipe('modern')).param_groups
    body, temporal, head = build_optimizer(model, get_recipe('modern', temporal_lr_mult=10.)).param_groups
    assert temporal['name'] == 'temporal' and temporal['lr'] == pytest.approx(3.5e-3) and body['lr'] == 3.5e-4
    assert {id(p) for p in temporal['params']} == temporal_ids and not temporal_ids & {id(p) for p in body['params']}
    assert [id(p) for p in head['params']] == [id(p) for p in head1['params']]
    assert {id(p) for p in body1['params']} == {id(p) for p in body['params']} | temporal_ids
    with pytest.raises(ValueError, match='temporal_lr_mult'):
        get_recipe('modern', temporal_lr_mult=0.)


def _subnormals_flushed() -> bool:
    return float((torch.tensor([1e-39]) * 1.5).item()) == 0.0


def test_training_runs_with_subnormals_flushed_and_restores_the_setting(gait_root, tmp_path, monkeypatch):
    # a tap that reads only padding decays under Adam + weight decay into subnormals, which slow CPU arithmetic
    from m3d_zoo.engine.train import Trainer
    monkeypatch.setattr(Trainer, 'run', lambda self: {'flushed': _subnormals_flushed()})
    assert _run(gait_root, tmp_path / 'run') == {'flushed': True}
    assert not _subnormals_flushed()


def test_the_recipes_pixel_noise_reaches_the_training_clips(gait_root):
    from m3d_zoo.data import create_dataset
    from m3d_zoo.engine.distributed import DistInfo
    from m3d_zoo.engine.train import build_train_loader
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=6)
    for std in (0., 0.1):
        loader = build_train_loader(create_dataset('folder', gait_root), model,
                                    get_recipe('modern', batch_size=4, num_instances=2, noise_std=std), DistInfo(), 0)
        transform = loader.dataset.transform
        assert transform.is_training and transform.noise_std == std and ('noise_std' in repr(transform)) == (std > 0)
    assert get_recipe('modern').noise_std == 0 and get_recipe('paper').noise_std == 0
    with pytest.raises(ValueError, match=r"noise_std=2.0 must be in \[0, 1\]"):
        get_recipe('modern', noise_std=2.)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_roundtrip_and_metadata(tmp_path):
    model = m3d_zoo.create_model('m3d_resnet18', num_classes=3, num_frames=4, temporal_strides=(1, 1, 1, 1))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 4, 32, 16)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path, 'last', model, {'epoch': 3, 'optimizer': opt.state_dict()}, {'epoch': 3})
    with safe_open(str(path), framework='pt') as f:
        meta = f.metadata()
    assert meta['architecture'] == 'm3d_resnet18' and json.loads(meta['model_args'])['num_frames'] == 4
    ck = load_checkpoint(tmp_path)  # the output folder resolves to last.safetensors
    assert ck.epoch == 3 and ck.architecture == 'm3d_resnet18'
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ck.state_dict.items())
    opt2 = torch.optim.Adam(model.parameters())
    opt2.load_state_dict(ck.train_state['optimizer'])  # loaded with weights_only=True
    # a second save replaces the state file; only the pair named by the weights remains
    save_checkpoint(tmp_path, 'last', model, {'epoch': 4}, {'epoch': 4})
    assert len(list(tmp_path.glob('last.state-*.pt'))) == 1 and load_checkpoint(tmp_path).epoch == 4


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=3)
    save_checkpoint(tmp_path, 'last', model, {'epoch': 1}, {'epoch': 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)

    def fill_up(f, data):  # half the bytes go out, then the disk is full
        f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, 'No space left on device')

    for fail_on in ('.pt', '.safetensors'):  # the disk fills while writing the state, or the weights
        real = io_mod._write_chunks

        def writer(f, data, fail_on=fail_on):
            (fill_up if f.name.split('.tmp-')[0].endswith(fail_on) else real)(f, data)
        monkeypatch.setattr(io_mod, '_write_chunks', writer)
        with pytest.raises(CheckpointError, match=r'disk is full.*Nothing was replaced: the previous checkpoint '
                                                  r'.*last.safetensors \(epoch 1\) is intact'):
            save_checkpoint(tmp_path, 'last', model, {'epoch': 2}, {'epoch': 2})
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary files left either
        assert load_checkpoint(tmp_path).epoch == 1


def test_kill_mid_save_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    """A kill after the new state file is written but before the weights are renamed: the old pair still loads."""
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=3)
    save_checkpoint(tmp_path, 'last', model, {'epoch': 1}, {'epoch': 1})
    real = io_mod.atomic_write_bytes

    def killed(path, data):
        if str(path).endswith('.safetensors'):
            raise KeyboardInterrupt  # as if killed before the rename
        return real(path, data)
    monkeypatch.setattr(io_mod, 'atomic_write_bytes', killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 'last', model, {'epoch': 2}, {'epoch': 2})
    assert load_checkpoint(tmp_path).epoch == 1


@pytest.mark.parametrize('name', ['../outside.pt', '{abs}', 'sub/../../outside.pt'])
def test_a_train_state_outside_the_checkpoint_folder_is_refused(name, tmp_path):
    """The weights' metadata names the training state file; a name that leads out of their folder is not followed,
    even to a valid state file."""
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=3)
    ck = tmp_path / 'run'
    path = save_checkpoint(ck, 'last', model, {'epoch': 1}, {'epoch': 1})
    state = next(ck.glob('last.state-*.pt'))
    outside = tmp_path / 'outside.pt'
    outside.write_bytes(state.read_bytes())  # the same valid state, one folder up
    with safe_open(str(path), framework='pt') as f:
        meta = f.metadata()
    name = name.replace('{abs}', str(outside))
    save_file(load_file(str(path)), str(path), metadata=dict(meta, train_state=name))
    with pytest.raises(CheckpointError, match=rf'names its training state {re.escape(repr(name))}, which is not a '
                                              rf'file in {re.escape(str(ck))}.*not followed'):
        load_checkpoint(path)
    assert load_checkpoint(path, with_train_state=False).train_state is None  # the weights alone still load


def test_resume_continues_exactly(gait_root, tmp_path):
    """Two epochs straight == one epoch, then --resume for the second (bitwise, on the CPU)."""
    straight = _run(gait_root, tmp_path / 'straight')
    assert straight['last_epoch'] == 2
    _run(gait_root, tmp_path / 'split', epochs=1)
    resumed = _run(gait_root, tmp_path / 'split', resume=tmp_path / 'split' / 'last.safetensors')
    assert resumed['last_epoch'] == 2
    a, b = _weights(tmp_path / 'straight' / 'last.safetensors'), _weights(tmp_path / 'split' / 'last.safetensors')
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(x) for x in (tmp_path / 'split' / 'metrics.jsonl').read_text().splitlines()]
    epochs = [x for x in lines if x['event'] == 'epoch']
    assert [x['epoch'] for x in epochs] == [1, 2]
    # the optimizer-step count (per-step schedules) carries over too
    steps = [load_checkpoint(tmp_path / run / 'last.safetensors').train_state['num_updates']
             for run in ('straight', 'split')]
    assert steps[0] == steps[1] == sum(x['steps'] for x in epochs) > 0


def test_resume_into_another_architecture_fails_clearly(gait_root, tmp_path):
    _run(gait_root, tmp_path / 'run', epochs=1)
    last = tmp_path / 'run' / 'last.safetensors'
    before = last.read_bytes()
    with pytest.raises(CheckpointError, match=r'trained as m3d_resnet18, not c2d_resnet18.*--model m3d_resnet18'):
        _run(gait_root, tmp_path / 'run', model='c2d_resnet18', resume=last)
    with pytest.raises(CheckpointError, match=r'model arguments differ \(.*num_frames: checkpoint 4 vs now 8'):
        _run(gait_root, tmp_path / 'run', resume=last, num_frames=8)
    assert last.read_bytes() == before


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_batch_the_sampler_cannot_fill(gait_root, tmp_path):
    with pytest.raises(TrainingError, match=r'needs P = 8 identities per batch, but gait has 6 training identities\. '
                                            r'Use --batch-size <= 12'):
        _run(gait_root, tmp_path / 'o', batch_size=16, num_instances=2)
    with pytest.raises(TrainingError, match=r'--batch-size 64 cannot be filled from .* 18 training tracklets'):
        _run(gait_root, tmp_path / 'o', recipe='paper', batch_size=64)
    assert not (tmp_path / 'o' / 'last.safetensors').exists()


def test_wrong_root_unknown_model_and_recipe(tmp_path, gait_root):
    from m3d_zoo.data import DatasetError
    with pytest.raises(DatasetError, match='folder not found'):
        train('m3d_resnet18', 'folder', root=str(tmp_path / 'nope'), output_dir=tmp_path / 'o', device='cpu')
    with pytest.raises(m3d_zoo.UnknownModelError, match="Unknown m3d_zoo model 'm3d_resnet19'.*Did you mean"):
        _run(gait_root, tmp_path / 'o', model='m3d_resnet19')
    with pytest.raises(UnknownRecipeError, match='available: modern, paper'):
        _run(gait_root, tmp_path / 'o', recipe='fast')


def test_recipe_dataclass_rejects_bad_values():
    with pytest.raises(ValueError, match="opt='lamb' must be 'sgd', 'adam' or 'adamw'"):
        TrainRecipe(opt='lamb')
    with pytest.raises(ValueError, match='unknown recipe field'):
        get_recipe('paper', learning_rate=1)


def test_weights_only_checkpoint_cannot_be_resumed(gait_root, tmp_path):
    _run(gait_root, tmp_path / 'run', epochs=1, eval_interval=1)
    assert (tmp_path / 'run' / 'best.safetensors').exists() and (tmp_path / 'run' / 'best_eval.json').exists()
    with pytest.raises(CheckpointError, match='weights only.*cannot be resumed'):
        _run(gait_root, tmp_path / 'run', resume=tmp_path / 'run' / 'best.safetensors')


def test_checkpoint_releases_with_hub_release_tool(gait_root, tmp_path):
    """hub/release.py reads the engine's checkpoint (architecture and model_args from its metadata)."""
    import importlib.util
    _run(gait_root, tmp_path / 'run', epochs=1, eval_interval=1)
    spec = importlib.util.spec_from_file_location(
        'm3d_zoo_hub_release', os.path.join(os.path.dirname(os.path.dirname(__file__)), 'hub', 'release.py'))
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    folder, repo_id = release.build_release(str(tmp_path / 'run' / 'best.safetensors'),
                                            str(tmp_path / 'run' / 'best_eval.json'), str(tmp_path / 'rel'),
                                            dataset='gait')
    assert repo_id.endswith('m3d_resnet18.gait')
    assert 'Rank-1 (%)' in (folder / 'README.md').read_text()
    # the frame size it was trained at goes into config.json, which holds only timm's fields (timm's loader
    # refuses others; the clip length is a model argument there)
    from timm.models import PretrainedCfg
    cfg = json.loads((folder / 'config.json').read_text())['pretrained_cfg']
    assert cfg['input_size'] == [3, 32, 16] and set(cfg) <= {f.name for f in dataclasses.fields(PretrainedCfg)}
    loaded = m3d_zoo.create_model(f'local-dir:{folder}', pretrained=True)
    assert create_video_transform(loaded).size == (32, 16)


def test_the_process_group_timeout_defaults_to_a_long_one():
    assert init_distributed('cpu').timeout_min == DEFAULT_DIST_TIMEOUT_MIN >= 60
    assert init_distributed('cpu', timeout_min=5).timeout_min == 5
    for bad in (0, -1, math.nan):
        with pytest.raises(ValueError, match='positive number of minutes'):
            init_distributed('cpu', timeout_min=bad)


# ---------------------------------------------------------------------------------------------------------------------
# One run per output folder

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def _lock_file(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(dict({'host': socket.gethostname(), 'started': 'earlier'}, **fields)))


def _stale_lock(folder, pid=None):
    """A lock left by a run that died on this host (same host name and pid namespace, a pid that has exited)."""
    ns = os.readlink('/proc/self/ns/pid') if os.path.exists('/proc/self/ns/pid') else None
    _lock_file(folder, pid=pid or _dead_pid(), pid_ns=ns)


def test_a_second_run_is_refused_while_the_first_holds_the_folder(gait_root, tmp_path, caplog):
    out = tmp_path / 'run'
    with holding(out) as holder:
        with pytest.raises(OutputLockedError, match=rf'{re.escape(str(out))} is in use by another training run: pid '
                                                    rf'{holder.pid} on host {re.escape(socket.gethostname())}, '
                                                    rf'started .*lock file .*{LOCK_NAME}.*kill {holder.pid}'):
            _run(gait_root, out, epochs=1)
        with pytest.raises(OutputLockedError, match='does not take a folder from a run that is alive on this host'):
            _run(gait_root, out, epochs=1, force_unlock=True)
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing of the refused runs
    # the holder died without releasing: its lock names a pid that no longer runs on this host
    assert json.loads((out / LOCK_NAME).read_text())['pid'] == holder.pid
    with caplog.at_level(logging.WARNING, logger='m3d_zoo.engine.train'):
        summary = _run(gait_root, out, epochs=1)
    assert summary['last_epoch'] == 1 and (out / 'last.safetensors').is_file()
    assert f'the run that locked it (pid {holder.pid} on host {socket.gethostname()}' in caplog.text
    assert 'is no longer running' in caplog.text
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_the_lock_is_released_when_the_run_fails(gait_root, tmp_path):
    with pytest.raises(TrainingError, match='needs P = 8 identities per batch'):
        _run(gait_root, tmp_path / 'run', batch_size=16, num_instances=2)
    assert os.listdir(tmp_path / 'run') == []
    _run(gait_root, tmp_path / 'run', epochs=1)  # the folder is free again


def test_the_lock_is_released_on_ctrl_c(gait_root, tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'm3d_zoo.cli', 'train', '--model', 'm3d_resnet18', '--dataset', 'folder', '--root',
           gait_root, '--epochs', '1000', '--batch-size', '4', '--num-instances', '2', '--num-frames', '4',
           '--img-size', '32', '16', '--workers', '0', '--no-progress', '--device', 'cpu', '--eval-interval', '0',
           '--model-kwargs', 'temporal_strides=1,1,1,1', '--output', str(out)]
    # SIGINT as a terminal delivers it, whether or not pytest itself runs in the background (where the shell has the
    # children ignore it, and Python installs no KeyboardInterrupt handler)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while b'"event": "epoch"' not in ((out / 'metrics.jsonl').read_bytes() if (out / 'metrics.jsonl').exists()
                                          else b''):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        assert (out / LOCK_NAME).is_file()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and 'interrupted' in err, err[-2000:]
    assert not (out / LOCK_NAME).exists()


def test_a_lock_from_another_host_or_unreadable_needs_force_unlock(gait_root, tmp_path, caplog):
    out = tmp_path / 'run'
    _lock_file(out, pid=4242, host='gpu-node-7.example')
    with pytest.raises(OutputLockedError, match=r'pid 4242 on host gpu-node-7.example, started earlier.*another host '
                                                r'\(this is .*\).*cannot be checked from here.*--force-unlock'):
        _run(gait_root, out, epochs=1)
    with caplog.at_level(logging.WARNING, logger='m3d_zoo.engine.train'):
        _run(gait_root, out, epochs=1, force_unlock=True)
    assert '--force-unlock: taking' in caplog.text and not (out / LOCK_NAME).exists()

    (out / LOCK_NAME).write_text('{"pid": ')  # torn, and old: not a run writing it right now
    os.utime(out / LOCK_NAME, (time.time() - 3600,) * 2)
    with pytest.raises(OutputLockedError, match=r'train.lock is unreadable.*delete .*train.lock or pass '
                                                r'--force-unlock'):
        _run(gait_root, out, epochs=1, overwrite=True)
    _run(gait_root, out, epochs=1, force_unlock=True, overwrite=True)
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_taken_over_by_several_runs_at_once_has_one_winner(tmp_path):
    """Four processes find the same dead run's lock at the same moment, round after round: each round exactly one
    takes the folder. (Taking over without the guard and the compare loses this in some rounds.)"""
    out, signals, rounds = tmp_path / 'run', tmp_path / 'signals', 100
    signals.mkdir()
    procs = [start(CONTENDER, out, signals, rounds) for _ in range(4)]
    dead = _dead_pid()
    try:
        assert [p.stdout.readline().strip() for p in procs] == ['ready'] * len(procs)
        for r in range(rounds):
            _stale_lock(out, dead)
            (signals / f'go-{r}').touch()
            outcome = [p.stdout.readline().strip() for p in procs]  # each has tried by the time it prints
            (signals / f'done-{r}').touch()
            assert [p.stdout.readline().strip() for p in procs] == ['next'] * len(procs)
            assert sorted(x.split()[0] for x in outcome) == ['refused', 'refused', 'refused', 'won'], (r, outcome)
            refusals = ('in use by another training run', 'taking over', 'being taken by another run')
            assert all(any(m in x for m in refusals) for x in outcome if x != 'won'), outcome
            assert not (out / LOCK_NAME).exists()
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_take_over_goes_one_at_a_time_and_spares_a_new_holder(tmp_path):
    """The steps that make simultaneous take-overs safe, in the order that would break a naive one."""
    out = tmp_path / 'run'
    _stale_lock(out)
    stale = (out / LOCK_NAME).read_bytes()
    first = OutputLock(out).acquire()
    # a second run read the dead run's lock before the first replaced it, and now removes what it read
    OutputLock(out)._remove_if_unchanged(stale)
    assert (out / LOCK_NAME).read_bytes() == first.content
    first.release()

    _stale_lock(out)
    guard = out / f'{LOCK_NAME}.takeover'
    guard.touch()  # another run is between reading the stale lock and replacing it
    with pytest.raises(OutputLockedError, match='Another run is taking over .* right now'):
        OutputLock(out).acquire()
    os.utime(guard, (time.time() - 3600,) * 2)  # ... and died there
    OutputLock(out).acquire().release()
    assert sorted(os.listdir(out)) == []


# ---------------------------------------------------------------------------------------------------------------------
# What a checkpoint remembers, validation, budgets, the lr schedule, used run folders


def test_a_checkpoint_rebuilds_with_the_preprocessing_it_was_trained_with(gait_root, tmp_path):
    _run(gait_root, tmp_path / 'run', epochs=1)  # 32x16 frames, 4-frame clips
    last = tmp_path / 'run' / 'last.safetensors'
    prep = load_checkpoint(last, with_train_state=False).preprocessing
    assert prep == {'input_size': [3, 32, 16], 'num_frames': 4, 'clip_sampling': 'consecutive',
                    'interpolation': 'bilinear', 'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}
    model = load_inference_model(str(last))  # what `m3d-zoo extract --model last.safetensors` uses
    assert model.pretrained_cfg['input_size'] == (3, 32, 16) and create_video_transform(model).size == (32, 16)
    assert _model_frames(model, None) == 4

    # fine-tuned on 8-frame clips from a model built for 4 (a model argument it keeps): the trained length is used
    _run(gait_root, tmp_path / 'tuned', model=str(last), model_kwargs={}, epochs=1, num_frames=8)
    tuned = model_from_checkpoint(tmp_path / 'tuned' / 'last.safetensors')
    assert tuned.model_args['num_frames'] == 4 and tuned.pretrained_cfg['num_frames'] == 8
    assert _model_frames(tuned, None) == 8 and _model_frames(tuned, 2) == 2  # asked for wins
    assert model_from_checkpoint(tmp_path / 'tuned' / 'last.safetensors', num_frames=4).pretrained_cfg[
        'num_frames'] == 4


def test_held_out_identities_select_best_and_the_test_split_waits_for_the_end(gait_root, tmp_path):
    out = tmp_path / 'run'
    summary = _run(gait_root, out, epochs=2, eval_interval=1, val_ids=2)
    config = _events(out, 'config')[0]
    assert config['num_train_ids'] == 4 and config['selected_on'] == 'val'
    assert config['validation'] == {'source': 'held out: 2', 'ids': 2, 'queries': 2, 'gallery': 4}
    assert model_from_checkpoint(out / 'last.safetensors').num_classes == 4
    evals = _events(out, 'eval')
    val = [e for e in evals if e['split'] == 'val']
    first, end = config['steps_per_epoch'][0], sum(config['steps_per_epoch'])
    assert [e['step'] for e in val] == [first, end]  # each epoch's evaluation is on the validation split
    test = [e for e in evals if e['split'] == 'test']
    assert evals.index(test[0]) == len(val)  # the test split only after training
    best = next(e for e in val if e['mAP'] == max(x['mAP'] for x in val))
    assert [(e['weights'], e['step']) for e in test] == [('last', end)] + ([('best', best['step'])]
                                                                           if best['step'] != end else [])
    meta = load_checkpoint(out / 'best.safetensors', with_train_state=False).metadata
    assert meta['selected_on'] == 'val' and float(meta['mAP']) == best['mAP']
    best_eval = json.loads((out / 'best_eval.json').read_text())
    assert best_eval['split'] == 'test' and best_eval['selected_on'] == 'val' and best_eval['val_mAP'] == best['mAP']
    assert best_eval['step'] == best['step'] == summary['best_step'] and best_eval['mAP'] == test[-1]['mAP']
    assert json.loads((out / 'eval.json').read_text())['step'] == end  # the last weights' test results
    assert summary['selected_on'] == 'val' and summary['results']['split'] == 'test'

    # on request the test split at every evaluation too; the same seed holds out the same identities
    _run(gait_root, tmp_path / 'every', epochs=2, eval_interval=1, val_ids=2, eval_test=True)
    evals = _events(tmp_path / 'every', 'eval')
    assert [(e['split'], e['step']) for e in evals][:4] == [('val', first), ('test', first), ('val', end),
                                                            ('test', end)]
    assert _events(tmp_path / 'every', 'config')[0]['validation'] == config['validation']

    # a resumed run keeps its hold-out; another one is refused (the classes depend on it)
    with pytest.raises(TrainingError, match=r'trained with --val-ids/--val-split 2, not 3: the training identities '
                                            r'depend on it'):
        _run(gait_root, out, epochs=3, val_ids=3, resume=out / 'last.safetensors')


def test_without_validation_data_best_is_selected_on_the_test_split_with_a_warning(gait_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='m3d_zoo.engine.train'):
        summary = _run(gait_root, tmp_path / 'run', epochs=1, eval_interval=1)
    assert 'gait has no validation data: best.safetensors is selected on the test split' in caplog.text
    assert '--val-ids N or --val-split FRACTION, or add a val/ folder' in caplog.text
    assert [e['split'] for e in _events(tmp_path / 'run', 'eval')] == ['test'] and summary['selected_on'] == 'test'
    assert json.loads((tmp_path / 'run' / 'best_eval.json').read_text())['split'] == 'test'


def test_a_val_folder_is_the_validation_split(tmp_path):
    root = tmp_path / 'data'
    four = [(1, 8), (2, 8), (1, 8), (2, 8)]
    write_fake_folder(str(root), train={f'{p:04d}': four for p in range(1, 5)},
                      val={'0010': [(1, 8), (2, 8)], '0011': [(1, 8), (2, 8)]}, size=(32, 16))
    summary = _run(str(root), tmp_path / 'run', model='c2d_resnet18', model_kwargs={}, epochs=1, eval_interval=1)
    config = _events(tmp_path / 'run', 'config')[0]
    assert config['num_train_ids'] == 4 and config['validation']['source'] == 'val/ folder'
    assert [e['split'] for e in _events(tmp_path / 'run', 'eval')] == ['val', 'test']
    assert summary['selected_on'] == 'val'
    with pytest.raises(TrainingError, match=r'has validation identities of its own \(a val/ folder of 2\): leave out '
                                            r'--val-ids/--val-split, or the val/ folder'):
        _run(str(root), tmp_path / 'both', model='c2d_resnet18', model_kwargs={}, epochs=1, val_ids=1)


def test_max_steps_stops_inside_an_epoch_evaluates_and_resumes_after_it(gait_root, tmp_path, capsys):
    out = tmp_path / 'run'
    summary = _run(gait_root, out, epochs=3, eval_interval=10, max_steps=4)  # 3 steps per epoch
    assert summary['steps'] == 4 and summary['stopped_by'] == '--max-steps 4' and summary['last_epoch'] == 1
    config = _events(out, 'config')[0]
    assert config['steps_per_epoch'] == [3, 3, 3] and config['planned_steps'] == 4
    assert 'epochs 1..3: 4 steps, stopping after step 4' in capsys.readouterr().out
    assert [(e['epoch'], e['steps'], e.get('partial', False)) for e in _events(out, 'epoch')] == [(1, 3, False),
                                                                                                  (2, 1, True)]
    assert [(e['split'], e['step']) for e in _events(out, 'eval')] == [('test', 4)]  # evaluated as at the end
    state = load_checkpoint(out).train_state
    assert (state['epoch'], state['epoch_step'], state['num_updates']) == (1, 1, 4)

    resumed = _run(gait_root, out, epochs=3, eval_interval=10, resume=out / 'last.safetensors')
    assert resumed['steps'] == 9 and resumed['stopped_by'] is None and resumed['last_epoch'] == 3
    assert [(e['epoch'], e['steps']) for e in _events(out, 'epoch')][2:] == [(2, 2), (3, 3)]

    summary = _run(gait_root, tmp_path / 'clock', epochs=3, eval_interval=10, time_budget=1e-9)
    assert summary['steps'] == 1 and summary['stopped_by'] == '--time-budget 1e-09 min'
    assert (tmp_path / 'clock' / 'last.safetensors').is_file() and summary['results']['step'] == 1
    for bad, message in ((dict(max_steps=0), '--max-steps must be a whole number of optimizer steps >= 1, got 0'),
                         (dict(time_budget=-1.), '--time-budget must be a positive number of minutes, got -1.0'),
                         (dict(save_interval=0), '--save-interval must be a whole number of epochs >= 1, got 0')):
        with pytest.raises(TrainingError, match=re.escape(message)):
            _run(gait_root, tmp_path / 'bad', **bad)


def test_the_header_gives_the_steps_each_epoch_runs(tmp_path, capsys):
    """P x K batches vary from epoch to epoch when identities have unequal numbers of tracklets: the run says how
    many each epoch has, and those are the steps it runs."""
    root = tmp_path / 'data'
    write_fake_folder(str(root), train={'0001': [(1, 8), (2, 8)] * 3, '0002': [(1, 8), (2, 8)],
                                        '0003': [(1, 8), (2, 8)], '0004': [(1, 8), (2, 8)]}, size=(32, 16))
    summary = _run(str(root), tmp_path / 'run', model='c2d_resnet18', model_kwargs={}, epochs=6, warmup_epochs=0,
                   decay_epochs=[], num_frames=2)
    per_epoch = _events(tmp_path / 'run', 'config')[0]['steps_per_epoch']
    assert len(set(per_epoch)) > 1  # the data makes them vary
    assert [e['steps'] for e in _events(tmp_path / 'run', 'epoch')] == per_epoch
    assert summary['steps'] == sum(per_epoch)
    assert f'{min(per_epoch)}-{max(per_epoch)} steps/epoch (P x K batches vary by epoch)' in capsys.readouterr().out


def test_warm_up_and_decay_follow_the_optimizer_steps(gait_root, tmp_path):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    recipe = get_recipe('paper', lr=0.1, warmup_epochs=2, warmup_lr_init=0., decay_epochs=[3], decay_rate=0.1,
                        epochs=4)
    scheduler = build_scheduler(opt, recipe, [3, 5, 4, 4])
    lrs = []
    for step in range(16):
        scheduler.step_update(step)
        lrs.append(opt.param_groups[0]['lr'])
    # the 8 steps of epochs 1-2 ramp up, epoch 3 runs at the lr, epoch 4 (after 3 epochs) is decayed
    assert lrs == pytest.approx([0.1 * t / 8 for t in range(8)] + [0.1] * 4 + [0.01] * 4)

    # in a run: the first epoch's steps already climb halfway up a 2-epoch warm-up
    _run(gait_root, tmp_path / 'run', epochs=1, warmup_epochs=2, decay_epochs=[])
    first = _events(tmp_path / 'run', 'epoch')[0]
    modern = get_recipe('modern')
    assert first['steps'] == 3 and first['lr']['backbone'] == pytest.approx(
        modern.warmup_lr_init + (modern.lr - modern.warmup_lr_init) * 3 / 6)


def test_a_fresh_run_into_a_used_folder_is_refused_unless_overwrite(gait_root, tmp_path, caplog):
    out = tmp_path / 'run'
    _run(gait_root, out, epochs=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TrainingError, match=rf'{re.escape(str(out))} holds an earlier training run \(last.safetensors, '
                                            rf'.*\)\. Continue it with --resume {re.escape(str(out))}, start over with '
                                            rf'--overwrite .*or choose another --output'):
        _run(gait_root, out, epochs=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, and no lock left behind
    with pytest.raises(TrainingError, match='--overwrite starts a new run in the output folder; it does not go with '
                                            '--resume'):
        _run(gait_root, out, epochs=1, overwrite=True, resume=out)

    with caplog.at_level(logging.WARNING, logger='m3d_zoo.engine.train'):
        _run(gait_root, out, epochs=1, overwrite=True)
    aside = [p for p in out.iterdir() if p.name.startswith('replaced-')]
    assert len(aside) == 1 and f'moved the earlier run\'s {len(before)} files' in caplog.text
    assert {p.name: p.read_bytes() for p in aside[0].iterdir()} == before  # kept, moved aside
    assert [e['event'] for e in _events(out)] == ['config', 'epoch', 'done']  # a new log, not appended to


def test_training_curves_are_drawn_after_each_epoch(gait_root, tmp_path, monkeypatch, caplog):
    from m3d_zoo.engine import plot
    calls = []
    monkeypatch.setattr(plot, 'save_training_curves', lambda *a: calls.append(a), raising=False)
    out = tmp_path / 'run'
    _run(gait_root, out, epochs=2)
    assert calls == [(out / 'metrics.jsonl', out / 'training_curves.png')] * 3  # each epoch, and at the end

    def no_matplotlib(*a):
        raise ImportError('training curves need matplotlib: pip install matplotlib')
    monkeypatch.setattr(plot, 'save_training_curves', no_matplotlib)
    with caplog.at_level(logging.WARNING, logger='m3d_zoo.engine.train'):
        assert _run(gait_root, tmp_path / 'plain', epochs=2)['last_epoch'] == 2
    assert caplog.text.count('no training_curves.png: training curves need matplotlib') == 1


def test_training_and_its_evaluation_show_progress(gait_root, tmp_path, capfd):
    args = dict(TINY, epochs=1, eval_interval=1)
    train('m3d_resnet18', 'folder', root=gait_root, recipe='modern', output_dir=tmp_path / 'run',
          model_kwargs=TINY_MODEL, device='cpu', num_workers=0, progress=True, **args)
    err = capfd.readouterr().err
    assert 'query: clips embedded' in err and 'gallery: clips embedded' in err


def test_save_interval_writes_last_every_n_epochs_and_at_the_end(gait_root, tmp_path, monkeypatch):
    train_module = importlib.import_module('m3d_zoo.engine.train')  # the module; the package exports its function
    written = []

    def recording(folder, name, *args, **kwargs):  # the real writer, noting which checkpoint and at which epoch
        path = save_checkpoint(folder, name, *args, **kwargs)
        written.append((name, args[2]['epoch']))
        return path
    monkeypatch.setattr(train_module, 'save_checkpoint', recording)
    out = tmp_path / 'every2'
    _run(gait_root, out, epochs=3, eval_interval=0, save_interval=2)
    assert [e for name, e in written if name == 'last'] == [2, 3]  # the second epoch, and the last
    written.clear()
    resumed = _run(gait_root, out, epochs=4, eval_interval=0, resume=out / 'last.safetensors')
    assert [e for name, e in written if name == 'last'] == [4]  # default: every epoch
    assert resumed['last_epoch'] == 4 and load_checkpoint(out).train_state['epoch'] == 4

"""`m3d-zoo` input errors: one line and exit status 2 for the zoo's user-facing errors (a missing GPU, an output that
cannot be written, a folder another run holds, options the zoo refuses), a traceback for anything else."""
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from m3d_zoo.cli import main
from m3d_zoo.data import make_synthetic_gait
from m3d_zoo.engine import load_embeddings, save_embeddings
from _lock_procs import holding

TRAIN = ['--dataset', 'folder', '--epochs', '1', '--batch-size', '4', '--num-instances', '2', '--num-frames', '4',
         '--img-size', '32', '16', '--workers', '0', '--no-progress', '--device', 'cpu', '--eval-interval', '0',
         '--model-kwargs', 'temporal_strides=1,1,1,1']
SMALL = ['--workers', '0', '--img-size', '32', '16', '--num-frames', '4', '--max-clips', '1', '--model-kwargs',
         'temporal_strides=1,1,1,1']

@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_engine.py
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def gait(tmp_path_factory):
    root = tmp_path_factory.mktemp('errors') / 'gait'
    make_synthetic_gait(str(root), num_ids=8, num_train_ids=4, tracklets_per_id=3, length=8, size=(32, 16), seed=1)
    return str(root)


@pytest.fixture(scope='module')
def emb(tmp_path_factory):
    """An embeddings file with 4 queries (camera 1) and 8 gallery tracklets (cameras 1-2) of the same 4 ids."""
    path = tmp_path_factory.mktemp('emb') / 'emb.safetensors'
    pids = torch.tensor([1, 2, 3, 4] + [1, 2, 3, 4] * 2)
    camids = torch.tensor([1] * 4 + [2] * 4 + [1] * 4)
    split = torch.tensor([0] * 4 + [1] * 8)
    save_embeddings(path, torch.randn(12, 8, generator=torch.Generator().manual_seed(0)), pids, camids, split)
    return path


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot create files in: a mode 0555 folder, or where permissions do not bind (root),
    /sys, which takes no new files from anyone."""
    folder = tmp_path / 'readonly'
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    for cand in (str(folder), '/sys'):
        try:
            fd = os.open(os.path.join(cand, '.probe'), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            yield cand
            break
        os.close(fd)
        os.unlink(os.path.join(cand, '.probe'))
    else:
        pytest.skip('no folder here refuses new files to this process')
    folder.chmod(stat.S_IRWXU)


def _error_line(capsys) -> str:
    """The one error line of a command that failed with a user error (log lines aside), checked to be alone."""
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(('INFO ', 'WARNING '))]
    assert len(lines) == 1 and lines[0].startswith('m3d-zoo '), err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------------
# --device


def _device_argv(command, device, gait, tmp_path):
    return {
        'train': ['train', '--model', 'm3d_resnet18', '--root', gait, '--output', str(tmp_path / 'out')] + TRAIN,
        'extract': ['extract', '--model', 'm3d_resnet18', '--tracklets', f'{gait}/query', '--output',
                    str(tmp_path / 'out' / 'e.safetensors')] + SMALL,
        'evaluate': ['evaluate', '--model', 'm3d_resnet18', '--dataset', 'folder', '--root', gait, '--cmc-png',
                     str(tmp_path / 'out' / 'c.png')] + SMALL,
    }[command] + ['--device', device]


@pytest.mark.parametrize('command', ['train', 'extract', 'evaluate'])
@pytest.mark.parametrize('device', ['cuda', 'cuda:N', 'tpu', 'cuda:x'])
def test_a_device_this_machine_lacks_is_one_line(command, device, gait, tmp_path, capsys):
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == 'cuda' and gpus:
        pytest.skip('this machine has a GPU')
    device = device.replace(':N', f':{max(gpus, 3)}')  # one past the last GPU, or cuda:3 without any
    assert main(_device_argv(command, device, gait, tmp_path)) == 2
    line = _error_line(capsys)
    if device in ('tpu', 'cuda:x'):
        assert f"--device '{device}' is not a device name: use cpu, cuda or cuda:N" in line, line
    elif gpus:
        assert f'--device {device}: torch sees {gpus} GPU(s), cuda:0 to cuda:{gpus - 1}' in line, line
    else:
        assert f'--device {device}: torch sees no GPU on this machine' in line and '--device cpu' in line, line
    assert not (tmp_path / 'out').exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


def _output_argv(target, path, gait, emb, tmp_path):
    png = str(tmp_path / 'side' / 'c.png')
    return {
        'extract': ['extract', '--model', 'm3d_resnet18', '--tracklets', f'{gait}/query', '--device', 'cpu',
                    '--output', path] + SMALL,
        'export': ['export', '--model', 'm3d_resnet18', '--num-frames', '8', '--img-size', '32', '16', '--output',
                   path],
        'evaluate --results': ['evaluate', str(emb), '--cmc-png', png, '--results', path],
        'evaluate --cmc-png': ['evaluate', str(emb), '--cmc-png', path],
        'train --output': ['train', '--model', 'm3d_resnet18', '--root', gait, '--output', path] + TRAIN,
    }[target]


OUTPUTS = ['extract', 'export', 'evaluate --results', 'evaluate --cmc-png', 'train --output']
FILE_NAMES = {'extract': 'e.safetensors', 'export': 'm.onnx', 'evaluate --results': 'r.json',
              'evaluate --cmc-png': 'c.png', 'train --output': 'run'}


@pytest.mark.parametrize('target', OUTPUTS)
def test_an_output_in_a_read_only_folder_is_refused_before_the_work(target, readonly_dir, gait, emb, tmp_path,
                                                                    capsys):
    path = os.path.join(readonly_dir, FILE_NAMES[target])
    before = sorted(os.listdir(readonly_dir))
    assert main(_output_argv(target, path, gait, emb, tmp_path)) == 2
    line = _error_line(capsys)
    if target == 'train --output':
        assert f'Cannot write in the output folder {path}' in line and 'choose a writable --output' in line, line
    else:
        flag = '--' + target.split('--')[-1] if '--' in target else '--output'
        assert f'{flag} {path}: cannot write in {readonly_dir} (' in line, line
        assert 'choose a writable location' in line, line
    assert sorted(os.listdir(readonly_dir)) == before
    assert not (tmp_path / 'side').exists()  # evaluate --results: not even the CMC curve was drawn


@pytest.mark.parametrize('target', OUTPUTS)
def test_an_output_that_is_a_folder_or_a_file_in_the_way_is_refused(target, gait, emb, tmp_path, capsys):
    taken = tmp_path / 'taken'
    taken.mkdir()
    (taken / 'keep.txt').write_text('mine')
    if target == 'train --output':  # a folder is what train wants: a file in its place is the mistake
        taken = taken / 'keep.txt'
    assert main(_output_argv(target, str(taken), gait, emb, tmp_path)) == 2
    line = _error_line(capsys)
    if target == 'train --output':
        assert f'--output {taken} is a file, not a folder' in line, line
    else:
        assert f'{taken} is a folder; give a file name, e.g. {taken}{os.sep}' in line, line
    assert sorted(p.name for p in (tmp_path / 'taken').iterdir()) == ['keep.txt']  # no temporary file left
    assert (tmp_path / 'taken' / 'keep.txt').read_text() == 'mine'
    assert not (tmp_path / 'side').exists()


@pytest.mark.parametrize('target', OUTPUTS)
def test_a_missing_output_folder_is_created(target, gait, emb, tmp_path):
    path = tmp_path / 'new' / 'deeper' / FILE_NAMES[target]
    assert main(_output_argv(target, str(path), gait, emb, tmp_path)) == 0
    assert (path / 'last.safetensors').is_file() if target == 'train --output' else path.is_file()
    if target == 'extract':
        assert load_embeddings(path)['embeddings'].shape == (4, 512)


def test_an_output_below_a_file_is_refused(emb, tmp_path, capsys):
    path = tmp_path / 'file.txt'
    path.write_text('x')
    assert main(['evaluate', str(emb), '--cmc-png', str(path / 'sub' / 'c.png')]) == 2
    assert f'{path} is a file, not a folder' in _error_line(capsys)


# ---------------------------------------------------------------------------------------------------------------------
# A folder another run holds


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock of tmp_path / 'run'."""
    with holding(tmp_path / 'run') as proc:
        yield proc


def test_train_into_a_folder_another_run_holds_is_one_line(holder, gait, tmp_path, capsys):
    assert main(['train', '--model', 'm3d_resnet18', '--root', gait, '--output', str(tmp_path / 'run')] + TRAIN) == 2
    line = _error_line(capsys)
    assert f'is in use by another training run: pid {holder.pid} on host {socket.gethostname()}, started ' in line
    assert f'lock file {tmp_path / "run" / "train.lock"}' in line and f'kill {holder.pid}' in line, line
    assert sorted(os.listdir(tmp_path / 'run')) == ['train.lock']  # the holder's folder is untouched


def test_a_fresh_run_into_a_folder_holding_a_run_is_one_line(gait, tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['train', '--model', 'm3d_resnet18', '--root', gait, '--output', str(out)] + TRAIN) == 0
    before = sorted(os.listdir(out))
    capsys.readouterr()
    assert main(['train', '--model', 'm3d_resnet18', '--root', gait, '--output', str(out)] + TRAIN) == 2
    line = _error_line(capsys)
    assert f'{out} holds an earlier training run (' in line and f'Continue it with --resume {out}' in line, line
    assert 'start over with --overwrite' in line, line
    assert sorted(os.listdir(out)) == before


# ---------------------------------------------------------------------------------------------------------------------
# The zoo's errors are one line; other exceptions are bugs and keep their traceback


@pytest.fixture
def query_only(tmp_path):
    path = tmp_path / 'q.safetensors'
    save_embeddings(path, torch.randn(2, 8), torch.tensor([7, 8]), torch.tensor([1, 1]), torch.tensor([0, 0]))
    return path


@pytest.mark.parametrize('argv, message', [
    (['evaluate', '{query_only}'], 'does not hold both query (split 0) and gallery (split 1) tracklets'),
    (['evaluate', '{query_only}', '--gallery', '{emb}'], 'no query identity of {query_only} appears in the gallery'),
    (['evaluate', '{gait}/query/0005/c1_t001/000001.png'], 'is not a readable safetensors embeddings file'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN + ['--batch-size', '6', '--num-instances', '4'],
     'batch_size=6 must be a multiple of num_instances=4'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN[:-2] + ['--model-kwargs', 'last_stride=3'],
     "m3d_resnet18 does not take --model-kwargs {'last_stride': 3}: last_stride must be 1 or 2"),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN + ['--dataset', 'marz'],
     "--dataset marz: Unknown dataset 'marz'"),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN + ['--dist-timeout', '0'],
     '--dist-timeout must be a positive number of minutes'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN + ['--val-split', '1.5'],
     '--val-split 1.5: give a fraction of the training identities in (0, 1)'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}', '-o', '{tmp}/v'] + TRAIN + ['--val-ids', '4'],
     'gait: cannot hold out 4 of its 4 training identities for validation: hold out between 1 and 3'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}', '-o', '{tmp}/v'] + TRAIN + ['--val-ids', '3'],
     'needs P = 2 identities per batch, but gait has 1 training identities, after 3 held out for validation'),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}', '-o', '{tmp}/v'] + TRAIN + ['--max-steps', '0'],
     '--max-steps must be a whole number of optimizer steps >= 1, got 0'),
    (['extract', '--model', 'm3d_resnet18', '--tracklets', '{gait}/query', '-o', '{tmp}/e.safetensors',
      '--model-kwargs', 'colour=1'], "m3d_resnet18 does not take the model arguments {'colour': 1}"),
    (['extract', '--model', 'm3d_resnet18', '--dataset', 'marz', '--root', '{gait}', '-o', '{tmp}/e.safetensors'],
     "--dataset marz: Unknown dataset 'marz'"),
    (['extract', '--model', '{tmp}/run/best.safetensors', '--tracklets', '{gait}/query', '-o', '{tmp}/e.safetensors'],
     "Model '{tmp}/run/best.safetensors' is written as a path, but no such file or folder exists"),
    (['evaluate', '--model', 'm3d_resnt18', '--dataset', 'folder', '--root', '{gait}'],
     "Unknown m3d_zoo model 'm3d_resnt18'. Did you mean 'm3d_resnet18'"),
    (['export', '--model', '{gait}', '-o', '{tmp}/m.onnx'], 'is a folder without a last.safetensors checkpoint'),
    (['push', '--model', '{emb}', '--repo-id', 'm3d-zoo/x'], 'is a training checkpoint: push it with --checkpoint'),
    (['export', '--model', 'm3d_resnet18', '-o', '{tmp}/m.onnx', '--opset', '16'], 'needs opset 17 or later'),
    (['export', '--model', 'm3d_resnet18', '-o', '{tmp}/m.onnx', '--batch-size', '1'], 'or pass --static-batch'),
    (['push', '--model', 'm3d_resnet18', '--repo-id', 'm3d-zoo/x', '--results', '{emb}'],
     'is not a JSON results file'),
])
def test_user_errors_are_one_line(argv, message, gait, emb, query_only, tmp_path, capsys):
    def fill(s):
        for k, v in dict(gait=gait, emb=emb, query_only=query_only, tmp=tmp_path).items():
            s = s.replace('{' + k + '}', str(v))
        return s
    assert main([fill(a) for a in argv]) == 2
    line = _error_line(capsys)
    assert fill(message) in line, line
    assert not list(tmp_path.glob('*.onnx')) and not list(tmp_path.glob('e.safetensors'))


@pytest.mark.parametrize('command', ['extract', 'train'])
def test_pretrained_without_the_hub_fails_at_once_naming_the_flag(command, unreachable_hub, gait, tmp_path, capsys):
    """--pretrained with an unreachable Hub and no cache: an error within seconds whose advice is the command's own
    --pretrained-file (with the `hf download` that fetches the file), not Python calls."""
    argv = _device_argv(command, 'cpu', gait, tmp_path) + ['--pretrained']
    start = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - start < 10
    line = _error_line(capsys)
    assert f'the Hub at {unreachable_hub.endpoint} could not be reached' in line, line
    assert ('--pretrained-file PATH instead of --pretrained: download them where there is network (`hf download '
            'timm/resnet18.tv_in1k model.safetensors --local-dir DIR`) and pass --pretrained-file '
            'DIR/model.safetensors') in line, line
    assert 'pretrained_cfg_overlay' not in line and 'create_model' not in line, line


def _bug_argv(emb, tmp_path):
    return ['evaluate', str(emb), '--cmc-png', str(tmp_path / 'c.png'), '--results', str(tmp_path / 'r.json')]


# ValueError: the one the CLI used to turn into a one-line error
@pytest.mark.parametrize('exc', [ValueError, KeyError, FileExistsError])
def test_a_bug_keeps_its_traceback(exc, emb, tmp_path, monkeypatch):
    """A bug in the zoo, as a plain built-in exception (a ValueError, a KeyError, an OSError subclass): `main` lets
    it through as it is, so Python prints its traceback, instead of a one-line error that hides it."""
    import m3d_zoo.engine.extract

    def results_to_json(results):
        raise exc('results_to_json: internal inconsistency')
    monkeypatch.setattr(m3d_zoo.engine.extract, 'results_to_json', results_to_json)
    with pytest.raises(exc, match='internal inconsistency'):
        main(_bug_argv(emb, tmp_path))
    assert not (tmp_path / 'r.json').exists()


# `python -m m3d_zoo.cli` twice in one process, as runpy runs it (the CLI module is __main__ there, as under torchrun)
AS_MAIN = textwrap.dedent('''
    import runpy, sys
    for argv in (['evaluate'], ['extract', '--model', 'm3d_resnet18', '--tracklets', '.', '-o', 'e.safetensors',
                                '--device', 'tpu']):
        sys.argv = ['m3d_zoo.cli'] + argv
        try:
            runpy.run_module('m3d_zoo.cli', run_name='__main__', alter_sys=True)
        except SystemExit as e:
            print(e.code, flush=True)
            sys.stderr.flush()
''')


def test_user_errors_are_one_line_under_python_m(tmp_path):
    """Under `python -m`, user errors are one line too: a CliError (defined in __main__ there) and a bad device."""
    proc = subprocess.run([sys.executable, '-c', AS_MAIN], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0 and proc.stdout.split() == ['2', '2'], proc.stdout + proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith('m3d-zoo evaluate: error: evaluate needs an embeddings file'), lines
    assert lines[1].startswith("m3d-zoo extract: error: --device 'tpu' is not a device name"), lines

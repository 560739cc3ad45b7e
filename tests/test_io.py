""" Atomic writes (m3d_zoo._io), the one mechanism behind checkpoints, saved models, exports and split files. """
import errno
import hashlib
import re
from pathlib import Path

import pytest
import torch

import m3d_zoo
from m3d_zoo import _io
from m3d_zoo._io import WriteError, atomic_path, atomic_write_text
from m3d_zoo.engine.extract import EmbeddingsError, load_embeddings, save_embeddings
from m3d_zoo.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from m3d_zoo.hub import CorruptWeightsError, load_weights, save_pretrained


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / 'model.safetensors'
    atomic_write_text(target, 'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == '.safetensors'
            tmp.write_text('half of the new')
            raise KeyboardInterrupt
    assert target.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['model.safetensors']


def test_successful_write_replaces_and_creates_folders(tmp_path):
    target = tmp_path / 'a' / 'b' / 'config.json'
    atomic_write_text(target, '{}')
    atomic_write_text(target, '{"x": 1}')
    assert target.read_text() == '{"x": 1}' and [p.name for p in target.parent.iterdir()] == ['config.json']


# ---------------------------------------------------------------------------------------------------------------------
# Every writer and reader goes through m3d_zoo._io

_ROOT = Path(__file__).resolve().parents[1]
_ONLY_IN_IO = [  # what only m3d_zoo/_io.py may do: the one implementation of atomic writes, sha256 and safetensors
    re.compile(r'\bos\.replace\('), re.compile(r'\bos\.rename\('), re.compile(r'\bhashlib\b'),
    re.compile(r'\bNamedTemporaryFile\b'), re.compile(r'\bmkstemp\b'), re.compile(r'\bsafe_open\b'),
    re.compile(r'\b(load_file|save_file)\('), re.compile(r'^\s*(from|import) safetensors\b', re.M),
]


def _checkpoint(folder: Path) -> Path:
    return save_checkpoint(folder, 'last', m3d_zoo.create_model('c2d_resnet18', num_classes=3), {'epoch': 1})


def _saved_model(folder: Path) -> Path:
    return save_pretrained(m3d_zoo.create_model('c2d_resnet18', num_classes=3), folder)


def _embeddings(folder: Path) -> Path:
    n = 4
    return save_embeddings(folder / 'emb.safetensors', torch.randn(n, 8), torch.arange(n), torch.zeros(n),
                           torch.zeros(n))


@pytest.mark.parametrize('write, error', [(_checkpoint, CheckpointError), (_saved_model, WriteError),
                                          (_embeddings, WriteError)], ids=['checkpoint', 'saved_model', 'embeddings'])
def test_a_full_disk_keeps_every_writers_previous_files(write, error, tmp_path, monkeypatch):
    write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fill_up(f, data):  # half the bytes go out, then the disk is full
        f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(_io, '_write_chunks', fill_up)
    with pytest.raises(error, match=r'disk is full.*Nothing was replaced: the previous .* is intact'):
        write(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # and no temporary file is left


def test_a_write_error_is_an_os_error_that_names_the_file(tmp_path, monkeypatch):
    def denied(f, data):
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(_io, '_write_chunks', denied)
    with pytest.raises(WriteError, match=r'Could not write .*new.bin: PermissionError.*new.bin was not written') as e:
        _io.atomic_write_bytes(tmp_path / 'new.bin', b'x')
    assert isinstance(e.value, OSError) and not e.value.disk_full and list(tmp_path.iterdir()) == []


def test_safetensors_round_trip_and_sha256(tmp_path):
    path = _io.write_safetensors(tmp_path / 'w.safetensors', {'a': torch.arange(3.)}, {'architecture': 'x'})
    tensors, meta = _io.read_safetensors(path)
    assert torch.equal(tensors['a'], torch.arange(3.)) and meta == {'architecture': 'x'}
    assert _io.read_safetensors_metadata(path) == meta and _io.safetensors_keys(path) == ['a']
    assert _io.file_sha256(path) == _io.bytes_sha256(path.read_bytes()) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_truncated_safetensors_file_raises_each_callers_error(tmp_path):
    path = _embeddings(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(_io.SafetensorsReadError):
        _io.read_safetensors(path)
    with pytest.raises(CorruptWeightsError, match='is not a valid safetensors file'):
        load_weights(path)
    with pytest.raises(CheckpointError, match='is not a readable safetensors file'):
        load_checkpoint(path)
    with pytest.raises(EmbeddingsError, match='is not a readable safetensors embeddings file'):
        load_embeddings(path)
    with pytest.raises(FileNotFoundError):
        _io.read_safetensors(tmp_path / 'missing.safetensors')


def test_only_io_writes_atomically_hashes_and_touches_safetensors():
    files = [p for d in ('m3d_zoo', 'hub', 'benchmarks') for p in (_ROOT / d).rglob('*.py')]
    offenders = [f'{p.relative_to(_ROOT)}: {pattern.pattern}' for p in files if p != _ROOT / 'm3d_zoo' / '_io.py'
                 for pattern in _ONLY_IN_IO if pattern.search(p.read_text(encoding='utf-8'))]
    assert offenders == []

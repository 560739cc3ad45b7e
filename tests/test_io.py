""" Atomic writes (m3d_zoo._io), the one mechanism behind checkpoints, saved models, exports and split files. """
import pytest

from m3d_zoo._io import atomic_path, atomic_write_text


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

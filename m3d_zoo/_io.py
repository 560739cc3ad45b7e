""" Atomic file writes: a file the project writes is either the old file or the complete new one, never half of it.

Each write goes to a temporary file beside the target, is fsynced, and is renamed over the target (atomic on POSIX and
Windows); the folder is then fsynced so that the rename itself survives a power cut. On any failure, an interrupt
included, the temporary file is removed and the target is untouched.
"""
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

__all__ = ['atomic_path', 'atomic_write_bytes', 'atomic_write_text']


def _fsync(path: Path, strict: bool = True) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:  # a full disk can surface here; a folder that cannot be synced is not an error
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path`, on failure it is removed.

    The temporary name ends with the target's suffix, for writers that look at it (ONNX, torch.export).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}')
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, strict=False)


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Union[str, os.PathLike], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding='utf-8')
    return Path(path)

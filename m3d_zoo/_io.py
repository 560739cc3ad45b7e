""" File I/O the whole project shares: atomic writes, sha256 digests and safetensors files with string metadata.

A file the project writes is either the old file or the complete new one, never half of it. Each write goes to a
temporary file beside the target, is fsynced, and is renamed over the target (atomic on POSIX and Windows); the
folder is then fsynced so that the rename itself survives a power cut. On any failure, an interrupt included, the
temporary file is removed and the target is untouched.

Callers that have their own error types catch `WriteError` and `SafetensorsReadError` and re-raise them with their
own advice; both keep the original exception as their cause.
"""
import errno
import hashlib
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Mapping, Tuple, Union

if TYPE_CHECKING:
    import torch

__all__ = [
    'WriteError', 'SafetensorsReadError', 'atomic_path', 'atomic_write_bytes', 'atomic_write_text', 'sha256_chunks',
    'bytes_sha256', 'file_sha256', 'write_safetensors', 'read_safetensors', 'read_safetensors_metadata',
    'safetensors_keys', 'move_into',
]

PathLike = Union[str, os.PathLike]
_CHUNK = 1 << 22


class WriteError(OSError):
    """An atomic write failed and nothing was replaced.

    Attributes:
        path: The target file.
        reason: What went wrong, e.g. that the disk is full and how much space was free and needed.
        keep: What was kept: the previous file, or none.
        disk_full: Whether the disk (or the quota) is full.
    """

    def __init__(self, path: Path, reason: str, cause: OSError):
        self.path, self.reason = path, reason
        self.keep = f'the previous {path.name} is intact.' if path.exists() else f'{path.name} was not written.'
        super().__init__(cause.errno, f'Could not write {path}: {reason}. Nothing was replaced: {self.keep}')
        self.disk_full = cause.errno in (errno.ENOSPC, errno.EDQUOT)

    def __str__(self) -> str:
        return self.strerror


class SafetensorsReadError(ValueError):
    """A file is not a readable safetensors file (truncated, damaged or another format); the message is the
    reader's own, for callers to quote."""


# ---------------------------------------------------------------------------------------------------------------------
# Atomic writes


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
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path`, on failure it is removed.

    The temporary name ends with the target's suffix, for writers that look at it (ONNX, torch.export).

    Args:
        path: The target file; its folder is created if needed.

    Yields:
        The temporary file to write.
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


def _write_chunks(f, data: bytes) -> None:
    """Write `data` in chunks (tests replace this to simulate a disk that fills up mid-write)."""
    view = memoryview(data)
    for i in range(0, len(view), _CHUNK):
        f.write(view[i:i + _CHUNK])


def _reason(path: Path, nbytes: int, e: OSError) -> str:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return f'{type(e).__name__}: {e}'
    try:
        free = f'{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free'
    except OSError:
        free = 'free space unknown'
    return f'the disk is full (no space left on device; {free} in {path.parent}, {nbytes / 1e6:.1f} MB needed)'


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically.

    Args:
        path: The target file; its folder is created if needed.
        data: The new content.

    Returns:
        `path`.

    Raises:
        WriteError: The write failed (e.g. a full disk); `path` is untouched and no temporary file is left.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, 'wb') as f:
            _write_chunks(f, data)
    except OSError as e:
        raise WriteError(path, _reason(path, len(data), e), e) from e
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write `text` to `path` atomically, UTF-8 encoded; see `atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode('utf-8'))


def move_into(paths: Iterable[PathLike], folder: PathLike) -> List[Path]:
    """Move files into `folder` (created if needed) by renaming them, so that none is ever half copied; `folder`
    must be on the same file system (e.g. beside them).

    Returns:
        The files' new paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    for p in map(Path, paths):
        os.replace(p, folder / p.name)
        moved.append(folder / p.name)
    _fsync(folder, strict=False)
    return moved


# ---------------------------------------------------------------------------------------------------------------------
# sha256


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """The hex sha256 of the concatenated `chunks`, for data too large to hold at once."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return sha256_chunks([data])


def file_sha256(path: PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    with open(path, 'rb') as f:
        return sha256_chunks(iter(lambda: f.read(_CHUNK), b''))


# ---------------------------------------------------------------------------------------------------------------------
# safetensors


def write_safetensors(path: PathLike, tensors: Mapping[str, 'torch.Tensor'], metadata: Dict[str, str]) -> Path:
    """Write a state dict with string metadata to a safetensors file, atomically.

    Args:
        path: The target file.
        tensors: Contiguous CPU tensors by name.
        metadata: String metadata stored in the file's header.

    Returns:
        `path`.

    Raises:
        WriteError: See `atomic_write_bytes`.
    """
    from safetensors.torch import save
    return atomic_write_bytes(path, save(dict(tensors), metadata=metadata))


@contextmanager
def _reading(path: PathLike) -> Iterator[None]:
    """Turn the reader's errors for an unreadable file into `SafetensorsReadError`; a missing file stays
    FileNotFoundError, which callers report as such."""
    from safetensors import SafetensorError
    try:
        yield
    except FileNotFoundError:
        raise
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise SafetensorsReadError(str(e)) from e


def read_safetensors(path: PathLike) -> Tuple[Dict[str, 'torch.Tensor'], Dict[str, str]]:
    """Read a safetensors file on the CPU.

    Args:
        path: The file.

    Returns:
        (tensors by name, string metadata).

    Raises:
        FileNotFoundError: `path` does not exist.
        SafetensorsReadError: `path` is not a readable safetensors file.
    """
    from safetensors import safe_open
    with _reading(path), safe_open(str(path), framework='pt', device='cpu') as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _header(path: PathLike) -> Tuple[List[str], Dict[str, str]]:
    from safetensors import safe_open
    with _reading(path), safe_open(str(path), framework='pt') as f:
        return list(f.keys()), dict(f.metadata() or {})


def read_safetensors_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata of a safetensors file, read from its header only; raises as `read_safetensors`."""
    return _header(path)[1]


def safetensors_keys(path: PathLike) -> List[str]:
    """The tensor names of a safetensors file, read from its header only; raises as `read_safetensors`."""
    return _header(path)[0]

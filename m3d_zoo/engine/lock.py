""" The lock of a training run's output folder: one run at a time per folder.

The run (under torchrun, rank 0) holds `train.lock` in the folder, created atomically with its pid, host and start
time, from start to end. A second run on the folder is refused; a lock left by a run that died on this host (its pid
is gone) is taken over with a warning; `force=True` (`--force-unlock`) takes over one left on another host.
"""
import json
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Optional, Union

__all__ = ['OutputLock', 'OutputLockedError', 'OutputFolderError', 'LOCK_NAME']

_logger = logging.getLogger(__name__)


class OutputFolderError(ValueError):
    """The output folder cannot be created or written (the message says what to choose instead)."""


class OutputLockedError(RuntimeError):
    """Another run holds the output folder (its lock file says which); the message says how to take it over."""


LOCK_NAME = 'train.lock'
_TAKEOVER_STALE_S = 60  # the take-over guard is held for a few file operations; older, its holder died
_CREATING_S = 10  # an unreadable lock this young is being written by the run that just created it


def _process_start(pid: int) -> Optional[str]:
    """When process `pid` started, in kernel clock ticks (Linux /proc), or None: tells a reused pid from the lock's."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            fields = f.read().rsplit(b')', 1)[1].split()  # the command name, in parentheses, may hold spaces
    except (OSError, IndexError):
        return None
    if fields and fields[0] == b'Z':
        return 'zombie'  # exited, not yet reaped by its parent
    return fields[19].decode() if len(fields) > 19 else None


def _pid_namespace() -> Optional[str]:
    """This process's pid namespace (Linux): containers that share a host name do not share pids."""
    try:
        return os.readlink('/proc/self/ns/pid')
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (in this pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return _process_start(pid) != 'zombie'


class OutputLock:
    """The lock of an output folder: `train.lock` in it, created atomically (O_CREAT | O_EXCL) with the holder's
    pid, host and start time, removed on release.

    A lock whose holder has died on this host is taken over with a warning; `with OutputLock(folder):` holds it for
    the block.

    Args:
        folder: The output folder (created if missing).
        force: Take the lock over from a holder that cannot be checked (another host) or whose file is unreadable;
            a holder verifiably running on this host is never taken over.
    """

    def __init__(self, folder: Union[str, Path], force: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.force = force
        self.host = socket.gethostname()
        self.content = (json.dumps({
            'pid': os.getpid(), 'host': self.host, 'pid_start': _process_start(os.getpid()),
            'started': time.strftime('%Y-%m-%d %H:%M:%S %z'), 'token': uuid.uuid4().hex,
            'pid_ns': _pid_namespace(), 'command': ' '.join(sys.argv)}, indent=1) + '\n').encode()
        self.held = False

    def __enter__(self) -> 'OutputLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> 'OutputLock':
        """Take the lock (see the class docstring).

        Raises:
            OutputLockedError: Another run that may be alive holds the folder.
            OutputFolderError: The folder cannot be created or written.
        """
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise OutputFolderError(f'--output {self.folder} is a file, not a folder: choose a folder for the '
                                    f'checkpoints and metrics.')
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(5):  # each pass either takes the lock, refuses, or removes a dead holder's lock
                if self._create():
                    self.held = True
                    return self
                self._handle_holder()
        except OSError as e:
            raise OutputFolderError(f'Cannot write in the output folder {self.folder} ({e.strerror or e}): choose a '
                                f'writable --output.') from e
        raise OutputLockedError(f'{self.path} keeps changing hands: another run is starting in {self.folder}; '
                                f'train into another --output.')

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.content)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    def _handle_holder(self) -> None:
        """Refuse if the holder may be alive; otherwise remove its lock (the caller then creates ours)."""
        try:
            raw = self.path.read_bytes()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile
        try:
            holder = json.loads(raw)
            pid, host = int(holder['pid']), str(holder['host'])
            if pid <= 0:
                raise ValueError(pid)
        except (ValueError, KeyError, TypeError):
            if age < _CREATING_S:
                raise OutputLockedError(f'{self.folder} is being taken by another run right now ({self.path} is '
                                        f'being written): train into another --output.') from None
            if not self.force:
                raise OutputLockedError(
                    f'{self.path} is unreadable, so whether a run still uses {self.folder} is unknown. If none does, '
                    f'delete {self.path} or pass --force-unlock; otherwise train into another --output.') from None
            _logger.warning(f'--force-unlock: removing the unreadable lock {self.path}.')
            self._remove_if_unchanged(raw)
            return
        who = f'pid {pid} on host {host}, started {holder.get("started", "at an unknown time")}'
        if host == self.host and holder.get('pid_ns') == _pid_namespace():
            start = _process_start(pid)
            reused = bool(holder.get('pid_start') and start and start != holder['pid_start'])
            if _pid_alive(pid) and not reused:
                if self.force and not (holder.get('pid_start') and start):
                    _logger.warning(f'--force-unlock: taking {self.folder} over from {who}, which looks alive but '
                                    f'cannot be told from another process that reused its pid.')
                    self._remove_if_unchanged(raw)
                    return
                raise OutputLockedError(
                    f'{self.folder} is in use by another training run: {who}, lock file {self.path}. Wait for it to '
                    f'finish or train into another --output; to stop it: kill {pid}'
                    + (' (--force-unlock does not take a folder from a run that is alive on this host).'
                       if self.force else '.'))
            _logger.warning(f'Taking over {self.folder}: the run that locked it ({who}) is no longer running; its '
                            f'lock {self.path} is stale.')
            self._remove_if_unchanged(raw)
            return
        if not self.force:
            where = 'another container on this host' if host == self.host else f'another host (this is {self.host})'
            raise OutputLockedError(
                f'{self.folder} is in use by another training run: {who}, lock file {self.path}. It runs in {where}, '
                f'so whether it is still alive cannot be checked from here. Wait for it or train into another '
                f'--output; if that run is dead, pass --force-unlock (or delete {self.path}).')
        _logger.warning(f'--force-unlock: taking {self.folder} over from {who}.')
        self._remove_if_unchanged(raw)

    def _remove_if_unchanged(self, seen: bytes) -> None:
        """Delete the lock file if it still holds `seen`: two runs taking over the same dead holder's lock at once
        must not delete each other's new lock, so take-overs go one at a time through a guard file."""
        guard = self.folder / f'{LOCK_NAME}.takeover'
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > _TAKEOVER_STALE_S:
                    guard.unlink(missing_ok=True)  # its holder died inside the guard; the caller retries
                    return
            except FileNotFoundError:
                return
            raise OutputLockedError(f'Another run is taking over {self.path} right now: train into another '
                                    f'--output.') from None
        os.close(fd)
        try:
            if self.path.read_bytes() == seen:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            guard.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if it is still ours (a --force-unlock run may have taken it over)."""
        if not self.held:
            return
        self.held = False
        try:
            if self.path.read_bytes() == self.content:
                self.path.unlink()
            else:
                _logger.warning(f'{self.path} was taken over by another run meanwhile; leaving its lock in place.')
        except FileNotFoundError:
            _logger.warning(f'{self.path} was deleted while this run held it.')

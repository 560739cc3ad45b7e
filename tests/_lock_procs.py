"""Other processes that hold or contend for a training run's output-folder lock (m3d_zoo.engine.lock).

The lock module uses the standard library only: these processes load it on its own, without the package's torch and
timm imports, so that they start at once.
"""
import contextlib
import os
import subprocess
import sys
import textwrap

from m3d_zoo.engine import lock as lock_mod

LOAD_LOCK = textwrap.dedent(f'''
    import importlib.util, sys
    _spec = importlib.util.spec_from_file_location('m3d_zoo.engine.lock', {lock_mod.__file__!r})
    _lock = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_lock)
    OutputLock, OutputLockedError = _lock.OutputLock, _lock.OutputLockedError
''')

# Takes the output folder's lock and holds it until killed.
HOLDER = LOAD_LOCK + textwrap.dedent('''
    import sys, time
    with OutputLock(sys.argv[1]):
        print('locked', flush=True)
        time.sleep(600)
''')

# Round after round: waits for the round's start signal, tries to take the lock, says whether it did, and releases
# it when the round is over.
CONTENDER = LOAD_LOCK + textwrap.dedent('''
    import os, sys, time
    folder, signals, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def wait_for(name):
        while not os.path.exists(os.path.join(signals, name)):
            time.sleep(0.0005)

    print('ready', flush=True)
    for r in range(rounds):
        wait_for(f'go-{r}')
        lock = OutputLock(folder)
        try:
            lock.acquire()
            print('won', flush=True)
        except OutputLockedError as e:
            print('refused', e, flush=True)
        wait_for(f'done-{r}')
        lock.release()
        print('next', flush=True)
''')


def start(script: str, *args) -> subprocess.Popen:
    """`script` in a new Python process with `args`; its stdout is a text pipe."""
    return subprocess.Popen([sys.executable, '-c', script, *map(str, args)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))


@contextlib.contextmanager
def holding(folder):
    """A process that holds `folder`'s lock for the block, then is killed (so its lock is left behind, stale)."""
    proc = start(HOLDER, folder)
    try:
        assert proc.stdout.readline().strip() == 'locked'
        yield proc
    finally:
        proc.kill()
        proc.wait()

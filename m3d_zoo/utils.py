""" Runtime settings that fit the machine: data-loading workers for its CPUs, fast CPU inference and training. """
import contextlib
import ctypes
import os
import sys
from typing import Iterator

__all__ = ['available_cpus', 'default_num_workers', 'tune_cpu_allocator', 'flush_denormals']

MAX_DEFAULT_WORKERS = 4  # enough to keep a GPU fed from decoded frames; more mostly costs memory


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (it honours taskset and a container's
    cpuset, which os.cpu_count does not), else os.cpu_count(); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """DataLoader workers that fit this machine: one CPU left to the process that runs the model, at most 4.

    min(4, CPUs - 1) for this process's share of the CPUs (under torchrun, the CPUs divided by the processes on this
    node, LOCAL_WORLD_SIZE); 0 (loading in the main process) on one CPU.
    """
    share = available_cpus() // max(1, int(os.environ.get('LOCAL_WORLD_SIZE', '1') or 1))
    return max(0, min(MAX_DEFAULT_WORKERS, share - 1))

# glibc mallopt() parameters (malloc.h)
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more on 64-bit


def tune_cpu_allocator(top_pad_mb: int = 512) -> bool:
    """Make glibc keep freed memory in the heap, so that a forward pass does not page-fault its activations back in.

    A video ResNet allocates and frees tens of MB per activation. By default glibc serves such blocks with mmap or
    trims them off the heap top when freed, so every forward pass maps fresh pages and takes a page fault (plus
    zeroing by the kernel) per 4 KB of activations, a large share of a CPU forward's time (benchmarks/RESULTS.md,
    "Page faults"). A heap top pad of `top_pad_mb` keeps up to that much freed memory in the heap, where later
    allocations reuse it without faults. The cost is that much more resident memory after a peak. This is what
    PyTorch's CPU performance guide gets from jemalloc or tcmalloc, without a preload.

    Process-wide: call it from an application or script (the zoo's benchmark and `m3d-zoo extract` do), not from a
    library. Returns True if applied, False where the C library is not glibc (nothing is changed there).
    """
    if not sys.platform.startswith('linux') or top_pad_mb < 1:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError on musl and other C libraries
    except (OSError, AttributeError):
        return False
    # Requests that do not fit the padded top grow the heap (brk) rather than being mmapped, up to glibc's maximum.
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    if libc.mallopt(_M_TOP_PAD, int(top_pad_mb) * 1024 * 1024) != 1:
        return False
    # Grow the heap by the pad now (address space only; pages are touched when used). Without this, a process whose
    # first large blocks exceed the mmap threshold (e.g. 34 MB stem activations of 16-frame clips) would keep mmapping
    # them: a block is taken from the heap top only if the top already has room.
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(ctypes.c_size_t(_MMAP_THRESHOLD_MAX // 2)))
    return True


def _denormals_flushed() -> bool:
    import torch
    # With flushing on, a subnormal input reads as zero (DAZ), so doubling the smallest subnormals gives 0.
    return float((torch.tensor([1e-44]) * 2).item()) == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[bool]:
    """Treat subnormal floats as zero on the CPU (`torch.set_flush_denormal`) inside the block, then restore.

    A weight that gets no gradient from the data (a 3x3 tap that reads only padding, e.g. in the last stage of a net
    fed small frames) decays under Adam with L2 weight decay geometrically into the subnormal range and stays there;
    its optimizer state follows. On many x86 CPUs arithmetic on subnormals is several times slower, so such a run slows
    down step by step as taps die (benchmarks/RESULTS.md, "Subnormal weights"). Flushed, those values are zero; nothing
    above 1.2e-38 changes. Yields whether flushing is supported (x86 with SSE3; elsewhere nothing changes).
    """
    import torch
    before = _denormals_flushed()
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported:
            torch.set_flush_denormal(before)

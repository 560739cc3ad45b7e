""" Process-wide runtime settings for fast CPU inference. """
import ctypes
import sys

__all__ = ['tune_cpu_allocator']

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

"""Vectorised (im2col) CNN, data pipeline, trainer and tools for the chest X-ray classifier."""
import os

# OpenBLAS's worker threads spin for about 2**28 cycles after each GEMM before they
# sleep, taking the cores that the element-wise work between GEMMs (im2col, pooling)
# wants next; 2**4 lets them yield at once. Read when NumPy loads OpenBLAS, so it only
# takes effect if `fast` is imported before NumPy; a value the user set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _keep_freed_memory_for_reuse():
    """Let glibc's malloc recycle big freed blocks instead of unmapping them.

    A training step allocates and frees arrays of 30 to 80 MB (im2col columns, their
    gradients). Above its mmap threshold (at most 32 MB by default) glibc returns each
    to the system and the next step pays a page fault per 4 KB to map it again, about
    a fifth of the step. Raising the thresholds keeps the memory for the next step;
    peak memory is unchanged. Elsewhere than glibc this does nothing.
    """
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


_keep_freed_memory_for_reuse()

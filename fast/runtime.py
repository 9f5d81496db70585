"""Process-wide settings for training and benchmarking, made explicitly where a program starts.

Importing ``fast`` changes nothing global; ``python -m fast.train`` and the benchmarks call
``configure_process()`` first thing. Nothing here imports NumPy.
"""
import ctypes
import ctypes.util
import os
import sys


def configure_process():
    """Tune this process for training -> the settings that took effect, by name.

    - ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's worker threads spin for about 2**28 cycles
      after each GEMM before they sleep, taking the cores that the element-wise work between
      GEMMs wants next; 2**4 lets them yield at once. OpenBLAS reads it when NumPy loads it,
      so it only takes effect before NumPy is imported; a value the user set is kept.
    - glibc's malloc keeps big freed blocks for reuse (``mallopt``): a training step allocates
      and frees arrays of tens of MB, which glibc would otherwise unmap and map again, a page
      fault per 4 KB. Peak memory is unchanged. Elsewhere than glibc this does nothing.
    """
    applied = {}
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        applied["OPENBLAS_THREAD_TIMEOUT"] = os.environ["OPENBLAS_THREAD_TIMEOUT"]
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30):
            applied["mallopt"] = "M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = 1 GiB"
    except (OSError, AttributeError):
        pass
    return applied

"""Process-wide settings for training and benchmarking, made explicitly where a program starts.

Importing ``fast`` changes nothing global; ``python -m fast.train`` and the benchmarks call
``configure_process()`` first thing, and it works whether NumPy is loaded already or not.
"""
import ctypes
import ctypes.util
import os


THREADS_VARIABLE = "XRAY_THREADS"
# Set by configure_process: BLAS runs on one thread and fast.kernels splits each GEMM between
# the cores with the project's own threads.
_own_gemm_threads = False


def splits_gemms():
    """Whether ``fast.kernels`` splits GEMMs between the cores itself (after
    ``configure_process``), rather than leaving it to BLAS's threads."""
    return _own_gemm_threads
# How launchers tell a process how many processes they started, in all and on this machine:
# MPICH/Hydra, Open MPI, PMIx.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_LOCAL_SIZE")


def _launched(variables):
    """The largest process count the launcher's variables name, 1 when there are none."""
    counts = [int(os.environ[v]) for v in variables if os.environ.get(v, "").strip().isdigit()]
    return max(counts, default=1)


def launched_processes():
    """How many processes ``mpiexec`` started (1 when not started by it), read from the
    environment without loading MPI."""
    return _launched(_SIZE_VARIABLES)


def processes_on_this_machine():
    """How many of them share this machine (all of them when the launcher does not say)."""
    started = launched_processes()
    local = _launched(_LOCAL_SIZE_VARIABLES)
    return min(local, started) if local > 1 else started


def cpu_threads():
    """How many threads this process's own parallel work uses (the kernels' pool, decoding):
    ``$XRAY_THREADS`` when set, else the cores this process may run on."""
    setting = os.environ.get(THREADS_VARIABLE, "").strip()
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:
            raise ValueError(f"{THREADS_VARIABLE} must be a whole number of threads, got {setting!r}") from None
    return _cores()


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_process():
    """Tune this process for training -> the settings that took effect, by name.

    - Started by ``mpiexec`` as several processes on one machine: each gets its share of the
      cores as its ``XRAY_THREADS`` (a value the user set is kept), so that they do not fight
      over them.
    - BLAS on one thread, set at run time (threadpoolctl), and each GEMM split between the
      cores by the project's own threads (``fast.kernels.gemm``). Left to itself, OpenBLAS's
      worker threads spin for about 2**28 cycles after each GEMM before they sleep, taking the
      cores that the element-wise work between GEMMs wants next; its
      ``OPENBLAS_THREAD_TIMEOUT`` tames that only when set before NumPy loads, so a program
      that imported NumPy first trained a third slower. One-threaded BLAS has no workers to
      spin, whatever the order of imports.
    - glibc's malloc keeps big freed blocks for reuse (``mallopt``): a training step allocates
      and frees arrays of tens of MB, which glibc would otherwise unmap and map again, a page
      fault per 4 KB. Peak memory is unchanged. Elsewhere than glibc this does nothing.
    """
    global _own_gemm_threads
    applied = {}
    sharing = processes_on_this_machine()
    if sharing > 1:
        # mpiexec started several processes here: the cores are shared out between them
        os.environ.setdefault(THREADS_VARIABLE, str(max(1, _cores() // sharing)))
        applied["threads per process"] = os.environ[THREADS_VARIABLE]
    import numpy  # noqa: F401, PLC0415 -- BLAS must be loaded for its threads to be set
    from threadpoolctl import threadpool_limits  # noqa: PLC0415
    if threadpool_limits(limits=1, user_api="blas").get_original_num_threads().get("blas") is not None:
        _own_gemm_threads = True
        applied["BLAS threads"] = f"1; each GEMM split between {cpu_threads()} threads of the project's own"
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30):
            applied["mallopt"] = "M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = 1 GiB"
    except (OSError, AttributeError):
        pass
    return applied

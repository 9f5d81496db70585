"""Thread settings: scoped around the network's work (``kernel_threads``), and the process-wide
ones of training and benchmarking, made explicitly where a program starts (``configure_process``).

Importing ``fast`` changes nothing global. Every pass of a network (``fast.nn.model.ConvNet``) runs
inside ``kernel_threads()``, so the CLI, the Python API, the tests and MPI processes all get the
kernels' threads without BLAS's threads beside them; ``python -m fast.train`` and the benchmarks
also call ``configure_process()`` first thing, and it works whether NumPy is loaded already or not.
"""
import ctypes
import ctypes.util
import os
import threading
from contextlib import contextmanager


THREADS_VARIABLE = "XRAY_THREADS"
# Set by configure_process: BLAS runs on one thread and fast.nn.kernels splits each GEMM between
# the cores with the project's own threads, for the rest of the process.
_own_gemm_threads = False
# kernel_threads(): how many blocks are open (in any thread), and what undoes their BLAS limit
_kernel_lock = threading.Lock()
_kernel_depth = 0
_kernel_splits = False
_blas_limiter = None
_blas_controller = None


def splits_gemms():
    """Whether ``fast.nn.kernels`` splits GEMMs between the cores itself (inside
    ``kernel_threads`` or after ``configure_process``), rather than leaving it to BLAS's threads."""
    return _own_gemm_threads or _kernel_splits


def _blas():
    """threadpoolctl's controller of the loaded BLAS libraries, made once (a scan of the loaded
    libraries: a fraction of a millisecond); NumPy is loaded first, so its BLAS is among them."""
    global _blas_controller
    if _blas_controller is None:
        import numpy  # noqa: F401, PLC0415 -- BLAS must be loaded for its threads to be seen
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415
        _blas_controller = ThreadpoolController().select(user_api="blas")
    return _blas_controller


def _take_blas_control():
    """Let this thread set OpenBLAS's thread count. threadpoolctl (from 3.8) lets one thread at a
    time set OpenBLAS's process-wide pool and silently ignores the others; kernel_threads sets
    it, under its lock, from whichever thread opens the first block or closes the last one."""
    import threadpoolctl  # noqa: PLC0415
    release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


@contextmanager
def kernel_threads():
    """Within the block BLAS runs on one thread and ``fast.nn.kernels`` splits each GEMM between
    ``cpu_threads()`` threads of the project's own; on leaving, BLAS gets back the threads it had.

    The kernels split their element-wise work between the cores; with BLAS's own threads
    beside them (each of which spins for a while after a GEMM before it sleeps), a two-core
    machine would run twice as many busy threads as it has cores, and prediction beside other
    work slowed down several times. Re-entrant and safe to enter from several threads: the
    limit is set when the first block opens and undone when the last one closes, whichever
    threads those are. It is process-wide while it lasts (BLAS's thread count is), and costs
    microseconds to enter: the network enters it once per pass, not per layer. When
    threadpoolctl sees no BLAS it changes nothing and the GEMMs stay whole.
    """
    global _kernel_depth, _kernel_splits, _blas_limiter
    with _kernel_lock:
        if _kernel_depth == 0:
            blas = _blas()
            if blas.lib_controllers:
                _take_blas_control()
                _blas_limiter = blas.limit(limits=1)
                _kernel_splits = True
        _kernel_depth += 1
    try:
        yield
    finally:
        with _kernel_lock:
            _kernel_depth -= 1
            if _kernel_depth == 0 and _blas_limiter is not None:
                _kernel_splits = False
                _take_blas_control()
                _blas_limiter.restore_original_limits()
                _take_blas_control()  # and leave it to no thread, as before the block
                _blas_limiter = None


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
      cores by the project's own threads (``fast.nn.kernels.gemm``). Left to itself, OpenBLAS's
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

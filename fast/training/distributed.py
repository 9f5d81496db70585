"""Data-parallel training over MPI: ``mpiexec -n N python -m fast.train ...``.

Every process holds the whole model and the same random generators. Each global batch is
cut into N contiguous parts, one per process (``Group.part``); each process computes the loss
and gradients of its part, weighted by its part's share of the batch's loss, and one
all-reduce over a single flat buffer sums them, so every process applies the same update.
What the batch draws at random is drawn for the whole batch by every process, each keeping
its own rows (``SharedDraws``, and ``augment_batch``'s ``rows``), and batch normalisation
normalises with the whole batch's statistics (``sync_batchnorm``: ``batchnorm_forward`` here, two
all-reduces forward and one backward, handed to the model through the layer contract). So the
weights do not depend on N, up to float round-off. Only the lead process reads and writes the run
directory (``Group.lead_first``).

Without mpi4py, or launched as one process, ``world()`` is the plain one-process ``Group``
and nothing is communicated. mpi4py is imported only when ``mpiexec`` started more than one
process (an optional extra: ``pip install -e '.[mpi]'``).
"""
import hashlib
import sys
from functools import partial
from typing import NamedTuple

import numpy as np

from fast.data.errors import DataError
from fast.nn.model import BatchNorm
from fast.runtime import launched_processes


class Group:
    """The processes that train one model together; by default this process alone, for
    which every collective operation is the identity."""
    rank = 0
    size = 1

    @property
    def lead(self):
        """The process that reads and writes the run directory, prints and draws pictures."""
        return self.rank == 0

    def part(self, n):
        """This process's rows [lo, hi) of n: contiguous parts whose sizes differ by at most 1,
        in rank order (a part may be empty when n < size)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def own_part(self, x):
        """This process's rows of x (``fast.data.pixels.Inputs``): its ``part``; all of x for one
        process."""
        if self.size == 1:
            return x
        lo, hi = self.part(len(x))
        return x.subset(np.arange(lo, hi))

    def sum(self, buffer):
        """Sum ``buffer`` (a contiguous array) over the processes, in place -> buffer."""
        return buffer

    def gather(self, array):
        """Every process's ``array``, concatenated in rank order."""
        return array

    def broadcast(self, obj):
        """The lead process's ``obj``, on every process."""
        return obj

    def abort(self, status):
        """End every process of the group now (after an error on this one, so that no other
        waits for it for ever); nothing for one process."""

    def lead_first(self, job, only_lead=False):
        """``job()`` on the lead process, then (unless ``only_lead``, when its result is
        broadcast) on the others; an exception on the lead is raised on every process."""
        if self.size == 1:
            return job()
        result = error = None
        if self.lead:
            try:
                result = job()
            except Exception as err:  # handed to every process, so none waits forever
                error = err
        error = self.broadcast(error)
        if error is not None:
            raise error
        if only_lead:
            return self.broadcast(result)
        return result if self.lead else job()

    def check_same_data(self, ds):
        """Every process must train on the same images in the same order (else their batches,
        and their collective calls, would differ): DataError when this one's data set
        (``fast.data.dataset.Dataset``) differs from the lead's."""
        if self.size == 1:
            return
        digest = hashlib.sha256(repr((ds.paths_train, ds.y_train.tolist(), ds.paths_val, ds.paths_test,
                                      ds.mean, ds.std)).encode()).hexdigest()
        if self.broadcast(digest) != digest:
            raise DataError(f"process {self.rank} read other images than process 0 (their file "
                            "lists, labels or pixels differ): every machine needs the same data "
                            "folder, with the same files")


class MPIGroup(Group):
    """The processes of an MPI communicator."""

    def __init__(self, comm):
        from mpi4py import MPI  # noqa: PLC0415 -- an optional extra, imported only when used
        self._MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def sum(self, buffer):
        if not buffer.flags.c_contiguous:
            raise ValueError("an all-reduce needs a contiguous buffer")
        self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
        return buffer

    def gather(self, array):
        return np.concatenate(self.comm.allgather(np.asarray(array)))

    def broadcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def abort(self, status):
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)


def world():
    """The group of every process ``mpiexec`` started: an ``MPIGroup`` when it started more
    than one, else the one-process ``Group``. DataError when started as several processes
    without mpi4py installed (each would otherwise train alone, all writing one run)."""
    if launched_processes() < 2:
        return Group()
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError:
        raise DataError(f"started by mpiexec as {launched_processes()} processes, but mpi4py is not "
                        "installed; install the MPI extra: pip install -e '.[mpi]'") from None
    group = MPIGroup(MPI.COMM_WORLD)
    if group.size != launched_processes():
        raise DataError(f"mpiexec started {launched_processes()} processes, but MPI sees {group.size}: "
                        "mpi4py is built against another MPI than the mpiexec used (the MPI extra "
                        "installs MPICH; start with its mpiexec, the one beside this Python)")
    _abort_on_uncaught_exceptions(group)
    return group


def _abort_on_uncaught_exceptions(group):
    """An exception no one catches, on any process, ends them all (after its traceback), instead
    of leaving the others waiting in the next collective operation."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        group.abort(1)

    sys.excepthook = hook


class SharedDraws:
    """A random generator seen by one part of a batch: ``random(shape)`` draws for the whole
    batch of ``total`` rows (shape[0] set to total) and returns rows [lo, hi). Every process
    draws the same numbers, so the generators stay in step and each sample gets the numbers it
    would get in one process. (What ``dropout_forward`` asks of a generator.)"""

    def __init__(self, rng, lo, hi, total):
        self.rng, self.lo, self.hi, self.total = rng, lo, hi, total

    def random(self, shape):
        if shape[0] != self.hi - self.lo:
            raise ValueError(f"asked for {shape[0]} rows, but this part holds {self.hi - self.lo}")
        return self.rng.random((self.total, *shape[1:]))[self.lo:self.hi]


class Shard(NamedTuple):
    """This process's rows [lo, hi) of a global batch, and the batch's labels (for its loss
    weight, which every process can compute)."""
    group: Group
    lo: int
    hi: int
    batch_labels: np.ndarray

    def loss(self, model, x, y, class_weights, rng):
        """The whole batch's loss and gradients, from this process's rows x, y -> (loss, grads),
        the same on every process: each part's class-weighted mean is scaled by its share of
        the batch's weight, and one all-reduce sums the parts."""
        weights = (np.ones(len(self.batch_labels)) if class_weights is None
                   else np.asarray(class_weights, dtype=np.float64)[self.batch_labels])
        share = weights[self.lo:self.hi].sum() / weights.sum()
        draws = None if rng is None else SharedDraws(rng, self.lo, self.hi, len(self.batch_labels))
        loss, grads = model.loss(x, y, class_weights, rng=draws, batchnorm=sync_batchnorm(self.group),
                                 scale=share)
        keys = list(model.params)
        flat = np.concatenate([grads[k].ravel() for k in keys] + [np.array([loss], grads[keys[0]].dtype)])
        self.group.sum(flat)
        offset = 0
        for k in keys:
            grads[k] = flat[offset:offset + grads[k].size].reshape(grads[k].shape)
            offset += grads[k].size
        return float(flat[-1]), grads


# --------------------------------------------------------------------------- batch norm

class SyncBatchNormCache(NamedTuple):
    xhat: np.ndarray
    inv_std: np.ndarray  # (C,) float64
    gamma: np.ndarray
    count: float  # values per channel in the whole batch
    group: Group


def _per_channel(v, dtype=None):
    return np.asarray(v if dtype is None else v.astype(dtype)).reshape(1, -1, 1, 1)


def sync_batchnorm(group):
    """Batch normalisation of a batch split between ``group``'s processes, as the layer contract's
    pair of functions (``fast.nn.model.BatchNorm``), for a model's training pass."""
    return BatchNorm(partial(batchnorm_forward, group=group), batchnorm_backward)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, *,
                      group):
    """Training-mode spatial batch normalisation of a batch split between ``group``'s
    processes, x (n, C, H, W) being this process's part -> (out, SyncBatchNormCache).

    The numbers of ``fast.nn.layers.batchnorm_forward`` on the whole batch, up to round-off: the
    mean and then the biased variance of the centred values (two passes, float64 sums, each
    summed over the processes), the running statistics updated alike on every process.
    Evaluation mode needs no other process (the running statistics are every process's): it is
    the layers' own, and refused here.
    """
    if not training:
        raise ValueError("synchronised batch norm normalises training batches; evaluation mode "
                         "uses the layers' own")
    n, C, H, W = x.shape
    sums = np.append(x.sum(axis=(0, 2, 3), dtype=np.float64), n * H * W)
    group.sum(sums)
    m = sums[C]
    mean = sums[:C] / m
    xhat = np.empty_like(x)
    np.subtract(x, _per_channel(mean), out=xhat, casting="same_kind")  # computed in float64
    var = group.sum(np.square(xhat, dtype=np.float64).sum(axis=(0, 2, 3))) / m
    unbiased = var * m / (m - 1) if m > 1 else var
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * unbiased
    inv_std = 1 / np.sqrt(var + eps)
    np.multiply(xhat, _per_channel(inv_std), out=xhat, casting="same_kind")
    out = xhat * _per_channel(gamma, x.dtype) + _per_channel(beta, x.dtype)
    return out, SyncBatchNormCache(xhat, inv_std, gamma, m, group)


def batchnorm_backward(dout, cache):
    """dout: this process's part -> (dx, dgamma, dbeta). dx is the whole batch's chain rule
    (its two per-channel sums summed over the processes); dgamma and dbeta are this part's
    sums, which the gradient all-reduce adds up like every other parameter's."""
    xhat, inv_std, gamma, m, group = cache
    C = xhat.shape[1]
    local = np.concatenate([dout.sum(axis=(0, 2, 3), dtype=np.float64),
                            np.multiply(dout, xhat, dtype=np.float64).sum(axis=(0, 2, 3))])
    total = group.sum(local.copy())
    dbeta, dgamma = total[:C], total[C:]
    scale = _per_channel(gamma * inv_std, dout.dtype)
    dx = scale * (dout - _per_channel(dbeta / m, dout.dtype) - xhat * _per_channel(dgamma / m, dout.dtype))
    return dx.astype(dout.dtype, copy=False), local[C:].astype(gamma.dtype), local[:C].astype(gamma.dtype)

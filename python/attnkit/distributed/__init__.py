"""Data-parallel training across processes and machines on MPI (mpi4py).

``init()`` joins the MPI job (a no-op for one process without mpi4py);
``all_reduce``, ``broadcast``, ``all_gather`` and ``barrier`` act on attnkit
tensors in place, handing MPI numpy views of their memory. Every wait has a
deadline: a rank that dies or hangs makes the others abort the job with a
message instead of waiting forever (``ATTNKIT_DIST_TIMEOUT``, seconds).
``attnkit.nn.parallel.DistributedDataParallel`` and
``attnkit.optim.ZeroRedundancyOptimizer`` build on these.

Launch with the MPI's own launcher: ``mpiexec -n 2 python train.py``.
"""

from .collectives import all_gather, all_reduce, barrier, broadcast
from .world import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    DistributedError,
    abort,
    get_rank,
    get_world_size,
    init,
    is_initialized,
    local_world_size,
)

__all__ = [
    "init",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "local_world_size",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "abort",
    "DistributedError",
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
]

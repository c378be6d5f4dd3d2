"""The process group: MPI's world as mpi4py gives it, and the one way every
collective here waits for its result (non-blocking requests polled against
a deadline, so that a dead or stuck rank ends the job instead of hanging it).

mpi4py is imported by ``init()`` only: ``import attnkit`` never needs MPI,
and one process without mpi4py is a world of size 1.
"""

from __future__ import annotations

import os
import sys
import time

# The seconds a rank waits for a collective to complete before it declares
# another rank dead or stuck and aborts the job. Generous: a wait also covers
# a peer that is still busy (rank 0 writing a checkpoint), and a step's
# all-reduce normally takes milliseconds.
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "ATTNKIT_DIST_TIMEOUT"
# What an MPI launcher sets in each process it starts (Hydra, Intel MPI and
# others through PMI; Open MPI): a process that has these and no mpi4py was
# meant to be part of a job and must not train alone.
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
# Polling: the first waits spin on MPI_Test (as MPI_Wait itself would, for
# the lowest latency); a wait that lasts longer than this sleeps between
# polls, so a rank waiting for a busy peer leaves the CPU to others.
_SPIN_S = 0.05
_POLL_SLEEP_S = 0.001
_ABORT_GRACE_S = 0.5


class DistributedError(RuntimeError):
    """A distributed operation that cannot run as asked (no MPI where a
    launcher started this process, a tensor MPI cannot carry, ...)."""


class _World:
    """The state ``init()`` sets: mpi4py's MPI module (None without
    mpi4py), attnkit's own communicator (a duplicate of COMM_WORLD, so our
    collectives never match a user's), rank, size and the timeout."""

    MPI = None
    comm = None
    rank = 0
    size = 1
    timeout_s = DEFAULT_TIMEOUT_S
    initialized = False


_world = _World()


def _timeout_from_environment() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DistributedError(f"{TIMEOUT_ENV} expected a positive number of seconds, got {text!r}")
    return value


def _launcher_size() -> int | None:
    for name in _LAUNCHER_SIZE_VARIABLES:
        text = os.environ.get(name, "")
        if text.isdigit():
            return int(text)
    return None


def init(timeout: float | None = None) -> tuple:
    """Joins the MPI job this process belongs to and returns ``(rank,
    world_size)``. With mpi4py installed it initializes MPI (if the user has
    not) and reads ``MPI.COMM_WORLD``; a process started without a launcher
    is a world of one. Without mpi4py it is a no-op returning ``(0, 1)``,
    unless an MPI launcher started this process as one of several, which
    raises DistributedError (``pip install "attnkit[mpi]"``).

    ``timeout``: seconds a collective may wait for the other ranks before
    this rank reports them dead or stuck and aborts the job (default: the
    ``ATTNKIT_DIST_TIMEOUT`` environment variable, else 300). Calling
    ``init`` again only updates the timeout.
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            raise DistributedError(f"init: argument 'timeout' expected a positive number of seconds, got {timeout!r}")
        _world.timeout_s = float(timeout)
    if _world.initialized:
        return _world.rank, _world.size
    if timeout is None:
        _world.timeout_s = _timeout_from_environment()
    try:
        import mpi4py
    except ImportError:
        launched = _launcher_size()
        if launched is not None and launched > 1:
            raise DistributedError(
                f"this process is one of {launched} that an MPI launcher started, but mpi4py is not "
                f'installed, so it cannot join them; pip install "attnkit[mpi]" (or mpi4py for the '
                f"cluster's own MPI)"
            ) from None
        _world.initialized = True
        return 0, 1
    if "mpi4py.MPI" not in sys.modules:
        # Only the main thread calls MPI here; asking for no more than that
        # spares MPICH its locks. A user who imported mpi4py.MPI first keeps
        # the level they chose.
        mpi4py.rc.thread_level = "funneled"
    from mpi4py import MPI

    _world.MPI = MPI
    _world.comm = MPI.COMM_WORLD.Dup()
    _world.rank = _world.comm.Get_rank()
    _world.size = _world.comm.Get_size()
    _world.initialized = True
    return _world.rank, _world.size


def is_initialized() -> bool:
    return _world.initialized


def _require_init(op: str) -> _World:
    if not _world.initialized:
        raise DistributedError(f"{op}: call attnkit.distributed.init() first")
    return _world


def get_rank() -> int:
    """This process's rank in [0, world size); 0 before ``init()``."""
    return _world.rank


def get_world_size() -> int:
    """The number of processes in the job; 1 before ``init()``."""
    return _world.size


def local_world_size() -> int:
    """How many ranks of the job share this machine (1 without MPI): what
    divides its cores among them."""
    world = _require_init("local_world_size")
    if world.comm is None:
        return 1
    local = world.comm.Split_type(world.MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


def abort(message: str, exit_code: int = 1) -> None:
    """Prints ``message`` (naming this rank) to stderr and ends every process
    of the job: what a rank does when the others can no longer be trusted to
    reach the next collective, where an exception would leave them waiting."""
    prefix = f"attnkit.distributed: rank {_world.rank} of {_world.size}: "
    print(prefix + message, file=sys.stderr, flush=True)
    if _world.MPI is not None:
        # The launcher forwards our stderr through a pipe and stops reading
        # it once the abort reaches it: give the message time to get out.
        time.sleep(_ABORT_GRACE_S)
        _world.MPI.COMM_WORLD.Abort(exit_code)
    os._exit(exit_code)  # no MPI (or Abort returned): this process is the job


def wait(requests: list, what: str) -> None:
    """Waits for MPI requests to complete. A wait longer than the timeout,
    or an error MPI reports (a peer it found dead), aborts the job with a
    message that names ``what`` and this rank; it never returns to a
    caller whose peers are gone."""
    world = _world
    test_all = world.MPI.Request.Testall
    start = time.monotonic()
    try:
        while not test_all(requests):
            waited = time.monotonic() - start
            if waited > world.timeout_s:
                abort(
                    f"{what} did not complete within {world.timeout_s:g} s: another rank has died or "
                    f"stopped responding; aborting the job ({TIMEOUT_ENV} sets the limit)"
                )
            if waited > _SPIN_S:
                time.sleep(_POLL_SLEEP_S)
    except world.MPI.Exception as error:
        abort(f"{what} failed: {error.Get_error_string()}; aborting the job")


def poll(requests: list) -> None:
    """Lets MPI progress ``requests`` without waiting for them (MPI moves a
    non-blocking collective forward only inside MPI calls)."""
    try:
        _world.MPI.Request.Testall(requests)
    except _world.MPI.Exception as error:
        abort(f"a collective failed: {error.Get_error_string()}; aborting the job")

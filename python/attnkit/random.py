"""Random numbers: Philox 4x32-10 streams addressed by (seed, offset).

Every random op in attnkit (dropout now; initialization and sampling later)
draws from a counter-based generator, Philox 4x32-10 (Salmon et al., SC'11,
"Parallel random numbers: as easy as 1, 2, 3"). A ``Generator`` holds a 64-bit
seed (the Philox key) and a 64-bit offset. Each random op takes the next
offset and uses the stream (seed, offset): element i of its result comes from
Philox block counters that depend only on (seed, offset, i). The numbers are
therefore the same for any thread count, any CPU instruction set and every
rerun, and the CUDA backend will produce the same ones; an op's backward pass
regenerates what its forward pass drew from the saved (seed, offset).

``manual_seed(seed)`` reseeds the process-wide ``default_generator``;
``Generator.state_dict()`` / ``load_state_dict()`` save and restore a
generator so a training run resumes bit for bit.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from . import _C
from ._tensor_data import from_native

# The default generator's seed at import, so runs are reproducible without a
# manual_seed call (as PyTorch's CPU generator is).
DEFAULT_SEED = 67280421310721
_UINT64_LIMIT = 2**64


def _check_uint64(op: str, argument: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < _UINT64_LIMIT:
        raise ValueError(f"{op}: argument '{argument}' expected an integer in [0, 2**64), got {value}")
    return value


class Generator:
    """A Philox 4x32-10 generator: a 64-bit ``seed`` and the ``offset`` of the
    next stream. Each random op advances the offset by one and so gets its own
    stream of up to 2**66 numbers. Thread-safe."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self._lock = threading.Lock()
        self._seed = _check_uint64("Generator", "seed", seed)
        self._offset = 0

    def manual_seed(self, seed: int) -> Generator:
        """Sets the seed (an int in [0, 2**64)) and restarts at offset 0."""
        seed = _check_uint64("manual_seed", "seed", seed)
        with self._lock:
            self._seed = seed
            self._offset = 0
        return self

    def initial_seed(self) -> int:
        return self._seed

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def offset(self) -> int:
        """The offset the next random op will use."""
        return self._offset

    def state_dict(self) -> dict:
        """``{"seed": int, "offset": int}``: all there is to the generator's state."""
        with self._lock:
            return {"seed": self._seed, "offset": self._offset}

    def load_state_dict(self, state: dict) -> None:
        """Restores a state from ``state_dict()``."""
        if not isinstance(state, dict) or set(state) != {"seed", "offset"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"load_state_dict: argument 'state' expected a dict with keys 'offset' and 'seed', got {got}"
            )
        seed = _check_uint64("load_state_dict", "state['seed']", state["seed"])
        offset = _check_uint64("load_state_dict", "state['offset']", state["offset"])
        with self._lock:
            self._seed, self._offset = seed, offset

    def next_stream(self) -> tuple:
        """Takes the next stream: returns (seed, offset) and advances the offset.
        For ops that draw random numbers; their backward keeps the pair."""
        with self._lock:
            if self._offset >= _UINT64_LIMIT - 1:
                raise RuntimeError(
                    "Generator: the 2**64 streams of this seed are used up; call manual_seed() to start again"
                )
            stream = (self._seed, self._offset)
            self._offset += 1
            return stream

    def __repr__(self) -> str:
        return f"Generator(seed={self._seed}, offset={self._offset})"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seeds the process-wide generator (an int in [0, 2**64)); returns it."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def _generator_or_default(op: str, generator) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(
            f"{op}: argument 'generator' expected an attnkit.random.Generator or None, got {type(generator).__name__}"
        )
    return generator


def random_words(op: str, count: int, generator: Generator | None = None) -> np.ndarray:
    """``count`` uniform 32-bit words (uint32) from the generator's next
    stream (default: the default generator): the Philox numbers behind
    dropout, initialization and sampling, for draws made in numpy."""
    seed, offset = _generator_or_default(op, generator).next_stream()
    return np.asarray(_C.random_bits(count, seed, offset)).view(np.uint32)


def rand(*size, generator: Generator | None = None):
    """A float32 tensor of the given size, uniform in [0, 1): each value is
    the 24 high bits of a 32-bit Philox number times 2**-24."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0:
            raise ValueError(f"rand: argument 'size' expected non-negative ints, got {size}")
    seed, offset = _generator_or_default("rand", generator).next_stream()
    return from_native(_C.uniform([int(s) for s in size], seed, offset))


__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "rand", "DEFAULT_SEED"]

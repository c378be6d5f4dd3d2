"""Corpora and batches.

``load_text()`` reads the bundled tiny Shakespeare (1,115,394 characters of
Shakespeare's plays, public domain; Karpathy's char-rnn corpus) or any
UTF-8 text file. ``split_tokens`` cuts the token ids into the first 90% for
training and the last 10% for validation, as nanoGPT does. ``get_batch``
draws nanoGPT's batches: ``batch_size`` random windows of ``block_size + 1``
consecutive tokens, inputs x the first ``block_size`` and targets y the same
window shifted by one. The window starts come from an attnkit
``random.Generator`` (Philox), so the same seed gives the same batches on
every machine.
"""

from __future__ import annotations

import numbers
import os
from importlib import resources

import numpy as np

from ..ops import checks
from ..random import random_words

BUNDLED_CORPUS = "tinyshakespeare.txt"


def bundled_corpus_path():
    """The path of the bundled tiny Shakespeare (a ``Traversable``; open it
    with ``.open()`` or ``.read_text()``)."""
    return resources.files(__package__).joinpath(BUNDLED_CORPUS)


def load_text(path=None) -> str:
    """The text of ``path`` (a UTF-8 file), or the bundled tiny Shakespeare
    when ``path`` is None. A missing file is a FileNotFoundError; a
    directory, an empty file or one that is not UTF-8 is a ValueError; each
    names the file."""
    if path is None:
        return bundled_corpus_path().read_text(encoding="utf-8")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"the data file '{path}' does not exist")
    if os.path.isdir(path):
        raise ValueError(f"the data file '{path}' is a directory; give a UTF-8 text file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise ValueError(f"the data file '{path}' is empty; give a UTF-8 text file with some text in it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"the data file '{path}' is not UTF-8 text: byte {error.start} is "
            f"0x{raw[error.start]:02x}, which cannot start or continue a UTF-8 character"
        ) from None


def split_tokens(tokens, val_fraction: float = 0.1) -> tuple:
    """(train, val): the first ``1 - val_fraction`` of ``tokens`` and the rest
    (int64 numpy arrays; views, not copies)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise ValueError(
            f"split_tokens: argument 'tokens' expected a 1-D array of token ids, got "
            f"{tokens.dtype} of shape {list(tokens.shape)}"
        )
    if not isinstance(val_fraction, numbers.Real) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"split_tokens: argument 'val_fraction' expected a number in (0, 1), got {val_fraction!r}")
    cut = int(len(tokens) * (1.0 - val_fraction))
    tokens = tokens.astype(np.int64, copy=False)
    return tokens[:cut], tokens[cut:]


def random_offsets(num_tokens: int, batch_size: int, block_size: int, generator=None) -> np.ndarray:
    """``batch_size`` window starts, uniform over [0, num_tokens -
    block_size) as nanoGPT's ``torch.randint(len(data) - block_size, ...)``,
    from the generator's next stream (default: attnkit's default generator).

    Each start takes two 32-bit Philox numbers as one 64-bit number u and is
    floor(u * count / 2**64): exact integer arithmetic, uniform to within
    count / 2**64 for any corpus size."""
    op = "random_offsets"
    batch_size = checks.positive_int(op, "batch_size", batch_size)
    block_size = checks.positive_int(op, "block_size", block_size)
    if batch_size >= 2**62:  # two 32-bit numbers per window must be countable in int64
        raise ValueError(f"{op}: argument 'batch_size' expected a positive int below 2**62, got {batch_size}")
    count = int(num_tokens) - block_size
    if count < 1:
        raise ValueError(
            f"{op}: a window of block_size + 1 = {block_size + 1} tokens does not fit in "
            f"{num_tokens} tokens; use a smaller block_size or more text"
        )
    words = random_words(op, 2 * batch_size, generator).astype(np.uint64)
    wide = (words[0::2] << np.uint64(32)) | words[1::2]
    return np.array([(int(u) * count) >> 64 for u in wide], np.int64)


def batch_arrays(tokens: np.ndarray, offsets: np.ndarray, block_size: int) -> tuple:
    """(x, y), int64 numpy arrays [len(offsets), block_size]: x[b] =
    tokens[o : o + block_size] and y[b] = tokens[o + 1 : o + 1 + block_size]
    for o = offsets[b]."""
    window = np.asarray(offsets, np.int64)[:, None] + np.arange(block_size + 1, dtype=np.int64)
    chunks = np.asarray(tokens, np.int64)[window]
    return chunks[:, :-1].copy(), chunks[:, 1:].copy()


def get_batch(
    tokens: np.ndarray, batch_size: int, block_size: int, *, generator=None, rank: int = 0, world_size: int = 1
) -> tuple:
    """One training batch (x, y) of attnkit int64 tensors [batch_size,
    block_size]: random windows of ``tokens`` and their next tokens.

    Data-parallel: ``batch_size`` stays the global batch, and rank ``rank``
    of ``world_size`` gets its rows ``[rank * b, (rank + 1) * b)``, b =
    batch_size / world_size (which must divide it). Every rank draws the
    whole batch's window starts from the same stream (a few numbers), so
    the ranks together hold exactly the batch one process would draw."""
    from ..tensor import from_numpy

    op = "get_batch"
    world_size = checks.positive_int(op, "world_size", world_size)
    if not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise ValueError(f"{op}: argument 'rank' expected an int in [0, {world_size}), got {rank!r}")
    if checks.positive_int(op, "batch_size", batch_size) % world_size:
        raise ValueError(
            f"{op}: argument 'batch_size' expected a multiple of world_size={world_size} "
            f"(the global batch splits evenly over the ranks), got {batch_size}"
        )
    offsets = random_offsets(len(tokens), batch_size, block_size, generator)
    local = batch_size // world_size
    x, y = batch_arrays(tokens, offsets[rank * local : (rank + 1) * local], block_size)
    return from_numpy(x), from_numpy(y)


__all__ = [
    "BUNDLED_CORPUS",
    "bundled_corpus_path",
    "load_text",
    "split_tokens",
    "random_offsets",
    "batch_arrays",
    "get_batch",
]

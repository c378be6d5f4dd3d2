"""The safetensors files of a Hugging Face model directory: one
``model.safetensors``, or shards listed by ``model.safetensors.index.json``.

Every file's header is read and checked when the directory is opened (a
truncated or malformed shard is refused before any weight is touched), then
each file is memory-mapped copy-on-write: a tensor's pages come from disk
when they are read, a float32 tensor can be used in place, and writing to it
never changes the file.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass

import numpy as np

from ... import _dtypes
from ...serialization import _read_header, _refuse_duplicate_keys
from .registry import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# numpy's reading of a float dtype's bytes in the file (bfloat16: its bits).
_FILE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
_PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class _Entry:
    file: str  # the shard's file name
    dtype: _dtypes.dtype
    shape: tuple
    begin: int  # byte offsets in the file
    end: int


def read_json(path: str, what: str) -> dict:
    """A JSON object from ``path``; CheckpointError naming ``what`` otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f, object_pairs_hook=_refuse_duplicate_keys)
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' does not exist") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{what} '{path}' is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} '{path}' should hold a JSON object, not a {type(value).__name__}")
    return value


def _shard_names(directory: str) -> dict:
    """{file name: the tensor names the index puts in it}, or None for a
    single file."""
    index_path = os.path.join(directory, INDEX_FILE)
    index = read_json(index_path, "the shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"the shard index '{index_path}' has no 'weight_map' of tensor names to files")
    shards: dict = {}
    for name, file in weight_map.items():
        # A plain file name in this directory: never a path that leaves it.
        if not isinstance(file, str) or not file or os.path.basename(file) != file or file in (".", ".."):
            raise CheckpointError(
                f"the shard index '{index_path}' maps '{name}' to {file!r}; expected a file name in the directory"
            )
        shards.setdefault(file, set()).add(name)
    return shards


class CheckpointFiles:
    """The tensors of a model directory, by name: their dtype, shape, and
    float32 values (``float32``), memory-mapped."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        single = os.path.join(directory, SINGLE_FILE)
        if os.path.isfile(single):
            shards = {SINGLE_FILE: None}
        elif os.path.isfile(os.path.join(directory, INDEX_FILE)):
            shards = _shard_names(directory)
        else:
            present = sorted(name for name in os.listdir(directory) if name.endswith((".bin", ".pt", ".pth", ".h5")))
            hint = (
                f" It has {', '.join(present)}: attnkit reads safetensors only (a pickle can run code); "
                f"convert with transformers: model.save_pretrained(DIR, safe_serialization=True)."
                if present
                else ""
            )
            raise CheckpointError(f"'{directory}' has neither {SINGLE_FILE} nor {INDEX_FILE}.{hint}")
        self.entries: dict = {}
        self._maps: dict = {}
        self._buffers: dict = {}
        for file, listed in shards.items():
            self._open(file, listed)
        self._rename_legacy()

    def _rename_legacy(self) -> None:
        """LayerNorm.gamma / LayerNorm.beta, the names of checkpoints converted
        from TensorFlow (bert-base-uncased among them), read as
        LayerNorm.weight / LayerNorm.bias, as transformers reads them."""
        for name in list(self.entries):
            for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
                if name.endswith("LayerNorm" + old):
                    renamed = name[: -len(old)] + new
                    if renamed in self.entries:
                        raise CheckpointError(f"the checkpoint has both '{name}' and '{renamed}'")
                    self.entries[renamed] = self.entries.pop(name)

    def _open(self, file: str, listed) -> None:
        path = os.path.join(self.directory, file)
        if not os.path.isfile(path):
            raise CheckpointError(f"the shard '{path}', named by {INDEX_FILE}, does not exist")
        try:
            header, _, data_start, _ = _read_header(path)
        except ValueError as error:
            # The reader's message names the file and what is wrong with it.
            raise CheckpointError(f"the shard is refused: {str(error).removeprefix('load: ')}") from None
        names = {name for name, *_ in header}
        if listed is not None and names != listed:
            absent = sorted(listed - names)
            extra = sorted(names - listed)
            problems = []
            if absent:
                problems.append(f"the index puts {', '.join(absent)} in it, but it lacks them")
            if extra:
                problems.append(f"it holds {', '.join(extra)}, which the index does not list there")
            raise CheckpointError(f"the shard '{path}' does not match {INDEX_FILE}: " + "; ".join(problems))
        for name, dtype, shape, begin, end in header:
            if name in self.entries:
                raise CheckpointError(f"the tensor '{name}' is in two shards: {self.entries[name].file} and {file}")
            self.entries[name] = _Entry(file, dtype, shape, data_start + begin, data_start + end)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # Copy-on-write: parameters that share these pages may be
            # trained; the file never changes.
            self._maps[file] = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        self._buffers[file] = np.frombuffer(self._maps[file], np.uint8)

    def names(self) -> set:
        return set(self.entries)

    def _bytes(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        return self._buffers[entry.file][entry.begin : entry.end]

    def shareable(self, name: str) -> bool:
        """Whether ``float32(name)`` is the file's memory itself (float32,
        aligned, in the host's byte order) rather than a converted copy."""
        entry = self.entries[name]
        return (
            entry.dtype == _dtypes.float32
            and entry.begin % 4 == 0
            and np.dtype("<f4").isnative
            and entry.end > entry.begin
        )

    def float32(self, name: str) -> np.ndarray:
        """The tensor's values as float32 [shape]: the mapped file itself
        when ``shareable``, else converted exactly (float16 and bfloat16
        widen without rounding)."""
        entry = self.entries[name]
        if entry.dtype.name not in _FILE_DTYPES:
            raise CheckpointError(
                f"the tensor '{name}' in '{entry.file}' is {entry.dtype}; a weight must be float32, float16 or bfloat16"
            )
        data = self._bytes(name)
        file_dtype = _FILE_DTYPES[entry.dtype.name]
        if data.size == 0:
            return np.zeros(entry.shape, np.float32)
        if entry.begin % file_dtype.itemsize:
            data = data.copy()  # a fresh buffer is aligned
        values = data.view(file_dtype).reshape(entry.shape)
        if entry.dtype == _dtypes.bfloat16:
            return _dtypes.bfloat16_bits_to_float32(values)
        if values.dtype != np.float32 or not values.dtype.isnative:
            return values.astype(np.float32)
        return values

    def float32_into(self, name: str, out: np.ndarray) -> None:
        """Writes the tensor's values into ``out`` (float32, C-contiguous,
        as many elements), widening float16 and bfloat16 exactly on the
        way: one pass over ``out`` and no temporary array (what
        ``float32`` followed by a copy would cost three times over)."""
        entry = self.entries[name]
        if entry.dtype.name not in _FILE_DTYPES:
            raise CheckpointError(
                f"the tensor '{name}' in '{entry.file}' is {entry.dtype}; a weight must be float32, float16 or bfloat16"
            )
        data = self._bytes(name)
        flat = out.reshape(-1)
        if data.size == 0:
            return
        if entry.begin % _FILE_DTYPES[entry.dtype.name].itemsize:
            data = data.copy()  # a fresh buffer is aligned
        values = data.view(_FILE_DTYPES[entry.dtype.name])
        if entry.dtype == _dtypes.bfloat16:
            # bfloat16 is the high half of a float32: each uint16 zero-extended and shifted, in one pass.
            np.left_shift(values, np.uint32(16), out=flat.view(np.uint32), dtype=np.uint32, casting="unsafe")
        else:
            np.copyto(flat, values, casting="unsafe")  # float16 widens exactly; float32 copies

    def release(self, name: str) -> None:
        """Drops the pages that hold only this tensor from memory (they are
        read again from disk if touched): called once a tensor has been
        copied out, so a load never holds the file and the model at once."""
        entry = self.entries[name]
        first = -(-entry.begin // _PAGE) * _PAGE
        last = entry.end // _PAGE * _PAGE
        if last > first and hasattr(mmap, "MADV_DONTNEED"):
            self._maps[entry.file].madvise(mmap.MADV_DONTNEED, first, last - first)

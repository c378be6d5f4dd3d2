"""Checkpoints: ``attnkit.save(obj, path)`` and ``attnkit.load(path)`` in the
safetensors format, with a reader and writer of our own (bfloat16 and
memory-mapping need no extra package).

The format (https://github.com/huggingface/safetensors, "Format"):

    8 bytes      N, the header's length, unsigned little-endian
    N bytes      the header: a UTF-8 JSON object
                   "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
                   "__metadata__": {"<key>": "<string value>", ...}   (optional)
                 padded with spaces
    the rest     the byte buffer: every tensor's row-major little-endian
                 bytes at [begin, end) relative to the buffer's start; the
                 tensors cover the buffer exactly, without holes or overlaps.

dtypes: F32, F16, BF16, I32, I64, I8 (quantized weights), BOOL (one byte, 0 or 1).

What we write: a flat ``{name: tensor}`` dict (a ``state_dict()``) becomes
exactly those entries, so other safetensors readers see the same names.
Anything else - an optimizer's state_dict, a checkpoint dict holding a
model, an optimizer, a step count - is walked: its tensors become entries
named by their path ("optimizer.state.0.exp_avg"), and the rest of the
structure (dicts with str or int keys, lists, tuples, ints, floats, bools,
str, None) goes into the metadata as JSON under "attnkit.structure", with
each tensor replaced by a reference to its entry. A tensor that appears
several times (a tied weight, under each of its state_dict names) is
written once, under its first name, and referenced from the others - the
format forbids overlapping entries, and a tied GPT-2 embedding is 150 MB;
a flat dict with such a tensor is therefore written as a structure too
(other readers see the first names only, as with safetensors' own
``save_model``). ``load`` gives every reference the same tensor back.
``config=`` stores a dict (or a dataclass) as JSON under "config";
``load_config`` reads it back.

The data starts 8-byte aligned and the tensors are laid out widest dtype
first, so every tensor is aligned to its element size. ``load`` memory-maps
the file copy-on-write: tensors are read from disk as they are touched,
and writing to one never changes the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import sys

import numpy as np

from . import _C
from ._dtypes import bfloat16, bool_, float16, float32, int8, int32, int64
from ._tensor_data import from_native, native_array, raw_bytes
from .tensor import Tensor, empty

_DTYPE_BY_CODE = {
    "F32": float32,
    "F16": float16,
    "BF16": bfloat16,
    "I32": int32,
    "I64": int64,
    "I8": int8,
    "BOOL": bool_,
}
_CODE_BY_DTYPE = {dtype.name: code for code, dtype in _DTYPE_BY_CODE.items()}
# Each dtype's bytes as numpy reads them in the file (bfloat16 as its bits).
_FILE_NUMPY_DTYPE = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "bool": np.dtype("u1"),
    "int8": np.dtype("i1"),
}
# safetensors' own readers refuse headers beyond this, so files stay portable.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"
STRUCTURE_KEY = "attnkit.structure"
CONFIG_KEY = "config"
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"


# ------------------------------------------------------------ structure ---
# JSON can hold dicts with str keys, lists, str, numbers, bools and null.
# The rest is written as a one-key object whose key starts with "@":
#   {"@tensor": name}     a tensor, stored as the entry `name`
#   {"@tuple": [...]}     a tuple
#   {"@dict": [[k, v]]}   a dict with a key that is not a str, or starts with "@"
#   {"@float": "nan"}     NaN, inf or -inf (JSON has no such numbers)


def _unique_name(path: list, used: set) -> str:
    base = ".".join(str(part) for part in path) or "tensor"
    name, n = base, 1
    while name in used or name == METADATA_KEY:
        n += 1
        name = f"{base}~{n}"
    used.add(name)
    return name


def _encode(value, path: list, tensors: list, used: set, written: dict):
    """``value`` as JSON, its tensors appended to ``tensors`` as (name,
    tensor); ``written`` maps id(native array) -> entry name, so a tensor
    met again (same memory, same shape and dtype) becomes a reference."""
    if isinstance(value, Tensor):
        if id(native_array(value)) not in written:
            name = _unique_name(path, used)
            tensors.append((name, value))
            written[id(native_array(value))] = name
        return {"@tensor": written[id(native_array(value))]}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"@float": repr(value)}
    if isinstance(value, tuple):
        return {"@tuple": [_encode(v, path + [i], tensors, used, written) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, path + [i], tensors, used, written) for i, v in enumerate(value)]
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and not k.startswith("@") for k in value)
        if plain:
            return {k: _encode(v, path + [k], tensors, used, written) for k, v in value.items()}
        for k in value:
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(
                    f"save: the dict at '{'.'.join(map(str, path)) or '<root>'}' has a key of type "
                    f"{type(k).__name__}; keys must be str or int"
                )
        return {"@dict": [[k, _encode(v, path + [k], tensors, used, written)] for k, v in value.items()]}
    where = ".".join(map(str, path)) or "<root>"
    hint = "; save module.state_dict() instead" if hasattr(value, "state_dict") else ""
    raise TypeError(
        f"save: cannot store a {type(value).__name__} at '{where}': a checkpoint holds tensors, "
        f"dicts, lists, tuples, str, int, float, bool and None{hint}"
    )


def _decode(value, tensors: dict):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, content),) = value.items()
        if tag == "@tensor":
            if content not in tensors:
                raise ValueError(f"the structure refers to a tensor '{content}' the file does not have")
            return tensors[content]
        if tag == "@tuple":
            return tuple(_decode(v, tensors) for v in content)
        if tag == "@dict":
            return {k: _decode(v, tensors) for k, v in content}
        if tag == "@float":
            return float(content)
        if tag.startswith("@"):
            raise ValueError(f"unknown tag '{tag}' in the file's structure")
    return {k: _decode(v, tensors) for k, v in value.items()}


def _is_flat_tensor_dict(obj) -> bool:
    """A dict of distinct tensors by str names: written as plain entries."""
    return (
        isinstance(obj, dict)
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, Tensor) for v in obj.values())
        and len({id(native_array(v)) for v in obj.values()}) == len(obj)
    )


# ----------------------------------------------------------------- save ---


def _config_json(config) -> str:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"save: argument 'config' expected a dict or a dataclass, got {type(config).__name__}")
    try:
        return json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save: argument 'config' must be JSON-serializable: {error}") from None


def _little_endian_bytes(tensor: Tensor) -> np.ndarray:
    data = raw_bytes(tensor)
    if _LITTLE_ENDIAN_HOST:
        return data
    file_dtype = _FILE_NUMPY_DTYPE[tensor.dtype.name]
    return data.view(file_dtype.newbyteorder("=")).astype(file_dtype).view(np.uint8)


def save(obj, path, *, config=None) -> None:
    """Writes ``obj`` to ``path`` as a safetensors file (see the module
    docstring for what ``obj`` may hold). ``config``: a dict or dataclass
    stored as JSON in the metadata (the model configuration, usually).

    The file is written next to ``path`` and then renamed over it, so an
    interrupted save never leaves a half-written checkpoint, and tensors
    memory-mapped from an older file at ``path`` stay valid.
    """
    path = os.fspath(path)
    if _is_flat_tensor_dict(obj):
        if METADATA_KEY in obj:
            raise ValueError(f"save: '{METADATA_KEY}' is reserved by the format and cannot name a tensor")
        tensors = list(obj.items())
        structure = None
    else:
        tensors = []
        try:
            structure = _encode(obj, [], tensors, set(), {})
        except RecursionError:
            raise ValueError("save: the object nests too deeply to be written") from None
    for name, tensor in tensors:
        if tensor.device.type != "cpu":
            raise ValueError(f"save: tensor '{name}' is on {tensor.device}; only CPU tensors can be written")

    metadata = {"format": "pt"}  # the tensors are plain row-major arrays, as tools reading "pt" files expect
    if structure is not None:
        metadata[STRUCTURE_KEY] = json.dumps(structure, allow_nan=False, separators=(",", ":"))
    if config is not None:
        metadata[CONFIG_KEY] = _config_json(config)

    # Widest dtype first: with the buffer 8-byte aligned, each tensor then
    # starts at a multiple of its element size (a stable sort keeps order).
    layout = sorted(range(len(tensors)), key=lambda i: -tensors[i][1].dtype.itemsize)
    offsets = {}
    cursor = 0
    for i in layout:
        offsets[i] = (cursor, cursor + tensors[i][1].nbytes)
        cursor += tensors[i][1].nbytes
    header = {METADATA_KEY: metadata}
    for i, (name, tensor) in enumerate(tensors):
        header[name] = {
            "dtype": _CODE_BY_DTYPE[tensor.dtype.name],
            "shape": list(tensor.shape),
            "data_offsets": list(offsets[i]),
        }
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(
            f"save: the header would be {len(header_bytes)} bytes, beyond the format's "
            f"{MAX_HEADER_BYTES}; store long non-tensor data elsewhere"
        )

    # open(..., "xb") creates the file with the usual permissions (umask),
    # which tempfile's private 0600 files would not have.
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temporary, "xb") as f:
            f.write(len(header_bytes).to_bytes(8, "little"))
            f.write(header_bytes)
            for i in layout:
                if tensors[i][1].nbytes:
                    f.write(_little_endian_bytes(tensors[i][1]).data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# ----------------------------------------------------------------- load ---


def _refuse_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key '{key}'")
        result[key] = value
    return result


def _read_header(path: str):
    """(entries in header order, metadata, byte offset of the data, data length)."""

    def bad(reason: str):
        return ValueError(f"load: '{path}' is not a valid safetensors file: {reason}")

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise bad(f"{size} bytes, fewer than the 8 of the header length")
        header_length = int.from_bytes(f.read(8), "little")
        if header_length > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"a header length of {header_length} bytes, in a file of {size}")
        raw = f.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f"the header is not UTF-8 JSON ({error})") from None
    except RecursionError:
        raise bad("the header nests too deeply") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("'__metadata__' must map strings to strings")
    data_length = size - 8 - header_length
    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise bad(f"tensor '{name}' needs 'dtype', 'shape' and 'data_offsets'")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPE_BY_CODE:
            raise ValueError(
                f"load: tensor '{name}' in '{path}' has dtype {code!r}; attnkit reads {', '.join(_DTYPE_BY_CODE)}"
            )
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**63 for d in shape):
            raise bad(f"tensor '{name}' has shape {shape!r}, not a list of sizes in [0, 2**63)")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_length
        ):
            raise bad(f"tensor '{name}' has data_offsets {offsets!r}, outside the {data_length}-byte buffer")
        dtype = _DTYPE_BY_CODE[code]
        if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
            raise bad(
                f"tensor '{name}' of shape {shape} and dtype {code} needs "
                f"{math.prod(shape) * dtype.itemsize} bytes, its offsets span {offsets[1] - offsets[0]}"
            )
        entries.append((name, dtype, tuple(shape), offsets[0], offsets[1]))
    cursor = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != cursor:
            raise bad(
                f"the buffer has {'a hole' if begin > cursor else 'an overlap'} at byte {cursor} "
                f"(tensor '{name}' starts at {begin})"
            )
        cursor = end
    if cursor != data_length:
        raise bad(f"the tensors cover {cursor} bytes of a {data_length}-byte buffer")
    return entries, metadata, 8 + header_length, data_length


def _tensor_from_bytes(data: np.ndarray, name: str, dtype, shape: tuple, path: str) -> Tensor:
    """A tensor over ``data`` (uint8, little-endian bytes); shares the memory
    when it is aligned and in the host's byte order, else copies."""
    if data.size == 0:
        return empty(*shape, dtype=dtype)
    file_dtype = _FILE_NUMPY_DTYPE[dtype.name]
    if data.ctypes.data % file_dtype.itemsize != 0:
        data = data.copy()  # a fresh numpy buffer is aligned
    values = data.view(file_dtype).reshape(shape)
    if not _LITTLE_ENDIAN_HOST:
        values = values.astype(file_dtype.newbyteorder("="))
    if dtype == bool_:
        if values.size and values.max() > 1:
            raise ValueError(f"load: BOOL tensor '{name}' in '{path}' holds bytes other than 0 and 1")
        values = values.view(np.bool_)
    if dtype == bfloat16:
        return from_native(_C.array_from_numpy(values.view(np.float16), "bfloat16", False))
    return from_native(_C.array_from_numpy(values, "", False))


def load(path, *, mmap: bool = True):
    """Reads a safetensors file: what ``save`` wrote, or a flat ``{name:
    tensor}`` dict (in header order) for a file from another writer.

    ``mmap=True`` maps the file copy-on-write instead of reading it: a
    tensor's pages come from disk as they are touched, and changing a tensor
    never changes the file. ``mmap=False`` reads everything into memory.
    A malformed file raises ValueError saying what is wrong.
    """
    path = os.fspath(path)
    if not isinstance(mmap, bool):
        raise TypeError(f"load: argument 'mmap' expected a bool, got {type(mmap).__name__}")
    entries, metadata, data_start, data_length = _read_header(path)
    if data_length == 0:
        buffer = np.empty(0, np.uint8)
    elif mmap:
        buffer = np.memmap(path, dtype=np.uint8, mode="c", offset=data_start, shape=(data_length,))
    else:
        with open(path, "rb") as f:
            f.seek(data_start)
            buffer = np.frombuffer(bytearray(f.read(data_length)), np.uint8)
    tensors = {
        name: _tensor_from_bytes(buffer[begin:end], name, dtype, shape, path)
        for name, dtype, shape, begin, end in entries
    }
    if STRUCTURE_KEY not in metadata:
        return tensors
    structure = _metadata_json(metadata, STRUCTURE_KEY, path)
    try:
        return _decode(structure, tensors)
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"load: '{path}' has a malformed '{STRUCTURE_KEY}' entry ({error})") from None
    except RecursionError:
        raise ValueError(f"load: '{path}' has a malformed '{STRUCTURE_KEY}' entry (it nests too deeply)") from None


def _metadata_json(metadata: dict, key: str, path: str):
    """The JSON value stored as text under ``key`` in the metadata; ValueError
    naming the file when it is not JSON (or nests deeper than Python's stack)."""
    try:
        return json.loads(metadata[key])
    except ValueError as error:
        raise ValueError(f"load: '{path}' has a malformed '{key}' entry ({error})") from None
    except RecursionError:
        raise ValueError(f"load: '{path}' has a malformed '{key}' entry (it nests too deeply)") from None


def load_config(path):
    """The ``config`` dict stored by ``save(..., config=...)``, or None.
    Reads only the header."""
    path = os.fspath(path)
    _, metadata, _, _ = _read_header(path)
    if CONFIG_KEY not in metadata:
        return None
    config = _metadata_json(metadata, CONFIG_KEY, path)
    if not isinstance(config, dict):
        raise ValueError(f"load: '{path}' has a malformed '{CONFIG_KEY}' entry (not a JSON object)")
    return config


__all__ = ["save", "load", "load_config"]

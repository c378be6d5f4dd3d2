"""A fuzzer of attnkit's public API: many random calls, each mostly valid with
a few arguments drawn from the values that break code (sizes of 2**63, -1 and
0, NaN, infinities, huge and subnormal floats, empty and 0-d tensors, tensors
of every dtype, wrong types), run in a child process, so that a crash or a
hang is a failing test and not a dead interpreter.

A call passes when it returns or raises a clear error: TypeError, ValueError,
IndexError, KeyError, RuntimeError, MemoryError or NotImplementedError, with a
message of attnkit's own (not pybind11's "incompatible function arguments" or
a bare C++ exception name). A crash, a hang, any other exception and a numpy
warning escaping attnkit (an overflow in a conversion: a silently wrong
value) fail the test, with the call that did it, reproducible alone:

    python tests/test_fuzz.py --seed S --first I --calls 1 --verbose

In CI the test makes a few hundred calls (a few seconds); a longer run:

    python tests/test_fuzz.py --calls 20000            # or
    ATTNKIT_FUZZ_CALLS=20000 python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import warnings

import numpy as np

CALLS = int(os.environ.get("ATTNKIT_FUZZ_CALLS", "400"))
SEED = int(os.environ.get("ATTNKIT_FUZZ_SEED", "20260518"))
WORKER_TIMEOUT_S = 120

# (BufferError: what a DLPack producer raises when it cannot export.)
CLEAN_ERRORS = (
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    RuntimeError,
    MemoryError,
    NotImplementedError,
    BufferError,
)
# Messages that are not attnkit's own: a binding reached with what it cannot
# convert, a C++ exception passed through by name, Python tripping over a value.
UNCLEAR_MESSAGES = re.compile(
    r"incompatible function arguments|Unable to cast|std::|has no attribute|not subscriptable|"
    r"unsupported operand|referenced before assignment|object is not iterable|cannot unpack"
)

# Sizes: small ones, and ones that must be refused without allocating (every
# product with one of them is 0 or at least 2**40 elements: 4 TiB).
SMALL_SIZES = [0, 1, 1, 2, 2, 3, 4, 5, 7, 8]
BAD_SIZES = [-1, -2, -(2**31), -(2**63), 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100]
BAD_INTS = BAD_SIZES + [2**31 - 1, 2**31, 2**32, -(2**63) - 1]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, -1e-45, 1e-38, 1e38, 3.4e38, -3.4e38, 1e39, 1e300, math.inf, -math.inf,
          math.nan, 2.0**63, -(2.0**63), 2.0**64]  # fmt: skip
JUNK = [None, "x", "", b"\x00", [], (), {}, [[1], [2, 3]], [None], object(), 1j, True, False, slice(None), ...]


class Draw:
    """The random choices of one call."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self.numpy = np.random.default_rng(seed)

    def chance(self, p: float) -> bool:
        return self.random.random() < p

    def pick(self, options):
        return options[self.random.randrange(len(options))]

    def size(self, bad: float = 0.1):
        return self.pick(BAD_SIZES) if self.chance(bad) else self.pick(SMALL_SIZES)

    def int(self):
        return self.pick(BAD_INTS + SMALL_SIZES + [-3, -1, 10, 100])

    def float(self):
        return self.pick(FLOATS)

    def number(self):
        return self.int() if self.chance(0.5) else self.float()

    def dtype(self):
        import attnkit

        return self.pick([attnkit.float32] * 4 + [attnkit.float16, attnkit.bfloat16, attnkit.int32, attnkit.int64,
                          attnkit.bool_])  # fmt: skip

    def shape(self, ndim=None, bad: float = 0.05):
        ndim = self.pick([0, 1, 1, 2, 2, 3, 4]) if ndim is None else ndim
        return tuple(self.size(bad) for _ in range(ndim))

    def values(self, shape, dtype_name="float32"):
        """Numbers for a small shape, with NaN, infinities and huge values now and then."""
        n = int(np.prod(shape)) if shape else 1
        if dtype_name in ("int32", "int64"):
            limit = np.iinfo(dtype_name).max
            v = self.numpy.integers(-10, 10, n)
            if self.chance(0.2):
                v = self.numpy.integers(-limit, limit, n, dtype=dtype_name)
            return v.astype(dtype_name).reshape(shape)
        if dtype_name == "bool":
            return (self.numpy.random(n) < 0.5).reshape(shape)
        v = self.numpy.standard_normal(n) * self.pick([1.0, 1.0, 1e-30, 1e4, 1e19, 1e38])
        if self.chance(0.2) and n:
            v[self.numpy.integers(0, n, max(1, n // 4))] = self.pick([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 0.0])
        return v.reshape(shape)

    def tensor(self, shape=None, dtype=None, requires_grad=None):
        """A tensor of a small shape (or an empty one whose other sizes are huge)."""
        import attnkit

        dtype = self.dtype() if dtype is None else dtype
        if shape is None:
            if self.chance(0.05):  # no elements, whatever the other sizes
                shape = self.pick([(0, 2**40), (2**31, 0, 2**31), (0,), (3, 0)])
                return attnkit.zeros(*shape, dtype=dtype)
            shape = self.shape(bad=0)
        values = self.values(shape, "float32" if dtype.is_floating_point else dtype.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = attnkit.tensor(values, dtype=dtype)
            grad = self.chance(0.3) if requires_grad is None else requires_grad
            if grad and dtype.is_floating_point:
                t.requires_grad_(True)
        return t

    def junk(self):
        import attnkit

        choice = self.random.randrange(6)
        if choice == 0:
            return self.pick(JUNK)
        if choice == 1:
            return self.number()
        if choice == 2:
            return self.pick([np.zeros(3, np.uint64) + (2**64 - 1), np.array([1 + 2j]), np.array(["a"]),
                              np.zeros((2, 3), np.float64), np.array(5, np.int8)])  # fmt: skip
        if choice == 3:
            return self.tensor()
        if choice == 4:
            return self.pick([attnkit.float32, attnkit.int64, "float32", "float64", np.float64, "cuda", "cpu"])
        return [self.number() for _ in range(self.random.randrange(4))]

    def maybe(self, valid, bad: float = 0.15):
        """``valid`` (a value or a callable making one), or now and then anything at all."""
        if self.chance(bad):
            return self.junk()
        return valid() if callable(valid) else valid


def describe(value, depth=0) -> str:
    """A short, reproducible-enough description of an argument."""
    import attnkit

    if isinstance(value, attnkit.Tensor):
        flags = ", requires_grad" if value.requires_grad else ""
        return f"tensor({value.dtype}{list(value.shape)}{flags})"
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype}{list(value.shape)})"
    if isinstance(value, (list, tuple)) and depth < 2:
        inner = ", ".join(describe(v, depth + 1) for v in value[:6])
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# ----------------------------------------------------------------- the API ---
# Each entry: a name and a function of a Draw that returns (callable, args,
# kwargs), mostly valid, with arguments swapped for bad ones now and then.


def _api():
    import attnkit
    import attnkit.data
    import attnkit.nn as nn
    import attnkit.nn.functional as F
    from attnkit import generation

    def rows(d, c=None):
        c = c if c is not None else d.pick([1, 3, 8])
        return d.tensor((d.pick([1, 2, 3]), c), attnkit.float32)

    def ids(d, vocab):
        n = d.pick([1, 3, 5])
        values = d.numpy.integers(0, max(vocab, 1), n)
        dtype = d.pick([attnkit.int64, attnkit.int32])
        if d.chance(0.2):
            values[0] = d.pick([-1, vocab, -(2**31)] + ([2**62, -(2**63)] if dtype == attnkit.int64 else []))
        return attnkit.tensor(values, dtype=dtype)

    entries = {
        "zeros": lambda d: (attnkit.zeros, [d.size() for _ in range(d.random.randrange(4))], {"dtype": d.dtype()}),
        "ones": lambda d: (attnkit.ones, [d.size() for _ in range(d.random.randrange(4))], {"dtype": d.maybe(d.dtype)}),
        "empty": lambda d: (attnkit.empty, [d.size() for _ in range(d.random.randrange(4))], {}),
        "full": lambda d: (attnkit.full, [d.maybe(lambda: d.shape(bad=0.1)), d.number()], {"dtype": d.dtype()}),
        # (starts, ends and steps that make either short ranges or ones too long
        # to allocate: never the valid 2**31 values, slow to fill)
        "arange": lambda d: (
            attnkit.arange,
            [
                d.pick([0, -3, 2.5, -(2**63), 1e-45, 3.4e38, -3.4e38, math.nan, math.inf]),
                d.pick([7, 3.5, -1, 2**62, 2**64, 1e300, -1e300, math.nan, math.inf]),
                d.pick([1, -1, 0, 0.5, 1e-45, 1e300, math.nan, -math.inf, True]),
            ],
            {},
        ),  # fmt: skip
        "tensor": lambda d: (attnkit.tensor, [d.maybe(lambda: d.values(d.shape(bad=0)), 0.3)], {"dtype": d.dtype()}),
        "from_numpy": lambda d: (attnkit.from_numpy, [d.maybe(lambda: np.zeros(d.shape(bad=0), np.float32), 0.5)], {}),
        "from_dlpack": lambda d: (attnkit.from_dlpack, [d.maybe(lambda: np.zeros(d.shape(bad=0), np.int64), 0.5)], {}),
        "reshape": lambda d: (F.reshape, [d.tensor(), *[d.pick([-1, *SMALL_SIZES, *BAD_SIZES]) for _ in range(3)]], {}),
        "flatten": lambda d: (F.flatten, [d.tensor(), d.int(), d.int()], {}),
        "squeeze": lambda d: (F.squeeze, [d.tensor(), d.maybe(d.int)], {}),
        "unsqueeze": lambda d: (F.unsqueeze, [d.tensor(), d.int()], {}),
        "transpose": lambda d: (
            F.transpose,
            [d.tensor(), d.pick([0, 1, -1, d.int()]), d.pick([0, 1, -1, d.int()])],
            {},
        ),
        "permute": lambda d: (F.permute, [d.tensor(), *[d.pick([0, 1, 2, -1, d.int()]) for _ in range(3)]], {}),
        "expand": lambda d: (F.expand, [d.tensor(), *[d.pick([-1, 1, 3, *BAD_SIZES]) for _ in range(2)]], {}),
        # (not of the empty tensors with sizes of 2**31: a valid chunk or split of those
        # is billions of pieces, slow as in PyTorch)
        "split": lambda d: (
            F.split,
            [d.tensor(d.shape(bad=0)), d.maybe(lambda: [d.size() for _ in range(2)]), d.int()],
            {},
        ),  # fmt: skip
        "chunk": lambda d: (F.chunk, [d.tensor(d.shape(bad=0)), d.int(), d.pick([0, -1, d.int()])], {}),
        "narrow": lambda d: (F.narrow, [d.tensor(), d.pick([0, -1, d.int()]), d.int(), d.int()], {}),
        "cat": lambda d: (F.cat, [[d.tensor() for _ in range(d.random.randrange(3))], d.pick([0, -1, d.int()])], {}),
        "stack": lambda d: (F.stack, [[d.tensor() for _ in range(d.random.randrange(3))], d.pick([0, d.int()])], {}),
        "index_select": lambda d: (F.index_select, [d.tensor(), d.pick([0, d.int()]), ids(d, 3)], {}),
        "gather": lambda d: (F.gather, [d.tensor(), d.pick([0, -1, d.int()]), ids(d, 3)], {}),
        "getitem": lambda d: (
            lambda t, k: t[k],
            [
                d.tensor(),
                d.pick(
                    [
                        d.int(),
                        slice(d.int(), d.int(), d.pick([1, 2, -1, 0, d.int()])),
                        (d.int(), d.int()),
                        ...,
                        None,
                        ids(d, 3),
                        [d.int()],
                        d.tensor(dtype=attnkit.bool_),
                    ]
                ),
            ],
            {},
        ),  # fmt: skip
        "sum": lambda d: (F.sum, [d.tensor(), d.maybe(d.int)], {"keepdim": d.maybe(False)}),
        "mean": lambda d: (F.mean, [d.tensor(), d.maybe(lambda: d.pick([0, -1, (0, 1), d.int()]))], {}),
        "max": lambda d: (F.max, [d.tensor(), d.maybe(lambda: d.pick([0, -1, d.int()]))], {}),
        "argmax": lambda d: (F.argmax, [d.tensor(), d.maybe(lambda: d.pick([0, -1, d.int()]))], {}),
        "arithmetic": lambda d: (
            d.pick([F.add, F.sub, F.mul, F.div, F.lt, F.eq]),
            [d.tensor(), d.maybe(d.tensor, 0.5)],
            {},
        ),  # fmt: skip
        "scalar arithmetic": lambda d: (d.pick([F.add, F.mul, F.div]), [d.tensor(), d.number()], {}),
        "where": lambda d: (F.where, [d.tensor(dtype=attnkit.bool_), d.tensor(), d.maybe(d.tensor, 0.5)], {}),
        "masked_fill": lambda d: (F.masked_fill, [d.tensor(), d.tensor(dtype=attnkit.bool_), d.number()], {}),
        "fill_": lambda d: (lambda t, v: t.fill_(v), [d.tensor(requires_grad=False), d.number()], {}),
        "to": lambda d: (lambda t, dt: t.to(dt), [d.tensor(), d.maybe(d.dtype)], {}),
        "item": lambda d: (lambda t: t.item(), [d.tensor()], {}),
        "numpy": lambda d: (lambda t: np.asarray(t), [d.tensor()], {}),
        "dlpack round trip": lambda d: (lambda t: attnkit.from_dlpack(t.detach()), [d.tensor()], {}),
        "backward": lambda d: (
            lambda t, g: t.backward(g),
            [F.gelu(d.tensor((2, 3), attnkit.float32, True)), d.maybe(d.tensor, 0.7)],
            {},
        ),  # fmt: skip
        "unary": lambda d: (d.pick([F.gelu, F.relu, F.silu, F.tanh, F.swiglu, F.neg]), [d.tensor()], {}),
        "softmax": lambda d: (
            d.pick([F.softmax, F.log_softmax]),
            [d.tensor()],
            {"dim": d.pick([-1, d.int()]), "scale": d.maybe(d.float)},
        ),  # fmt: skip
        "layer_norm": lambda d: (
            F.layer_norm,
            [rows(d, 8), d.maybe(8), d.maybe(lambda: rows(d, 8)[0])],
            {"eps": d.maybe(d.float)},
        ),  # fmt: skip
        "rms_norm": lambda d: (F.rms_norm, [rows(d, 8), d.maybe(8)], {"eps": d.maybe(d.float)}),
        "add_layer_norm": lambda d: (F.add_layer_norm, [rows(d, 3), d.maybe(lambda: rows(d, 3)), d.maybe(3)], {}),
        "linear": lambda d: (
            F.linear,
            [rows(d, 3), d.maybe(lambda: d.tensor((d.size(0), 3), attnkit.float32))],
            {"activation": d.maybe(None)},
        ),  # fmt: skip
        "matmul": lambda d: (F.matmul, [d.tensor(), d.tensor()], {}),
        "embedding": lambda d: (
            F.embedding,
            [ids(d, 4), d.maybe(lambda: d.tensor((4, 3), attnkit.float32))],
            {"padding_idx": d.maybe(None)},
        ),  # fmt: skip
        "cross_entropy": lambda d: (
            F.cross_entropy,
            [rows(d, 4), ids(d, 4)],
            {"ignore_index": d.maybe(-100), "label_smoothing": d.maybe(d.float, 0.3), "reduction": d.maybe("mean")},
        ),  # fmt: skip
        "attention": lambda d: (
            F.attention,
            [
                d.tensor((1, 3, 2, 4), attnkit.float32),
                d.maybe(lambda: d.tensor((1, 5, 2, 4), attnkit.float32)),
                d.tensor((1, 5, 2, 4), attnkit.float32),
            ],
            {"causal": d.maybe(False), "window": d.maybe(None), "scale": d.maybe(None), "dropout_p": d.maybe(0.0)},
        ),  # fmt: skip
        "attention_qkv": lambda d: (
            F.attention_qkv,
            [d.tensor((1, 3, 12), attnkit.float32), d.maybe(2)],
            {"num_kv_heads": d.maybe(None)},
        ),  # fmt: skip
        "rope": lambda d: (
            F.rope,
            [d.tensor((1, 3, 2, 4), attnkit.float32)],
            {"offset": d.maybe(0), "base": d.maybe(d.float)},
        ),  # fmt: skip
        "sinusoidal": lambda d: (
            F.sinusoidal_position_encoding,
            [d.size(), d.maybe(lambda: d.pick([2, 4, 3]))],
            {"offset": d.maybe(0)},
        ),  # fmt: skip
        "dropout": lambda d: (F.dropout, [d.tensor()], {"p": d.maybe(d.float, 0.5), "training": d.maybe(True)}),
        "Linear": lambda d: (nn.Linear, [d.size(0.3), d.size(0.3)], {"bias": d.maybe(True)}),
        "Embedding": lambda d: (nn.Embedding, [d.size(0.3), d.size(0.3)], {"padding_idx": d.maybe(None)}),
        "LayerNorm": lambda d: (nn.LayerNorm, [d.maybe(d.size)], {"eps": d.maybe(d.float)}),
        "MultiHeadAttention": lambda d: (nn.MultiHeadAttention, [d.pick([8, d.size()]), d.pick([2, d.size()])], {}),
        "sample": lambda d: (
            generation.sample,
            [rows(d, 5)],
            {
                "temperature": d.maybe(d.float, 0.5),
                "top_k": d.maybe(None),
                "top_p": d.maybe(None),
                "repetition_penalty": d.maybe(1.0),
            },
        ),  # fmt: skip
        "manual_seed": lambda d: (attnkit.manual_seed, [d.int()], {}),
        "set_num_threads": lambda d: (attnkit.set_num_threads, [d.maybe(d.int, 0.0)], {}),
        "load": lambda d: (attnkit.load, [_corrupt_file(d)], {}),
        "AdamW": lambda d: (
            lambda lr, wd: attnkit.optim.AdamW([nn.Parameter(attnkit.zeros(3))], lr=lr, weight_decay=wd).step(),
            [d.maybe(d.float, 0.5), d.maybe(0.0)],
            {},
        ),  # fmt: skip
        "clip_grad_norm_": lambda d: (
            attnkit.nn.utils.clip_grad_norm_,
            [[d.tensor((3,), attnkit.float32, True)], d.maybe(d.float, 0.5)],
            {},
        ),  # fmt: skip
        "matmul shapes": lambda d: _matmul_call(d, F),
        "attention masks": lambda d: (
            F.attention,
            [d.tensor((2, 3, 2, 4), attnkit.float32)] + [d.tensor((2, 5, 2, 4), attnkit.float32) for _ in range(2)],
            d.pick(
                [
                    {"key_padding_mask": d.maybe(lambda: d.tensor((2, 5), attnkit.bool_), 0.4)},
                    {"key_lengths": d.maybe(lambda: ids(d, 6), 0.3), "causal": d.maybe(True)},
                    {"window": d.int(), "causal": True},
                ]
            ),
        ),  # fmt: skip
        "GPT": lambda d: _gpt_call(d, ids),
        "load_state_dict": lambda d: (
            lambda state: nn.Linear(3, 2).load_state_dict(state),
            [d.maybe(lambda: {"weight": d.tensor((2, d.pick([3, 2]))), "bias": d.tensor((2,))}, 0.3)],
            {},
        ),
        "SGD": lambda d: (
            lambda lr, momentum, nesterov: attnkit.optim.SGD(
                [nn.Parameter(attnkit.zeros(3))], lr=lr, momentum=momentum, nesterov=nesterov
            ).step(),
            [d.maybe(d.float, 0.5), d.maybe(d.float, 0.5), d.maybe(False)],
            {},
        ),
        "WarmupCosineLR": lambda d: (
            lambda *a: attnkit.optim.WarmupCosineLR(attnkit.optim.SGD([nn.Parameter(attnkit.zeros(1))]), *a).step(),
            [d.maybe(d.size), d.maybe(d.size)],
            {"min_lr_ratio": d.maybe(d.float, 0.5)},
        ),
        "get_batch": lambda d: (
            attnkit.data.get_batch,
            [d.maybe(lambda: np.arange(d.pick([0, 1, 10, 100]))), d.size(0.3), d.size(0.3)],
            {},
        ),
        "CharTokenizer": lambda d: (
            lambda text, other: attnkit.data.CharTokenizer.from_text(text).encode(other),
            [d.maybe(lambda: d.pick(["abc", "", "\x00\ud800", "ab" * 50])), d.maybe("cab")],
            {},
        ),
        "save": lambda d: (
            lambda obj: attnkit.save(obj, os.path.join(tempfile.gettempdir(), f"attnkit-fuzz-{os.getpid()}.out")),
            [d.maybe(lambda: {"a": d.tensor(), "b": [d.number(), d.junk()], "c": (d.junk(),)}, 0.3)],
            {},
        ),
        "KVCache": lambda d: (nn.KVCache, [d.size(0.3) for _ in range(4)], {}),
    }
    return entries


def _matmul_call(d: Draw, F):
    """Shapes that fit together, of sizes 0, 1, 3 and 2**40 (where the
    product of the sizes is 0 or too large to allocate)."""
    import attnkit

    m, k, n, batch = (d.pick([0, 1, 3, 3, 2**40]) for _ in range(4))
    a_shape = ([batch] if d.chance(0.5) else []) + [m, k]
    a = attnkit.zeros(*a_shape) if 0 in a_shape or max(a_shape) < 2**40 else None
    b = attnkit.zeros(k, n) if k * n == 0 or max(k, n) < 2**40 else None
    a = a if a is not None else d.tensor((3, 3), attnkit.float32)
    b = b if b is not None else d.tensor((3, 3), attnkit.float32)
    return d.pick([F.matmul, F.linear]), [a, b if d.chance(0.5) else F.transpose(b, 0, 1)], {}


def _gpt_call(d: Draw, ids):
    """A small GPT built with sizes that are mostly valid, run on a few ids."""
    from attnkit.models import GPT, GPTConfig

    config = GPTConfig(
        vocab_size=d.pick([5, 7, d.size()]),
        block_size=d.pick([4, 8, d.size()]),
        n_layer=d.pick([1, 2, 0, -1]),  # (a valid 2**40 would build layers until memory runs out)
        n_head=d.pick([1, 2, d.size()]),
        n_embd=d.pick([4, 8, d.size()]),
        dropout=d.maybe(0.0),
    )

    def run(config, tokens, new):
        model = GPT(config)
        model(tokens.reshape(1, -1))
        return model.generate(tokens.reshape(1, -1), new, temperature=d.maybe(1.0), top_k=d.maybe(None))

    return run, [config, ids(d, 5), d.maybe(lambda: d.pick([0, 1, 3]))], {}


def _corrupt_file(d: Draw) -> str:
    """A safetensors file with a few bytes of a valid one changed."""
    import attnkit

    path = os.path.join(tempfile.gettempdir(), f"attnkit-fuzz-{os.getpid()}.safetensors")
    attnkit.save({"a": attnkit.ones(2, 3), "n": {"x": [1, 2.5, None]}}, path, config={"k": 1})
    data = bytearray(open(path, "rb").read())
    for _ in range(d.random.randrange(1, 4)):
        position = d.random.randrange(len(data))
        data[position] = d.pick([0, 0xFF, ord("["), ord("9"), ord("-"), ord('"'), d.random.randrange(256)])
    with open(path, "wb") as f:
        f.write(bytes(data))
    return path


# ---------------------------------------------------------------- the worker ---


def call_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % 2**63


def make_call(seed: int, index: int, entries: dict):
    d = Draw(call_seed(seed, index))
    name = d.pick(sorted(entries))
    function, args, kwargs = entries[name](d)
    return name, function, args, kwargs


def run_worker(seed: int, first: int, count: int, log_path: str | None, verbose: bool, crash_at=None) -> list:
    """Makes calls first..first+count-1; returns the unclean ones. Before each
    call its index goes to the log, so that a crash names it. ``crash_at``:
    die at that call instead (the harness's own test)."""
    import attnkit  # noqa: F401

    entries = _api()
    problems = []
    log = open(log_path, "a") if log_path else None
    for index in range(first, first + count):
        if log:
            log.write(f"{index}\n")
            log.flush()
        if index == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # (not a segfault: AddressSanitizer would report it)
        try:
            name, function, args, kwargs = make_call(seed, index, entries)
        except Exception as error:  # building the arguments failed: the fuzzer's own problem
            problems.append(
                {"index": index, "call": "(drawing arguments)", "error": f"{type(error).__name__}: {error}"}
            )
            continue
        text = f"{name}({', '.join([describe(a) for a in args] + [f'{k}={describe(v)}' for k, v in kwargs.items()])})"
        if verbose:
            print(index, text, flush=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow in a conversion
                warnings.filterwarnings("ignore", message="requires_grad_: no attnkit op computes")
                function(*args, **kwargs)
        except CLEAN_ERRORS as error:
            message = str(error)
            if UNCLEAR_MESSAGES.search(message) or not message:
                problems.append({"index": index, "call": text, "error": f"{type(error).__name__}: {message[:300]}"})
            elif verbose:
                print("   ", type(error).__name__, message[:200], flush=True)
        except BaseException as error:  # noqa: BLE001 - anything else is what the fuzzer is for
            problems.append({"index": index, "call": text, "error": f"{type(error).__name__}: {str(error)[:300]}"})
    if log:
        log.close()
    return problems


def fuzz(seed: int, calls: int, timeout: float = WORKER_TIMEOUT_S, crash_at=None) -> list:
    """Runs calls 0..calls-1 in child processes; a crash or hang is recorded
    with the call that caused it, and a new child goes on after it."""
    problems = []
    first = 0
    with tempfile.TemporaryDirectory() as directory:
        while first < calls:
            log = os.path.join(directory, f"log-{first}")
            command = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed), "--first",
                       str(first), "--calls", str(calls - first), "--log", log]  # fmt: skip
            if crash_at is not None:
                command += ["--crash-at", str(crash_at)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                crashed, status = done.returncode != 0, done.returncode
                output = done.stdout
            except subprocess.TimeoutExpired:
                crashed, status, output = True, "timeout", ""
            if not crashed:
                problems.extend(json.loads(output.strip().splitlines()[-1]))
                break
            started = open(log).read().split() if os.path.exists(log) else []
            index = int(started[-1]) if started else first
            lines = [line for line in output.splitlines() if line.startswith("[")]
            problems.extend(json.loads(lines[-1]) if lines else [])
            stderr = "" if status == "timeout" else done.stderr[-500:]
            problems.append(
                {"index": index, "call": _describe_call(seed, index), "error": f"crash ({status}) {stderr}"}
            )
            first = index + 1
    return problems


def _describe_call(seed: int, index: int) -> str:
    """The text of a call, made again in a fresh child (the one that made it died)."""
    command = [sys.executable, os.path.abspath(__file__), "--describe", "--seed", str(seed), "--first", str(index)]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()
    except subprocess.TimeoutExpired:
        return f"call {index} of seed {seed}"


def _limit_memory() -> None:
    """Caps the child's address space (16 GiB), so that a size check that is
    missing shows up as a MemoryError instead of a host out of memory. Not
    under AddressSanitizer, which reserves terabytes of shadow memory."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    except (ImportError, ValueError, OSError):
        pass


# ------------------------------------------------------------------- pytest ---


def test_fuzz_the_public_api():
    problems = fuzz(SEED, CALLS)
    report = "\n".join(f"call {p['index']}: {p['call']}\n    -> {p['error']}" for p in problems)
    assert not problems, (
        f"{len(problems)} of {CALLS} fuzzed calls (seed {SEED}) crashed, hung or raised an unclear error "
        f"(rerun one with: python tests/test_fuzz.py --seed {SEED} --first I --calls 1 --verbose):\n{report}"
    )


def test_the_fuzzer_survives_and_reports_a_crash():
    """The harness itself: a child killed at call 2 is reported with that
    call, and a new child makes the calls after it."""
    problems = fuzz(SEED, 4, crash_at=2)
    crashes = [p for p in problems if p["error"].startswith("crash")]
    assert [p["index"] for p in crashes] == [2], problems
    assert crashes[0]["error"].startswith(f"crash ({-signal.SIGKILL})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--crash-at", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.describe:
        import attnkit  # noqa: F401

        name, _, call_args, kwargs = make_call(args.seed, args.first, _api())
        print(
            f"{name}({', '.join([describe(a) for a in call_args] + [f'{k}={describe(v)}' for k, v in kwargs.items()])})"
        )
        return 0
    if args.worker or args.verbose:
        _limit_memory()
        problems = run_worker(args.seed, args.first, args.calls, args.log, args.verbose, args.crash_at)
        print(json.dumps(problems))
        return 0
    problems = fuzz(args.seed, args.calls)
    for p in problems:
        print(f"call {p['index']}: {p['call']}\n    -> {p['error']}")
    print(f"{len(problems)} problems in {args.calls} calls (seed {args.seed})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

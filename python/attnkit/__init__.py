"""attnkit: Transformers trained and run on attnkit's own kernels."""

import os as _os

from . import _C
from ._version import __version__

# The CPU kernel family is chosen once, here: the best the CPU runs, unless
# ATTNKIT_CPU_ISA (generic, avx2, avx512, avx512_vnni, avx512_bf16, amx) forces one. A forced ISA the CPU
# lacks fails the import with a message that says what is available.
_C.select_cpu_isa(_os.environ.get("ATTNKIT_CPU_ISA", "").strip().lower())

# Tensor's operators and op methods, set on the class before anything uses it.
from . import _tensor_methods  # noqa: E402, F401  isort: skip
from . import lora, models, nn, optim, random, utils  # noqa: E402
from ._dtypes import bfloat16, bool_, dtype, float16, float32, int8, int32, int64  # noqa: E402
from .amp import autocast  # noqa: E402
from .autograd import enable_grad, is_grad_enabled, no_grad  # noqa: E402
from .ops.elementwise import where  # noqa: E402
from .ops.shape import cat, stack  # noqa: E402
from .quantization import quantize  # noqa: E402
from .random import manual_seed  # noqa: E402
from .runtime import (  # noqa: E402
    build_info,
    cpu_features,
    cpu_isa,
    cpu_memory_stats,
    empty_cpu_cache,
    get_num_threads,
    set_num_threads,
    supported_cpu_isas,
)
from .serialization import load, save  # noqa: E402
from .tensor import Tensor, arange, device, empty, from_dlpack, from_numpy, full, ones, tensor, zeros  # noqa: E402

bool = bool_  # attnkit.bool, as torch.bool; the builtin stays reachable as builtins.bool

__all__ = [
    "__version__",
    "Tensor",
    "tensor",
    "from_numpy",
    "from_dlpack",
    "device",
    "dtype",
    "float32",
    "float16",
    "bfloat16",
    "int32",
    "int64",
    "int8",
    "bool",
    "no_grad",
    "autocast",
    "enable_grad",
    "is_grad_enabled",
    "set_num_threads",
    "get_num_threads",
    "cpu_features",
    "cpu_isa",
    "supported_cpu_isas",
    "cpu_memory_stats",
    "empty_cpu_cache",
    "build_info",
    "models",
    "nn",
    "lora",
    "utils",
    "optim",
    "random",
    "manual_seed",
    "quantize",
    "save",
    "load",
    "zeros",
    "ones",
    "full",
    "arange",
    "empty",
    "cat",
    "stack",
    "where",
]

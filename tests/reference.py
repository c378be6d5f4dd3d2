"""float64 numpy references for the kernels. Each function takes and returns
float64 arrays and says which formula it evaluates."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    return _erfc(np.asarray(x, np.float64)).astype(np.float64)

"""float64 numpy references for the kernels, one module per op family (as
tests/test_<family>.py). Each function takes and returns float64 arrays and
says which formula it evaluates. ``import reference`` gives every name."""

from .activation import *  # noqa: F403
from .attention import *  # noqa: F403
from .elementwise import *  # noqa: F403
from .embedding import *  # noqa: F403
from .gemm import *  # noqa: F403
from .gradients import *  # noqa: F403
from .layers import *  # noqa: F403
from .layers import _activation_and_slope  # noqa: F401
from .loss import *  # noqa: F403
from .norm import *  # noqa: F403
from .optim import *  # noqa: F403
from .position import *  # noqa: F403
from .random import *  # noqa: F403
from .sampling import *  # noqa: F403
from .shape import *  # noqa: F403
from .softmax import *  # noqa: F403

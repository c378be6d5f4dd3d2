"""The smoke test of an installed attnkit wheel (run by .ci/wheel).

    python .ci/wheel_smoke.py

Run it from outside the source tree, in the environment the wheel went into.
It fails unless attnkit is imported from that environment's site-packages,
and then checks, in one process per CPU ISA tier the CPU supports
(ATTNKIT_CPU_ISA), that the kernels give the float64 answer of a softmax and a
GEMM, that a tiny GPT trains (its loss falls over a few AdamW steps on one
repeated batch), and that it generates. It prints one line per tier.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ONE_TIER = """
import numpy as np
import attnkit
import attnkit.nn.functional as F
from attnkit.models import GPT, GPTConfig

rng = np.random.default_rng(0)
x = rng.standard_normal((7, 301)).astype(np.float32)
expected = np.exp(x - x.max(axis=1, keepdims=True))
expected /= expected.sum(axis=1, keepdims=True)
got = F.softmax(attnkit.from_numpy(x), dim=-1).numpy()
assert np.abs(got - expected).max() <= 1e-6, "softmax"

a = rng.standard_normal((67, 129)).astype(np.float32)
b = rng.standard_normal((129, 45)).astype(np.float32)
exact = a.astype(np.float64) @ b.astype(np.float64)
got = (attnkit.from_numpy(a) @ attnkit.from_numpy(b)).numpy()
assert np.abs(got - exact).max() <= 1e-3, "matmul"

attnkit.manual_seed(0)
config = GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32)
model = GPT(config)
optimizer = attnkit.optim.AdamW(model.parameters(), lr=3e-3)
ids = rng.integers(0, 17, size=(4, 17))
x, y = attnkit.from_numpy(ids[:, :-1].copy()), attnkit.from_numpy(ids[:, 1:].copy())
losses = []
for _ in range(10):
    loss = F.cross_entropy(model(x).reshape(-1, 17), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0], losses
out = model.generate(x[:1, :4], max_new_tokens=8)
assert tuple(out.shape) == (1, 12), out.shape
steps = f"10 training steps (loss {losses[0]:.3f} -> {losses[-1]:.3f})"
print(f"  {attnkit.cpu_isa():8} softmax, matmul, {steps}, generate: ok")
"""


def main() -> int:
    import attnkit

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(attnkit.__file__).resolve().parent
    extension = Path(attnkit._C.__file__).resolve()
    if package.parent != site_packages or extension.parent != package:
        print(f"FAIL: attnkit was imported from {package} (extension {extension}), not from {site_packages}")
        return 1
    info = attnkit.build_info()
    print(f"attnkit {attnkit.__version__} from {package}")
    print(f"  extension {extension.name}; compiled ISAs {info['compiled_isas']}")
    print(f"  the CPU runs {attnkit.supported_cpu_isas()}")
    for isa in attnkit.supported_cpu_isas():
        environment = dict(os.environ, ATTNKIT_CPU_ISA=isa)
        result = subprocess.run([sys.executable, "-c", ONE_TIER], env=environment)
        if result.returncode != 0:
            print(f"FAIL: the smoke test under ATTNKIT_CPU_ISA={isa} exited with status {result.returncode}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

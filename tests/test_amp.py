"""attnkit.autocast(dtype=attnkit.bfloat16): linear and matmul multiply
bf16-rounded operands with float32 sums and give float32 results, forward and
backward; weights and gradients stay float32; a model trains under it; and
`attnkit train --dtype bf16` uses it."""

import json
import os

import numpy as np
import pytest
import reference
from conftest import bfloat16_product_bound

import attnkit
import attnkit.nn.functional as F
from attnkit import cli
from attnkit.models import GPT, GPTConfig
from attnkit.training import load_run

pytestmark = pytest.mark.usefixtures("keep_default_generator")


def within_bound(actual, expected, bound):
    error = np.abs(np.asarray(actual, np.float64) - expected)
    assert (error <= bound).all(), f"max error / bound {np.max(error / bound):.3g}"


def rounded(x):
    """x rounded to bfloat16 and widened back (float64)."""
    return np.asarray(attnkit.tensor(x).to(attnkit.bfloat16), np.float64)


@pytest.mark.usefixtures("bf16_isa")
def test_linear_under_autocast_forward_and_backward(rng):
    x0 = rng.standard_normal((5, 7, 96)).astype(np.float32)
    w0 = (rng.standard_normal((40, 96)) / 10).astype(np.float32)
    b0 = rng.standard_normal(40).astype(np.float32)
    g0 = rng.standard_normal((5, 7, 40)).astype(np.float32)
    x = attnkit.tensor(x0, requires_grad=True)
    w = attnkit.tensor(w0, requires_grad=True)
    b = attnkit.tensor(b0, requires_grad=True)
    with attnkit.autocast(dtype=attnkit.bfloat16):
        y = F.linear(x, w, b)
    assert y.dtype == attnkit.float32
    y.backward(attnkit.tensor(g0))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == attnkit.float32
    x2, g2 = x0.reshape(-1, 96).astype(np.float64), g0.reshape(-1, 40).astype(np.float64)
    within_bound(y.detach().numpy().reshape(-1, 40), x2 @ w0.T + b0, bfloat16_product_bound(np.abs(x2), np.abs(w0.T)))
    within_bound(x.grad.numpy().reshape(-1, 96), g2 @ w0, bfloat16_product_bound(np.abs(g2), np.abs(w0)))
    within_bound(w.grad.numpy(), g2.T @ x2, bfloat16_product_bound(np.abs(g2.T), np.abs(x2)))
    np.testing.assert_allclose(b.grad.numpy(), g2.sum(0), rtol=1e-5, atol=1e-5)  # float32, as without autocast
    # The products did run in bf16: the result is the one of the rounded operands.
    exact_rounded = rounded(x2) @ rounded(w0).T + b0
    assert np.max(np.abs(y.detach().numpy().reshape(-1, 40) - exact_rounded)) < 1e-4 * np.max(np.abs(exact_rounded))


def test_linear_with_gelu_and_matmul_under_autocast(rng):
    x0 = rng.standard_normal((33, 64)).astype(np.float32)
    w0 = (rng.standard_normal((48, 64)) / 8).astype(np.float32)
    x = attnkit.tensor(x0, requires_grad=True)
    w = attnkit.tensor(w0, requires_grad=True)
    with attnkit.autocast():
        y = F.linear(x, w, activation="gelu")
        z = F.matmul(y, attnkit.tensor(w0))  # [33, 48] @ [48, 64]
    pre = rounded(x0) @ rounded(w0).T
    np.testing.assert_allclose(y.detach().numpy(), reference.gelu(pre), rtol=1e-4, atol=1e-5)
    expected_z = rounded(y.detach().numpy()) @ rounded(w0)
    np.testing.assert_allclose(z.detach().numpy(), expected_z, rtol=1e-4, atol=1e-4)
    z.sum().backward()
    assert x.grad.dtype == attnkit.float32 and np.isfinite(x.grad.numpy()).all()


def test_autocast_nests_and_restores_and_checks_arguments(rng):
    x = attnkit.tensor(rng.standard_normal((4, 8)).astype(np.float32))
    w = attnkit.tensor(rng.standard_normal((3, 8)).astype(np.float32))
    exact = F.linear(x, w).numpy()
    assert attnkit.amp.autocast_dtype() is None
    with attnkit.autocast(attnkit.bfloat16):
        assert attnkit.amp.autocast_dtype() == attnkit.bfloat16
        low = F.linear(x, w).numpy()
        with attnkit.autocast(enabled=False):
            np.testing.assert_array_equal(F.linear(x, w).numpy(), exact)
        assert attnkit.amp.autocast_dtype() == attnkit.bfloat16
    assert attnkit.amp.autocast_dtype() is None
    assert not np.array_equal(low, exact)  # the bf16 rounding shows
    with pytest.raises(ValueError, match="autocast.*'dtype'.*bfloat16"):
        with attnkit.autocast(attnkit.float16):
            pass
    with pytest.raises(TypeError, match="autocast.*'enabled'"):
        with attnkit.autocast(enabled="yes"):
            pass


def test_a_gpt_trains_under_autocast_as_in_float32(rng):
    """The same steps from the same weights, float32 and autocast: the loss
    falls as far (bf16 products move each step a little)."""
    data = rng.integers(0, 16, size=(4, 17))
    idx, targets = attnkit.from_numpy(data[:, :-1].copy()), attnkit.from_numpy(data[:, 1:].reshape(-1).copy())
    losses = {}
    for mode in ("float32", "bf16"):
        attnkit.manual_seed(31)
        model = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
        optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        for _ in range(60):
            with attnkit.autocast(enabled=mode == "bf16"):
                loss = F.cross_entropy(model(idx).reshape(-1, 16), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert all(p.dtype == attnkit.float32 and p.grad.dtype == attnkit.float32 for p in model.parameters())
        losses[mode] = loss.item()
    assert losses["float32"] < 1.0
    assert losses["bf16"] < 1.2 * losses["float32"] + 0.05, losses


def test_train_dtype_bf16_from_the_command_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    settings = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4"]
    common = ["--max-iters", "40", "--eval-interval", "40", "--eval-iters", "2", "--no-progress", "--lr", "3e-3"]
    assert cli.main(["train", "--dtype", "bf16", "--out", out, *settings, *common]) == 0
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [0, 40]
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.3  # it learns
    _, _, metadata = load_run(out)
    assert metadata["train"]["dtype"] == "bf16"
    with pytest.raises(SystemExit):
        cli.main(["train", "--dtype", "float16", "--out", out])

"""What the model tests share: the parameters as float64 arrays, the mean
cross-entropy of reference logits, the attention step of the numpy
reference models, the check of every parameter's gradient against central
differences of a float64 reference model, and training on one batch until
the loss is near 0."""

from __future__ import annotations

import math

import numpy as np
import reference
from conftest import assert_elementwise_close

import attnkit
from attnkit.nn import functional as F


def parameter_values(model) -> dict:
    """{name: float64 numpy copy} of every parameter."""
    return {name: np.asarray(p.detach().numpy(), np.float64) for name, p in model.named_parameters()}


def mean_cross_entropy(logits, targets, ignore_index=-100) -> float:
    """The mean cross-entropy of logits [..., V] for targets [...] over the
    targets that are not ``ignore_index`` (reference.cross_entropy)."""
    vocab = logits.shape[-1]
    return reference.cross_entropy(logits.reshape(-1, vocab), np.asarray(targets).reshape(-1), ignore_index)


def reference_attention(q, k, v, visible, dtype):
    """softmax(q k^T / sqrt(D)) v over the visible keys, every step in
    ``dtype`` as the numpy reference models compute: q [B, T, H, D], k and v
    [B, S, H, D] (grouped heads already repeated), ``visible`` bool
    broadcasting to [B, H, T, S]. Returns [B, T, H * D]; a query that sees no
    key gets 0."""
    batch, steps, heads, head_dim = q.shape
    scores = np.einsum("bihd,bjhd->bhij", q, k) * dtype(1 / np.sqrt(head_dim))
    scores = np.where(visible, scores, -np.inf)
    row_max = np.max(np.where(visible, scores, -1e30), axis=-1, keepdims=True)
    weights = np.where(visible, np.exp(scores - row_max), 0)
    total = weights.sum(axis=-1, keepdims=True)
    weights = weights / np.where(total > 0, total, 1)
    return np.einsum("bhij,bjhd->bihd", weights, v).reshape(batch, steps, heads * head_dim)


def check_gradients(model, ids, targets, reference_logits) -> None:
    """Every parameter gradient of the model's mean cross-entropy on
    (ids, targets) against central differences of the float64 reference
    model, ``reference_logits(values)`` (values: parameter_values, perturbed
    in place). With step 1e-6 the differences are exact to about 1e-10, far
    below float32's error, so what remains is the model's float32 rounding.

    Scale: the largest gradient, not each entry's own magnitude. An entry is
    a sum of terms of either sign (over positions, heads, features), so a
    small entry is a difference of larger terms; its float32 rounding is
    relative to those terms, which the largest gradient bounds in a
    well-conditioned tiny model."""
    logits = model(attnkit.from_numpy(ids))
    vocab = logits.shape[-1]
    F.cross_entropy(logits.reshape(-1, vocab), attnkit.from_numpy(targets.reshape(-1))).backward()
    values = parameter_values(model)
    expected = reference.central_differences(values, lambda: mean_cross_entropy(reference_logits(values), targets))
    largest = max(np.abs(g).max() for g in expected.values())
    for name, parameter in model.named_parameters():
        assert_elementwise_close(parameter.grad.numpy(), expected[name], scale=largest)


def fit_one_batch(model, rng, *, steps=200, target_loss=0.05) -> list:
    """AdamW (lr 1e-2, no weight decay) on one batch of 4 random sequences of
    16 tokens, next-token cross-entropy, until the loss is below
    ``target_loss`` or ``steps`` steps have run: the losses, step by step.
    The ids are drawn below the model's vocabulary size."""
    vocab = model.config.vocab_size
    data = rng.integers(0, vocab, size=(4, 17))
    idx, targets = attnkit.from_numpy(data[:, :-1].copy()), attnkit.from_numpy(data[:, 1:].reshape(-1).copy())
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(idx).reshape(-1, vocab), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < target_loss:
            break
    return losses


def validation_perplexity(model, tokens: np.ndarray, block_size: int) -> float:
    """exp(mean cross-entropy) of a language model over a whole split, in
    windows of block_size next-token predictions, 128 windows a forward
    (the logits in float32 whatever the model's dtype)."""
    windows = (len(tokens) - 1) // block_size
    x = tokens[: windows * block_size].reshape(windows, block_size)
    y = tokens[1 : windows * block_size + 1].reshape(windows, block_size)
    total = 0.0
    with attnkit.no_grad():
        for start in range(0, windows, 128):
            logits = model(attnkit.from_numpy(np.ascontiguousarray(x[start : start + 128]))).float()
            targets = attnkit.from_numpy(np.ascontiguousarray(y[start : start + 128]).reshape(-1))
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets).item() * len(x[start : start + 128])
    return math.exp(total / windows)

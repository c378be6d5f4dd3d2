"""What the model tests share: the parameters as float64 arrays, the mean
cross-entropy of reference logits, and the check of every parameter's
gradient against central differences of a float64 reference model."""

from __future__ import annotations

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

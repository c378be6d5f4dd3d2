"""float64 references: the nn layers re-implemented (forward, backward, parameters)."""

from __future__ import annotations

import numpy as np

from .activation import gelu, gelu_derivative, relu, relu_derivative
from .embedding import embedding, embedding_backward
from .random import dropout, dropout_backward

# ------------------------------------------------------------- nn layers ---
# Re-implementations of the nn layers, each a small class holding its
# parameters as numpy arrays, with forward(x) and backward(x, grad_output) ->
# (grad_x, {parameter name: gradient}). They compute in the dtype of their
# arrays: float64 gives the reference; float32 gives the plain same-dtype
# computation that assert_reduction_close measures a layer against.


def _activation_and_slope(pre, activation):
    if activation is None:
        return pre, np.ones_like(pre)
    if activation == "relu":
        return relu(pre), relu_derivative(pre)
    approximate = "tanh" if activation == "gelu_tanh" else "none"
    return gelu(pre, approximate), gelu_derivative(pre, approximate)


class LinearLayer:
    """y = activation(x W^T + b), W [out, in]; float64 only (the plain
    float32 product is matmul_naive_float32)."""

    def __init__(self, weight, bias=None, activation=None):
        self.parameters = {"weight": np.asarray(weight, np.float64)}
        if bias is not None:
            self.parameters["bias"] = np.asarray(bias, np.float64)
        self.activation = activation

    def pre_activation(self, x):
        pre = np.asarray(x, np.float64) @ self.parameters["weight"].T
        return pre + self.parameters["bias"] if "bias" in self.parameters else pre

    def forward(self, x):
        return _activation_and_slope(self.pre_activation(x), self.activation)[0]

    def backward(self, x, grad_output):
        x = np.asarray(x, np.float64)
        _, slope = _activation_and_slope(self.pre_activation(x), self.activation)
        grad_pre = np.asarray(grad_output, np.float64) * slope
        rows_x = x.reshape(-1, x.shape[-1])
        rows_grad = grad_pre.reshape(-1, grad_pre.shape[-1])
        grads = {"weight": rows_grad.T @ rows_x}
        if "bias" in self.parameters:
            grads["bias"] = rows_grad.sum(axis=0)
        return grad_pre @ self.parameters["weight"], grads


class EmbeddingLayer:
    """out[..., :] = weight[ids[...], :]; no gradient for the ids."""

    def __init__(self, weight):
        self.parameters = {"weight": np.asarray(weight, np.float64)}

    def forward(self, ids):
        return embedding(ids, self.parameters["weight"])

    def backward(self, ids, grad_output):
        return None, {"weight": embedding_backward(grad_output, ids, self.parameters["weight"].shape[0])}


class LayerNormLayer:
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis,
    var the biased variance (mean of squared deviations, two passes)."""

    def __init__(self, weight=None, bias=None, eps=1e-5, dtype=np.float64):
        self.dtype = dtype
        self.parameters = {
            name: np.asarray(value, dtype) for name, value in (("weight", weight), ("bias", bias)) if value is not None
        }
        self.eps = eps

    def _normalized(self, x):
        x = np.asarray(x, self.dtype)
        mean = np.mean(x, axis=-1, keepdims=True)
        variance = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
        rstd = 1 / np.sqrt(variance + self.dtype(self.eps))
        return (x - mean) * rstd, rstd

    def forward(self, x):
        y, _ = self._normalized(x)
        if "weight" in self.parameters:
            y = y * self.parameters["weight"]
        if "bias" in self.parameters:
            y = y + self.parameters["bias"]
        return y

    def backward(self, x, grad_output):
        """dx = rstd (g - mean(g) - x_hat mean(g x_hat)), g = dy * weight;
        dweight = sum over rows of dy x_hat; dbias = sum over rows of dy."""
        x_hat, rstd = self._normalized(x)
        dy = np.asarray(grad_output, self.dtype)
        g = dy * self.parameters["weight"] if "weight" in self.parameters else dy
        dx = rstd * (g - np.mean(g, axis=-1, keepdims=True) - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
        rows = dy.reshape(-1, dy.shape[-1])
        grads = {}
        if "weight" in self.parameters:
            grads["weight"] = np.sum((dy * x_hat).reshape(rows.shape), axis=0)
        if "bias" in self.parameters:
            grads["bias"] = np.sum(rows, axis=0)
        return dx, grads


class RMSNormLayer:
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis (Zhang and
    Sennrich, 2019); eps None means float32's machine epsilon, as PyTorch."""

    def __init__(self, weight=None, eps=None, dtype=np.float64):
        self.dtype = dtype
        self.parameters = {} if weight is None else {"weight": np.asarray(weight, dtype)}
        self.eps = float(np.finfo(np.float32).eps) if eps is None else eps

    def _normalized(self, x):
        x = np.asarray(x, self.dtype)
        rstd = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.dtype(self.eps))
        return x * rstd, rstd

    def forward(self, x):
        y, _ = self._normalized(x)
        return y * self.parameters["weight"] if "weight" in self.parameters else y

    def backward(self, x, grad_output):
        """dx = rstd (g - x_hat mean(g x_hat)), g = dy * weight; dweight =
        sum over rows of dy x_hat."""
        x_hat, rstd = self._normalized(x)
        dy = np.asarray(grad_output, self.dtype)
        g = dy * self.parameters["weight"] if "weight" in self.parameters else dy
        dx = rstd * (g - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
        grads = {}
        if "weight" in self.parameters:
            grads["weight"] = np.sum((dy * x_hat).reshape(-1, dy.shape[-1]), axis=0)
        return dx, grads


class DropoutLayer:
    """Dropout with the mask of the stream (seed, offset) (see dropout above)."""

    def __init__(self, p, seed, offset):
        self.parameters = {}
        self.p, self.seed, self.offset = p, seed, offset

    def forward(self, x):
        return dropout(x, self.p, self.seed, self.offset)

    def backward(self, x, grad_output):
        return dropout_backward(grad_output, self.p, self.seed, self.offset), {}

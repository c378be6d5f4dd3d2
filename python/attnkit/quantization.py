"""``attnkit.quantize(model, "int8")``: int8 weights for inference."""

from __future__ import annotations

from .autograd import no_grad
from .nn.linear import Linear
from .nn.module import Module
from .nn.quantized import QuantizedLinear

_SCHEMES = ("int8",)


def quantize(model: Module, scheme: str = "int8", *, dynamic_activations: bool = False) -> Module:
    """Replaces every ``nn.Linear`` of ``model`` (a Module, or a
    SentenceEncoder: its model) in place with a
    ``nn.QuantizedLinear``: int8 weights with one float32 scale per output
    channel (symmetric), the bias and the activations kept in float32. Decode
    then reads a quarter of the weight bytes. A GPT whose LM head is tied to
    the token embedding also gets an int8 copy of that weight as its head
    (``lm_head``): the head is read whole for every token, while the lookups
    keep the float32 table. Returns ``model``.

    ``dynamic_activations=True`` also quantizes the activations per row on
    the fly where the CPU has int8 dot products (AVX512-VNNI), for prefill
    and batched work (``nn.QuantizedLinear``): faster there, less accurate.

    For inference: the int8 weights are frozen. Save with
    ``attnkit.save(model.state_dict(), path)``; load by quantizing a model of
    the same config and calling ``load_state_dict(attnkit.load(path))``."""
    from .models.gpt import GPT  # here: models import nn, which imports this package's parents
    from .models.sentence_encoder import SentenceEncoder

    if isinstance(model, SentenceEncoder):  # not a Module: its BERT is
        quantize(model.model, scheme, dynamic_activations=dynamic_activations)
        return model
    if not isinstance(model, Module):
        raise TypeError(f"quantize: argument 'model' expected an attnkit.nn.Module, got {type(model).__name__}")
    if scheme not in _SCHEMES:
        raise ValueError(f"quantize: argument 'scheme' expected one of {', '.join(_SCHEMES)}, got {scheme!r}")
    if not isinstance(dynamic_activations, bool):
        raise TypeError(
            f"quantize: argument 'dynamic_activations' expected a bool, got {type(dynamic_activations).__name__}"
        )
    with no_grad():
        for module in list(model.modules()):
            for name, child in list(module._modules.items()):
                if type(child) is Linear:
                    setattr(module, name, QuantizedLinear.from_linear(child))
            if isinstance(module, GPT) and module.config.tie_embeddings and "lm_head" not in module._modules:
                module.lm_head = QuantizedLinear.from_weight(module.wte.weight)
        if dynamic_activations:
            for module in model.modules():
                if isinstance(module, QuantizedLinear) and not module.dynamic_activations:
                    module.enable_dynamic_activations()
    return model

"""Hugging Face checkpoints: ``from_pretrained(directory)`` and
``save_pretrained(model, directory)``, for every architecture registered here.

Converters are data, not code. One loader (``loading.py``) reads config.json
and the memory-mapped safetensors shards (``checkpoint.py``); each
architecture is a small module that says, in the vocabulary of
``registry.py``, how its checkpoints map onto an attnkit model.

How to add an architecture (``gpt2.py`` is the shortest example):

1. Make sure an attnkit model computes what the HF class computes. New
   behaviour goes into the existing models as config fields (a norm type, an
   activation, a head), never into a copy of a model.
2. Write ``models/hf/<name>.py`` with one ``register(Architecture(...))``:
   - ``name``, ``model_type``: config.json's ``architectures`` entry and
     ``model_type``; ``config_class``, ``model_class``: attnkit's.
   - ``fields``: ``Field(hf_name, attnkit_name, hf_default)`` for each
     setting carried over, and ``Fixed(hf_name, value, also=...)`` for each
     HF setting attnkit's model has one way only (a config.json asking for
     something else is refused, naming the field; saving writes ``value``).
     ``check``, ``derive`` and ``to_hf_extra`` are functions for what is not
     one field each (``derive`` may look at the checkpoint's tensor names,
     to see which optional heads it has).
   - ``weights``: one ``Weight(attnkit_name, hf_names, transform)`` per
     attnkit parameter, ``{i}`` standing for a layer index. HF names are
     relative to the base model (``base_prefix`` is added or not, as the
     checkpoint has it); names beginning with one of ``heads`` are not.
     Transforms: ``identity`` (the default; float32 tensors then stay
     memory-mapped), ``transpose``, ``concat(parts)`` (several HF tensors
     stacked into one fused attnkit tensor: q/k/v, k/v, gate/up),
     ``experts(count)`` (one tensor per expert, ``{e}`` in the HF names,
     stacked into a mixture of experts' [n_experts, ...]); a new one
     is a ``Transform`` with both directions and the shape function.
     Saving runs the same table backwards.
   - ``ignore`` (names that hold no weights), ``tied`` (output heads that
     checkpoints may store as a copy of the embedding), ``free_fields``.
     ``save_pretrained`` writes a model as the first registered class whose
     table and config fields express it exactly (config -> config.json ->
     config gives it back), so a table that omits a setting can never
     write a model that needs it.
3. Import the module at the bottom of this file.
4. Test it against ``transformers`` on random weights (``tests/
   test_hf_<name>.py``): logits at every position, with padding, greedy
   tokens, and a save that transformers reloads to the same logits.

Every check happens before a weight is read; a loader error names the
field, tensor or file (``CheckpointError``, a ValueError).
"""

from .loading import config_from_hf, config_to_hf, from_pretrained, hf_state_dict, save_pretrained
from .registry import (
    Architecture,
    CheckpointError,
    Field,
    Fixed,
    Transform,
    Weight,
    concat,
    experts,
    identity,
    register,
    registered,
    supported_architectures,
    transpose,
)

# The architectures (bert.py, gpt2.py, llama.py, marian.py, moe.py, vit.py) each register
# their tables on import; attnkit.models imports them after the model classes
# they build, which import this package's loader for save_pretrained.

__all__ = [
    "from_pretrained",
    "save_pretrained",
    "hf_state_dict",
    "config_from_hf",
    "config_to_hf",
    "Architecture",
    "CheckpointError",
    "Field",
    "Fixed",
    "Transform",
    "Weight",
    "concat",
    "experts",
    "identity",
    "transpose",
    "register",
    "registered",
    "supported_architectures",
]

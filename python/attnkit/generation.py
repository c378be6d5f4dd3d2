"""Decoding: the next token from logits (greedy, temperature, top-k, top-p,
repetition penalty) and autoregressive generation with a KV cache.

``sample`` is one native call per step (``_C.sample_tokens``): the filters
and the draw run in C++ over each row of logits, with the random number from
attnkit's Philox generator, so the same seed gives the same tokens.

``generate`` and ``stream`` drive a decoder-only model (``models.GPT``): the
caches are allocated once per call, the prompts go through in one forward
pass, then one token per step. Prompts of different lengths are left-padded;
the padding is masked out of every attention and each row's real tokens get
positions 0, 1, ..., so a prompt gives the same tokens alone or in a batch.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _C
from ._dtypes import int32, int64
from ._tensor_data import native_array, values_view
from .autograd import no_grad
from .random import _generator_or_default
from .tensor import Tensor, from_numpy

# What ``stream`` yields for a row that has already stopped, and what fills a
# row of ``generate``'s tensor after its stop token.
FINISHED = -1


def _check_sampling(op: str, temperature, top_k, top_p, repetition_penalty) -> dict:
    """The sampling arguments, checked, as _C.sample_tokens takes them."""
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool):
        raise TypeError(f"{op}: argument 'temperature' expected a float, got {type(temperature).__name__}")
    if not 0.0 <= float(temperature) < float("inf"):  # NaN fails too
        raise ValueError(f"{op}: argument 'temperature' expected a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None:
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool):
            raise TypeError(f"{op}: argument 'top_k' expected an int or None, got {type(top_k).__name__}")
        if top_k < 1:
            raise ValueError(f"{op}: argument 'top_k' expected a count >= 1 (None: no top-k), got {top_k}")
        top_k = min(int(top_k), 2**63 - 1)  # any k >= the vocabulary keeps every token
    if top_p is not None:
        if not isinstance(top_p, numbers.Real) or isinstance(top_p, bool):
            raise TypeError(f"{op}: argument 'top_p' expected a float or None, got {type(top_p).__name__}")
        if not 0.0 < float(top_p) <= 1.0:
            raise ValueError(f"{op}: argument 'top_p' expected a probability in (0, 1], got {top_p!r}")
    if not isinstance(repetition_penalty, numbers.Real) or isinstance(repetition_penalty, bool):
        raise TypeError(
            f"{op}: argument 'repetition_penalty' expected a float, got {type(repetition_penalty).__name__}"
        )
    if not 0.0 < float(repetition_penalty) < float("inf"):
        raise ValueError(
            f"{op}: argument 'repetition_penalty' expected a finite number > 0 (1: none), got {repetition_penalty!r}"
        )
    return {
        "temperature": float(temperature),
        "top_k": 0 if top_k is None else int(top_k),
        "top_p": 1.0 if top_p is None else float(top_p),
        "repetition_penalty": float(repetition_penalty),
    }


def _draw(logits, seen, settings: dict, generator) -> np.ndarray:
    """One native call: int64 [B] from a float32 _C.Array [B, V]. Greedy
    decoding draws no random numbers, so it leaves the generator as it is."""
    seed, offset = (0, 0) if settings["temperature"] == 0.0 else generator.next_stream()
    return np.asarray(_C.sample_tokens(logits, seen, seed=seed, offset=offset, **settings))


def sample(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    seen: Tensor | None = None,
    generator=None,
) -> Tensor:
    """The next token of each row of ``logits`` (float32 [B, V]): int64 [B].

    Per row, in this order:
    1. ``repetition_penalty`` (CTRL, Keskar et al. 2019): the logit of every
       token marked in ``seen`` (bool [B, V]) is divided by the penalty when
       positive and multiplied by it when negative (> 1 discourages repeats);
    2. ``temperature``: softmax(logits / temperature); 0 means greedy: the
       argmax (the lower id among equal logits), no random number drawn;
    3. ``top_k``: only the k largest logits stay candidates;
    4. ``top_p`` (nucleus, Holtzman et al. 2019): only the smallest set of
       most probable candidates whose probability reaches p stays;
    5. a draw from the renormalized probabilities of what is left, with a
       53-bit uniform number from the next stream of ``generator`` (default:
       ``attnkit.manual_seed``'s): the same seed gives the same tokens.

    Logits may be -inf (a token that cannot occur) but not NaN or +inf, and
    every row needs one above -inf.
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"sample: argument 'logits' expected an attnkit.Tensor, got {type(logits).__name__}")
    settings = _check_sampling("sample", temperature, top_k, top_p, repetition_penalty)
    if seen is not None and not isinstance(seen, Tensor):
        raise TypeError(f"sample: argument 'seen' expected an attnkit.Tensor or None, got {type(seen).__name__}")
    generator = _generator_or_default("sample", generator)
    tokens = _draw(native_array(logits), None if seen is None else native_array(seen), settings, generator)
    return from_numpy(tokens)


def _token_row(op: str, index: int, sequence) -> np.ndarray:
    if isinstance(sequence, Tensor):
        if sequence.dtype not in (int32, int64):
            raise TypeError(f"{op}: prompt {index} expected int token ids, got {sequence.dtype}")
        row = values_view(sequence)
    else:
        row = np.asarray(sequence)
        if row.dtype.kind not in "iu" and row.size:
            raise TypeError(f"{op}: prompt {index} expected int token ids, got {row.dtype}")
    if row.ndim != 1:
        raise ValueError(f"{op}: prompt {index} expected a 1-D sequence of token ids, got shape {list(row.shape)}")
    if row.size == 0:
        raise ValueError(f"{op}: prompt {index} is empty; every prompt needs at least one token")
    return row.astype(np.int64)


def _prompts(op: str, idx, vocab_size: int) -> tuple:
    """(tokens int64 [B, T] left-padded with 0, lengths int64 [B], from_list)."""
    if isinstance(idx, Tensor):
        if idx.dtype not in (int32, int64) or idx.ndim != 2:
            raise ValueError(
                f"{op}: argument 'idx' expected int token ids of shape [batch, seq], "
                f"got {idx.dtype} of shape {list(idx.shape)}"
            )
        if 0 in idx.shape:
            raise ValueError(
                f"{op}: argument 'idx' is empty (shape {list(idx.shape)}); every prompt needs at least one token"
            )
        tokens = values_view(idx).astype(np.int64)
        lengths = np.full(tokens.shape[0], tokens.shape[1], np.int64)
        from_list = False
    elif isinstance(idx, (list, tuple)):
        if not idx:
            raise ValueError(f"{op}: argument 'idx' is an empty list; expected at least one prompt")
        rows = [_token_row(op, i, sequence) for i, sequence in enumerate(idx)]
        lengths = np.array([len(row) for row in rows], np.int64)
        tokens = np.zeros((len(rows), int(lengths.max())), np.int64)
        for i, row in enumerate(rows):
            tokens[i, tokens.shape[1] - len(row) :] = row
        from_list = True
    else:
        raise TypeError(
            f"{op}: argument 'idx' expected an int Tensor [batch, seq] or a list of token "
            f"sequences, got {type(idx).__name__}"
        )
    real = np.arange(tokens.shape[1])[None, :] >= (tokens.shape[1] - lengths)[:, None]
    bad = real & ((tokens < 0) | (tokens >= vocab_size))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{op}: argument 'idx' expected token ids in [0, {vocab_size}) (vocab_size), "
            f"got {tokens[row, column]} in prompt {row}"
        )
    return tokens, lengths, from_list


def default_stop_tokens(model) -> list:
    """The ids that end generation unless ``stop_tokens`` says otherwise:
    ``eos_token_id`` of the model's ``generation_config`` (the dict a
    Hugging Face checkpoint's generation_config.json holds, set by
    ``from_pretrained``; an id or a list of ids), or none."""
    config = getattr(model, "generation_config", None) or {}
    eos = config.get("eos_token_id")
    if eos is None:
        return []
    return [eos] if isinstance(eos, numbers.Integral) else list(eos)


def _stop_strings(op: str, stop_strings, tokenizer) -> list:
    if stop_strings is None:
        return []
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    try:
        strings = list(stop_strings)
    except TypeError:
        raise TypeError(
            f"{op}: argument 'stop_strings' expected a str or a list of str, got {type(stop_strings).__name__}"
        ) from None
    for text in strings:
        if not isinstance(text, str) or not text:
            raise ValueError(f"{op}: argument 'stop_strings' expected non-empty strings, got {text!r}")
    if strings and not callable(getattr(tokenizer, "decode", None)):
        raise TypeError(
            f"{op}: argument 'stop_strings' needs a 'tokenizer' (an object with decode(ids) -> str), "
            f"got {type(tokenizer).__name__}"
        )
    return strings


def _stop_set(op: str, stop_tokens, vocab_size: int) -> np.ndarray:
    if stop_tokens is None:
        return np.zeros(0, np.int64)
    if isinstance(stop_tokens, numbers.Integral) and not isinstance(stop_tokens, bool):
        stop_tokens = [stop_tokens]
    try:
        values = list(stop_tokens)
    except TypeError:
        raise TypeError(
            f"{op}: argument 'stop_tokens' expected an int or a collection of ints, got {type(stop_tokens).__name__}"
        ) from None
    for value in values:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{op}: argument 'stop_tokens' expected ints, got {value!r}")
        if not 0 <= value < vocab_size:
            raise ValueError(f"{op}: argument 'stop_tokens' expected token ids in [0, {vocab_size}), got {value}")
    return np.array(values, np.int64)


# The keyword options of generate and stream, and their defaults: the one
# place that lists them (both functions, and GPT's methods, pass on what they
# were given).
_DECODING_OPTIONS = {
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "repetition_penalty": 1.0,
    "stop_tokens": None,
    "generator": None,
    "stop_strings": None,
    "tokenizer": None,
}


class _Decoding:
    """Everything one generate/stream call checks and prepares up front.
    ``options``: the keyword options the call was given (see
    ``_DECODING_OPTIONS``)."""

    def __init__(self, op: str, model, idx, max_new_tokens, options: dict) -> None:
        unknown = [name for name in options if name not in _DECODING_OPTIONS]
        if unknown:
            raise TypeError(
                f"{op}: unexpected keyword argument '{unknown[0]}' (the options: {', '.join(_DECODING_OPTIONS)})"
            )
        options = {**_DECODING_OPTIONS, **options}
        config = model.config
        self.model = model
        self.tokens, self.lengths, self.from_list = _prompts(op, idx, config.vocab_size)
        if not isinstance(max_new_tokens, numbers.Integral) or isinstance(max_new_tokens, bool):
            raise TypeError(f"{op}: argument 'max_new_tokens' expected an int, got {type(max_new_tokens).__name__}")
        prompt_length = self.tokens.shape[1]
        if prompt_length > config.block_size:
            raise ValueError(
                f"{op}: argument 'idx' holds a prompt of {prompt_length} tokens, more than "
                f"block_size={config.block_size}"
            )
        # The last new token is drawn, never fed: the model sees at most
        # prompt_length + max_new_tokens - 1 positions.
        room = config.block_size - prompt_length + 1
        if not 0 <= max_new_tokens <= room:
            raise ValueError(
                f"{op}: argument 'max_new_tokens' expected 0 to {room} (a prompt of "
                f"{prompt_length} tokens and block_size={config.block_size}), got {max_new_tokens}"
            )
        self.max_new_tokens = int(max_new_tokens)
        self.settings = _check_sampling(
            op, options["temperature"], options["top_k"], options["top_p"], options["repetition_penalty"]
        )
        stop_tokens = default_stop_tokens(model) if options["stop_tokens"] is None else options["stop_tokens"]
        self.stop = _stop_set(op, stop_tokens, config.vocab_size)
        self.stop_strings = _stop_strings(op, options["stop_strings"], options["tokenizer"])
        self.tokenizer = options["tokenizer"]
        self.generator = _generator_or_default(op, options["generator"])

    def steps(self):
        """Yields int64 [B] per step: the new token of every row, FINISHED for
        a row that stopped before this step."""
        if self.max_new_tokens == 0:
            return
        model = self.model
        batch, prompt_length = self.tokens.shape
        vocab_size = model.config.vocab_size
        padding = prompt_length - self.lengths  # left padding of every row
        padded = bool(padding.any())
        seen = None
        if self.settings["repetition_penalty"] != 1.0:
            seen = np.zeros((batch, vocab_size), np.bool_)
            for row in range(batch):
                seen[row, self.tokens[row, padding[row] :]] = True
            seen_array = native_array(from_numpy(seen))  # shares seen's memory: updated in place below
        finished = np.zeros(batch, np.bool_)
        generated = [[] for _ in range(batch)]  # each row's new tokens, for the stop strings
        next_position = self.lengths.copy()
        rows = np.arange(batch)

        # The prompt: one forward pass. A padded row's real tokens sit at
        # positions 0, 1, ... of its own; its padding is masked everywhere.
        caches = model.make_caches(batch, prompt_length + self.max_new_tokens - 1)
        mask = positions = None
        if padded:
            columns = np.arange(prompt_length)[None, :]
            mask = from_numpy(columns < padding[:, None])
            positions = from_numpy(np.maximum(columns - padding[:, None], 0))
        with no_grad():
            logits = model(
                from_numpy(self.tokens), caches, key_padding_mask=mask, position_ids=positions, last_only=True
            )
        for step in range(self.max_new_tokens):
            tokens = _draw(
                native_array(logits).reshape([batch, vocab_size]),
                None if seen is None else seen_array,
                self.settings,
                self.generator,
            )
            tokens[finished] = FINISHED
            if seen is not None:
                seen[rows[~finished], tokens[~finished]] = True
            if self.stop.size:
                finished |= (tokens[:, None] == self.stop[None, :]).any(axis=1)
            if self.stop_strings:
                finished |= self._completes_stop_string(generated, tokens, finished)
            # A finished row goes on decoding a dummy token (its output is
            # discarded): cheaper than reshaping the batch and its caches.
            # A copy: the caller may keep or change what is yielded.
            feed = np.where(finished, 0, tokens)[:, None]
            yield tokens
            if step == self.max_new_tokens - 1 or finished.all():
                return
            with no_grad():
                logits = model(
                    from_numpy(feed),
                    caches,
                    position_ids=from_numpy(next_position[:, None].copy()) if padded else None,
                    last_only=True,
                )
            next_position += 1

    def _completes_stop_string(self, generated: list, tokens: np.ndarray, finished: np.ndarray) -> np.ndarray:
        """Which rows' text (of their new tokens, decoded) now holds a stop
        string; appends this step's tokens to ``generated``."""
        hits = np.zeros(len(tokens), np.bool_)
        for row, token in enumerate(tokens):
            if finished[row]:
                continue
            generated[row].append(int(token))
            text = self.tokenizer.decode(generated[row])
            hits[row] = any(stop in text for stop in self.stop_strings)
        return hits


class _EvalMode:
    """Puts every module in eval mode and restores each one's own flag."""

    def __init__(self, model) -> None:
        self.flags = [(module, module.training) for module in model.modules()]

    def __enter__(self):
        for module, _ in self.flags:
            module.training = False
        return self

    def __exit__(self, *exc) -> None:
        for module, flag in self.flags:
            module.training = flag


def stream(model, idx, max_new_tokens: int, **options):
    """An iterator over the decoding steps of ``generate`` (the same
    arguments and keyword options): per step, a numpy
    int64 array [B] of the new tokens, FINISHED (-1) for a row that stopped
    at an earlier step. The arguments are checked when ``stream`` is called,
    before the first token. While the iterator runs the model is in eval
    mode; when it ends (exhausted or closed) every module's previous
    training flag is restored. Gradients are never recorded."""
    decoding = _Decoding("stream", model, idx, max_new_tokens, options)

    def iterate():
        with _EvalMode(model):
            yield from decoding.steps()

    return iterate()


def generate(model, idx, max_new_tokens: int, **options):
    """Continues each prompt by up to ``max_new_tokens`` tokens.

    - ``idx``: an int Tensor [B, T] (B prompts of T tokens) or a list of 1-D
      token sequences (lists, numpy arrays or Tensors) of different lengths,
      left-padded internally; the padding is never attended and each
      prompt's tokens take positions 0, 1, ..., so a prompt continues the
      same way alone or in a batch.
    - ``max_new_tokens``: at most block_size - T + 1 (the last token is
      drawn, never fed back).

    The options, keyword only:

    - ``temperature`` (default 1.0; 0: greedy), ``top_k`` and ``top_p``
      (default None: off), ``repetition_penalty`` (default 1.0: none): as in
      ``sample``; the penalty counts the prompt's tokens and the generated
      ones as seen.
    - ``stop_tokens``: an id or ids; a row that draws one stops there (the
      stop token is kept). Generation ends when every row has stopped.
      None (the default) takes the model's end-of-sequence ids
      (``default_stop_tokens``: a Hugging Face checkpoint's
      generation_config.json ``eos_token_id``); ``[]`` stops on none.
    - ``stop_strings`` with ``tokenizer``: a row also stops at the token
      that completes one of these strings in the text of its new tokens
      (``tokenizer.decode``); that token is kept.
    - ``generator``: the Philox generator of the draws (default
      ``attnkit.manual_seed``'s); one stream per step.

    The KV caches are allocated once, sized for the whole call; the prompts
    take one forward pass and each new token one more. Runs in eval mode and
    without recording gradients; every module's training flag is restored
    afterwards.

    Returns, for a Tensor ``idx``, an int64 Tensor [B, T + n], the prompts
    followed by the n <= max_new_tokens steps taken (a row that stopped
    holds FINISHED, -1, after its stop token); for a list, a list of lists
    of ints, each prompt followed by its own new tokens.
    """
    decoding = _Decoding("generate", model, idx, max_new_tokens, options)
    with _EvalMode(model):
        steps = list(decoding.steps())
    new = np.stack(steps, axis=1) if steps else np.zeros((decoding.tokens.shape[0], 0), np.int64)
    if not decoding.from_list:
        return from_numpy(np.concatenate([decoding.tokens, new], axis=1))
    padding = decoding.tokens.shape[1] - decoding.lengths
    return [
        decoding.tokens[row, padding[row] :].tolist() + [int(t) for t in new[row] if t != FINISHED]
        for row in range(len(padding))
    ]


__all__ = ["FINISHED", "default_stop_tokens", "sample", "generate", "stream"]

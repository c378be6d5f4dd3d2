"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et
al., 2017), with greedy decoding and beam search.

``logits = model(src, tgt)`` is teacher forcing: tgt is the target shifted
right (it starts with the BOS token), logits [B, T, tgt_vocab_size] predict
the next target token at every position. Decoding (``greedy_decode``,
``beam_search``) encodes the source once, then feeds one token per step
through the decoder with its self-attention keys and values kept in KV
caches allocated once for the whole search.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .. import _dtypes, nn
from .._tensor_data import values_view
from ..autograd import no_grad
from ..nn import functional as F
from ..nn import init
from ..tensor import Tensor, from_numpy, zeros
from .hf import loading as hf_loading


@dataclass
class TransformerConfig:
    """Sizes and options; the defaults are the paper's base model
    (``TransformerConfig.base()``). Names follow nanoGPT where it has one:
    n_layer = N (encoder layers, and as many decoder layers), n_head = h,
    n_embd = d_model, block_size = the longest source or target sequence
    (the size of the position table)."""

    src_vocab_size: int = 37000
    tgt_vocab_size: int = 37000
    block_size: int = 1024
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    d_ff: int = 2048
    dropout: float = 0.1  # P_drop, on every sublayer output and on the embedding sums (section 5.4)
    bias: bool = True  # biases in the Linears and LayerNorms
    norm_first: bool = False  # False: post-LN, the paper's; True: pre-LN, with a final LayerNorm per stack
    share_embeddings: bool = True  # one matrix for source, target and output embeddings (section 3.4)
    label_smoothing: float = 0.1  # epsilon_ls of section 5.4, used by Transformer.loss
    activation: str = "relu"  # the feed-forward's: the paper's relu; gelu, gelu_tanh, silu (Marian's swish)
    position_layout: str = "interleaved"  # sinusoid columns: sin/cos interleaved (the paper), or "halves" (Marian)
    scale_embeddings: bool = True  # embeddings times sqrt(d_model) (section 3.4)
    final_logits_bias: bool = False  # a fixed bias added to the logits (Marian's final_logits_bias buffer)

    @classmethod
    def base(cls, vocab_size: int = 37000) -> TransformerConfig:
        """The paper's base model: N=6, d_model=512, d_ff=2048, h=8, dropout
        0.1, label smoothing 0.1, embeddings shared over one vocabulary (the
        paper's WMT'14 English-German setup had about 37000 shared BPE
        tokens, the default here). With 37000 tokens: 63,082,496 parameters
        (18,944,000 in the shared embedding, 18,914,304 in the encoder,
        25,224,192 in the decoder; the paper rounds its own count to 65M)."""
        return cls(
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            block_size=1024,
            n_layer=6,
            n_head=8,
            n_embd=512,
            d_ff=2048,
            dropout=0.1,
            bias=True,
            norm_first=False,
            share_embeddings=True,
            label_smoothing=0.1,
        )


# The divisor lp(|Y|) of a hypothesis' log-probability, by normalization.
LENGTH_NORMALIZATIONS = {
    # GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al., 2016, section 7).
    "gnmt": lambda length, alpha: ((5.0 + length) / 6.0) ** alpha,
    # |Y|^alpha, as transformers' beam search divides by.
    "length": lambda length, alpha: float(length) ** alpha,
}


class Transformer(nn.Module):
    """The encoder-decoder of "Attention Is All You Need".

    Layout: ``src_embedding`` and ``tgt_embedding`` (the same module when
    ``share_embeddings``), ``position`` (the sinusoidal table), ``encoder``
    and ``decoder`` (nn.TransformerEncoder / nn.TransformerDecoder with the
    config's feed-forward activation, ReLU by default), and
    ``output_projection`` (a bias-free Linear; None when shared, as the
    target embedding's matrix is then the output projection), plus, with
    ``config.final_logits_bias``, the buffer ``final_logits_bias`` [1,
    tgt_vocab_size] added to the logits. Each embedding is multiplied by
    sqrt(d_model) (section 3.4; ``scale_embeddings=False`` leaves it), the
    position rows are added and dropout is applied to the sum (section 5.4).

    Initialization (the paper gives none; this is what its reference
    implementations, tensor2tensor and fairseq, settled on): Linear weights
    Xavier uniform, each of the query, key and value projections on its own
    [d_model, d_model] block of the fused weights (as three separate Linears
    would be); biases 0; LayerNorms 1 and 0; embeddings N(0, d_model^-0.5),
    so that scaled by sqrt(d_model) they have unit variance, the scale of
    the sine and cosine rows they are added to, and the tied output
    projection has the Xavier-like scale 1/sqrt(fan_in).

    Token ids are int32 or int64 [batch, seq]; padding masks are bool
    [batch, seq], True marking padding (as PyTorch). Decoding methods run
    under ``no_grad``; call ``model.eval()`` first so dropout is off.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"Transformer: argument 'config' expected a TransformerConfig, got {type(config).__name__}")
        if config.share_embeddings and config.src_vocab_size != config.tgt_vocab_size:
            raise ValueError(
                f"Transformer: share_embeddings needs one vocabulary, got src_vocab_size="
                f"{config.src_vocab_size} and tgt_vocab_size={config.tgt_vocab_size} (set "
                f"share_embeddings=False for separate vocabularies)"
            )
        if not isinstance(config.label_smoothing, numbers.Real) or not 0.0 <= config.label_smoothing <= 1.0:
            raise ValueError(
                f"Transformer: config.label_smoothing expected a number in [0, 1], got {config.label_smoothing!r}"
            )
        self.config = config
        width = config.n_embd
        self.src_embedding = nn.Embedding(config.src_vocab_size, width)
        self.tgt_embedding = (
            self.src_embedding if config.share_embeddings else nn.Embedding(config.tgt_vocab_size, width)
        )
        self.position = nn.SinusoidalPositionalEncoding(width, config.block_size, layout=config.position_layout)
        self.dropout = nn.Dropout(config.dropout)
        stack_arguments = dict(
            num_layers=config.n_layer,
            d_model=width,
            nhead=config.n_head,
            dim_feedforward=config.d_ff,
            dropout=config.dropout,
            activation=config.activation,
            norm_first=config.norm_first,
            bias=config.bias,
        )
        self.encoder = nn.TransformerEncoder(**stack_arguments)
        self.decoder = nn.TransformerDecoder(**stack_arguments)
        if config.share_embeddings:
            self.add_module("output_projection", None)
        else:
            self.output_projection = nn.Linear(width, config.tgt_vocab_size, bias=False)
        if config.final_logits_bias:
            self.register_buffer("final_logits_bias", zeros(1, config.tgt_vocab_size))
        else:
            self.register_buffer("final_logits_bias", None)
        self.embedding_scale = math.sqrt(width) if config.scale_embeddings else 1.0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.src_embedding.weight, 0.0, self.config.n_embd**-0.5)
        if not self.config.share_embeddings:
            init.normal_(self.tgt_embedding.weight, 0.0, self.config.n_embd**-0.5)
            init.xavier_uniform_(self.output_projection.weight)
        # Fused projections hold their query, key and value weights stacked
        # by rows; each block gets Xavier's bound for its own shape.
        blocks_per_fused_weight = {"qkv_proj": 3, "kv_proj": 2}
        for stack in (self.encoder, self.decoder):
            for name, module in stack.named_modules():
                if isinstance(module, nn.Linear):
                    blocks = blocks_per_fused_weight.get(name.rsplit(".", 1)[-1], 1)
                    fan_out, fan_in = module.weight.shape[0] // blocks, module.weight.shape[1]
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    init.uniform_(module.weight, -bound, bound)
                    if module.bias is not None:
                        init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """The number of trainable numbers; a shared embedding counts once."""
        return sum(parameter.numel() for parameter in self.parameters())

    # ------------------------------------------------------------ checks --
    def _check_ids(self, op: str, argument: str, ids, vocab_size: int, offset: int = 0) -> None:
        if not isinstance(ids, Tensor):
            raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(ids).__name__}")
        if ids.dtype not in (_dtypes.int32, _dtypes.int64) or ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(
                f"{op}: argument '{argument}' expected int32 or int64 token ids of shape "
                f"[batch, seq] with seq >= 1, got {ids.dtype} of shape {list(ids.shape)}"
            )
        if offset + ids.shape[1] > self.config.block_size:
            where = f"{ids.shape[1]} tokens" if offset == 0 else f"{ids.shape[1]} tokens after {offset} cached"
            raise ValueError(
                f"{op}: argument '{argument}' has {where}, more than block_size={self.config.block_size} positions"
            )
        values = values_view(ids)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{op}: argument '{argument}' has token id {low if low < 0 else high}, expected ids "
                f"in [0, {vocab_size})"
            )

    @staticmethod
    def _check_mask(op: str, argument: str, mask, batch: int, length: int) -> None:
        if mask is None:
            return
        if not isinstance(mask, Tensor):
            raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(mask).__name__}")
        if mask.dtype != _dtypes.bool_ or tuple(mask.shape) != (batch, length):
            raise ValueError(
                f"{op}: argument '{argument}' expected a bool mask of shape [{batch}, {length}] "
                f"(True marks padding), got {mask.dtype} of shape {list(mask.shape)}"
            )

    # ----------------------------------------------------------- forward --
    def _embed(self, ids: Tensor, embedding: nn.Embedding, offset: int = 0) -> Tensor:
        embedded = embedding(ids)
        if self.embedding_scale != 1.0:
            embedded = embedded * self.embedding_scale
        return self.dropout(self.position(embedded, offset=offset))

    def encode(self, src: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        """The encoder output (``memory``) [B, S, d_model] for src [B, S]."""
        op = "Transformer.encode"
        self._check_ids(op, "src", src, self.config.src_vocab_size)
        self._check_mask(op, "src_key_padding_mask", src_key_padding_mask, *src.shape)
        return self.encoder(self._embed(src, self.src_embedding), key_padding_mask=src_key_padding_mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        caches: list | None = None,
    ) -> Tensor:
        """Logits [B, T, tgt_vocab_size] for tgt [B, T] given ``memory``
        [B, S, d_model] (from ``encode``; ``src_key_padding_mask`` is the
        source's). With ``caches`` (``make_caches``, under ``no_grad``), tgt
        continues the cached sequence: its positions start after the cached
        ones, and causal attention makes a padding mask unnecessary."""
        op = "Transformer.decode"
        offset = 0
        if caches is not None:
            if not isinstance(caches, (list, tuple)) or len(caches) != self.config.n_layer:
                raise ValueError(
                    f"{op}: argument 'caches' expected a list of {self.config.n_layer} KVCaches "
                    f"(make_caches), got {caches!r}"
                )
            if tgt_key_padding_mask is not None:
                raise ValueError(
                    f"{op}: 'tgt_key_padding_mask' is not supported with caches: decoding is "
                    f"causal, so padding after a sequence's end never reaches it"
                )
            offset = caches[0].length
        self._check_ids(op, "tgt", tgt, self.config.tgt_vocab_size, offset)
        batch = tgt.shape[0]
        if not isinstance(memory, Tensor):
            raise TypeError(f"{op}: argument 'memory' expected an attnkit.Tensor, got {type(memory).__name__}")
        if memory.ndim != 3 or memory.shape[0] != batch or memory.shape[2] != self.config.n_embd:
            raise ValueError(
                f"{op}: argument 'memory' expected shape [{batch}, source_seq, {self.config.n_embd}] "
                f"(encode's output), got {list(memory.shape)}"
            )
        self._check_mask(op, "src_key_padding_mask", src_key_padding_mask, batch, memory.shape[1])
        self._check_mask(op, "tgt_key_padding_mask", tgt_key_padding_mask, batch, tgt.shape[1])
        x = self.decoder(
            self._embed(tgt, self.tgt_embedding, offset),
            memory,
            key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=src_key_padding_mask,
            caches=caches,
        )
        if self.output_projection is None:
            logits = F.linear(x, self.tgt_embedding.weight)
        else:
            logits = self.output_projection(x)
        return logits if self.final_logits_bias is None else logits + self.final_logits_bias

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        if (
            isinstance(src, Tensor)
            and isinstance(tgt, Tensor)
            and src.ndim == 2
            and tgt.ndim == 2
            and src.shape[0] != tgt.shape[0]
        ):
            raise ValueError(
                f"Transformer: 'src' and 'tgt' expected one batch size, got {src.shape[0]} and {tgt.shape[0]}"
            )
        memory = self.encode(src, src_key_padding_mask)
        return self.decode(tgt, memory, src_key_padding_mask, tgt_key_padding_mask)

    def loss(self, logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
        """Mean cross-entropy of logits [B, T, V] against targets [B, T],
        with the config's label smoothing; targets equal to ``ignore_index``
        (padding) are left out."""
        vocab = self.config.tgt_vocab_size
        return F.cross_entropy(
            logits.reshape(-1, vocab),
            targets.reshape(-1),
            ignore_index=ignore_index,
            label_smoothing=float(self.config.label_smoothing),
        )

    def make_caches(self, batch: int, max_len: int | None = None) -> list:
        """One KVCache per decoder layer for ``batch`` sequences of up to
        ``max_len`` target positions (default block_size)."""
        return self.decoder.make_caches(batch, self.config.block_size if max_len is None else max_len)

    # ---------------------------------------------------------- decoding --
    def _check_decode_arguments(self, op: str, max_len, bos_id, eos_id) -> None:
        for name, value in (("max_len", max_len), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{op}: argument '{name}' expected an int, got {type(value).__name__}")
        if not 1 <= max_len <= self.config.block_size:
            raise ValueError(
                f"{op}: argument 'max_len' expected 1 .. block_size={self.config.block_size}, got {max_len}"
            )
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < self.config.tgt_vocab_size:
                raise ValueError(
                    f"{op}: argument '{name}' expected a token id in [0, {self.config.tgt_vocab_size}), got {value}"
                )

    def _banned(self, op: str, banned_tokens) -> np.ndarray:
        try:
            banned = np.array(list(banned_tokens), dtype=np.int64)
        except (TypeError, ValueError):
            raise TypeError(f"{op}: argument 'banned_tokens' expected a collection of token ids") from None
        if banned.size and (banned.min() < 0 or banned.max() >= self.config.tgt_vocab_size):
            raise ValueError(
                f"{op}: argument 'banned_tokens' expected token ids in [0, {self.config.tgt_vocab_size}), "
                f"got {banned.min() if banned.min() < 0 else banned.max()}"
            )
        return banned

    def _next_step_logits(self, tokens: np.ndarray, memory, mask, caches, banned: np.ndarray) -> Tensor:
        """Logits [rows, V] for one new token per row (int64 numpy [rows]);
        the banned tokens' are -inf."""
        logits = self.decode(
            from_numpy(np.ascontiguousarray(tokens[:, None], dtype=np.int64)), memory, mask, caches=caches
        )
        logits = logits.reshape(tokens.shape[0], self.config.tgt_vocab_size)
        if banned.size:
            values = logits.numpy().copy()
            values[:, banned] = -np.inf
            logits = from_numpy(values)
        return logits

    @no_grad()
    def greedy_decode(
        self,
        src: Tensor,
        max_len: int,
        bos_id: int,
        eos_id: int,
        src_key_padding_mask: Tensor | None = None,
        *,
        banned_tokens=(),
    ) -> Tensor:
        """The most probable next token at every step, up to ``max_len``
        tokens per source: int64 [B, L], L <= max_len the longest output;
        each row ends with its first ``eos_id`` and is filled with eos_id
        after it (BOS is not included). ``banned_tokens``: ids never
        produced (a padding token that doubles as BOS, as Marian's)."""
        self._check_decode_arguments("Transformer.greedy_decode", max_len, bos_id, eos_id)
        banned = self._banned("Transformer.greedy_decode", banned_tokens)
        memory = self.encode(src, src_key_padding_mask)
        batch = src.shape[0]
        caches = self.make_caches(batch, max_len)
        output = np.full((batch, max_len), eos_id, np.int64)
        finished = np.zeros(batch, bool)
        tokens = np.full(batch, bos_id, np.int64)
        for step in range(max_len):
            logits = self._next_step_logits(tokens, memory, src_key_padding_mask, caches, banned).numpy()
            tokens = np.where(finished, eos_id, logits.argmax(axis=-1))
            output[:, step] = tokens
            finished |= tokens == eos_id
            if finished.all():
                return from_numpy(np.ascontiguousarray(output[:, : step + 1]))
        return from_numpy(output)

    @no_grad()
    def beam_search(
        self,
        src: Tensor,
        beam_size: int = 4,
        length_penalty: float = 0.6,
        *,
        length_normalization: str = "gnmt",
        early_stopping: bool = True,
        max_len: int,
        bos_id: int,
        eos_id: int,
        src_key_padding_mask: Tensor | None = None,
        return_scores: bool = False,
        banned_tokens=(),
    ):
        """Beam search over the sources of the batch at once (``beam_size``
        hypotheses each), ranking finished hypotheses by the
        length-normalized score log P(Y | X) / lp(Y), alpha =
        ``length_penalty``: with ``length_normalization="gnmt"`` GNMT's
        lp(Y) = ((5 + |Y|) / 6)^alpha (the paper: beam 4, alpha 0.6), with
        ``"length"`` transformers' |Y|^alpha. |Y| counts the output tokens
        including EOS, not BOS.

        Each step extends every live hypothesis by every token and keeps the
        best 2 * beam_size extensions: an EOS among the best beam_size of
        them finishes that hypothesis, and the best beam_size extensions
        without EOS stay live. Finished hypotheses are kept; a source stops
        when none of its live hypotheses can beat its best finished one (log
        P only falls as a hypothesis grows, so a live one scores at most log
        P / lp(n) at the most favourable length n still reachable), and with
        ``early_stopping`` (the paper's rule) also when beam_size of them
        have finished (with beam_size=1 that is the first EOS, so it equals
        greedy decoding). At ``max_len`` tokens the live hypotheses finish
        without EOS.

        ``banned_tokens``: ids that are never extended with: their logits are
        -inf before the softmax, so the other tokens' probabilities sum to 1.

        With ``length_normalization="length"`` and ``early_stopping=False``
        the result is that of transformers' ``generate`` with the same
        ``num_beams`` and ``length_penalty`` and ``early_stopping="never"``
        (the exact search); with ``length_penalty=0``, that of its default
        settings too.

        Returns the best hypothesis per source as int64 [B, L] in greedy's
        format (ended by eos_id and filled with it); with ``return_scores``
        also their scores, float64 numpy [B].
        """
        op = "Transformer.beam_search"
        self._check_decode_arguments(op, max_len, bos_id, eos_id)
        banned = self._banned(op, banned_tokens)
        if not isinstance(beam_size, numbers.Integral) or isinstance(beam_size, bool) or beam_size < 1:
            raise ValueError(f"{op}: argument 'beam_size' expected an int >= 1, got {beam_size!r}")
        if (
            not isinstance(length_penalty, numbers.Real)
            or isinstance(length_penalty, bool)
            or not math.isfinite(length_penalty)
        ):
            raise ValueError(f"{op}: argument 'length_penalty' expected a finite number, got {length_penalty!r}")
        if not isinstance(early_stopping, bool):
            raise ValueError(f"{op}: argument 'early_stopping' expected a bool, got {early_stopping!r}")
        if length_normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(
                f"{op}: argument 'length_normalization' expected one of "
                f"{', '.join(map(repr, LENGTH_NORMALIZATIONS))}, got {length_normalization!r}"
            )
        penalty = LENGTH_NORMALIZATIONS[length_normalization]
        beams, alpha, vocab = int(beam_size), float(length_penalty), self.config.tgt_vocab_size
        memory = self.encode(src, src_key_padding_mask)
        batch = src.shape[0]
        # Row b * beams + k of the decoder batch is hypothesis k of source b.
        source_of_row = np.repeat(np.arange(batch, dtype=np.int64), beams)
        memory = F.index_select(memory, 0, from_numpy(source_of_row))
        mask = (
            None
            if src_key_padding_mask is None
            else from_numpy(np.ascontiguousarray(values_view(src_key_padding_mask)[source_of_row]))
        )
        caches = self.make_caches(batch * beams, max_len)

        history = np.full((batch, beams, max_len), eos_id, np.int64)  # the tokens of the live hypotheses
        # Summed log-probabilities; at first only hypothesis 0 of each source
        # is live, so the first step extends BOS once, not beam_size times.
        log_probability = np.full((batch, beams), -np.inf)
        log_probability[:, 0] = 0.0
        finished = [[] for _ in range(batch)]  # (score, tokens) per source, in the order found
        done = np.zeros(batch, bool)
        tokens = np.full(batch * beams, bos_id, np.int64)
        for step in range(max_len):
            length = step + 1
            logits = self._next_step_logits(tokens, memory, mask, caches, banned)
            candidates = log_probability[:, :, None] + F.log_softmax(logits).numpy().reshape(batch, beams, vocab)
            candidates = candidates.reshape(batch, beams * vocab)
            # The best 2 * beam_size (a partition, not a sort of beams * vocab
            # entries), best first; ties to the lower hypothesis, then the
            # lower token id (as argmax in greedy decoding).
            count = min(2 * beams, beams * vocab)
            top = np.argpartition(-candidates, count - 1, axis=1)[:, :count]
            ranked = np.take_along_axis(top, np.lexsort((top, -np.take_along_axis(candidates, top, axis=1))), axis=1)
            parents = np.zeros((batch, beams), np.int64)
            next_tokens = np.full((batch, beams), eos_id, np.int64)
            next_log_probability = np.full((batch, beams), -np.inf)
            for source in np.flatnonzero(~done):
                live = 0
                for rank, flat in enumerate(ranked[source]):
                    score = candidates[source, flat]
                    # Stop once the live slots are full and every EOS among the
                    # best beam_size has been seen, or at the impossible ones.
                    if (live == beams and rank >= beams) or score == -np.inf:
                        break
                    parent, token = divmod(int(flat), vocab)
                    if token == eos_id:
                        if rank < beams:
                            sequence = np.append(history[source, parent, :step], eos_id)
                            finished[source].append((score / penalty(length, alpha), sequence))
                    elif live < beams:
                        parents[source, live], next_tokens[source, live] = parent, token
                        next_log_probability[source, live] = score
                        live += 1
                if length == max_len:
                    for k in range(live):
                        sequence = np.append(history[source, parents[source, k], :step], next_tokens[source, k])
                        finished[source].append((next_log_probability[source, k] / penalty(length, alpha), sequence))
                    done[source] = True
                    continue
                best_live = next_log_probability[source].max()
                # log P <= best_live < 0 from here on; lp is monotonic in the length.
                reachable = max(best_live / penalty(length + 1, alpha), best_live / penalty(max_len, alpha))
                done[source] = (
                    (early_stopping and len(finished[source]) >= beams)
                    or best_live == -np.inf
                    or (bool(finished[source]) and max(score for score, _ in finished[source]) >= reachable)
                )
            if done.all():
                break
            history = np.take_along_axis(history, parents[:, :, None], axis=1)
            history[:, :, step] = next_tokens
            log_probability = next_log_probability
            # The kept hypotheses were extended from these parents: their
            # caches follow them.
            parent_rows = (np.arange(batch)[:, None] * beams + parents).reshape(-1)
            for cache in caches:
                cache.select(parent_rows)
            tokens = next_tokens.reshape(-1)

        best = [max(hypotheses, key=lambda entry: entry[0]) for hypotheses in finished]
        output = np.full((batch, max(len(sequence) for _, sequence in best)), eos_id, np.int64)
        for source, (_, sequence) in enumerate(best):
            output[source, : len(sequence)] = sequence
        sequences = from_numpy(output)
        return (sequences, np.array([score for score, _ in best])) if return_scores else sequences

    def save_pretrained(self, path, *, tokenizer=None, max_shard_size="5GB") -> None:
        """Writes a Hugging Face MarianMTModel checkpoint directory, for a
        model of Marian's shape (see ``attnkit.models.hf.marian``)."""
        hf_loading.save_pretrained(self, path, tokenizer=tokenizer, max_shard_size=max_shard_size)

    def extra_repr(self) -> str:
        return f"{self.config}"


__all__ = ["TransformerConfig", "Transformer"]

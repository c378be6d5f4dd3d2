"""attnkit.models.BERT and mask_tokens: the bert-base parameter counts, the
forward pass (sequence output, pooler, MLM logits) and every gradient against
a float64 numpy BERT reading the same weights, the attention mask, learning an
MLM task, the masking proportions, and bad input."""

import math

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close
from model_check import mean_cross_entropy, parameter_values, reference_attention

import attnkit
from attnkit.models import BERT, BertConfig, mask_tokens
from attnkit.nn import functional as F
from attnkit.random import Generator

# These tests seed the default generator: restore its state after each one.
pytestmark = pytest.mark.usefixtures("keep_default_generator")


def tiny_config(**changes):
    settings = dict(
        vocab_size=11,
        block_size=8,
        n_layer=2,
        n_head=2,
        n_embd=8,
        d_ff=12,
        type_vocab_size=2,
        dropout=0.0,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    settings.update(changes)
    return BertConfig(**settings)


def bert_reference(values, config, input_ids, token_type_ids=None, attention_mask=None, dtype=np.float64):
    """BERT in numpy, every step in ``dtype``: (sequence output, pooled
    output, MLM logits). attention_mask: 1 = token, 0 = padding."""
    p = {name: array.astype(dtype) for name, array in values.items()}
    batch, steps = input_ids.shape
    heads, width = config.n_head, config.n_embd
    head_dim = width // heads
    eps = dtype(config.layer_norm_eps)

    def layer_norm(x, prefix):
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + eps) * p[prefix + ".weight"] + p[prefix + ".bias"]

    def linear(x, prefix):
        return x @ p[prefix + ".weight"].T + p[prefix + ".bias"]

    def gelu(x):
        return np.asarray(reference.gelu(x)).astype(dtype)  # erf GELU

    types = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    x = (
        p["word_embeddings.weight"][input_ids]
        + p["position_embeddings.weight"][:steps]
        + p["token_type_embeddings.weight"][types]
    )
    x = layer_norm(x, "embedding_norm")
    visible = np.ones((batch, 1, 1, steps), bool)
    if attention_mask is not None:
        visible = (np.asarray(attention_mask) != 0)[:, None, None, :]
    for layer in range(config.n_layer):
        prefix = f"encoder.layers.{layer}."
        q, k, v = np.split(linear(x, prefix + "self_attn.qkv_proj"), 3, axis=-1)
        q, k, v = (t.reshape(batch, steps, heads, head_dim) for t in (q, k, v))
        attended = reference_attention(q, k, v, visible, dtype)
        x = layer_norm(x + linear(attended, prefix + "self_attn.out_proj"), prefix + "norm1")
        hidden = gelu(linear(x, prefix + "feed_forward.fc1"))
        x = layer_norm(x + linear(hidden, prefix + "feed_forward.fc2"), prefix + "norm2")
    pooled = np.tanh(linear(x[:, 0], "pooler"))
    transformed = layer_norm(gelu(linear(x, "mlm_dense")), "mlm_norm")
    logits = transformed @ p["word_embeddings.weight"].T + p["mlm_bias"]
    return x, pooled, logits


def ids_tensor(array):
    return attnkit.from_numpy(np.ascontiguousarray(array))


# ---------------------------------------------------------------- counts --


def test_bert_base_parameter_counts(monkeypatch):
    # The counts do not depend on the values: skip the random fills of the
    # 110M numbers (as test_gpt.py does); only allocate.
    monkeypatch.setattr(attnkit.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)
    monkeypatch.setattr(attnkit.nn.init, "uniform_", lambda tensor, *args, **kwargs: tensor)
    model = BERT(BertConfig.base())
    # Hugging Face's BertModel for bert-base-uncased (embeddings, encoder, pooler).
    assert model.num_parameters(include_mlm_head=False) == 109_482_240
    # + the MLM head: transform dense 768 x 768 + 768, LayerNorm 2 x 768, decoder
    # bias 30522; the decoder weight is the word embeddings.
    assert model.num_parameters() == 110_104_890
    assert 110_104_890 - 109_482_240 == 768 * 768 + 768 + 2 * 768 + 30522
    config = model.config
    assert (
        config.vocab_size,
        config.block_size,
        config.n_layer,
        config.n_head,
        config.n_embd,
        config.d_ff,
        config.type_vocab_size,
        config.layer_norm_eps,
    ) == (30522, 512, 12, 12, 768, 3072, 2, 1e-12)


def test_layout_counts_tie_and_initialization():
    attnkit.manual_seed(30)
    config = tiny_config(vocab_size=500, n_embd=64, n_head=4, d_ff=128, n_layer=3, block_size=32)
    model = BERT(config)
    names = dict(model.named_parameters())
    assert not any("decoder" in name for name in names)  # the decoder weight is word_embeddings itself
    width, ff = 64, 128
    per_layer = (
        (3 * width * width + 3 * width) + (width * width + width) + 4 * width + (width * ff + ff) + (ff * width + width)
    )
    embeddings = (500 + 32 + 2) * width + 2 * width
    assert model.num_parameters(include_mlm_head=False) == embeddings + 3 * per_layer + width * width + width
    assert (
        model.num_parameters() == model.num_parameters(include_mlm_head=False) + width * width + width + 2 * width + 500
    )
    # the encoder is post-LN with LayerNorm eps 1e-12 everywhere and no final norm
    assert model.encoder.norm is None
    assert all(not layer.norm_first for layer in model.encoder.layers)
    norms = [m for m in model.modules() if isinstance(m, attnkit.nn.LayerNorm)]
    assert len(norms) == 2 + 2 * 3 and all(m.eps == 1e-12 for m in norms)
    # BERT's init: N(0, 0.02) weights and embeddings, zero biases, LayerNorm 1 and 0
    weights = np.concatenate(
        [p.detach().numpy().ravel() for name, p in names.items() if name.endswith("weight") and "norm" not in name]
    )
    assert abs(weights.std() - 0.02) < 0.05 * 0.02 and abs(weights.mean()) < 0.002
    biases = [p.detach().numpy() for name, p in names.items() if name.endswith("bias") and "norm" not in name]
    assert all(np.all(b == 0) for b in biases) and np.all(names["mlm_bias"].detach().numpy() == 0)
    assert all(np.all(m.weight.detach().numpy() == 1) and np.all(m.bias.detach().numpy() == 0) for m in norms)
    # the padding id's embedding row starts at zero, as Hugging Face's
    assert np.all(model.word_embeddings.weight.detach().numpy()[config.pad_token_id] == 0)


# --------------------------------------------------------------- forward --


def check_against_reference(model, config, input_ids, token_type_ids=None, attention_mask=None, rows=None):
    """Sequence output, pooled output and MLM logits against the float64
    reference; ``rows``: the (batch, position) entries to compare (default all)."""
    args = [ids_tensor(input_ids)]
    args.append(None if token_type_ids is None else ids_tensor(token_type_ids))
    args.append(None if attention_mask is None else attnkit.from_numpy(attention_mask))
    sequence, pooled = model(*args)
    logits = model.mlm_logits(*args)
    batch, steps = input_ids.shape
    assert sequence.shape == (batch, steps, config.n_embd) and pooled.shape == (batch, config.n_embd)
    assert logits.shape == (batch, steps, config.vocab_size)
    values = parameter_values(model)
    expected = bert_reference(values, config, input_ids, token_type_ids, attention_mask)
    naive = bert_reference(values, config, input_ids, token_type_ids, attention_mask, dtype=np.float32)
    for actual, wanted, plain in zip((sequence, pooled, logits), expected, naive):
        actual = actual.detach().numpy()
        if rows is not None and actual.ndim == 3:
            actual, wanted, plain = actual[rows], wanted[rows], plain[rows]
        assert_reduction_close(actual, wanted, plain)


@pytest.mark.parametrize("with_types", [False, True])
def test_forward_matches_reference(cpu_isa, rng, with_types):
    attnkit.manual_seed(31)
    config = tiny_config(vocab_size=13, block_size=9, n_embd=16, n_head=4, d_ff=24)
    model = BERT(config)
    for parameter in model.parameters():  # larger than BERT's init, so every term matters
        attnkit.nn.init.normal_(parameter, 0.0, 0.3)
    input_ids = rng.integers(0, 13, size=(3, 9))
    token_type_ids = rng.integers(0, 2, size=(3, 9)) if with_types else None
    check_against_reference(model, config, input_ids, token_type_ids)
    # token_type_ids=None is the same as all zeros
    sequence_default = model(ids_tensor(input_ids)).sequence_output.detach().numpy()
    sequence_zeros = model(ids_tensor(input_ids), ids_tensor(np.zeros_like(input_ids))).sequence_output
    assert_reduction_close(
        sequence_zeros.detach().numpy(),
        sequence_default,
        bert_reference(parameter_values(model), config, input_ids, dtype=np.float32)[0],
    )


def test_attention_mask_hides_padding(cpu_isa, rng):
    attnkit.manual_seed(32)
    config = tiny_config(vocab_size=13, block_size=10, n_embd=16, n_head=4, d_ff=24)
    model = BERT(config)
    for parameter in model.parameters():
        attnkit.nn.init.normal_(parameter, 0.0, 0.3)
    lengths = np.array([10, 6, 3, 1])
    input_ids = rng.integers(1, 13, size=(4, 10))
    token_type_ids = rng.integers(0, 2, size=(4, 10))
    attention_mask = (np.arange(10)[None, :] < lengths[:, None]).astype(np.int64)
    # the real tokens against the reference with the padded keys hidden
    real = attention_mask.astype(bool)
    check_against_reference(model, config, input_ids, token_type_ids, attention_mask, rows=real)

    def run(ids, mask):
        output = model(ids_tensor(ids), ids_tensor(token_type_ids), mask)
        return output.sequence_output.detach().numpy(), output.pooled_output.detach().numpy()

    sequence, pooled = run(input_ids, attnkit.from_numpy(attention_mask))
    # other ids at the padded positions change nothing at the real ones, bit for bit
    scrambled = np.where(real, input_ids, rng.integers(0, 13, size=(4, 10)))
    scrambled_sequence, scrambled_pooled = run(scrambled, attnkit.from_numpy(attention_mask))
    np.testing.assert_array_equal(scrambled_sequence[real], sequence[real])
    np.testing.assert_array_equal(scrambled_pooled, pooled)
    # a bool mask (True = token) means the same as the 0/1 integers
    bool_sequence, _ = run(input_ids, attnkit.from_numpy(real))
    np.testing.assert_array_equal(bool_sequence[real], sequence[real])
    # each sequence alone, unpadded, gives its real tokens' outputs
    for b, length in enumerate(lengths):
        alone = model(ids_tensor(input_ids[b : b + 1, :length]), ids_tensor(token_type_ids[b : b + 1, :length]))
        values = parameter_values(model)
        expected = bert_reference(values, config, input_ids[b : b + 1, :length], token_type_ids[b : b + 1, :length])
        naive = bert_reference(
            values, config, input_ids[b : b + 1, :length], token_type_ids[b : b + 1, :length], dtype=np.float32
        )
        assert_reduction_close(sequence[b : b + 1, :length], expected[0], naive[0])
        assert_reduction_close(alone.sequence_output.detach().numpy(), expected[0], naive[0])
    # without the mask the padding does change the real tokens
    unmasked, _ = run(input_ids, None)
    assert not np.array_equal(unmasked[1, :6], sequence[1, :6])


# ------------------------------------------------------------- gradients --


def test_gradients_match_float64_finite_differences(cpu_isa, rng):
    """Every gradient of a 2-layer BERT through the MLM loss (plus a random
    linear function of the pooled output, so the pooler's path is checked
    too) against central differences of the float64 reference (itself
    checked against the model's forward above). With step 1e-6 the
    differences are exact to about 1e-10, far below float32's error."""
    attnkit.manual_seed(33)
    config = tiny_config(vocab_size=7, block_size=6, n_embd=8, n_head=2, d_ff=12)
    model = BERT(config)
    for parameter in model.parameters():  # every path carries a visible gradient
        attnkit.nn.init.normal_(parameter, 0.0, 0.5)
    input_ids = rng.integers(0, 7, size=(2, 5))
    token_type_ids = rng.integers(0, 2, size=(2, 5))
    attention_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    labels = np.where(rng.random((2, 5)) < 0.5, rng.integers(0, 7, size=(2, 5)), -100)
    labels[0, 0], labels[1, 4] = 3, -100  # at least one position counted; the padded one ignored
    pooled_weights = rng.standard_normal((2, 8))

    args = (ids_tensor(input_ids), ids_tensor(token_type_ids), attnkit.from_numpy(attention_mask))
    sequence = model.encode(*args)
    logits = model.mlm_head(sequence)
    loss = (
        F.cross_entropy(logits.reshape(-1, 7), ids_tensor(labels.reshape(-1)))
        + (model.pool(sequence) * attnkit.from_numpy(pooled_weights.astype(np.float32))).sum()
    )
    loss.backward()

    def reference_loss(values):
        _, pooled, logits = bert_reference(values, config, input_ids, token_type_ids, attention_mask)
        return mean_cross_entropy(logits.reshape(-1, 7), labels.reshape(-1)) + (pooled * pooled_weights).sum()

    values = parameter_values(model)
    expected = reference.central_differences(values, lambda: reference_loss(values))
    # Scale: the largest gradient, not each entry's own magnitude: an entry is
    # a sum of terms of either sign (over positions, heads, features), so a
    # small entry is a difference of larger terms whose float32 rounding the
    # largest gradient bounds in this tiny model (as in test_gpt.py).
    largest = max(np.abs(g).max() for g in expected.values())
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert_elementwise_close(parameter.grad.numpy(), expected[name], scale=largest)


# -------------------------------------------------------------- learning --


def test_learns_masked_language_modeling(rng):
    """A fixed batch, masked once: a tiny BERT learns to fill in the chosen
    positions (memorizing the batch). The loss must fall from about ln(V)
    to a small fraction of it."""
    attnkit.manual_seed(34)
    vocab, cls, sep, mask_id = 24, 1, 2, 3
    config = tiny_config(vocab_size=vocab, block_size=16, n_embd=32, n_head=4, d_ff=64, dropout=0.0)
    model = BERT(config)
    body = rng.integers(4, vocab, size=(8, 14))
    input_ids = np.concatenate([np.full((8, 1), cls), body, np.full((8, 1), sep)], axis=1)
    masked, labels = mask_tokens(
        input_ids,
        mask_token_id=mask_id,
        vocab_size=vocab,
        special_token_ids=[0, cls, sep],
        mask_probability=0.3,
        generator=Generator(7),
    )
    assert (labels != -100).sum() >= 20
    masked, labels = ids_tensor(masked), ids_tensor(labels.reshape(-1))
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model.mlm_logits(masked).reshape(-1, vocab), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(vocab)) < 0.5  # BERT's small init starts near uniform
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_trains_with_dropout_in_train_mode_and_is_deterministic_in_eval(rng):
    attnkit.manual_seed(35)
    model = BERT(tiny_config(dropout=0.1))
    input_ids = ids_tensor(rng.integers(0, 11, size=(2, 8)))
    model.train()
    first, second = model(input_ids).sequence_output.detach().numpy(), model(input_ids).sequence_output.detach().numpy()
    assert not np.array_equal(first, second)  # dropout draws new masks
    model.eval()
    first, second = model(input_ids).sequence_output.detach().numpy(), model(input_ids).sequence_output.detach().numpy()
    np.testing.assert_array_equal(first, second)


def test_state_dict_round_trip_keeps_the_tie(rng):
    config = tiny_config()
    attnkit.manual_seed(36)
    source = BERT(config)
    attnkit.manual_seed(37)
    target = BERT(config)
    state = source.state_dict()
    assert "word_embeddings.weight" in state and "mlm_bias" in state
    result = target.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys
    input_ids = ids_tensor(rng.integers(0, 11, size=(2, 8)))
    np.testing.assert_array_equal(
        target.mlm_logits(input_ids).detach().numpy(), source.mlm_logits(input_ids).detach().numpy()
    )


# ------------------------------------------------------------- bad input --


def test_bad_input():
    model = BERT(tiny_config())  # vocab 11, block 8, 2 token types
    ids = attnkit.zeros(2, 5, dtype=attnkit.int64)
    with pytest.raises(ValueError, match="input_ids.*vocab_size=11.*11"):
        model(attnkit.tensor([[1, 2, 11]]))
    with pytest.raises(ValueError, match="token_type_ids.*type_vocab_size=2.*2"):
        model(ids, attnkit.full((2, 5), 2, dtype=attnkit.int64))
    with pytest.raises(ValueError, match="input_ids.*9 positions.*block_size=8"):
        model(attnkit.zeros(1, 9, dtype=attnkit.int64))
    with pytest.raises(ValueError, match=r"attention_mask.*\[2, 5\].*\[2, 4\]"):
        model(ids, attention_mask=attnkit.ones(2, 4, dtype=attnkit.int64))
    with pytest.raises(ValueError, match="attention_mask.*float32"):
        model(ids, attention_mask=attnkit.ones(2, 5))
    with pytest.raises(TypeError, match="attention_mask.*attnkit.Tensor"):
        model(ids, attention_mask=np.ones((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"token_type_ids.*\[2, 5\].*\[2, 6\]"):
        model(ids, attnkit.zeros(2, 6, dtype=attnkit.int64))
    with pytest.raises(ValueError, match="input_ids.*int32 or int64"):
        model(attnkit.zeros(2, 5))
    with pytest.raises(ValueError, match="input_ids.*shape"):
        model(attnkit.zeros(5, dtype=attnkit.int64))
    with pytest.raises(TypeError, match="input_ids.*attnkit.Tensor"):
        model([[1, 2, 3]])
    with pytest.raises(ValueError, match="mlm_logits|input_ids.*vocab_size"):
        model.mlm_logits(attnkit.tensor([[1, 2, 11]]))
    with pytest.raises(TypeError, match="config"):
        BERT({"n_layer": 1})
    with pytest.raises(ValueError, match="pad_token_id"):
        BERT(tiny_config(pad_token_id=11))


# ---------------------------------------------------------- MLM masking --

CLS, SEP, PAD, MASK = 101, 102, 0, 103


def masking_batch(rng, batch=512, steps=512, vocab=1000):
    """[CLS] tokens [SEP] [PAD]...: lengths vary, the tokens avoid the specials."""
    ids = rng.integers(104, vocab, size=(batch, steps))
    lengths = rng.integers(steps // 2, steps + 1, size=batch)
    position = np.arange(steps)[None, :]
    ids[:, 0] = CLS
    ids = np.where(position == lengths[:, None] - 1, SEP, ids)
    return np.where(position >= lengths[:, None], PAD, ids)


def within_five_sigma(count, trials, probability):
    """|count - n p| <= 5 sqrt(n p (1 - p)): the binomial's spread, 5 sigma
    (a false alarm about once in 1.7 million runs)."""
    return abs(count - trials * probability) <= 5.0 * math.sqrt(trials * probability * (1 - probability))


def test_mask_tokens_proportions(rng):
    vocab = 1000
    ids = masking_batch(rng, vocab=vocab)
    masked, labels = mask_tokens(
        ids, mask_token_id=MASK, vocab_size=vocab, special_token_ids=[CLS, SEP, PAD], generator=Generator(11)
    )
    special = np.isin(ids, [CLS, SEP, PAD])
    chosen = labels != -100
    candidates = int((~special).sum())
    assert within_five_sigma(int(chosen.sum()), candidates, 0.15), (chosen.sum(), candidates)
    # Among the chosen (whose ids are never MASK): [MASK] with 0.8, plus the
    # random draws that happen to be MASK (0.1 / V); the original with 0.1,
    # plus the random draws equal to it (0.1 / V); any other id with 0.1 (V - 2) / V.
    n = int(chosen.sum())
    became_mask = int((masked[chosen] == MASK).sum())
    unchanged = int((masked[chosen] == ids[chosen]).sum())
    assert within_five_sigma(became_mask, n, 0.8 + 0.1 / vocab)
    assert within_five_sigma(unchanged, n, 0.1 + 0.1 / vocab)
    assert within_five_sigma(n - became_mask - unchanged, n, 0.1 * (vocab - 2) / vocab)
    # the random replacements are uniform over [0, vocab): their mean, with
    # the variance of the discrete uniform, (V^2 - 1) / 12
    replaced = masked[chosen & (masked != MASK) & (masked != ids)]
    assert replaced.min() >= 0 and replaced.max() < vocab
    mean_error = abs(replaced.mean() - (vocab - 1) / 2)
    assert mean_error <= 5.0 * math.sqrt((vocab**2 - 1) / 12 / replaced.size)


def test_mask_tokens_labels_and_specials(rng):
    ids = masking_batch(rng, batch=64, steps=64, vocab=300)
    ids[::3, 5] = 7  # a plain token marked special through the mask below
    special_mask = np.zeros(ids.shape, bool)
    special_mask[::3, 5] = True
    masked, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=300,
        special_token_ids=[CLS, SEP, PAD],
        special_tokens_mask=special_mask,
        mask_probability=0.9,
        generator=Generator(3),
    )
    chosen = labels != -100
    never = np.isin(ids, [CLS, SEP, PAD]) | special_mask
    assert not chosen[never].any()  # specials never chosen, even at 90%
    np.testing.assert_array_equal(masked[never], ids[never])
    np.testing.assert_array_equal(labels[chosen], ids[chosen])  # the label is the original id
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])  # nothing else changes
    assert masked.dtype == ids.dtype and labels.dtype == ids.dtype and labels.shape == ids.shape


def test_mask_tokens_reproducible_and_keeps_tensor_kind(rng):
    ids = masking_batch(rng, batch=16, steps=32, vocab=200).astype(np.int32)
    options = dict(mask_token_id=MASK, vocab_size=200, special_token_ids=[CLS, SEP, PAD])
    first = mask_tokens(ids, generator=Generator(5), **options)
    second = mask_tokens(ids, generator=Generator(5), **options)
    other = mask_tokens(ids, generator=Generator(6), **options)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])
    # the default generator, seeded, is reproducible too; and a Tensor in gives Tensors out
    attnkit.manual_seed(5)
    masked, labels = mask_tokens(attnkit.from_numpy(ids), **options)
    assert isinstance(masked, attnkit.Tensor) and masked.dtype == attnkit.int32 and labels.dtype == attnkit.int32
    np.testing.assert_array_equal(masked.numpy(), first[0])
    np.testing.assert_array_equal(labels.numpy(), first[1])


def test_mask_tokens_labels_feed_cross_entropy(rng):
    """-100 is cross_entropy's default ignore_index: the mean runs over the
    chosen positions only."""
    ids = masking_batch(rng, batch=4, steps=32, vocab=150)
    _, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=150,
        special_token_ids=[CLS, SEP, PAD],
        mask_probability=0.3,
        generator=Generator(9),
    )
    logits = rng.standard_normal((labels.size, 150)).astype(np.float32)
    loss = F.cross_entropy(attnkit.from_numpy(logits), attnkit.from_numpy(labels.reshape(-1))).item()
    expected = mean_cross_entropy(logits.astype(np.float64), labels.reshape(-1))
    assert_elementwise_close(np.float32(loss), expected, scale=np.abs(logits).max())


def test_mask_tokens_bad_input():
    ids = np.array([[CLS, 5, 6, SEP]])
    options = dict(mask_token_id=MASK, vocab_size=200)
    with pytest.raises(ValueError, match="input_ids.*vocab_size=200.*250"):
        mask_tokens(np.array([[1, 250]]), **options)
    with pytest.raises(ValueError, match="input_ids.*-1"):
        mask_tokens(np.array([[1, -1]]), **options)
    with pytest.raises(TypeError, match="input_ids.*int32 or int64.*float"):
        mask_tokens(np.zeros((1, 3)), **options)
    with pytest.raises(ValueError, match="mask_token_id.*200"):
        mask_tokens(ids, mask_token_id=200, vocab_size=200)
    with pytest.raises(ValueError, match="special_token_ids.*300"):
        mask_tokens(ids, special_token_ids=[300], **options)
    with pytest.raises(ValueError, match="mask_probability.*1.5"):
        mask_tokens(ids, mask_probability=1.5, **options)
    with pytest.raises(ValueError, match="replace_probability.*random_probability"):
        mask_tokens(ids, replace_probability=0.95, random_probability=0.1, **options)
    with pytest.raises(ValueError, match=r"special_tokens_mask.*\[1, 4\]"):
        mask_tokens(ids, special_tokens_mask=np.zeros((1, 3), bool), **options)
    with pytest.raises(TypeError, match="generator"):
        mask_tokens(ids, generator=5, **options)

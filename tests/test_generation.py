"""attnkit.generation: the native sampler (sample_tokens) against float64
filtered softmaxes, and GPT.generate / GPT.stream with the KV cache against
repeated full forward passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from test_attention_module import mha_reference

import attnkit
from attnkit import generation
from attnkit.models import GPT, GPTConfig
from attnkit.random import Generator

# The tests seed the default generator: put it back afterwards.
pytestmark = pytest.mark.usefixtures("keep_default_generator")

# ------------------------------------------------------------------ helpers --

# One-sided significance of the frequency tests: the sampler is deterministic
# for a seed, so a test at this level fails only for a real bias.
SIGNIFICANCE_Z = 4.753  # the standard normal's 1 - 1e-6 quantile


def chi_square_bound(degrees: int) -> float:
    """The 1 - 1e-6 quantile of chi-square (Wilson-Hilferty approximation,
    within a few percent for degrees >= 2)."""
    h = 2.0 / (9.0 * degrees)
    return degrees * (1.0 - h + SIGNIFICANCE_Z * math.sqrt(h)) ** 3


def assert_frequencies_match(tokens, probabilities):
    """tokens: draws from one distribution; probabilities: float64 [V]."""
    counts = np.bincount(tokens, minlength=probabilities.size)
    impossible = probabilities == 0
    assert counts[impossible].sum() == 0, f"tokens of probability 0 drawn: {np.flatnonzero(counts * impossible)}"
    possible = ~impossible
    expected = probabilities[possible] * tokens.size
    assert expected.min() >= 5, "the test needs at least 5 expected draws per token"
    if possible.sum() == 1:
        return
    statistic = float(((counts[possible] - expected) ** 2 / expected).sum())
    degrees = int(possible.sum()) - 1
    assert statistic <= chi_square_bound(degrees), (
        f"chi-square {statistic:.1f} over {degrees} degrees of freedom exceeds {chi_square_bound(degrees):.1f}: "
        f"counts {counts.tolist()}, expected {(probabilities * tokens.size).round(1).tolist()}"
    )


def draw_many(logits_row, draws, seed=7, seen_row=None, **settings):
    """``draws`` independent tokens for one row of logits: the row repeated
    ``draws`` times in one call (each row takes its own random numbers)."""
    logits = attnkit.from_numpy(np.tile(np.asarray(logits_row, np.float32), (draws, 1)))
    seen = None if seen_row is None else attnkit.from_numpy(np.tile(np.asarray(seen_row, np.bool_), (draws, 1)))
    return generation.sample(logits, seen=seen, generator=Generator(seed), **settings).numpy()


def uniform_numbers(rows, seed, offset):
    """The 53-bit uniform number of each row, as the sampler makes it from
    numbers 2b and 2b + 1 of the Philox stream."""
    bits = np.asarray(attnkit._C.random_bits(2 * rows, seed, offset)).view(np.uint32).astype(np.uint64)
    high, low = bits[0::2] >> np.uint64(5), bits[1::2] >> np.uint64(6)
    return (high.astype(np.float64) * 2.0**26 + low.astype(np.float64)) * 2.0**-53


# ------------------------------------------------------------------ sampler --


@pytest.mark.parametrize("vocab", [1, 3, 17, 1000])
def test_greedy_is_the_argmax(rng, vocab):
    logits = rng.standard_normal((5, vocab)).astype(np.float32)
    tokens = generation.sample(attnkit.from_numpy(logits), temperature=0).numpy()
    np.testing.assert_array_equal(tokens, logits.argmax(axis=1))
    # top_k=1 at any temperature is the argmax too
    tokens = generation.sample(attnkit.from_numpy(logits), temperature=1.7, top_k=1, generator=Generator(3)).numpy()
    np.testing.assert_array_equal(tokens, logits.argmax(axis=1))


@pytest.mark.parametrize("temperature", [1e-3, 1e-9, 1e-30, 1e-300, 5e-324])
def test_a_temperature_near_zero_is_the_argmax(rng, temperature):
    """1 / temperature is a huge scale: the sampler subtracts the max before
    dividing, so the limit is the argmax, with logits of any size."""
    logits = rng.standard_normal((6, 300)).astype(np.float32)
    logits[1] += np.float32(1e4)
    logits[2] *= np.float32(1e30)
    logits[3, rng.random(300) < 0.5] = -np.inf
    logits[4] = np.float32(3e38) * np.sign(logits[4])
    logits[4, 7] = np.float32(3.4e38)  # one largest among many large
    logits[5, 100] = logits[5].max() + np.float32(1)
    for seed in range(5):
        tokens = generation.sample(attnkit.from_numpy(logits), temperature=temperature, generator=Generator(seed))
        np.testing.assert_array_equal(tokens.numpy(), logits.argmax(axis=1))


def test_greedy_ties_go_to_the_lower_id():
    logits = np.array([[1.0, 3.0, 3.0, -np.inf], [-np.inf, 2.0, 0.0, 2.0]], np.float32)
    np.testing.assert_array_equal(generation.sample(attnkit.from_numpy(logits), temperature=0).numpy(), [1, 1])
    np.testing.assert_array_equal(
        generation.sample(attnkit.from_numpy(logits), top_k=1, generator=Generator(1)).numpy(), [1, 1]
    )


def test_greedy_draws_no_random_numbers():
    generator = Generator(5)
    generation.sample(attnkit.ones(2, 4), temperature=0, generator=generator)
    assert generator.offset == 0
    generation.sample(attnkit.ones(2, 4), generator=generator)
    assert generator.offset == 1


def test_draws_follow_the_inverse_cdf_exactly(cpu_isa, rng):
    """Without filters, row b's token is where its uniform number u falls in
    the cumulative probabilities in id order. Checked row by row against the
    float64 CDF, leaving out the rare rows whose u lies within the float32
    weights' rounding (V * 2^-23, relative) of a boundary. (With top-k or
    top-p the candidates are selected, not sorted, so their order is the
    selection's; the frequency tests below cover those.)"""
    rows, vocab = 400, 50
    logits = (2.0 * rng.standard_normal((rows, vocab))).astype(np.float32)
    logits[:, 7] = -np.inf  # a token that cannot occur is skipped, not counted
    for temperature in (0.8, 1.3):
        generator = Generator(11)
        seed, offset = generator.seed, generator.offset
        tokens = generation.sample(attnkit.from_numpy(logits), temperature=temperature, generator=generator).numpy()
        u = uniform_numbers(rows, seed, offset)
        cumulative = np.cumsum(reference.filtered_probabilities(logits, temperature), axis=1)
        checked = 0
        for b in range(rows):
            if np.min(np.abs(cumulative[b] - u[b])) < vocab * 2.0**-23:
                continue
            expected = np.searchsorted(cumulative[b], u[b], side="right")
            assert tokens[b] == expected, f"row {b}: token {tokens[b]}, expected {expected} (u={u[b]})"
            checked += 1
        assert checked >= rows - 5


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 1.0},
        {"temperature": 0.6},
        {"temperature": 2.5},
        {"temperature": 1.0, "top_k": 3},
        {"temperature": 0.9, "top_p": 0.75},
        {"temperature": 1.2, "top_k": 5, "top_p": 0.8},
        {"temperature": 1.0, "repetition_penalty": 1.8},
        {"temperature": 1.0, "repetition_penalty": 0.6, "top_k": 4},
    ],
)
def test_draws_follow_the_filtered_softmax(settings):
    logits = np.array([0.3, -0.4, 1.1, -np.inf, 0.9, -1.2, 0.0, 0.6], np.float32)
    seen = np.array([True, True, False, False, True, False, False, False])
    seen_row = seen if "repetition_penalty" in settings else None
    tokens = draw_many(logits, 40000, seen_row=seen_row, **settings)
    expected = reference.filtered_probabilities(
        logits[None], seen=None if seen_row is None else seen[None], **settings
    )[0]
    assert_frequencies_match(tokens, expected)


def test_distribution_over_a_large_vocabulary(rng):
    """V = 1000 with top_k = 40: the frequencies of the 40 follow the softmax."""
    logits = rng.standard_normal(1000).astype(np.float32)
    tokens = draw_many(logits, 20000, top_k=40, temperature=0.5)
    assert_frequencies_match(tokens, reference.filtered_probabilities(logits[None], 0.5, top_k=40)[0])


def test_nucleus_of_a_flat_distribution(rng):
    """V = 300, nearly flat: the nucleus for top_p 0.9 holds ~270 tokens,
    found by many selection rounds; their frequencies follow the softmax."""
    logits = (0.3 * rng.standard_normal(300)).astype(np.float32)
    tokens = draw_many(logits, 12000, top_p=0.9)
    assert_frequencies_match(tokens, reference.filtered_probabilities(logits[None], top_p=0.9)[0])


def test_top_p_edges():
    # probabilities 0.5, 0.3, 0.2 (ids 2, 0, 1)
    logits = np.log(np.array([0.3, 0.2, 0.5])).astype(np.float32)
    for top_p, allowed in ((0.01, {2}), (0.49, {2}), (0.79, {2, 0}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2})):
        drawn = set(draw_many(logits, 2000, top_p=top_p).tolist())
        assert drawn == allowed, f"top_p={top_p}: drew {sorted(drawn)}, expected {sorted(allowed)}"
    # equal probabilities: the smallest set reaching p takes the lower ids
    drawn = set(draw_many(np.zeros(4, np.float32), 2000, top_p=0.5).tolist())
    assert drawn == {0, 1}
    # the nucleus after top-k: of the top 2 (0.625 / 0.375 renormalized) top_p 0.6 keeps 1
    assert set(draw_many(logits, 500, top_k=2, top_p=0.6).tolist()) == {2}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = attnkit.tensor([[2.0, 1.5, -1.0, -0.5]])
    seen = attnkit.tensor([[True, False, False, False]])
    # 2 / 2 = 1 < 1.5: token 1 wins
    assert generation.sample(logits, temperature=0, repetition_penalty=2.0, seen=seen).tolist() == [1]
    # a penalty below 1 rewards repeats: 2 / 0.5 = 4
    assert generation.sample(logits, temperature=0, repetition_penalty=0.5, seen=seen).tolist() == [0]
    # negative logits move away from 0: -0.5 * 3 = -1.5 < -1.0
    only_negative = attnkit.tensor([[-1.0, -0.5]])
    assert generation.sample(
        only_negative, temperature=0, repetition_penalty=3.0, seen=attnkit.tensor([[False, True]])
    ).tolist() == [0]
    # without seen tokens the penalty changes nothing
    assert generation.sample(logits, temperature=0, repetition_penalty=9.0).tolist() == [0]


def test_extreme_repetition_penalties_keep_every_finite_logit_a_candidate():
    # -3e38 * 1e300 and 3e38 / 1e-300 overflow double: the penalized logits
    # saturate at the largest finite double instead of becoming -inf or inf,
    # so a row whose tokens were all seen still has candidates.
    seen = attnkit.tensor([[True, True]])
    logits = attnkit.tensor([[-3e38, -3e38]])
    assert generation.sample(
        logits, temperature=1.0, repetition_penalty=1e300, seen=seen, generator=attnkit.random.Generator(0)
    ).tolist()[0] in (0, 1)
    logits = attnkit.tensor([[3e38, 1.0]])
    assert generation.sample(
        logits, temperature=1.0, repetition_penalty=1e-300, seen=seen, generator=attnkit.random.Generator(0)
    ).tolist() == [0]


def test_minus_infinity_logits_are_never_drawn():
    logits = np.full(6, -np.inf, np.float32)
    logits[[1, 4]] = [0.0, 0.5]
    assert set(draw_many(logits, 1000, top_k=5).tolist()) <= {1, 4}
    assert set(draw_many(logits, 1000, temperature=1e-30).tolist()) == {4}  # a tiny temperature: the max


def test_same_seed_same_tokens_any_thread_count(cpu_isa, rng):
    logits = attnkit.from_numpy(rng.standard_normal((64, 300)).astype(np.float32))
    first = generation.sample(logits, top_k=50, top_p=0.9, generator=Generator(42)).numpy()
    previous = attnkit.get_num_threads()
    try:
        attnkit.set_num_threads(1)
        again = generation.sample(logits, top_k=50, top_p=0.9, generator=Generator(42)).numpy()
    finally:
        attnkit.set_num_threads(previous)
    np.testing.assert_array_equal(first, again)
    other = generation.sample(logits, top_k=50, top_p=0.9, generator=Generator(43)).numpy()
    assert (other != first).any()


def test_sampler_bad_input():
    logits = attnkit.zeros(2, 5)
    with pytest.raises(ValueError, match="temperature"):
        generation.sample(logits, temperature=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        generation.sample(logits, temperature=float("nan"))
    with pytest.raises(ValueError, match="top_k"):
        generation.sample(logits, top_k=0)
    with pytest.raises(TypeError, match="top_k"):
        generation.sample(logits, top_k=2.5)
    for top_p in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="top_p"):
            generation.sample(logits, top_p=top_p)
    for penalty in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="repetition_penalty"):
            generation.sample(logits, repetition_penalty=penalty)
    with pytest.raises(ValueError, match="seen"):
        generation.sample(logits, seen=attnkit.zeros(2, 4, dtype=attnkit.bool))
    with pytest.raises(TypeError, match="seen"):
        generation.sample(logits, seen=attnkit.zeros(2, 5))
    with pytest.raises(TypeError, match="logits"):
        generation.sample(attnkit.zeros(2, 5, dtype=attnkit.int64))
    with pytest.raises(ValueError, match="logits"):
        generation.sample(attnkit.zeros(5))
    with pytest.raises(ValueError, match="nan.*row 1, token 3"):
        generation.sample(attnkit.tensor([[0.0] * 5, [0.0, 0.0, 0.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="inf"):
        generation.sample(attnkit.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="only -inf in row 0"):
        generation.sample(attnkit.tensor([[float("-inf"), float("-inf")]]))
    with pytest.raises(TypeError, match="generator"):
        generation.sample(logits, generator=3)


# --------------------------------------------------------------- generation --


def tiny_model(seed=31, **changes):
    settings = dict(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16)
    settings.update(changes)
    attnkit.manual_seed(seed)
    return GPT(GPTConfig(**settings))


def greedy_by_full_passes(model, prompt, steps, repetition_penalty=1.0):
    """The argmax of a full forward pass over the whole sequence, token by
    token (no cache), with the penalty applied in numpy."""
    sequence = np.asarray(prompt, np.int64)[None]
    with attnkit.no_grad():
        for _ in range(steps):
            logits = model(attnkit.from_numpy(sequence.copy())).numpy()[0, -1].astype(np.float64)
            if repetition_penalty != 1.0:
                seen = np.isin(np.arange(logits.size), sequence)
                logits = np.where(
                    seen, np.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty), logits
                )
            sequence = np.concatenate([sequence, [[int(np.argmax(logits))]]], axis=1)
    return sequence[0].tolist()


def test_greedy_generation_equals_repeated_full_passes(cpu_isa, rng):
    model = tiny_model()
    prompts = rng.integers(0, 13, size=(3, 5))
    out = model.generate(attnkit.from_numpy(prompts), 8, temperature=0).numpy()
    assert out.shape == (3, 13) and out.dtype == np.int64
    for row in range(3):
        assert out[row].tolist() == greedy_by_full_passes(model, prompts[row], 8)


def test_repetition_penalty_in_generation_matches_the_numpy_rule(rng):
    model = tiny_model(seed=32)
    prompt = rng.integers(0, 13, size=4).tolist()
    got = model.generate([prompt], 10, temperature=0, repetition_penalty=1.7)[0]
    assert got == greedy_by_full_passes(model, prompt, 10, repetition_penalty=1.7)


def test_left_padded_prompts_continue_as_each_prompt_alone(cpu_isa, rng):
    model = tiny_model(seed=33)
    prompts = [rng.integers(0, 13, size=n).tolist() for n in (6, 1, 3)]
    batched = model.generate(prompts, 7, temperature=0)
    for prompt, got in zip(prompts, batched):
        assert got == model.generate([prompt], 7, temperature=0)[0]
        assert got == greedy_by_full_passes(model, prompt, 7)


def test_same_seed_same_text_and_top_k_1_is_greedy(rng):
    model = tiny_model(seed=34)
    prompts = attnkit.from_numpy(rng.integers(0, 13, size=(2, 4)))
    settings = dict(temperature=0.9, top_k=8, top_p=0.95)
    first = model.generate(prompts, 12, generator=Generator(5), **settings).numpy()
    again = model.generate(prompts, 12, generator=Generator(5), **settings).numpy()
    np.testing.assert_array_equal(first, again)
    attnkit.manual_seed(99)
    default_first = model.generate(prompts, 12, **settings).numpy()
    attnkit.manual_seed(99)
    np.testing.assert_array_equal(model.generate(prompts, 12, **settings).numpy(), default_first)
    other = model.generate(prompts, 12, generator=Generator(6), **settings).numpy()
    assert (other != first).any()
    np.testing.assert_array_equal(
        model.generate(prompts, 6, top_k=1, generator=Generator(1)).numpy(),
        model.generate(prompts, 6, temperature=0).numpy(),
    )


def test_stream_yields_the_steps_of_generate(rng):
    model = tiny_model(seed=35)
    prompts = [rng.integers(0, 13, size=n).tolist() for n in (2, 5)]
    steps = list(model.stream(prompts, 6, temperature=0.8, generator=Generator(8)))
    assert len(steps) == 6 and all(s.dtype == np.int64 and s.shape == (2,) for s in steps)
    whole = model.generate(prompts, 6, temperature=0.8, generator=Generator(8))
    for row in range(2):
        assert whole[row] == prompts[row] + [int(s[row]) for s in steps]


def test_stop_tokens_end_rows_and_max_length_holds(rng):
    model = tiny_model(seed=36, vocab_size=50)
    prompts = attnkit.from_numpy(rng.integers(0, 50, size=(2, 3)))
    settings = dict(temperature=1.0, top_k=30)
    # Row b draws with numbers of its own, so stopping one row changes
    # nothing in the others, nor in the same row before the stop.
    free = model.generate(prompts, 10, generator=Generator(3), **settings).numpy()
    assert free.shape == (2, 13)
    # stop row 0 at the first new token it has not drawn before and row 1 never draws
    step = next(
        s for s in range(1, 10) if free[0, 3 + s] not in free[0, 3 : 3 + s] and free[0, 3 + s] not in free[1, 3:]
    )
    stop = int(free[0, 3 + step])
    out = model.generate(prompts, 10, generator=Generator(3), stop_tokens=stop, **settings).numpy()
    assert out.shape == (2, 13)
    np.testing.assert_array_equal(out[0, : 4 + step], free[0, : 4 + step])
    assert (out[0, 4 + step :] == generation.FINISHED).all()
    np.testing.assert_array_equal(out[1], free[1])
    steps = list(model.stream(prompts, 10, generator=Generator(3), stop_tokens=[stop], **settings))
    assert steps[step][0] == stop and all(s[0] == generation.FINISHED for s in steps[step + 1 :])
    # the list form cuts each row after its stop token
    as_list = model.generate(prompts.numpy().tolist(), 10, generator=Generator(3), stop_tokens=(stop,), **settings)
    assert as_list[0] == free[0, : 4 + step].tolist() and as_list[1] == free[1].tolist()
    # every row stopped: generation ends at the step the last one stops
    row_1_stop = int(free[1, 4])
    both = model.generate(prompts, 10, generator=Generator(3), stop_tokens=[stop, row_1_stop], **settings).numpy()
    last = max(step, int(np.flatnonzero(free[1, 3:] == row_1_stop)[0]))
    assert both.shape == (2, 4 + last)
    # max_new_tokens up to the block: the last token is drawn, never fed
    room = model.config.block_size - 3 + 1
    assert model.generate(prompts, room, temperature=0).shape == (2, 3 + room)
    assert model.generate(prompts, 0).shape == (2, 3)


class _LetterTokenizer:
    """Token t decodes to the letter 'a' + t."""

    def decode(self, ids):
        return "".join(chr(ord("a") + int(t)) for t in ids)


def test_stop_strings_end_a_row_at_the_token_that_completes_them(rng):
    model = tiny_model(seed=38)
    prompts = [rng.integers(0, 13, size=n).tolist() for n in (4, 2)]
    free = model.generate(prompts, 10, temperature=0, stop_tokens=[])
    tokenizer = _LetterTokenizer()
    new = [row[len(prompt) :] for row, prompt in zip(free, prompts)]
    # a two-letter string row 0 writes at its steps 3-4 (and row 1 never writes)
    text = tokenizer.decode(new[0])
    stop = next(text[i : i + 2] for i in range(3, 9) if text[i : i + 2] not in tokenizer.decode(new[1]))
    end = text.index(stop) + 2  # the token count that completes it
    out = model.generate(prompts, 10, temperature=0, stop_tokens=[], stop_strings=[stop], tokenizer=tokenizer)
    assert out[0] == prompts[0] + new[0][:end]
    assert out[1] == free[1]
    with pytest.raises(TypeError, match="'stop_strings' needs a 'tokenizer'"):
        model.generate(prompts, 3, stop_strings="ab")
    with pytest.raises(ValueError, match="'stop_strings' expected non-empty strings"):
        model.generate(prompts, 3, stop_strings=[""], tokenizer=tokenizer)


def test_eos_of_the_generation_config_stops_by_default(rng):
    model = tiny_model(seed=39)
    prompt = [rng.integers(0, 13, size=3).tolist()]
    free = model.generate(prompt, 8, temperature=0)[0]
    new = free[3:]
    eos = new[2]
    expected = free[: 3 + new.index(eos) + 1]
    other = next(t for t in range(13) if t not in new)  # an eos id the model never draws here
    assert generation.default_stop_tokens(model) == []
    model.generation_config = {"eos_token_id": [other, eos]}  # a list, as Llama 3's
    assert generation.default_stop_tokens(model) == [other, eos]
    assert model.generate(prompt, 8, temperature=0)[0] == expected
    assert model.generate(prompt, 8, temperature=0, stop_tokens=[])[0] == free  # [] stops on nothing
    model.generation_config = {"eos_token_id": eos}
    assert model.generate(prompt, 8, temperature=0)[0] == expected


def test_generation_restores_modes_and_records_no_gradients():
    model = tiny_model(seed=37, dropout=0.1)
    model.train()
    model.blocks[0].eval()
    with_dropout_flags = [m.training for m in model.modules()]
    out = model.generate([[1, 2]], 4, temperature=0)
    assert out == model.generate([[1, 2]], 4, temperature=0)  # eval mode: no dropout while decoding
    assert [m.training for m in model.modules()] == with_dropout_flags
    iterator = model.stream([[1, 2]], 4)
    next(iterator)
    assert not model.training
    iterator.close()
    assert [m.training for m in model.modules()] == with_dropout_flags
    assert attnkit.is_grad_enabled()


def test_generation_bad_input():
    model = tiny_model()
    prompt = attnkit.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="max_new_tokens.*block_size"):
        model.generate(prompt, 23)  # 3 + 23 - 1 = 25 positions > 24
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt, -1)
    with pytest.raises(ValueError, match="25 tokens.*block_size=24"):
        model.generate([[1] * 25], 1)
    with pytest.raises(TypeError, match="max_new_tokens"):
        model.generate(prompt, 2.0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 2, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        model.stream(prompt, 2, top_p=1.01)  # checked at the call, before the first step
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 2, temperature=-1)
    with pytest.raises(ValueError, match="repetition_penalty"):
        model.generate(prompt, 2, repetition_penalty=0)
    with pytest.raises(ValueError, match=r"13.*prompt 1"):
        model.generate([[1], [2, 13]], 2)
    with pytest.raises(ValueError, match="-1"):
        model.generate(attnkit.tensor([[1, -1]]), 2)
    with pytest.raises(ValueError, match="empty"):
        model.generate([[1], []], 2)
    with pytest.raises(ValueError, match="empty"):
        model.generate([], 2)
    with pytest.raises(ValueError, match="empty"):
        model.generate(attnkit.zeros(1, 0, dtype=attnkit.int64), 2)
    with pytest.raises(ValueError, match="idx"):
        model.generate(attnkit.zeros(1, 3), 2)  # float ids
    with pytest.raises(TypeError, match="idx"):
        model.generate("hello", 2)
    with pytest.raises(TypeError, match="prompt 0"):
        model.generate([[0.5, 1.0]], 2)
    with pytest.raises(ValueError, match="stop_tokens"):
        model.generate(prompt, 2, stop_tokens=[13])
    with pytest.raises(TypeError, match="stop_tokens"):
        model.generate(prompt, 2, stop_tokens="a")
    with pytest.raises(TypeError, match="generator"):
        model.generate(prompt, 2, generator=1)
    # A misspelt option is named, with the options there are.
    with pytest.raises(
        TypeError, match=r"generate: unexpected keyword argument 'topk' \(the options: temperature, top_k"
    ):
        model.generate(prompt, 2, topk=3)
    with pytest.raises(TypeError, match="stream: unexpected keyword argument 'seed'"):
        model.stream(prompt, 2, seed=3)


def test_forward_with_padding_and_positions_bad_input():
    model = tiny_model()
    idx = attnkit.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="key_padding_mask"):
        model(idx, key_padding_mask=attnkit.zeros(1, 2, dtype=attnkit.bool))
    with pytest.raises(ValueError, match="position_ids"):
        model(idx, position_ids=attnkit.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="position_ids.*24"):
        model(idx, position_ids=attnkit.tensor([[0, 1, 24]]))


# ------------------------------------------------------------------ KVCache --


def test_kv_cache_decoding_with_padding_needs_no_copy(rng):
    """Batch 3, rows padded on the left: the one-position steps read the
    whole buffer (key_lengths hides the unfilled part, the cache's mask the
    padding); the outputs equal each row run alone, unpadded."""
    attnkit.manual_seed(38)
    module = attnkit.nn.MultiHeadAttention(16, 2)
    module.eval()
    x = rng.standard_normal((3, 9, 16)).astype(np.float32)
    padding = np.array([0, 3, 5])
    mask = np.arange(5)[None, :] < padding[:, None]
    cache = module.make_cache(3, 12)
    with attnkit.no_grad():
        pieces = [
            module(attnkit.from_numpy(x[:, :5].copy()), key_padding_mask=attnkit.from_numpy(mask), cache=cache).numpy()
        ]
        for t in range(5, 9):
            k_before = cache.k
            pieces.append(module(attnkit.from_numpy(x[:, t : t + 1].copy()), cache=cache).numpy())
            assert cache.k is k_before
        got = np.concatenate(pieces, axis=1)
    full_mask = np.arange(9)[None, :] < padding[:, None]
    with np.errstate(invalid="ignore"):  # the reference's padded query rows see no key: NaN, not compared
        expected = mha_reference(module, x, causal=True, key_padding_mask=full_mask)
        naive = mha_reference(module, x, causal=True, key_padding_mask=full_mask, dtype=np.float32)
    real = ~full_mask
    assert_reduction_close(got[real], expected[real], naive[real])


def test_kv_cache_select_reorders_rows(rng):
    cache = attnkit.nn.KVCache(3, 5, 1, 2)
    k = rng.standard_normal((3, 4, 1, 2)).astype(np.float32)
    v = rng.standard_normal((3, 4, 1, 2)).astype(np.float32)
    mask = np.array([[True, False, False, False], [False] * 4, [True, True, False, False]])
    cache.append(attnkit.from_numpy(k), attnkit.from_numpy(v), attnkit.from_numpy(mask))
    cache.select([2, 0, 0])
    keys, values = cache.update(attnkit.from_numpy(k[:, :1].copy()), attnkit.from_numpy(v[:, :1].copy()))
    np.testing.assert_array_equal(keys.numpy()[:, :4], k[[2, 0, 0]])
    np.testing.assert_array_equal(values.numpy()[:, :4], v[[2, 0, 0]])
    np.testing.assert_array_equal(keys.numpy()[:, 4], k[:, 0])  # written after the reorder: untouched
    np.testing.assert_array_equal(cache.key_padding_mask.numpy()[:, :4], mask[[2, 0, 0]])
    with pytest.raises(ValueError, match="rows"):
        cache.select([0, 1])
    with pytest.raises(ValueError, match="rows.*3"):
        cache.select([0, 1, 3])
    with pytest.raises(ValueError, match="rows"):
        cache.select([0.0, 1.0, 2.0])

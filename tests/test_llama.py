"""attnkit.models.Llama: the Llama-family decoder as a configuration of GPT.
The forward pass (RMSNorm, rotary positions with and without Llama 3
scaling, grouped-query attention, SwiGLU, q/k/v biases, sliding window,
tied and untied heads, left padding) and the gradients against a float64
numpy model reading the same weights, cached decoding against the full
pass, learning, and bad configs. (The comparison with Hugging Face
transformers is test_hf_llama.py.)"""

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from model_check import check_gradients, fit_one_batch, parameter_values, reference_attention

import attnkit
from attnkit.models import GPT, GPTConfig, Llama, LlamaConfig
from attnkit.nn import functional as F

pytestmark = pytest.mark.usefixtures("keep_default_generator")

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}


def tiny_config(**changes):
    settings = dict(
        vocab_size=13, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=16, d_ff=24, rope_theta=100.0
    )
    settings.update(changes)
    return LlamaConfig(**settings)


def randomize(model, std=0.5, seed=30):
    """Weights far from the init (norm weights around 1, biases nonzero), so
    that every path of the model carries a visible signal."""
    attnkit.manual_seed(seed)
    for name, parameter in model.named_parameters():
        attnkit.nn.init.normal_(parameter, 1.0 if "norm" in name or "ln_f" in name else 0.0, std)


def llama_reference(values, config, idx, padding=None, positions=None, dtype=np.float64):
    """The decoder's forward in numpy, every step in ``dtype``: logits
    [B, T, V]. ``padding`` bool [B, T] (True: a padded token no query sees),
    ``positions`` int [B, T] (default 0, 1, ...)."""
    p = {name: array.astype(dtype) for name, array in values.items()}
    batch, steps = idx.shape
    heads = config.n_head
    kv_heads = config.n_kv_head or heads
    head_dim = config.head_dim or config.n_embd // heads
    frequencies = F.rope_frequencies(head_dim, config.rope_theta, config.rope_scaling)
    positions = np.broadcast_to(np.arange(steps), (batch, steps)) if positions is None else positions
    padding = np.zeros((batch, steps), bool) if padding is None else padding

    def rms_norm(x, prefix):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + dtype(config.norm_eps)) * p[prefix + ".weight"]

    def linear(x, prefix):
        out = x @ p[prefix + ".weight"].T
        return out + p[prefix + ".bias"] if prefix + ".bias" in p else out

    query, key = np.arange(steps)[:, None], np.arange(steps)[None, :]
    causal = (key <= query)[None, None] & ~padding[:, None, None, :]  # [B, 1, Tq, Tk]
    windowed = (key <= query) & (query - key < (config.sliding_window or 0))
    windowed = windowed[None, None] & ~padding[:, None, None, :]
    window_layers = range(config.n_layer) if config.sliding_window_layers is None else config.sliding_window_layers
    x = p["wte.weight"][idx]
    for layer in range(config.n_layer):
        prefix = f"blocks.{layer}."
        visible = windowed if config.sliding_window is not None and layer in window_layers else causal
        q, k, v = np.split(
            linear(rms_norm(x, prefix + "norm1"), prefix + "self_attn.qkv_proj"),
            [heads * head_dim, (heads + kv_heads) * head_dim],
            axis=-1,
        )
        q = reference.rope_at(q.reshape(batch, steps, heads, head_dim), positions, frequencies, config.rope_interleaved)
        k = reference.rope_at(
            k.reshape(batch, steps, kv_heads, head_dim), positions, frequencies, config.rope_interleaved
        )
        q, k = q.astype(dtype), k.astype(dtype)
        k = np.repeat(k, heads // kv_heads, axis=2)
        v = np.repeat(v.reshape(batch, steps, kv_heads, head_dim), heads // kv_heads, axis=2)
        attended = reference_attention(q, k, v, visible, dtype)
        x = x + linear(attended, prefix + "self_attn.out_proj")
        gate, up = np.split(linear(rms_norm(x, prefix + "norm2"), prefix + "feed_forward.fc1"), 2, axis=-1)
        hidden = (np.asarray(reference.silu(gate)) * up).astype(dtype)
        x = x + linear(hidden, prefix + "feed_forward.fc2")
    head = p["wte.weight"] if config.tie_embeddings else p["lm_head.weight"]
    return rms_norm(x, "ln_f") @ head.T


def left_padded(rng, vocab_size, lengths, steps):
    """(ids [B, steps] left-padded with 0, padding mask, positions)."""
    lengths = np.asarray(lengths)
    ids = rng.integers(0, vocab_size, size=(len(lengths), steps))
    padding = np.arange(steps)[None, :] < (steps - lengths)[:, None]
    ids[padding] = 0
    positions = np.maximum(np.arange(steps)[None, :] - (steps - lengths)[:, None], 0)
    return ids, padding, positions


VARIANTS = {
    "gqa-untied": {},
    "tied-qkv-bias": {"tie_embeddings": True, "qkv_bias": True},
    "window": {"sliding_window": 3},
    "window-some-layers": {"sliding_window": 2, "sliding_window_layers": [1]},
    "llama3-scaling": {"rope_scaling": LLAMA3_SCALING, "rope_theta": 10000.0},
    "linear-scaling": {"rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    "head-dim-6-mqa": {"head_dim": 6, "n_kv_head": 1},
    "interleaved-biases": {"rope_interleaved": True, "bias": True, "qkv_bias": True, "out_bias": False},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_matches_reference_with_left_padding(cpu_isa, rng, variant):
    config = tiny_config(**VARIANTS[variant])
    model = Llama(config)
    randomize(model)
    ids, padding, positions = left_padded(rng, config.vocab_size, [9, 5, 1], 9)
    logits = model(
        attnkit.from_numpy(ids),
        key_padding_mask=attnkit.from_numpy(padding),
        position_ids=attnkit.from_numpy(positions),
    ).detach()
    values = parameter_values(model)
    real = ~padding
    expected = llama_reference(values, config, ids, padding, positions)
    naive = llama_reference(values, config, ids, padding, positions, np.float32)
    assert_reduction_close(logits.numpy()[real], expected[real], naive[real])
    # Padding changes nothing for the real tokens: each row alone, unpadded.
    for row, length in enumerate([9, 5, 1]):
        alone = model(attnkit.from_numpy(ids[row : row + 1, 9 - length :].copy())).detach().numpy()
        np.testing.assert_allclose(logits.numpy()[row, 9 - length :], alone[0], rtol=0, atol=2e-5)


def test_window_applies_to_the_listed_layers_only(rng):
    config = tiny_config(sliding_window=2, sliding_window_layers=[1])
    model = Llama(config)
    assert [block.self_attn.window for block in model.blocks] == [None, 2]
    randomize(model)
    ids = rng.integers(0, config.vocab_size, size=(2, 9))
    logits = model(attnkit.from_numpy(ids)).detach().numpy()
    # One window for every layer, or none, gives other logits.
    for other in (tiny_config(sliding_window=2), tiny_config()):
        twin = Llama(other)
        twin.load_state_dict(model.state_dict())
        assert np.abs(twin(attnkit.from_numpy(ids)).detach().numpy() - logits).max() > 1e-3


def test_variants_change_the_result(rng):
    """Every variant the reference checks is live: switching it off moves the
    logits (a test of the reference's coverage as much as of the model)."""
    ids = rng.integers(0, 13, size=(1, 12))
    for changes in ({"sliding_window": 3}, {"rope_scaling": LLAMA3_SCALING, "rope_theta": 10000.0}):
        model = Llama(tiny_config(**changes))
        randomize(model)
        plain = Llama(tiny_config(rope_theta=changes.get("rope_theta", 100.0)))
        plain.load_state_dict(model.state_dict())
        difference = model(attnkit.from_numpy(ids)).detach().numpy() - plain(attnkit.from_numpy(ids)).detach().numpy()
        assert np.abs(difference).max() > 1e-3, changes


def test_gradients_match_float64_finite_differences(cpu_isa, rng):
    config = tiny_config(vocab_size=7, n_layer=1, n_head=2, n_kv_head=1, n_embd=8, d_ff=6, qkv_bias=True)
    config.sliding_window = 3
    model = Llama(config)
    randomize(model, std=0.25, seed=31)
    ids = rng.integers(0, config.vocab_size, size=(2, 5))
    targets = rng.integers(0, config.vocab_size, size=(2, 5))
    # One block with weights N(0, 0.25) keeps the model well-conditioned; the
    # two-block comparison with the float32 rounding of PyTorch's autograd is
    # in test_hf_llama.py.
    check_gradients(model, ids, targets, lambda values: llama_reference(values, config, ids))


def test_trains_from_scratch(rng):
    attnkit.manual_seed(32)
    config = tiny_config(vocab_size=16, n_embd=32, d_ff=64, n_head=4, n_kv_head=2)
    losses = fit_one_batch(Llama(config), rng)
    assert losses[0] > 2.0 and losses[-1] < 0.05


@pytest.mark.parametrize("variant", ["gqa-untied", "window", "llama3-scaling", "tied-qkv-bias"])
def test_cached_decoding_with_left_padding_equals_the_full_pass(cpu_isa, rng, variant):
    """The prompt in one pass, then one token at a time with per-row
    positions (what generate does for a padded batch), past the window."""
    config = tiny_config(**VARIANTS[variant])
    model = Llama(config).eval()
    randomize(model)
    steps, prompt = 12, 5
    ids, padding, positions = left_padded(rng, config.vocab_size, [12, 9, 8], steps)
    with attnkit.no_grad():
        full = model(
            attnkit.from_numpy(ids),
            key_padding_mask=attnkit.from_numpy(padding),
            position_ids=attnkit.from_numpy(positions),
        ).numpy()
        caches = model.make_caches(3, steps)
        assert caches[0].num_kv_heads == config.n_kv_head  # the cache holds the kv heads only
        pieces = [
            model(
                attnkit.from_numpy(ids[:, :prompt].copy()),
                caches,
                key_padding_mask=attnkit.from_numpy(padding[:, :prompt].copy()),
                position_ids=attnkit.from_numpy(positions[:, :prompt].copy()),
            ).numpy()
        ]
        for t in range(prompt, steps):
            pieces.append(
                model(
                    attnkit.from_numpy(ids[:, t : t + 1].copy()),
                    caches,
                    position_ids=attnkit.from_numpy(positions[:, t : t + 1].copy()),
                ).numpy()
            )
    cached = np.concatenate(pieces, axis=1)
    real = ~padding
    np.testing.assert_allclose(cached[real], full[real], rtol=0, atol=2e-5 * np.abs(full[real]).max())


def test_batch_one_decoding_past_the_window(rng):
    config = tiny_config(sliding_window=4)
    model = Llama(config).eval()
    randomize(model)
    ids = rng.integers(0, config.vocab_size, size=(1, 14))
    with attnkit.no_grad():
        full = model(attnkit.from_numpy(ids)).numpy()
        caches = model.make_caches(1, 14)
        pieces = [model(attnkit.from_numpy(ids[:, :2].copy()), caches).numpy()]
        pieces += [model(attnkit.from_numpy(ids[:, t : t + 1].copy()), caches).numpy() for t in range(2, 14)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=2e-5 * np.abs(full).max())


def test_greedy_generation_of_a_padded_batch_equals_each_prompt_alone(rng):
    config = tiny_config(sliding_window=5, block_size=32)
    model = Llama(config)
    randomize(model, std=0.3)
    prompts = [rng.integers(0, config.vocab_size, size=n).tolist() for n in (7, 2, 4)]
    together = model.generate(prompts, 12, temperature=0.0)
    for prompt, row in zip(prompts, together):
        assert model.generate([prompt], 12, temperature=0.0)[0] == row


def test_qwen2_sizes_and_layout(monkeypatch):
    monkeypatch.setattr(attnkit.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)
    monkeypatch.setattr(attnkit.nn.init, "uniform_", lambda tensor, *args, **kwargs: tensor)
    config = LlamaConfig.qwen2_0_5b()
    model = Llama(config)
    assert model.num_parameters() == 494_032_768
    names = dict(model.named_parameters())
    assert "lm_head.weight" not in names and "wpe.weight" not in names
    assert list(names["blocks.0.self_attn.qkv_proj.weight"].shape) == [(14 + 2 * 2) * 64, 896]
    assert "blocks.0.self_attn.qkv_proj.bias" in names and "blocks.0.self_attn.out_proj.bias" not in names
    assert list(names["blocks.0.feed_forward.fc1.weight"].shape) == [2 * 4864, 896]
    assert "blocks.0.norm1.bias" not in names
    assert model.make_caches(1, 8)[0].k.shape == (1, 8, 2, 64)


def test_llama_is_a_gpt_config():
    # The same decoder: a Llama config rebuilds as GPT, and its dict (what
    # attnkit.save stores) as a GPTConfig.
    import dataclasses

    config = tiny_config(qkv_bias=True, sliding_window=3)
    model = GPT(GPTConfig(**dataclasses.asdict(config)))
    twin = Llama(config)
    assert list(dict(model.named_parameters())) == list(dict(twin.named_parameters()))
    assert isinstance(twin, GPT)


def test_bad_configs():
    with pytest.raises(ValueError, match="LlamaConfig: field 'norm' expected one of 'layernorm', 'rmsnorm'"):
        Llama(tiny_config(norm="batchnorm"))
    with pytest.raises(ValueError, match="field 'position' expected"):
        Llama(tiny_config(position="alibi"))
    with pytest.raises(ValueError, match="field 'mlp' expected"):
        Llama(tiny_config(mlp="geglu"))
    with pytest.raises(ValueError, match="rope_scaling' is set but position is 'learned'"):
        GPT(GPTConfig(rope_scaling={"rope_type": "linear", "factor": 2.0}))
    with pytest.raises(ValueError, match="sliding_window_layers' is set but sliding_window is None"):
        Llama(tiny_config(sliding_window_layers=[0]))
    with pytest.raises(ValueError, match=r"sliding_window_layers' expected block indices in \[0, 2\), got 2"):
        Llama(tiny_config(sliding_window=2, sliding_window_layers=[2]))
    with pytest.raises(ValueError, match="num_kv_heads' expected a divisor of num_heads"):
        Llama(tiny_config(n_kv_head=3))
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        Llama(tiny_config(rope_scaling={"rope_type": "yarn", "factor": 2.0}))
    with pytest.raises(ValueError, match="'low_freq_factor'"):
        Llama(tiny_config(rope_scaling={"rope_type": "llama3", "factor": 2.0}))

"""LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM checkpoints
against transformers: tiny random-weight models saved by transformers, loaded
by attnkit; float32 logits at every real position of left-padded batches,
greedy tokens (batched with padding too), grouped-query and multi-query
attention, tied and untied heads, Qwen2's biases, Mistral's and Qwen2's
sliding windows past the window, Llama 3's rope_scaling, bfloat16
checkpoints, gradients, and save_pretrained that transformers reloads to the
same logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PRETRAINED_LOGITS_RTOL
from hf_peers import hf_logits, left_padded, our_logits, require

import attnkit
from attnkit.models import Llama, LlamaConfig, from_pretrained
from attnkit.nn import functional as F

torch, transformers = require()

VOCAB = 157
LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    # the mixtures of experts (test_hf_moe.py)
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
}


def _hf_model(kind: str, seed: int = 0, **overrides):
    """A tiny transformers model of ``kind`` with random weights: norms
    around 1, biases nonzero, projections larger than the init, so that a
    wrong layout cannot hide in small numbers."""
    torch.manual_seed(seed)
    settings = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    settings.update(overrides)
    config_class, model_class = (getattr(transformers, name) for name in CLASSES[kind])
    model = model_class(config_class(**settings)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
            elif name.endswith("bias"):
                parameter.copy_(0.5 * torch.randn_like(parameter))
            else:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _checkpoint(tmp_path, kind: str, seed: int = 0, dtype=None, **overrides):
    """(a transformers model in float32, the directory it was saved to, in
    ``dtype`` when given)."""
    model = _hf_model(kind, seed, **overrides)
    if dtype is None:
        model.save_pretrained(tmp_path)
        return model, tmp_path
    model.to(dtype).save_pretrained(tmp_path)
    # Reloaded, not converted back: .to(dtype) rounds the rotary frequencies too.
    model_class = getattr(transformers, CLASSES[kind][1])
    return model_class.from_pretrained(tmp_path, dtype=torch.float32).eval(), tmp_path


def _assert_same_logits(model, hf_model, lengths, seed) -> None:
    """At every real position of a left-padded batch: max |ours - theirs|
    over the vocabulary within 1e-5 of that position's largest logit."""
    ids, mask, positions = left_padded(lengths, model.config.vocab_size, seed=seed)
    real = mask.astype(bool)
    ours, theirs = our_logits(model, ids, mask, positions)[real], hf_logits(hf_model, ids, mask, positions)[real]
    assert np.isfinite(ours).all()
    error = np.abs(ours - theirs).max(axis=-1)
    scale = np.abs(theirs).max(axis=-1)
    worst = int(np.argmax(error / scale))
    assert (error <= PRETRAINED_LOGITS_RTOL * scale).all(), (
        f"position {worst}: max error {error[worst]:.3g} > {PRETRAINED_LOGITS_RTOL} x {scale[worst]:.3g}"
    )
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


def _hf_greedy(hf_model, prompts, new_tokens):
    """transformers' greedy generate over the left-padded batch."""
    steps = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), steps), np.int64)
    mask = np.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, steps - len(prompt) :] = prompt
        mask[row, steps - len(prompt) :] = 1
    with torch.no_grad():
        out = hf_model.generate(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return [prompt + out[row, steps:].tolist() for row, prompt in enumerate(prompts)]


CASES = {
    "llama-gqa-untied": ("llama", {}),
    "llama-mqa-tied": ("llama", {"num_key_value_heads": 1, "tie_word_embeddings": True}),
    "llama-llama3-scaling": ("llama", {"rope_parameters": {**LLAMA3_SCALING, "rope_theta": 500000.0}}),
    "llama-linear-scaling-biases": (
        "llama",
        {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}, "attention_bias": True},
    ),
    "llama-head-dim": ("llama", {"head_dim": 8}),
    "mistral-window": ("mistral", {"sliding_window": 5}),
    "qwen2-biases-tied": ("qwen2", {"tie_word_embeddings": True, "rope_theta": 1_000_000.0}),
    "qwen2-window-some-layers": ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    kind, overrides = CASES[request.param]
    hf_model, directory = _checkpoint(tmp_path_factory.mktemp(request.param), kind, **overrides)
    return request.param, hf_model, directory, from_pretrained(directory)


def test_logits_match_transformers_at_every_real_position(case):
    name, hf_model, _, model = case
    assert isinstance(model, Llama) and not model.training
    # Prompts longer than every window here, shorter ones left-padded.
    _assert_same_logits(model, hf_model, [23, 9, 1, 17], seed=1)


def test_greedy_tokens_match_transformers_alone_and_in_a_padded_batch(case):
    _, hf_model, _, model = case
    rng = np.random.default_rng(2)
    prompts = [rng.integers(3, VOCAB, n).tolist() for n in (7, 2, 12)]
    theirs = _hf_greedy(hf_model, prompts, 16)
    assert model.generate(prompts, 16, temperature=0.0, stop_tokens=[]) == theirs
    assert model.generate([prompts[0]], 16, temperature=0.0, stop_tokens=[]) == _hf_greedy(hf_model, prompts[:1], 16)


def test_save_pretrained_reloads_in_transformers_to_the_same_logits(case, tmp_path):
    name, hf_model, directory, model = case
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((directory / "config.json").read_text())
    assert saved["architectures"] == original["architectures"]
    reloaded = getattr(transformers, original["architectures"][0]).from_pretrained(tmp_path).eval()
    theirs = hf_model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key
    _assert_same_logits(model, reloaded, [21, 6], seed=3)
    again = from_pretrained(tmp_path)
    assert again.config == model.config


def test_the_configs_carry_over(tmp_path):
    def loaded_config(kind, **overrides):
        directory = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}"
        _hf_model(kind, **overrides).save_pretrained(directory)
        return from_pretrained(directory).config

    config = loaded_config("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=1)
    assert (config.sliding_window, config.sliding_window_layers) == (4, [1, 2])
    assert (config.qkv_bias, config.out_bias, config.mlp_bias) == (True, False, False)
    assert loaded_config("qwen2", use_sliding_window=False, sliding_window=4).sliding_window is None
    assert loaded_config("mistral", sliding_window=None).sliding_window is None
    config = loaded_config("llama", rope_parameters={**LLAMA3_SCALING, "rope_theta": 500000.0})
    assert config.rope_theta == 500000.0 and config.rope_scaling == LLAMA3_SCALING
    assert config.n_kv_head == 2 and config.rope_interleaved is False and config.tie_embeddings is False
    assert (config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd, config.d_ff) == (
        VOCAB,
        64,
        3,
        4,
        64,
        96,
    )


def test_transformers_4_rope_fields_load(tmp_path):
    """config.json as transformers 4 writes it: rope_theta and rope_scaling
    (with "type" for "rope_type"), no rope_parameters."""
    hf_model, directory = _checkpoint(tmp_path, "llama", rope_parameters={**LLAMA3_SCALING, "rope_theta": 500000.0})
    config = json.loads((directory / "config.json").read_text())
    config.pop("rope_parameters")
    config["rope_theta"] = 500000.0
    config["rope_scaling"] = {key if key != "rope_type" else "type": value for key, value in LLAMA3_SCALING.items()}
    (directory / "config.json").write_text(json.dumps(config))
    model = from_pretrained(directory)
    assert model.config.rope_scaling == LLAMA3_SCALING
    _assert_same_logits(model, hf_model, [30, 3], seed=4)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_load_exactly(tmp_path, dtype):
    hf_model, directory = _checkpoint(tmp_path, "qwen2", dtype=getattr(torch, dtype))
    assert json.loads((directory / "config.json").read_text())["dtype"] == dtype
    model = from_pretrained(directory)
    layer = hf_model.model.layers[1].self_attn
    np.testing.assert_array_equal(
        model.blocks[1].self_attn.qkv_proj.weight.detach().numpy(),
        torch.cat([layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight]).detach().numpy(),
    )
    np.testing.assert_array_equal(model.lm_head.weight.detach().numpy(), hf_model.lm_head.weight.detach().numpy())
    _assert_same_logits(model, hf_model, [12, 5], seed=5)


def test_a_bfloat16_checkpoint_loads_in_bfloat16_bit_for_bit(tmp_path):
    hf_model, directory = _checkpoint(tmp_path, "qwen2", dtype=torch.bfloat16)
    model = from_pretrained(directory, dtype=attnkit.bfloat16)
    layer = hf_model.model.layers[1].self_attn
    pairs = [
        (
            model.blocks[1].self_attn.qkv_proj.weight,
            torch.cat([layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight]),
        ),
        (model.blocks[1].self_attn.qkv_proj.bias, torch.cat([layer.q_proj.bias, layer.k_proj.bias, layer.v_proj.bias])),
        (model.lm_head.weight, hf_model.lm_head.weight),
    ]
    for ours, theirs in pairs:
        assert ours.dtype == attnkit.bfloat16
        np.testing.assert_array_equal(ours.to(attnkit.float32).numpy(), theirs.float().detach().numpy())


@pytest.mark.parametrize("interleaved", [False, True])
def test_a_model_trained_in_attnkit_saves_for_transformers(tmp_path, interleaved):
    """From scratch, a few AdamW steps, then save_pretrained: transformers
    gives the same logits. With the interleaved rope pairing the q and k rows
    are permuted into transformers' rotate-half layout on the way."""
    attnkit.manual_seed(5)
    config = LlamaConfig(
        vocab_size=97,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        d_ff=48,
        rope_theta=500.0,
        rope_interleaved=interleaved,
    )
    model = Llama(config)
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = attnkit.from_numpy(rng.integers(0, 97, (2, 16)))
        loss = F.cross_entropy(model(batch).reshape(-1, 97), batch.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    hf_model = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    _assert_same_logits(model, hf_model, [16, 7], seed=6)
    # and attnkit loads it back (rotate-half now) to the same logits
    again = from_pretrained(tmp_path)
    assert again.config.rope_interleaved is False
    _assert_same_logits(again, hf_model, [11], seed=7)


def test_qwen2_and_mistral_shapes_save_as_their_classes(tmp_path):
    base = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, d_ff=24)
    expected = {
        "Qwen2ForCausalLM": LlamaConfig(**base, qkv_bias=True),
        "MistralForCausalLM": LlamaConfig(**base, sliding_window=3),
        "LlamaForCausalLM": LlamaConfig(**base, qkv_bias=True, out_bias=True),
    }
    for name, config in expected.items():
        directory = tmp_path / name
        Llama(config).save_pretrained(directory)
        assert json.loads((directory / "config.json").read_text())["architectures"] == [name]
        assert from_pretrained(directory).config.sliding_window == config.sliding_window
    with pytest.raises(ValueError, match="no Hugging Face architecture that attnkit writes fits"):
        Llama(LlamaConfig(**base, sliding_window=3, qkv_bias=True, out_bias=True)).save_pretrained(tmp_path / "x")


def test_gradients_match_pytorch_float64(tmp_path):
    """attnkit's float32 gradients of a loaded 2-layer Qwen2 (biases, GQA,
    window) against PyTorch's float64 autograd: no more than twice as far
    as PyTorch's own float32 gradients (plus one float32 ulp of the largest)."""
    hf_model, directory = _checkpoint(
        tmp_path,
        "qwen2",
        seed=8,
        num_hidden_layers=2,
        hidden_size=16,
        intermediate_size=24,
        use_sliding_window=True,
        sliding_window=3,
        max_window_layers=0,
    )
    model = from_pretrained(directory)
    model.train()
    rng = np.random.default_rng(9)
    ids, targets = rng.integers(0, VOCAB, (2, 7)), rng.integers(0, VOCAB, (2, 7))
    F.cross_entropy(
        model(attnkit.from_numpy(ids)).reshape(-1, VOCAB), attnkit.from_numpy(targets.reshape(-1))
    ).backward()
    gradients = {}
    for dtype in (torch.float64, torch.float32):
        peer = hf_model.to(dtype)
        peer.zero_grad()
        logits = peer(torch.from_numpy(ids)).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(targets.reshape(-1))).backward()
        gradients[dtype] = {name: p.grad.double().numpy().copy() for name, p in peer.named_parameters()}
    hf_model.float()
    ours = {name: p.grad.numpy().astype(np.float64) for name, p in model.named_parameters()}
    # attnkit's fused parameters, split into transformers' names
    bounds = [16, 16 + 2 * 4]  # 4 query heads and 2 kv heads of 4
    for i in range(2):
        q, k, v = np.split(ours.pop(f"blocks.{i}.self_attn.qkv_proj.weight"), bounds)
        qb, kb, vb = np.split(ours.pop(f"blocks.{i}.self_attn.qkv_proj.bias"), bounds)
        gate, up = np.split(ours.pop(f"blocks.{i}.feed_forward.fc1.weight"), 2)
        ours.update(
            {
                f"model.layers.{i}.self_attn.q_proj.weight": q,
                f"model.layers.{i}.self_attn.k_proj.weight": k,
                f"model.layers.{i}.self_attn.v_proj.weight": v,
                f"model.layers.{i}.self_attn.q_proj.bias": qb,
                f"model.layers.{i}.self_attn.k_proj.bias": kb,
                f"model.layers.{i}.self_attn.v_proj.bias": vb,
                f"model.layers.{i}.mlp.gate_proj.weight": gate,
                f"model.layers.{i}.mlp.up_proj.weight": up,
                f"model.layers.{i}.self_attn.o_proj.weight": ours.pop(f"blocks.{i}.self_attn.out_proj.weight"),
                f"model.layers.{i}.mlp.down_proj.weight": ours.pop(f"blocks.{i}.feed_forward.fc2.weight"),
                f"model.layers.{i}.input_layernorm.weight": ours.pop(f"blocks.{i}.norm1.weight"),
                f"model.layers.{i}.post_attention_layernorm.weight": ours.pop(f"blocks.{i}.norm2.weight"),
            }
        )
    ours["model.embed_tokens.weight"] = ours.pop("wte.weight")
    ours["model.norm.weight"] = ours.pop("ln_f.weight")
    ours["lm_head.weight"] = ours.pop("lm_head.weight")
    assert set(ours) == set(gradients[torch.float64])
    expected, naive = gradients[torch.float64], gradients[torch.float32]
    ulp = np.spacing(np.float32(max(np.abs(g).max() for g in expected.values())))
    ours_error = max(np.abs(ours[name] - expected[name]).max() for name in expected)
    naive_error = max(np.abs(naive[name] - expected[name]).max() for name in expected)
    assert ours_error <= 2 * naive_error + ulp, f"{ours_error:.3g} vs PyTorch float32 {naive_error:.3g}"


CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _chatml_tokenizer(directory) -> int:
    """Writes a byte-level BPE tokenizer with ChatML special tokens and chat
    template (as Qwen2 ships them, in miniature) into ``directory``; returns
    its vocabulary size."""
    tokenizers = pytest.importorskip("tokenizers", reason="needs the tokenizers package (the hf extra)")
    pytest.importorskip("jinja2", reason="needs the jinja2 package (the hf extra)")
    words = ["hello", "world", "assistant", "user", "system", "You", "are", "helpful"]
    vocab = {w: i for i, w in enumerate(["<unk>"] + [chr(c) for c in range(33, 127)] + words)}
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>", "<|endoftext|>"])
    directory.mkdir(parents=True, exist_ok=True)
    backend.save(str(directory / "tokenizer.json"))
    config = {
        "chat_template": CHATML_TEMPLATE,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return backend.get_vocab_size()


def test_chat_template_renders_as_transformers_does(tmp_path):
    from attnkit.data import Tokenizer

    _chatml_tokenizer(tmp_path)
    ours = Tokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for messages in (
        [{"role": "user", "content": "hello world "}],
        [
            {"role": "system", "content": "a b"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "world"},
            {"role": "user", "content": "é ü"},
        ],
    ):
        for prompt in (True, False):
            text = theirs.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
            assert ours.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False) == text
            ids = theirs.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            assert ours.apply_chat_template(messages, add_generation_prompt=prompt).tolist() == list(ids)


@pytest.mark.parametrize("kind, chat", [("qwen2", True), ("qwen2", False), ("gpt2", False)])
def test_cli_generate_with_a_checkpoint_writes_what_transformers_generates(tmp_path, capsys, kind, chat):
    """attnkit generate --model DIR [--chat]: greedy (the generation config
    says no sampling), stopping at the checkpoint's eos; the text is that of
    transformers' generate, decoded without special tokens."""
    from attnkit import cli

    vocab = _chatml_tokenizer(tmp_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if kind == "gpt2":
        torch.manual_seed(0)
        config = transformers.GPT2Config(
            vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, eos_token_id=eos
        )
        hf_model = transformers.GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            for parameter in hf_model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.2)
    else:
        hf_model = _hf_model(kind, seed=3, vocab_size=vocab, eos_token_id=eos, bos_token_id=None, pad_token_id=None)
    hf_model.save_pretrained(tmp_path)
    prompt = "hello world"
    if chat:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    else:
        ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        free = hf_model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None)
    new = free[0, len(ids) :].tolist()
    stop = new[2]  # an eos the model reaches: its third greedy token
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [stop], "do_sample": False}))
    expected = tokenizer.decode(new[: new.index(stop) + 1], skip_special_tokens=True)
    argv = ["generate", "--model", str(tmp_path), "--prompt", prompt, "--max-new-tokens", "12"]
    assert cli.main(argv + (["--chat"] if chat else [])) == 0
    assert capsys.readouterr().out == ("" if chat else prompt) + expected + "\n"

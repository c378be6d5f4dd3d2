"""GPT2LMHeadModel checkpoints against transformers: random weights, float32,
logits at every real position of left-padded batches, greedy tokens, and
save_pretrained that transformers reloads to the same logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import hf_logits, left_padded, our_logits, require, saved_and_reloaded

import attnkit
from attnkit.models import GPT, GPTConfig, from_pretrained

torch, transformers = require()

VOCAB = 311


def _hf_gpt2(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, n_positions=48, n_embd=64, n_layer=3, n_head=4, bos_token_id=1, eos_token_id=2)
    settings.update(overrides)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()
    # Larger weights than GPT-2's init (std 0.02), so the logits spread and a
    # wrong layout cannot hide in small numbers.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def _assert_same_logits(model, hf_model, lengths, seed) -> None:
    """Logits at every real position of a left-padded batch of ``lengths``."""
    ids, mask, positions = left_padded(lengths, model.config.vocab_size, seed=seed)
    real = mask.astype(bool)
    ours, theirs = our_logits(model, ids, mask, positions)[real], hf_logits(hf_model, ids, mask, positions)[real]
    assert_logits_close(ours, theirs)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2")
    model = _hf_gpt2()
    model.save_pretrained(directory)
    return model, directory


def test_logits_match_transformers_at_every_real_position(checkpoint):
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    assert isinstance(model, GPT) and model.hf_architecture == "GPT2LMHeadModel"
    assert model.config == GPTConfig(vocab_size=VOCAB, block_size=48, n_layer=3, n_head=4, n_embd=64, dropout=0.1)
    assert not model.training
    _assert_same_logits(model, hf_model, [9, 4, 13, 1], seed=1)


def test_greedy_generation_matches_transformers(checkpoint):
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    prompts = [[5, 17, 33, 8], [100, 3], [7, 7, 7, 250, 11, 19]]
    ours = model.generate(prompts, 20, temperature=0.0)
    for prompt, row in zip(prompts, ours):
        with torch.no_grad():
            theirs = hf_model.generate(
                torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0
            )
        assert row == theirs[0].tolist()


def test_generation_config_is_attached(checkpoint):
    _, directory = checkpoint
    model = from_pretrained(directory)
    assert model.generation_config["eos_token_id"] == 2
    assert model.hf_config["model_type"] == "gpt2"


def test_save_pretrained_round_trips_through_transformers(checkpoint, tmp_path):
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    saved_and_reloaded(model, transformers.GPT2LMHeadModel, hf_model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["GPT2LMHeadModel"] and saved["n_positions"] == 48
    assert json.loads((tmp_path / "generation_config.json").read_text())["eos_token_id"] == 2
    again = from_pretrained(tmp_path)
    for (name, ours), (_, theirs) in zip(again.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)


def test_an_attnkit_trained_gpt_saves_as_gpt2_with_its_tokenizer(tmp_path):
    pytest.importorskip("tokenizers", reason="needs the hf extra: pip install '.[hf]'")
    from attnkit.data import CharTokenizer, load_text

    text = load_text()[:20_000]
    tokenizer = CharTokenizer.from_text(text)
    vocab = tokenizer.vocab_size
    attnkit.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2)
    ids = tokenizer.encode(text)
    for step in range(3):  # a few steps, so the weights are not the initialization
        batch = attnkit.from_numpy(ids[step * 64 : step * 64 + 64].reshape(2, 32))
        loss = attnkit.nn.functional.cross_entropy(model(batch).reshape(-1, vocab), batch.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    _assert_same_logits(model, hf_model, [16, 7], seed=4)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    prompt = "ROMEO:"
    assert hf_tokenizer.encode(prompt) == tokenizer.encode(prompt).tolist()
    ours = model.generate([tokenizer.encode(prompt)], 20, temperature=0.0)[0]
    with torch.no_grad():
        theirs = hf_model.generate(
            torch.tensor([hf_tokenizer.encode(prompt)]), max_new_tokens=20, do_sample=False, pad_token_id=0
        )[0]
    assert hf_tokenizer.decode(theirs) == tokenizer.decode(ours)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_widen_exactly(tmp_path, dtype):
    hf_model = _hf_gpt2(seed=5).to(getattr(torch, dtype))
    hf_model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == dtype
    model = from_pretrained(tmp_path)
    widened = hf_model.float()
    np.testing.assert_array_equal(model.wte.weight.detach().numpy(), widened.transformer.wte.weight.detach().numpy())
    np.testing.assert_array_equal(
        model.blocks[1].self_attn.qkv_proj.weight.detach().numpy(),
        widened.transformer.h[1].attn.c_attn.weight.detach().numpy().T,
    )
    _assert_same_logits(model, widened, [6, 11], seed=6)


def test_sharded_checkpoint_loads(tmp_path):
    hf_model = _hf_gpt2(seed=7)
    hf_model.save_pretrained(tmp_path, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
    model = from_pretrained(tmp_path)
    _assert_same_logits(model, hf_model, [5, 8], seed=8)


def test_an_untied_head_is_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    _hf_gpt2(seed=9).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"'lm_head.weight' differs from 'transformer.wte.weight'"):
        from_pretrained(tmp_path)
    # A copy that equals the embedding (as older checkpoints store it) is fine.
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].copy()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    from_pretrained(tmp_path)


def test_an_unprefixed_base_model_checkpoint_loads(tmp_path):
    # The original GPT-2 checkpoints name their weights without "transformer."
    from safetensors.numpy import load_file, save_file

    hf_model = _hf_gpt2(seed=10)
    hf_model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    renamed = {name.removeprefix("transformer."): value for name, value in tensors.items()}
    renamed.update({f"h.{i}.attn.bias": np.tril(np.ones((1, 1, 48, 48), np.float32)) for i in range(3)})
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = from_pretrained(tmp_path)
    _assert_same_logits(model, hf_model, [7], seed=11)


def test_config_settings_attnkit_does_not_run_are_refused(tmp_path):
    _hf_gpt2(seed=12, activation_function="relu").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"'activation_function' is 'relu'; attnkit's GPT2LMHeadModel runs 'gelu_new'"):
        from_pretrained(tmp_path)


def test_save_pretrained_shards_above_max_shard_size(checkpoint, tmp_path):
    """Shards as transformers writes them (numbered files and an index), which
    transformers and attnkit load; saving again unsharded removes them."""
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    largest = max(t.numel() for t in model.state_dict().values()) * 4
    model.save_pretrained(tmp_path, max_shard_size=largest)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == files
    assert all((tmp_path / file).stat().st_size <= largest + 4096 for file in files)  # + the header
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    original = hf_model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    again = from_pretrained(tmp_path)
    for (name, ours), (_, theirs) in zip(again.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)

    model.save_pretrained(tmp_path, max_shard_size="1GB")
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()
    for bad in (0, "5XB", "-1GB", True, "nanGB"):
        with pytest.raises(ValueError, match="argument 'max_shard_size' expected"):
            model.save_pretrained(tmp_path, max_shard_size=bad)

"""Models in bfloat16: ``model.to(attnkit.bfloat16)`` halves the parameters'
memory, and GPT, the Llama family and BERT run forward in it (each op in
float32 inside, its result rounded to bfloat16: docs/design.md), with
generation (a bfloat16 KV cache), SentenceEncoder.encode and the CLI's
``--dtype bf16``. Bounds against the float32 model are stated below."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BFLOAT16_MODEL_LOGITS_RTOL, PERPLEXITY_RELATIVE_CHANGE
from hf_peers import minilm_directory
from model_check import validation_perplexity

import attnkit
import attnkit.nn.functional as F
from attnkit import cli
from attnkit.models import BERT, GPT, BertConfig, GPTConfig, Llama, LlamaConfig
from attnkit.training import load_corpus, load_run

bf16 = attnkit.bfloat16

# The real all-MiniLM-L6-v2: measured cosine 0.99986-0.99997 to float32.
EMBEDDING_COSINE = 0.999


def parameter_bytes(module) -> int:
    return sum(p.numel() * p.dtype.itemsize for p in module.parameters())


def float_values(t) -> np.ndarray:
    return np.asarray(t.float().numpy(), np.float64)


def small_config(family):
    if family == "gpt":
        return GPT, GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=64)
    return Llama, LlamaConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, d_ff=160)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_decoder_in_bfloat16(bf16_isa, family):
    model_class, config = small_config(family)
    attnkit.manual_seed(7)
    model = model_class(config).eval()
    ids = attnkit.tensor(np.random.default_rng(3).integers(0, 97, size=(2, 23)))
    with attnkit.no_grad():
        expected = float_values(model(ids))
    float_bytes = parameter_bytes(model)
    assert model.to(bf16) is model
    assert all(p.dtype == bf16 for p in model.parameters())
    assert parameter_bytes(model) * 2 == float_bytes
    with attnkit.no_grad():
        logits = model(ids)
    assert logits.dtype == bf16
    error = np.abs(float_values(logits) - expected).max() / np.abs(expected).max()
    assert error <= BFLOAT16_MODEL_LOGITS_RTOL, error

    # generation: a bfloat16 cache, and the tokens each step's full forward picks
    with attnkit.no_grad():
        cache = model.blocks[0].attn.make_cache(2, 40) if hasattr(model.blocks[0], "attn") else None
    if cache is not None:
        assert cache.dtype == bf16
    prompt = attnkit.tensor(np.array([[5, 17, 3]]))
    tokens = model.generate(prompt, 6, temperature=0.0).numpy()
    assert tokens.shape == (1, 9) and (tokens[0, :3] == [5, 17, 3]).all()
    model.float()
    assert parameter_bytes(model) == float_bytes


def test_bert_encoder_in_bfloat16(bf16_isa):
    attnkit.manual_seed(11)
    model = BERT(BertConfig(vocab_size=120, block_size=32, n_layer=2, n_head=4, n_embd=64, d_ff=128)).eval()
    ids = attnkit.tensor(np.random.default_rng(4).integers(1, 120, size=(3, 19)))
    mask = np.ones((3, 19), np.int64)
    mask[1, 12:] = 0
    with attnkit.no_grad():
        expected = float_values(model.encode(ids, attention_mask=attnkit.tensor(mask)))
    float_bytes = parameter_bytes(model)
    model.to(bf16)
    assert parameter_bytes(model) * 2 == float_bytes
    with attnkit.no_grad():
        ours = model.encode(ids, attention_mask=attnkit.tensor(mask))
    assert ours.dtype == bf16
    error = np.abs(float_values(ours) - expected).max() / np.abs(expected).max()
    assert error <= BFLOAT16_MODEL_LOGITS_RTOL, error


def test_backward_of_a_bfloat16_model_is_refused():
    model_class, config = small_config("gpt")
    model = model_class(config).to(bf16).eval()
    logits = model(attnkit.tensor(np.array([[1, 2, 3]])))
    loss = F.cross_entropy(logits.reshape(-1, 97), attnkit.tensor(np.array([2, 3, 4])))
    assert loss.dtype == bf16
    with pytest.raises(RuntimeError, match="attnkit computes no gradient in bfloat16"):
        loss.backward()
    assert all(p.grad is None for p in model.parameters())
    dropping = GPT(GPTConfig(vocab_size=97, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1)).to(bf16)
    with pytest.raises(TypeError, match="dropout: argument 'input' expected float32 when training"):
        dropping.train()(attnkit.tensor(np.array([[1, 2, 3]])))


def test_trained_gpt_in_bfloat16(shakespeare_run, capsys):
    out, config = shakespeare_run
    model, tokenizer, _ = load_run(out)
    _, _, val_tokens = load_corpus(config, tokenizer)
    float_perplexity = validation_perplexity(model, val_tokens, config.block_size)
    assert float_perplexity < 12.0, "the model did not learn"
    prompt = attnkit.tensor(np.array([tokenizer.encode("ROMEO:")], np.int64))
    float_tokens = model.generate(prompt, 40, temperature=0.0).numpy()[0]
    model.to(bf16)
    bf16_perplexity = validation_perplexity(model, val_tokens, config.block_size)
    assert abs(bf16_perplexity / float_perplexity - 1.0) <= PERPLEXITY_RELATIVE_CHANGE, (
        float_perplexity,
        bf16_perplexity,
    )
    tokens = model.generate(prompt, 40, temperature=0.0).numpy()[0]
    # greedy decoding of a trained model: the same text as in float32
    np.testing.assert_array_equal(tokens, float_tokens)

    argv = ["generate", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0"]
    assert cli.main([*argv, "--dtype", "bf16"]) == 0
    assert capsys.readouterr().out == tokenizer.decode(tokens.tolist()) + "\n"


def test_minilm_embeddings_in_bfloat16(tmp_path):
    pytest.importorskip("tokenizers", reason="needs the hf extra: pip install '.[hf]'")
    directory = minilm_directory()
    sentences = [
        "A man is eating food.",
        "The girl is carrying a baby.",
        "Someone in a gorilla costume is playing a set of drums.",
        "The quarterly report shows revenue grew by 12 percent despite supply issues.",
        "¿Dónde está la estación de tren más cercana?",
        "ok",
    ]
    encoder = attnkit.models.SentenceEncoder.from_pretrained(directory)
    expected = encoder.encode(sentences)
    float_bytes = parameter_bytes(encoder.model)
    assert encoder.to(bf16) is encoder
    assert parameter_bytes(encoder.model) * 2 == float_bytes
    ours = encoder.encode(sentences)
    assert ours.dtype == np.float32
    cosine = np.sum(ours * expected, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= EMBEDDING_COSINE, cosine

    output = tmp_path / "bf16.npy"
    assert cli.main(["embed", "--model", directory, "--dtype", "bf16", "--output", str(output), *sentences]) == 0
    np.testing.assert_array_equal(np.load(output), ours)

"""int8 weights on trained models: a GPT trained on tiny Shakespeare keeps its
validation perplexity within 1% of float32, the real all-MiniLM-L6-v2 keeps
its embeddings at cosine >= 0.995; and the CLI's --dtype int8."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PERPLEXITY_RELATIVE_CHANGE
from hf_peers import minilm_directory
from model_check import validation_perplexity

import attnkit
from attnkit import cli
from attnkit.nn.functional.quantized import int8_dynamic_available
from attnkit.training import load_corpus, load_run

# The acceptance bound of issue 15 for int8 weights (MiniLM embeddings).
EMBEDDING_COSINE = 0.995
# Dynamic activation quantization (int8 x int8, an option) rounds every
# Linear's input to 8 bits as well and does not reach the bound above on
# MiniLM: measured 0.996-0.998 on sentences, 0.984 on the one-word text
# below (int8 weights alone: 0.9966 there). This is the option's own bound,
# stated in the README; the perplexity bound holds for it unchanged.
DYNAMIC_EMBEDDING_COSINE = 0.98


def skip_without_dynamic(dynamic: bool) -> None:
    if dynamic and not int8_dynamic_available():
        pytest.skip("dynamic activation quantization needs AVX512-VNNI (the avx512_vnni, avx512_bf16 or amx tier)")


@pytest.mark.parametrize("dynamic", [False, True], ids=["int8_weights", "dynamic_activations"])
def test_int8_gpt_perplexity_within_one_percent(shakespeare_run, dynamic):
    skip_without_dynamic(dynamic)
    out, config = shakespeare_run
    model, tokenizer, _ = load_run(out)
    _, _, val_tokens = load_corpus(config, tokenizer)
    float_perplexity = validation_perplexity(model, val_tokens, config.block_size)
    # chance is 65 (characters), a character bigram model about 12
    assert float_perplexity < 12.0, "the model did not learn"
    attnkit.quantize(model, "int8", dynamic_activations=dynamic)
    int8_perplexity = validation_perplexity(model, val_tokens, config.block_size)
    change = abs(int8_perplexity / float_perplexity - 1.0)
    assert change <= PERPLEXITY_RELATIVE_CHANGE, (float_perplexity, int8_perplexity)


def test_generate_cli_with_int8_weights(shakespeare_run, capsys):
    out, _ = shakespeare_run
    argv = ["generate", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0"]
    assert cli.main([*argv, "--dtype", "int8"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40 + 1
    # the same text as the quantized model's own greedy decoding
    model, tokenizer, _ = load_run(out)
    attnkit.quantize(model, "int8")
    prompt = attnkit.tensor(np.array([tokenizer.encode("ROMEO:")], np.int64))
    tokens = model.generate(prompt, 40, temperature=0.0).numpy()[0]
    assert text == tokenizer.decode(tokens.tolist()) + "\n"


@pytest.mark.parametrize("dynamic", [False, True], ids=["int8_weights", "dynamic_activations"])
def test_int8_minilm_embeddings_keep_their_direction(tmp_path, dynamic):
    skip_without_dynamic(dynamic)
    pytest.importorskip("tokenizers", reason="needs the hf extra: pip install '.[hf]'")
    directory = minilm_directory()
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
        "Someone in a gorilla costume is playing a set of drums.",
        "Two men pushed carts through the woods.",
        "The quarterly report shows revenue grew by 12 percent despite supply issues.",
        "Quantum entanglement links the states of two particles across distance.",
        "¿Dónde está la estación de tren más cercana?",
        "ok",
    ]
    encoder = attnkit.models.SentenceEncoder.from_pretrained(directory)
    expected = encoder.encode(sentences)
    assert attnkit.quantize(encoder, "int8", dynamic_activations=dynamic) is encoder
    assert not any(type(m) is attnkit.nn.Linear for m in encoder.model.modules())
    ours = encoder.encode(sentences)
    cosine = np.sum(ours * expected, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= (DYNAMIC_EMBEDDING_COSINE if dynamic else EMBEDDING_COSINE), cosine

    if dynamic:
        return
    output = tmp_path / "int8.npy"
    assert cli.main(["embed", "--model", directory, "--dtype", "int8", "--output", str(output), *sentences]) == 0
    np.testing.assert_array_equal(np.load(output), ours)

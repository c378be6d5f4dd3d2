"""attnkit embed and attnkit info --model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hf_peers import minilm_directory

import attnkit
from attnkit import cli
from attnkit.models import GPT, GPTConfig, SentenceEncoder


def test_info_describes_a_checkpoint(tmp_path, capsys):
    attnkit.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path)
    assert cli.main(["info", "--model", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "GPT2LMHeadModel (attnkit GPT)" in text
    assert f"{model.num_parameters():,}" in text and "float32 (checkpoint: float32)" in text
    assert cli.main(["info", "--model", str(tmp_path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["parameters"] == f"{model.num_parameters():,}"
    assert cli.main(["info", "--model", str(tmp_path / "absent")]) == cli.EXIT_USAGE
    assert "is not a local directory" in capsys.readouterr().err


def test_embed_prints_and_writes(tmp_path, capsys):
    pytest.importorskip("tokenizers", reason="needs the hf extra: pip install '.[hf]'")
    directory = minilm_directory()
    sentences = ["A man is eating food.", "Someone in a gorilla costume is playing a set of drums."]
    expected = SentenceEncoder.from_pretrained(directory).encode(sentences)

    assert cli.main(["embed", "--model", directory, *sentences]) == 0
    printed = np.array([[float(x) for x in line.split()] for line in capsys.readouterr().out.splitlines()])
    np.testing.assert_allclose(printed, expected, rtol=1e-7, atol=1e-9)  # printed with 8 significant digits

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(sentences) + "\n")
    output = tmp_path / "out.npy"
    assert cli.main(["embed", "--model", directory, "--input", str(texts), "--output", str(output)]) == 0
    np.testing.assert_array_equal(np.load(output), expected)
    assert cli.main(["embed", "--model", directory, "--no-normalize", "--output", str(output), sentences[0]]) == 0
    assert abs(np.linalg.norm(np.load(output)[0]) - 1.0) > 1e-3

    capsys.readouterr()
    assert cli.main(["embed", "--model", directory]) == cli.EXIT_USAGE
    assert "no sentences" in capsys.readouterr().err
    assert cli.main(["embed", "--model", directory, "--input", str(texts), "x"]) == cli.EXIT_USAGE
    assert "not both" in capsys.readouterr().err
    assert cli.main(["embed", "--model", directory, "x", "--output", str(tmp_path / "out.txt")]) == cli.EXIT_USAGE
    assert "should end in .npy" in capsys.readouterr().err
    assert cli.main(["embed", "--model", str(tmp_path), "x"]) == cli.EXIT_USAGE
    assert "has no modules.json" in capsys.readouterr().err

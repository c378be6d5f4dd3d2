"""SentenceEncoder against sentence-transformers: the real all-MiniLM-L6-v2
weights, and every pooling mode on random weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import minilm_directory, require

from attnkit.models import SentenceEncoder

torch, transformers = require()
sentence_transformers = pytest.importorskip(
    "sentence_transformers", reason="needs the test-hf extra: pip install '.[test-hf]'"
)

try:  # where sentence-transformers 6 keeps its module classes
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
except ImportError:
    from sentence_transformers.models import Normalize, Pooling, Transformer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "",
    "naïve café, ünïcödé and 😀",
    "ok",
    " ".join(["The long sentence goes on and on, past the model's limit of 256 tokens."] * 30),
    "Thou art as wise as thou art beautiful. " * 5,
]


def _cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_all_minilm_l6_v2_matches_sentence_transformers():
    directory = minilm_directory()
    encoder = SentenceEncoder.from_pretrained(directory)
    assert encoder.pooling == ("mean",) and encoder.normalize and encoder.max_seq_length == 256
    reference = sentence_transformers.SentenceTransformer(directory, device="cpu")
    theirs = reference.encode(SENTENCES, batch_size=4, convert_to_numpy=True)
    ours = encoder.encode(SENTENCES, batch_size=4)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    assert_logits_close(ours, theirs)
    assert _cosines(ours, theirs).min() > 1 - 1e-10
    # One text alone, a single str, and the batch size do not change an embedding beyond rounding.
    assert_logits_close(encoder.encode(SENTENCES[6]), theirs[6])
    assert_logits_close(encoder.encode(SENTENCES, batch_size=32), theirs)
    raw = encoder.encode(SENTENCES[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert _cosines(raw, theirs[:3]).min() > 1 - 1e-10
    assert encoder.encode([]).shape == (0, 384)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A small random BertModel with MiniLM's WordPiece tokenizer."""
    tokenizer_directory = minilm_directory()
    directory = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(directory)
    transformers.AutoTokenizer.from_pretrained(tokenizer_directory).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "pooling, normalize",
    [("mean", False), ("cls", True), ("max", False), ("mean_sqrt_len_tokens", False), (("cls", "mean", "max"), True)],
)
def test_pooling_modes_match_sentence_transformers(tiny_bert, tmp_path, pooling, normalize):
    transformer = Transformer(str(tiny_bert), max_seq_length=24)
    modules = [transformer, Pooling(32, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    reference = sentence_transformers.SentenceTransformer(modules=modules, device="cpu")
    reference.save(str(tmp_path))
    encoder = SentenceEncoder.from_pretrained(tmp_path)
    assert encoder.pooling == ((pooling,) if isinstance(pooling, str) else pooling)
    assert encoder.normalize == normalize and encoder.max_seq_length == 24
    theirs = reference.encode(SENTENCES, batch_size=5, convert_to_numpy=True)
    assert_logits_close(encoder.encode(SENTENCES, batch_size=5), theirs)


def test_refusals(tmp_path, tiny_bert):
    with pytest.raises(ValueError, match="has no modules.json"):
        SentenceEncoder.from_pretrained(tiny_bert)
    with pytest.raises(ValueError, match="not a local directory"):
        SentenceEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    reference = sentence_transformers.SentenceTransformer(
        modules=[Transformer(str(tiny_bert)), Pooling(32, pooling_mode="weightedmean")], device="cpu"
    )
    reference.save(str(tmp_path))
    with pytest.raises(ValueError, match="asks for pooling 'weightedmean'"):
        SentenceEncoder.from_pretrained(tmp_path)

"""attnkit.data.Tokenizer.from_pretrained: tokenizer.json through the
tokenizers package and Marian's SentencePiece files, against transformers'
tokenizers where it is installed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hf_peers import marian_tokenizer_files, minilm_directory

from attnkit.data import MarianTokenizer, StreamDecoder, Tokenizer, load_text

tokenizers = pytest.importorskip("tokenizers", reason="needs the hf extra: pip install '.[hf]'")

TEXTS = [
    "ROMEO: What say you, my lord?",
    "naïve café, ünïcödé and 😀",
    "",
    "Thou art as wise as thou art beautiful. " * 6,
]


@pytest.fixture(scope="module")
def bpe_directory(tmp_path_factory):
    """A byte-level BPE tokenizer.json with <s>, </s>, <pad>, trained here,
    and a tokenizer_config.json that pads on the left."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([load_text()[:100_000]], trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    directory = tmp_path_factory.mktemp("bpe")
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "bos_token": "<s>",
        "eos_token": {
            "__type": "AddedToken",
            "content": "</s>",
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
            "special": True,
        },
        "pad_token": "<pad>",
        "padding_side": "left",
        "model_max_length": 64,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_special_tokens_padding_and_truncation(bpe_directory):
    tokenizer = Tokenizer.from_pretrained(bpe_directory)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 2)
    assert tokenizer.cls_token is None and tokenizer.cls_token_id is None
    assert tokenizer.all_special_ids == [0, 1, 2] and tokenizer.vocab_size == 400
    assert tokenizer.chat_template.startswith("{% for m in messages")
    ids = tokenizer.encode("ROMEO: hello")
    assert ids.dtype == np.int64 and ids[0] == 0 and tokenizer.encode("ROMEO: hello", add_special_tokens=False)[0] != 0
    assert tokenizer.decode(ids) == "ROMEO: hello"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<s>ROMEO: hello"

    batch = tokenizer.encode_batch(["a", "ROMEO: hello there"])
    lengths = [len(tokenizer.encode(t)) for t in ("a", "ROMEO: hello there")]
    assert batch["input_ids"].shape == (2, max(lengths)) and set(batch) == {"input_ids", "attention_mask"}
    # Left padding: the short row's tokens sit at the end.
    np.testing.assert_array_equal(batch["attention_mask"][0], [0] * (lengths[1] - lengths[0]) + [1] * lengths[0])
    np.testing.assert_array_equal(batch["input_ids"][0, : lengths[1] - lengths[0]], 2)
    padded = tokenizer.encode_batch(["a"], padding="max_length", max_length=8)
    assert padded["input_ids"].shape == (1, 8)
    cut = tokenizer.encode_batch([TEXTS[3]], truncation=True, max_length=5)
    np.testing.assert_array_equal(cut["input_ids"][0], tokenizer.encode(TEXTS[3])[:5])
    with pytest.raises(ValueError, match="text 0 has .* tokens, more than max_length=5"):
        tokenizer.encode_batch([TEXTS[3]], max_length=5)
    with pytest.raises(ValueError, match="different lengths"):
        tokenizer.encode_batch(["a", "ROMEO: hello there"], padding=False)
    with pytest.raises(TypeError, match="expected a list of str"):
        tokenizer.encode_batch("a")
    with pytest.raises(TypeError, match="argument 'text' expected a str"):
        tokenizer.encode(3)
    with pytest.raises(ValueError, match="token id 400 at position 1 is outside the vocabulary"):
        tokenizer.decode([5, 400])


def test_save_pretrained_round_trips(bpe_directory, tmp_path):
    tokenizer = Tokenizer.from_pretrained(bpe_directory)
    tokenizer.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        np.testing.assert_array_equal(again.encode(text), tokenizer.encode(text))
    assert again.padding_side == "left" and again.chat_template == tokenizer.chat_template


def test_stream_decoder_holds_back_partial_characters(bpe_directory):
    tokenizer = Tokenizer.from_pretrained(bpe_directory)
    text = "café 😀 ok"
    decoder = StreamDecoder(tokenizer)
    pieces = [decoder.push([token]) for token in tokenizer.encode(text, add_special_tokens=False)]
    assert "".join(pieces) + decoder.flush() == text
    assert all("\ufffd" not in piece for piece in pieces)


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="not a local directory"):
        Tokenizer.from_pretrained("bert-base-uncased")
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ValueError, match="cannot be read"):
        Tokenizer.from_pretrained(tmp_path)


# ------------------------------------------------- against transformers ---


def _transformers():
    transformers = pytest.importorskip("transformers", reason="needs the test-hf extra: pip install '.[test-hf]'")
    transformers.logging.set_verbosity_error()
    return transformers


def _same_as_transformers(ours, theirs, texts, max_length=None):
    for text in texts:
        assert ours.encode(text).tolist() == theirs.encode(text), text
        ids = theirs.encode(text)
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids), text
    options = dict(truncation=True, max_length=max_length) if max_length else {}
    batch = ours.encode_batch(texts, **options)
    expected = theirs(texts, padding=True, return_tensors="np", **options)
    np.testing.assert_array_equal(batch["input_ids"], expected["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], expected["attention_mask"])


def test_minilm_wordpiece_matches_transformers():
    transformers = _transformers()
    directory = minilm_directory()
    ours = Tokenizer.from_pretrained(directory)
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id, ours.mask_token_id) == (101, 102, 0, 103)
    assert ours.all_special_ids == sorted(theirs.all_special_ids)
    _same_as_transformers(ours, theirs, TEXTS, max_length=12)


def test_byte_level_bpe_matches_transformers(bpe_directory):
    transformers = _transformers()
    ours = Tokenizer.from_pretrained(bpe_directory)
    theirs = transformers.AutoTokenizer.from_pretrained(bpe_directory)
    _same_as_transformers(ours, theirs, TEXTS)


@pytest.fixture(scope="module")
def marian_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("marian")
    marian_tokenizer_files(directory)
    return directory


MARIAN_TEXTS = ["ROMEO: What say you, my lord?", ">>fr<< Good morrow, xylophone!", "", "Qüïck zebra"]


def test_marian_sentencepiece(marian_directory, tmp_path):
    tokenizer = Tokenizer.from_pretrained(marian_directory)
    assert isinstance(tokenizer, MarianTokenizer) and tokenizer.kind == "marian"
    assert (tokenizer.eos_id, tokenizer.unk_token_id, tokenizer.pad_id, tokenizer.vocab_size) == (0, 1, 302, 303)
    ids = tokenizer.encode(MARIAN_TEXTS[0])
    assert ids[-1] == 0 and tokenizer.decode(ids) == MARIAN_TEXTS[0]
    assert tokenizer.encode(MARIAN_TEXTS[1])[0] == 301  # the language code is one token
    batch = tokenizer.encode_batch(MARIAN_TEXTS, truncation=True, max_length=6)
    assert batch["input_ids"].shape == (4, 6)
    full = batch["attention_mask"][:, -1] == 1
    assert full.any() and (batch["input_ids"][full, -1] == 0).all()  # a cut text still ends with </s>
    tokenizer.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert again.encode(MARIAN_TEXTS[3]).tolist() == tokenizer.encode(MARIAN_TEXTS[3]).tolist()


def test_marian_matches_transformers(marian_directory, tmp_path):
    transformers = _transformers()
    theirs = transformers.MarianTokenizer(
        str(marian_directory / "source.spm"), str(marian_directory / "target.spm"), str(marian_directory / "vocab.json")
    )
    theirs.save_pretrained(tmp_path)
    ours = Tokenizer.from_pretrained(tmp_path)
    _same_as_transformers(ours, theirs, MARIAN_TEXTS, max_length=7)


def test_a_model_carries_its_tokenizer_through_save_pretrained(tmp_path):
    transformers = _transformers()
    from attnkit.models import from_pretrained

    model = from_pretrained(minilm_directory())
    assert isinstance(model.tokenizer, Tokenizer)
    model.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(tmp_path))
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    _same_as_transformers(Tokenizer.from_pretrained(tmp_path), theirs, TEXTS)
    assert from_pretrained(tmp_path).tokenizer.encode(TEXTS[0]).tolist() == theirs.encode(TEXTS[0])


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_attnkit_tokenizers_convert_to_tokenizer_json(kind, tmp_path):
    from attnkit.data import build_tokenizer

    text = load_text()[:20_000]
    own = build_tokenizer(kind, text, bpe_vocab_size=300)
    converted = Tokenizer.from_attnkit(own)
    assert converted.vocab_size == own.vocab_size
    samples = [text[1000:1400], "ROMEO:\nWhat?  ", ""] + ([] if kind == "char" else ["naïve café 😀"])
    for sample in samples:
        np.testing.assert_array_equal(converted.encode(sample), own.encode(sample))
        assert converted.decode(own.encode(sample)) == own.decode(own.encode(sample))
    converted.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again.encode(samples[0]), own.encode(samples[0]))
    if kind != "char":
        assert (again.bos_id, again.eos_id, again.pad_id) == (own.bos_id, own.eos_id, own.pad_id)
    try:
        transformers = __import__("transformers")
    except ImportError:
        return
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert theirs.encode(samples[0]) == own.encode(samples[0]).tolist()
    assert theirs.decode(own.encode(samples[1])) == own.decode(own.encode(samples[1]))

"""attnkit.data: the bundled corpus, the tokenizers (round trips, errors,
checkpoint dicts, streaming), the 90/10 split and nanoGPT's batches."""

import sys

import numpy as np
import pytest

import attnkit
from attnkit import data
from attnkit.random import Generator

UNICODE_TEXT = "ROMEO: Ça va? — naïve café, 日本語, emoji 🙂, tab\tand\nnewline."


@pytest.fixture(scope="module")
def shakespeare():
    return data.load_text()


# -------------------------------------------------------------- corpus ---


def test_bundled_corpus_is_tiny_shakespeare(shakespeare):
    assert len(shakespeare.encode("utf-8")) == 1_115_394
    assert shakespeare.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert data.bundled_corpus_path().name == "tinyshakespeare.txt"


def test_load_text_reads_a_utf8_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(UNICODE_TEXT, encoding="utf-8")
    assert data.load_text(path) == UNICODE_TEXT
    assert data.load_text(str(path)) == UNICODE_TEXT


def test_load_text_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt' does not exist"):
        data.load_text(missing)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt' is empty"):
        data.load_text(empty)
    with pytest.raises(ValueError, match="is a directory"):
        data.load_text(tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt' is not UTF-8 text: byte 3 is 0xe9"):
        data.load_text(latin1)


def test_split_is_90_10_in_order(shakespeare):
    tokens = data.CharTokenizer.from_text(shakespeare).encode(shakespeare)
    train, val = data.split_tokens(tokens)
    # nanoGPT's shakespeare_char/prepare.py gives these counts.
    assert (len(train), len(val)) == (1_003_854, 111_540)
    np.testing.assert_array_equal(np.concatenate([train, val]), tokens)
    train, val = data.split_tokens(np.arange(10), val_fraction=0.3)
    np.testing.assert_array_equal(val, [7, 8, 9])
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_tokens(tokens, val_fraction=1.0)
    with pytest.raises(ValueError, match="1-D array of token ids"):
        data.split_tokens(np.zeros((2, 3), np.int64))


# ---------------------------------------------------------- tokenizers ---


def test_char_tokenizer_matches_nanogpt_and_round_trips(shakespeare):
    tokenizer = data.CharTokenizer.from_text(shakespeare)
    assert tokenizer.vocab_size == 65
    assert tokenizer.chars == sorted(set(shakespeare))
    ids = tokenizer.encode(shakespeare)
    assert ids.dtype == np.int64 and len(ids) == len(shakespeare)
    # nanoGPT's shakespeare_char ids of "First Citizen"
    np.testing.assert_array_equal(ids[:13], [18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52])
    assert tokenizer.decode(ids) == shakespeare
    assert tokenizer.decode(attnkit.from_numpy(ids[:5])) == "First"
    unicode = data.CharTokenizer.from_text(UNICODE_TEXT)
    assert unicode.decode(unicode.encode(UNICODE_TEXT)) == UNICODE_TEXT
    assert tokenizer.encode("").shape == (0,) and tokenizer.decode([]) == ""


def test_char_tokenizer_errors(shakespeare):
    tokenizer = data.CharTokenizer.from_text(shakespeare)
    with pytest.raises(ValueError, match=r"the character '€' at position 3 is not in the vocabulary of 65"):
        tokenizer.encode("abc€d")
    with pytest.raises(ValueError, match="token id 65 at position 1 is outside the vocabulary"):
        tokenizer.decode([1, 65])
    with pytest.raises(ValueError, match="token id -1"):
        tokenizer.decode([-1])
    with pytest.raises(TypeError, match="integer token ids"):
        tokenizer.decode([1.5])
    with pytest.raises(TypeError, match="expected a str"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="is empty"):
        data.CharTokenizer.from_text("")


def test_byte_tokenizer_round_trips_any_text():
    tokenizer = data.ByteTokenizer()
    assert tokenizer.vocab_size == 259
    ids = tokenizer.encode(UNICODE_TEXT)
    np.testing.assert_array_equal(ids, list(UNICODE_TEXT.encode("utf-8")))
    assert tokenizer.decode(ids) == UNICODE_TEXT
    framed = tokenizer.encode("hi", add_bos=True, add_eos=True)
    np.testing.assert_array_equal(framed, [tokenizer.bos_id, ord("h"), ord("i"), tokenizer.eos_id])
    assert framed.dtype == np.int64
    # Specials decode to nothing; a cut multi-byte character to U+FFFD.
    assert tokenizer.decode([tokenizer.pad_id, *framed]) == "hi"
    assert tokenizer.decode(list("é".encode())[:1]) == "\ufffd"
    with pytest.raises(ValueError, match="token id 259 at position 0"):
        tokenizer.decode([259])


@pytest.mark.parametrize(
    "make", [lambda text: data.CharTokenizer.from_text(text), lambda text: data.ByteTokenizer()], ids=["char", "byte"]
)
def test_tokenizer_dict_round_trip(make):
    tokenizer = make(UNICODE_TEXT)
    state = tokenizer.to_dict()
    import json

    restored = data.tokenizer_from_dict(json.loads(json.dumps(state)))
    assert type(restored) is type(tokenizer)
    np.testing.assert_array_equal(restored.encode(UNICODE_TEXT), tokenizer.encode(UNICODE_TEXT))
    with pytest.raises(ValueError, match="tokenizer_from_dict"):
        data.tokenizer_from_dict({"kind": "words"})


def test_bpe_tokenizer_trains_round_trips_and_saves(shakespeare):
    pytest.importorskip("tokenizers")
    import json

    tokenizer = data.BPETokenizer.train(shakespeare[:100_000], vocab_size=300)
    assert tokenizer.vocab_size == 300
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 2)
    sample = shakespeare[200_000:201_000]
    ids = tokenizer.encode(sample)
    assert len(ids) < len(sample)  # merges make the ids fewer than the characters
    assert ids.max() < 300
    assert tokenizer.decode(ids) == sample
    assert tokenizer.decode(tokenizer.encode(UNICODE_TEXT)) == UNICODE_TEXT  # bytes cover any text
    restored = data.tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    np.testing.assert_array_equal(restored.encode(sample), ids)
    with pytest.raises(ValueError, match="vocab_size"):
        data.BPETokenizer.train(sample, vocab_size=100)
    assert isinstance(data.build_tokenizer("bpe", sample, bpe_vocab_size=280), data.BPETokenizer)


def test_bpe_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(ImportError, match=r"pip install 'attnkit\[bpe\]'"):
        data.BPETokenizer.train("some text", vocab_size=300)


def test_stream_decoder_emits_whole_characters_only(shakespeare):
    tokenizers = [data.CharTokenizer.from_text(UNICODE_TEXT), data.ByteTokenizer()]
    try:
        tokenizers.append(data.BPETokenizer.train(shakespeare[:50_000] + UNICODE_TEXT, vocab_size=300))
    except ImportError:
        pass
    for tokenizer in tokenizers:
        decoder = data.StreamDecoder(tokenizer)
        pieces = [decoder.push(np.array([token])) for token in tokenizer.encode(UNICODE_TEXT)]
        pieces.append(decoder.flush())
        assert "".join(pieces) == UNICODE_TEXT, tokenizer
        assert not any("\ufffd" in piece for piece in pieces), tokenizer


# ------------------------------------------------------------- batches ---


def test_random_offsets_range_and_formula():
    generator = Generator(5)
    offsets = data.random_offsets(1000, 64, 17, generator)
    assert offsets.dtype == np.int64 and offsets.shape == (64,)
    assert offsets.min() >= 0 and offsets.max() < 1000 - 17
    # The documented rule: two Philox words as one 64-bit u, offset = floor(u * count / 2**64).
    words = np.asarray(attnkit._C.random_bits(128, 5, 0)).view(np.uint32)
    expected = [((int(hi) << 32 | int(lo)) * (1000 - 17)) >> 64 for hi, lo in zip(words[0::2], words[1::2])]
    np.testing.assert_array_equal(offsets, expected)
    assert generator.offset == 1  # one stream per batch


def test_random_offsets_are_uniform():
    # 6 possible starts, 12,000 draws: each count is 2000 +- 5 standard deviations (sqrt(2000 * 5/6) = 41).
    offsets = data.random_offsets(10, 12_000, 4, Generator(9))
    counts = np.bincount(offsets, minlength=6)
    assert len(counts) == 6
    assert np.all(np.abs(counts - 2000) < 5 * 41), counts


def test_random_offsets_reproduce_with_the_seed():
    first = [data.random_offsets(10_000, 8, 32, g) for g in [Generator(3)] for _ in range(3)]
    again = [data.random_offsets(10_000, 8, 32, g) for g in [Generator(3)] for _ in range(3)]
    other = [data.random_offsets(10_000, 8, 32, g) for g in [Generator(4)] for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # successive batches differ
    assert not np.array_equal(first[0], other[0])


def test_random_offsets_errors():
    with pytest.raises(ValueError, match="block_size \\+ 1 = 11 tokens does not fit in 10 tokens"):
        data.random_offsets(10, 4, 10)
    with pytest.raises(ValueError, match="batch_size"):
        data.random_offsets(100, 0, 10)
    with pytest.raises(TypeError, match="generator"):
        data.random_offsets(100, 2, 10, generator=np.random.default_rng(0))


def test_batches_are_windows_and_their_next_tokens():
    tokens = np.arange(1000, 1300, dtype=np.int64)
    offsets = data.random_offsets(len(tokens), 7, 11, Generator(1))
    x, y = data.batch_arrays(tokens, offsets, 11)
    assert x.shape == y.shape == (7, 11) and x.dtype == y.dtype == np.int64
    for row, start in enumerate(offsets):
        np.testing.assert_array_equal(x[row], tokens[start : start + 11])
        np.testing.assert_array_equal(y[row], tokens[start + 1 : start + 12])
    xt, yt = data.get_batch(tokens, 7, 11, generator=Generator(1))
    assert xt.dtype == attnkit.int64 and xt.shape == (7, 11)
    np.testing.assert_array_equal(xt.numpy(), x)
    np.testing.assert_array_equal(yt.numpy(), y)
    # The last window ends at the last token.
    x, y = data.batch_arrays(tokens, np.array([len(tokens) - 12]), 11)
    assert y[0, -1] == tokens[-1]

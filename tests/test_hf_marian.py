"""MarianMTModel checkpoints against transformers: random weights, float32,
teacher-forced logits at every target position of a padded batch, greedy
decoding and beam search against ``generate`` with the same settings, and a
save that transformers reloads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import marian_tokenizer_files, require, right_padded, saved_and_reloaded

import attnkit
from attnkit.models import Transformer, TransformerConfig, from_pretrained

torch, transformers = require()

VOCAB, PAD, EOS = 97, 96, 0
LENGTHS = [9, 4, 12]


def _hf_marian(seed: int = 0, vocab: int = VOCAB):
    config = transformers.MarianConfig(
        vocab_size=vocab,
        decoder_vocab_size=vocab,
        d_model=48,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=96,
        decoder_ffn_dim=96,
        max_position_embeddings=64,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=vocab - 1,
        eos_token_id=EOS,
        decoder_start_token_id=vocab - 1,
        forced_eos_token_id=EOS,
    )
    torch.manual_seed(seed)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "embed_positions" not in name:  # the sinusoid tables, computed (never saved)
                parameter.add_(torch.randn_like(parameter) * 0.1)
        model.final_logits_bias.normal_(0.0, 0.5)
        model.final_logits_bias[0, EOS] += 1.0  # so that decoding ends within a few tokens
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("marian")
    model = _hf_marian()
    model.save_pretrained(directory)
    return model, directory


def _source(seed: int = 0):
    ids, mask = right_padded(LENGTHS, VOCAB - 1, seed=seed, low=1)
    ids[:, :][mask == 0] = PAD
    for row, length in enumerate(LENGTHS):
        ids[row, length - 1] = EOS  # a source ends with </s>, as Marian's tokenizer writes it
    return ids, mask


def _teacher_forced(model, hf_model, seed: int) -> None:
    src, mask = _source(seed)
    rng = np.random.default_rng(seed + 100)
    tgt = np.concatenate([np.full((len(src), 1), PAD), rng.integers(1, VOCAB - 1, (len(src), 7))], axis=1)
    with torch.no_grad():
        src_, mask_, tgt_ = (torch.from_numpy(array) for array in (src, mask, tgt))
        theirs = hf_model(input_ids=src_, attention_mask=mask_, decoder_input_ids=tgt_).logits.numpy()
    with attnkit.no_grad():
        ours = model(
            attnkit.from_numpy(src), attnkit.from_numpy(tgt), src_key_padding_mask=attnkit.from_numpy(mask == 0)
        ).numpy()
    assert_logits_close(ours, theirs)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


def test_logits_match_transformers(checkpoint):
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    assert isinstance(model, Transformer) and model.hf_architecture == "MarianMTModel"
    config = model.config
    assert (config.activation, config.position_layout, config.scale_embeddings) == ("silu", "halves", True)
    assert config.final_logits_bias and config.share_embeddings and not config.norm_first
    _teacher_forced(model, hf_model, seed=1)


def _hf_decoded(hf_model, src, mask, **settings) -> list:
    with torch.no_grad():
        output = hf_model.generate(
            input_ids=torch.from_numpy(src),
            attention_mask=torch.from_numpy(mask),
            do_sample=False,
            max_new_tokens=30,
            bad_words_ids=[[PAD]],
            renormalize_logits=True,
            forced_eos_token_id=None,
            **settings,
        )
    rows = []
    for row in output.tolist():
        tokens = row[1:]  # after the decoder start token
        rows.append(tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens)
    return rows


def _ours_decoded(output) -> list:
    rows = []
    for row in output.numpy().tolist():
        rows.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return rows


def test_greedy_and_beam_search_match_generate(checkpoint):
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    src, mask = _source(seed=2)
    arguments = dict(max_len=30, bos_id=PAD, eos_id=EOS, src_key_padding_mask=attnkit.from_numpy(mask == 0))
    greedy = model.greedy_decode(attnkit.from_numpy(src), banned_tokens=[PAD], **arguments)
    assert _ours_decoded(greedy) == _hf_decoded(hf_model, src, mask, num_beams=1)
    for beams in (2, 4):
        ours = model.beam_search(
            attnkit.from_numpy(src), beam_size=beams, length_penalty=0.0, banned_tokens=[PAD], **arguments
        )
        theirs = _hf_decoded(hf_model, src, mask, num_beams=beams, length_penalty=0.0)
        assert _ours_decoded(ours) == theirs, beams
        assert all(len(row) > 1 for row in theirs)  # decoding went past the first token (some rows to max_len)
        assert PAD not in sum(_ours_decoded(ours), [])


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0])
def test_beam_search_with_transformers_length_penalty_matches_generate(checkpoint, length_penalty):
    """log P / |Y|^alpha, transformers' normalization, searched to the end
    (its early_stopping="never")."""
    hf_model, directory = checkpoint
    model = from_pretrained(directory)
    src, mask = _source(seed=3)
    arguments = dict(max_len=30, bos_id=PAD, eos_id=EOS, src_key_padding_mask=attnkit.from_numpy(mask == 0))
    for beams in (2, 4):
        ours = model.beam_search(
            attnkit.from_numpy(src),
            beam_size=beams,
            length_penalty=length_penalty,
            length_normalization="length",
            early_stopping=False,
            banned_tokens=[PAD],
            **arguments,
        )
        theirs = _hf_decoded(
            hf_model, src, mask, num_beams=beams, length_penalty=length_penalty, early_stopping="never"
        )
        assert _ours_decoded(ours) == theirs, beams


def test_beam_search_refuses_an_unknown_length_normalization(checkpoint):
    model = from_pretrained(checkpoint[1])
    with pytest.raises(ValueError, match="argument 'length_normalization' expected one of 'gnmt', 'length', got 'hf'"):
        model.beam_search(
            attnkit.from_numpy(_source(seed=3)[0]), max_len=5, bos_id=PAD, eos_id=EOS, length_normalization="hf"
        )


def test_save_pretrained_round_trips_through_transformers(checkpoint, tmp_path):
    hf_model, directory = checkpoint
    reloaded = saved_and_reloaded(from_pretrained(directory), transformers.MarianMTModel, hf_model, tmp_path)
    _teacher_forced(from_pretrained(tmp_path), reloaded, seed=3)


def test_only_marian_shaped_transformers_save():
    model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, n_layer=1, n_head=2, n_embd=8, d_ff=8))
    with pytest.raises(ValueError, match="fits this Transformer: MarianMTModel cannot express position_layout="):
        model.save_pretrained("unused-directory")


def test_different_stack_sizes_are_refused(tmp_path):
    config = _hf_marian().config
    config.decoder_layers = 1
    transformers.MarianMTModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'encoder_layers' is 2 and 'decoder_layers' 1"):
        from_pretrained(tmp_path)


def test_translation_end_to_end_matches_transformers(tmp_path):
    """Tokenizer, beam search and decoding, as a user runs an OPUS-MT
    directory: text in, text out, against transformers' pipeline."""
    vocab = marian_tokenizer_files(tmp_path)
    hf_model = _hf_marian(seed=4, vocab=vocab)
    hf_model.save_pretrained(tmp_path)
    hf_tokenizer = transformers.MarianTokenizer.from_pretrained(tmp_path)
    hf_tokenizer.save_pretrained(tmp_path)
    texts = ["ROMEO: What say you, my lord?", "Good morrow.", "Thou art as wise as thou art beautiful."]
    pad = vocab - 1

    model = from_pretrained(tmp_path)
    tokenizer = model.tokenizer
    assert type(tokenizer).__name__ == "MarianTokenizer" and tokenizer.pad_id == pad
    batch = tokenizer.encode_batch(texts)
    output = model.beam_search(
        attnkit.from_numpy(batch["input_ids"]),
        beam_size=4,
        length_penalty=0.0,
        max_len=24,
        bos_id=model.hf_config["decoder_start_token_id"],
        eos_id=model.hf_config["eos_token_id"],
        src_key_padding_mask=attnkit.from_numpy(batch["attention_mask"] == 0),
        banned_tokens=[pad],
    )
    ours = tokenizer.batch_decode(output.numpy())

    encoded = hf_tokenizer(texts, padding=True, return_tensors="pt")
    np.testing.assert_array_equal(encoded["input_ids"].numpy(), batch["input_ids"])
    with torch.no_grad():
        generated = hf_model.generate(
            **encoded,
            num_beams=4,
            length_penalty=0.0,
            max_new_tokens=24,
            bad_words_ids=[[pad]],
            renormalize_logits=True,
            forced_eos_token_id=None,
        )
    assert all(ours) and ours == hf_tokenizer.batch_decode(generated, skip_special_tokens=True)

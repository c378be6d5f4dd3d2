"""BertModel, BertForMaskedLM and BertForSequenceClassification checkpoints
against transformers: random weights, float32, every real position of
right-padded batches with token types, and saves that transformers reloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import require, right_padded

import attnkit
from attnkit.models import BERT, BertConfig, from_pretrained

torch, transformers = require()

VOCAB = 211
LENGTHS = [11, 4, 17]


def _hf_config(**overrides):
    settings = dict(
        vocab_size=VOCAB,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=40,
    )
    settings.update(overrides)
    return transformers.BertConfig(**settings)


def _perturbed(model, seed: int):
    """Weights larger than BERT's init (std 0.02), so that a wrong layout
    cannot hide in small numbers."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def _saved_by_transformers(hf_class, directory, seed: int, config=None):
    """A perturbed ``hf_class`` model (of ``_hf_config()`` unless ``config``
    is given), saved by transformers into ``directory``; returns it."""
    hf_model = _perturbed(hf_class(config or _hf_config()), seed)
    hf_model.save_pretrained(directory)
    return hf_model


def _saved_by_attnkit(model, hf_class, directory):
    """``model`` saved by attnkit into ``directory``, loaded by transformers
    as ``hf_class``."""
    model.save_pretrained(directory)
    return hf_class.from_pretrained(directory).eval()


def _batch(seed: int = 0):
    ids, mask = right_padded(LENGTHS, VOCAB, seed=seed, low=1)
    types = np.zeros_like(ids)
    types[:, ids.shape[1] // 2 :] = 1  # a second segment in every row
    return ids, mask, types * mask


def _hf(model, ids, mask, types):
    with torch.no_grad():
        ids, mask, types = (torch.from_numpy(array) for array in (ids, mask, types))
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types)


def _ours(ids, mask, types) -> dict:
    return {
        "input_ids": attnkit.from_numpy(ids),
        "attention_mask": attnkit.from_numpy(mask),
        "token_type_ids": attnkit.from_numpy(types),
    }


def _check_encoder(model, hf_model, seed: int = 0) -> None:
    ids, mask, types = _batch(seed)
    theirs = _hf(hf_model, ids, mask, types)
    with attnkit.no_grad():
        ours = model(**_ours(ids, mask, types))
    real = mask.astype(bool)
    assert_logits_close(ours.sequence_output.numpy()[real], theirs.last_hidden_state.numpy()[real])
    assert_logits_close(ours.pooled_output.numpy(), theirs.pooler_output.numpy())


def _check_mlm(model, hf_model, seed: int = 0) -> None:
    ids, mask, types = _batch(seed)
    theirs = _hf(hf_model, ids, mask, types).logits.numpy()
    with attnkit.no_grad():
        ours = model.mlm_logits(**_ours(ids, mask, types)).numpy()
    real = mask.astype(bool)
    assert_logits_close(ours[real], theirs[real])
    np.testing.assert_array_equal(ours[real].argmax(-1), theirs[real].argmax(-1))


def _check_classifier(model, hf_model, seed: int = 0) -> None:
    ids, mask, types = _batch(seed)
    theirs = _hf(hf_model, ids, mask, types).logits.numpy()
    with attnkit.no_grad():
        ours = model.classify(**_ours(ids, mask, types)).numpy()
    assert_logits_close(ours, theirs)


def test_bert_model_matches_and_has_no_head(tmp_path):
    hf_model = _saved_by_transformers(transformers.BertModel, tmp_path, seed=1)
    model = from_pretrained(tmp_path)
    assert isinstance(model, BERT) and model.hf_architecture == "BertModel"
    assert model.config.pooler and not model.config.mlm_head and model.config.num_labels == 0
    assert not any(name.startswith(("mlm_", "classifier")) for name in model.state_dict())
    _check_encoder(model, hf_model)
    ids, mask, types = _batch()
    with pytest.raises(ValueError, match="no masked-LM head"):
        model.mlm_logits(**_ours(ids, mask, types))
    with pytest.raises(ValueError, match="no classifier"):
        model.classify(**_ours(ids, mask, types))

    reloaded = _saved_by_attnkit(model, transformers.BertModel, tmp_path / "again")
    _check_encoder(model, reloaded, seed=2)


def test_masked_lm_matches(tmp_path):
    hf_model = _saved_by_transformers(transformers.BertForMaskedLM, tmp_path, seed=3)
    model = from_pretrained(tmp_path)
    assert model.hf_architecture == "BertForMaskedLM" and model.config.mlm_head and not model.config.pooler
    _check_mlm(model, hf_model)

    reloaded = _saved_by_attnkit(model, transformers.BertForMaskedLM, tmp_path / "again")
    _check_mlm(model, reloaded, seed=4)


def test_pretraining_checkpoints_published_as_masked_lm_load(tmp_path):
    # bert-base-uncased's layout: BertForPreTraining's weights (pooler and
    # next-sentence head included) under "architectures": ["BertForMaskedLM"].
    hf_model = _saved_by_transformers(transformers.BertForPreTraining, tmp_path, seed=5)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, architectures=["BertForMaskedLM"])))
    model = from_pretrained(tmp_path)
    assert model.config.pooler and model.config.mlm_head
    ids, mask, types = _batch(6)
    theirs = _hf(hf_model, ids, mask, types).prediction_logits.numpy()
    with attnkit.no_grad():
        ours = model.mlm_logits(**_ours(ids, mask, types)).numpy()
    real = mask.astype(bool)
    assert_logits_close(ours[real], theirs[real])


def test_sequence_classification_matches_and_keeps_its_labels(tmp_path):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = _hf_config(id2label=labels, label2id={v: k for k, v in labels.items()})
    hf_model = _saved_by_transformers(transformers.BertForSequenceClassification, tmp_path, seed=7, config=config)
    model = from_pretrained(tmp_path)
    assert model.hf_architecture == "BertForSequenceClassification" and model.config.num_labels == 3
    _check_classifier(model, hf_model)

    reloaded = _saved_by_attnkit(model, transformers.BertForSequenceClassification, tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert reloaded.config.id2label == labels
    _check_classifier(model, reloaded, seed=8)


def test_an_attnkit_bert_saves_as_masked_lm(tmp_path):
    attnkit.manual_seed(9)
    config = BertConfig(
        vocab_size=VOCAB, block_size=40, n_layer=2, n_head=4, n_embd=48, d_ff=96, dropout=0.0, pad_token_id=0
    )
    model = BERT(config).eval()
    model.save_pretrained(tmp_path)
    hf_model = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    _check_mlm(model, hf_model, seed=10)
    # Its pooler travels along (BertForMaskedLM ignores it) and comes back.
    again = from_pretrained(tmp_path)
    assert again.config.pooler
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name].numpy(), tensor.numpy(), err_msg=name)


def test_a_classifier_without_pooler_and_mixed_heads():
    with pytest.raises(ValueError, match="num_labels > 0 needs config.pooler"):
        BERT(BertConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=4, d_ff=4, pooler=False, num_labels=2))
    model = BERT(BertConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=4, d_ff=4, num_labels=2))
    with pytest.raises(ValueError, match="no Hugging Face architecture .* fits this BERT"):
        model.save_pretrained("unused-directory")


def test_tensorflow_layer_norm_names_load(tmp_path):
    # bert-base-uncased's checkpoint names its LayerNorms' weights gamma and beta.
    from safetensors.numpy import load_file, save_file

    hf_model = _saved_by_transformers(transformers.BertModel, tmp_path, seed=11)
    tensors = load_file(tmp_path / "model.safetensors")
    renamed = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
        for name, value in tensors.items()
    }
    assert "embeddings.LayerNorm.gamma" in renamed
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    _check_encoder(from_pretrained(tmp_path), hf_model, seed=12)

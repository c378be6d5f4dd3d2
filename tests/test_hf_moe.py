"""MixtralForCausalLM and Qwen2MoeForCausalLM checkpoints against
transformers: tiny random-weight models saved by transformers, loaded by
attnkit as a Llama with nn.MoEFeedForward blocks; float32 logits at every
real position of left-padded batches, greedy generation with the KV cache
(grouped-query attention), top-1 and top-2 routing, Qwen2-MoE's
norm_topk_prob both ways, its shared expert and its dense blocks
(mlp_only_layers, decoder_sparse_step), tied and untied heads, a bfloat16
checkpoint, save_pretrained that transformers reloads to the same weights
and logits, a model built from scratch, and checkpoints that do not fit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hf_peers import require
from test_hf_llama import VOCAB, _assert_same_logits, _hf_greedy, _hf_model

import attnkit
from attnkit.models import Llama, LlamaConfig, from_pretrained
from attnkit.models.hf import CheckpointError, supported_architectures
from attnkit.nn import MoEFeedForward

torch, transformers = require()

# Mixtral's and Qwen2-MoE's settings on top of test_hf_llama's tiny Llama.
MIXTRAL = dict(num_local_experts=4, num_experts_per_tok=2)
QWEN2_MOE = dict(
    num_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=24,
    shared_expert_intermediate_size=40,
    norm_topk_prob=True,
)


def _moe_model(kind: str, seed: int = 0, **overrides):
    """test_hf_llama's random model, with a router (and shared-expert gate)
    strong enough that each token's experts are far from a tie: the choice
    then cannot depend on float rounding."""
    model = _hf_model(kind, seed, **{**(MIXTRAL if kind == "mixtral" else QWEN2_MOE), **overrides})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("gate.weight", "shared_expert_gate.weight")):
                parameter.normal_(0.0, 0.5)
    return model


CASES = {
    "mixtral-top2-untied": ("mixtral", {}),
    "mixtral-top1-tied-window": (
        "mixtral",
        {"num_experts_per_tok": 1, "tie_word_embeddings": True, "sliding_window": 6},
    ),
    "qwen2-moe-top2-renormalized": ("qwen2_moe", {}),
    "qwen2-moe-top1-raw-dense-layer": (
        "qwen2_moe",
        {"num_experts_per_tok": 1, "norm_topk_prob": False, "mlp_only_layers": [1], "tie_word_embeddings": True},
    ),
    "qwen2-moe-raw-sparse-step": ("qwen2_moe", {"norm_topk_prob": False, "decoder_sparse_step": 2}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    kind, overrides = CASES[request.param]
    hf_model = _moe_model(kind, **overrides)
    directory = tmp_path_factory.mktemp(request.param)
    hf_model.save_pretrained(directory)
    return request.param, hf_model, directory, from_pretrained(directory)


def test_logits_match_transformers_at_every_real_position(case):
    name, hf_model, _, model = case
    assert isinstance(model, Llama) and not model.training
    _assert_same_logits(model, hf_model, [23, 9, 1, 17], seed=1)


def test_greedy_generation_matches_transformers_alone_and_in_a_padded_batch(case):
    _, hf_model, _, model = case
    rng = np.random.default_rng(2)
    prompts = [rng.integers(3, VOCAB, n).tolist() for n in (7, 2, 12)]
    assert model.generate(prompts, 8, temperature=0.0, stop_tokens=[]) == _hf_greedy(hf_model, prompts, 8)
    assert model.generate([prompts[2]], 8, temperature=0.0, stop_tokens=[]) == _hf_greedy(hf_model, prompts[2:], 8)
    # the cache holds the kv heads only
    assert model.make_caches(1, 8)[0].num_kv_heads == model.config.n_kv_head < model.config.n_head


def test_the_blocks_are_what_config_json_says(case):
    name, hf_model, _, model = case
    config, hf_config = model.config, hf_model.config
    sparse = [i for i, block in enumerate(model.blocks) if isinstance(block.feed_forward, MoEFeedForward)]
    expected = [i for i, layer in enumerate(hf_model.model.layers) if hasattr(layer.mlp, "experts")]
    assert sparse == expected and sparse
    moe = model.blocks[sparse[0]].feed_forward
    assert (moe.n_experts, moe.top_k) == (config.n_experts, hf_config.num_experts_per_tok)
    if name.startswith("mixtral"):
        assert moe.renormalize and moe.shared_expert is None and moe.d_ff == hf_config.intermediate_size
    else:
        assert moe.renormalize == hf_config.norm_topk_prob and moe.d_ff == hf_config.moe_intermediate_size
        assert moe.shared_expert.d_ff == hf_config.shared_expert_intermediate_size
    dense = [block.feed_forward for block in model.blocks if not isinstance(block.feed_forward, MoEFeedForward)]
    assert all(ff.d_ff == hf_config.intermediate_size for ff in dense)


def test_save_pretrained_reloads_in_transformers_to_the_same_weights_and_logits(case, tmp_path):
    name, hf_model, directory, model = case
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((directory / "config.json").read_text())
    assert saved["architectures"] == original["architectures"]
    reloaded = getattr(transformers, original["architectures"][0]).from_pretrained(tmp_path).eval()
    theirs = hf_model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key
    _assert_same_logits(model, reloaded, [21, 6], seed=3)
    assert from_pretrained(tmp_path).config == model.config


def test_a_bfloat16_checkpoint_loads_exactly(tmp_path):
    hf_model = _moe_model("qwen2_moe", seed=4, mlp_only_layers=[0])
    hf_model.to(torch.bfloat16).save_pretrained(tmp_path)
    hf_model = transformers.Qwen2MoeForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    model = from_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = {name: tensor.float().numpy() for name, tensor in load_file(tmp_path / "model.safetensors").items()}
    expert = "model.layers.1.mlp.experts.{}.{}_proj.weight".format
    ours = model.blocks[1].feed_forward
    for e in range(4):
        gate_up = np.concatenate([saved[expert(e, "gate")], saved[expert(e, "up")]])
        np.testing.assert_array_equal(ours.fc1_weight.detach().numpy()[e], gate_up)
        np.testing.assert_array_equal(ours.fc2_weight.detach().numpy()[e], saved[expert(e, "down")])
    _assert_same_logits(model, hf_model, [12, 5], seed=5)


@pytest.mark.parametrize("shared", [False, True])
def test_a_model_built_from_scratch_saves_for_transformers(tmp_path, shared):
    """A LlamaConfig with experts, trained a few steps: Mixtral's shape saves
    as a MixtralForCausalLM, one with a shared expert and a dense block as a
    Qwen2MoeForCausalLM, and transformers gives the same logits."""
    attnkit.manual_seed(6)
    config = LlamaConfig(
        vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, d_ff=48, n_experts=4, top_k=2
    )
    if shared:
        config = dataclasses.replace(config, qkv_bias=True, expert_d_ff=16, shared_expert_d_ff=24, moe_layers=[1])
    model = Llama(config)
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        batch = attnkit.from_numpy(rng.integers(0, 97, (2, 16)))
        loss = attnkit.nn.functional.cross_entropy(model(batch).reshape(-1, 97), batch.reshape(-1)) + model.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path)
    name = "Qwen2MoeForCausalLM" if shared else "MixtralForCausalLM"
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [name]
    hf_model = getattr(transformers, name).from_pretrained(tmp_path).eval()
    _assert_same_logits(model, hf_model, [16, 7], seed=6)
    assert from_pretrained(tmp_path).config.resolved() == model.config.resolved()


def _saved(tmp_path, kind="mixtral", **overrides):
    _moe_model(kind, num_hidden_layers=2, **overrides).save_pretrained(tmp_path)
    from safetensors.numpy import load_file, save_file

    return load_file(tmp_path / "model.safetensors"), lambda tensors: save_file(
        tensors, tmp_path / "model.safetensors", metadata={"format": "pt"}
    )


def test_a_missing_expert_is_refused_naming_its_key(tmp_path):
    tensors, write = _saved(tmp_path)
    del tensors["model.layers.1.block_sparse_moe.experts.3.w3.weight"]
    write(tensors)
    with pytest.raises(
        CheckpointError, match=r"missing weights: model\.layers\.1\.block_sparse_moe\.experts\.3\.w3\.weight"
    ):
        from_pretrained(tmp_path)


def test_an_expert_of_the_wrong_shape_is_refused_naming_its_key_and_both_shapes(tmp_path):
    tensors, write = _saved(tmp_path, "qwen2_moe")
    key = "model.layers.0.mlp.experts.2.down_proj.weight"
    tensors[key] = tensors[key][:, :-1].copy()
    write(tensors)
    with pytest.raises(
        CheckpointError, match=rf"'{key}': the checkpoint has \[64, 23\], config.json implies \[64, 24\]"
    ):
        from_pretrained(tmp_path)


def test_an_extra_expert_is_refused(tmp_path):
    tensors, write = _saved(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({**json.loads((tmp_path / "config.json").read_text()), "num_local_experts": 3})
    )
    with pytest.raises(CheckpointError, match=r"unexpected weights.*block_sparse_moe\.experts\.3\.w1\.weight"):
        from_pretrained(tmp_path)


def test_unsupported_settings_are_refused(tmp_path):
    _saved(tmp_path, "qwen2_moe")
    config = json.loads((tmp_path / "config.json").read_text())
    for change, message in (
        ({"use_sliding_window": True, "sliding_window": 4}, "use_sliding_window"),
        ({"decoder_sparse_step": 0}, "decoder_sparse_step"),
        ({"num_experts_per_tok": 5}, "top_k"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=message):
            from_pretrained(tmp_path)


def test_unknown_architecture_errors_list_the_new_classes(tmp_path):
    assert {"MixtralForCausalLM", "Qwen2MoeForCausalLM"} <= set(supported_architectures())
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DeepseekV3ForCausalLM"]}))
    with pytest.raises(CheckpointError, match="MixtralForCausalLM.*Qwen2MoeForCausalLM"):
        from_pretrained(tmp_path)

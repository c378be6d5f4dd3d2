"""attnkit.utils.checkpoint and the models' gradient_checkpointing: the
gradients of a checkpointed run equal the plain run's bit for bit, dropout
included, and the checkpointed forward keeps only the segments' inputs."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
import attnkit.nn.functional as F
from attnkit import nn
from attnkit.autograd import run_backward
from attnkit.data import load_text
from attnkit.models import BERT, GPT, BertConfig, GPTConfig, Llama, LlamaConfig, Transformer, TransformerConfig
from attnkit.serialization import load_config
from attnkit.utils import checkpoint


def _gpt_grads(config: GPTConfig, seed: int, ids: np.ndarray, targets: np.ndarray):
    attnkit.manual_seed(seed)
    model = GPT(config)
    model.train()
    attnkit.manual_seed(seed + 1)  # the dropout streams start at the same place in both runs
    logits = model(attnkit.from_numpy(ids))
    loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), attnkit.from_numpy(targets.reshape(-1)))
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    return loss.item(), grads, attnkit.random.default_generator.state_dict()


# 3 steps without dropout: few enough queries for attention's decode path,
# which a forward without grad would take.
@pytest.mark.parametrize("steps,dropout", [(3, 0.0), (5, 0.2), (24, 0.2)])
def test_gpt_gradient_checkpointing_is_bit_identical(steps, dropout):
    rng = np.random.default_rng(0)
    base = dict(vocab_size=37, block_size=32, n_layer=3, n_head=2, n_embd=16, dropout=dropout)
    ids = rng.integers(0, 37, size=(3, steps)).astype(np.int64)
    targets = rng.integers(0, 37, size=(3, steps)).astype(np.int64)
    loss_plain, grads_plain, state_plain = _gpt_grads(GPTConfig(**base), 5, ids, targets)
    loss_ckpt, grads_ckpt, state_ckpt = _gpt_grads(GPTConfig(**base, gradient_checkpointing=True), 5, ids, targets)
    assert loss_ckpt == loss_plain
    assert grads_plain.keys() == grads_ckpt.keys()
    for name in grads_plain:
        np.testing.assert_array_equal(grads_ckpt[name], grads_plain[name], err_msg=name)
    # Backward put the generator back where it found it: what comes next
    # draws the same numbers as in the plain run.
    assert state_ckpt == state_plain
    if dropout == 0.0:
        return
    # and dropout was active: a different seed for the dropout changes the loss
    attnkit.manual_seed(5)
    model = GPT(GPTConfig(**base))
    attnkit.manual_seed(99)
    other = F.cross_entropy(
        model(attnkit.from_numpy(ids)).reshape(-1, 37), attnkit.from_numpy(targets.reshape(-1))
    ).item()
    assert other != loss_plain


def _checkpointed_segments(loss) -> int:
    """The CheckpointBackward nodes of loss's graph."""
    seen, stack = {}, [loss.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(child[0] for child in node.inputs if isinstance(child, tuple))
    return sum(node.name == "CheckpointBackward" for node in seen.values())


def _model_grads(build, loss_of, checkpointing: bool):
    attnkit.manual_seed(7)
    model = build(checkpointing).train()
    attnkit.manual_seed(8)
    loss = loss_of(model)
    layers = sum(len(m.layers if hasattr(m, "layers") else m.blocks) for m in model.modules() if _is_stack(m))
    assert _checkpointed_segments(loss) == (layers if checkpointing else 0)
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def _is_stack(module) -> bool:
    return isinstance(module, (nn.TransformerEncoder, nn.TransformerDecoder, GPT))


def _assert_same_gradients(build, loss_of):
    loss_plain, plain = _model_grads(build, loss_of, False)
    loss_ckpt, ckpt = _model_grads(build, loss_of, True)
    assert loss_ckpt == loss_plain
    assert plain.keys() == ckpt.keys() and len(plain) > 0
    for name in plain:
        np.testing.assert_array_equal(ckpt[name], plain[name], err_msg=name)


def test_llama_gradient_checkpointing_is_bit_identical():
    # rotary positions (passed to each checkpointed block), grouped-query
    # attention, RMSNorm, SwiGLU, an untied head, and dropout
    rng = np.random.default_rng(1)
    ids = attnkit.from_numpy(rng.integers(0, 41, size=(2, 12)).astype(np.int64))
    settings = dict(vocab_size=41, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, d_ff=48, dropout=0.2)

    def build(checkpointing):
        return Llama(LlamaConfig(**settings, gradient_checkpointing=checkpointing))

    def loss_of(model):
        return F.cross_entropy(model(ids).reshape(-1, 41), ids.reshape(-1))

    _assert_same_gradients(build, loss_of)


def test_bert_gradient_checkpointing_is_bit_identical():
    # post-LN encoder layers with a padding mask and dropout
    rng = np.random.default_rng(2)
    ids = attnkit.from_numpy(rng.integers(0, 53, size=(2, 9)).astype(np.int64))
    mask = np.ones((2, 9), np.int64)
    mask[1, 6:] = 0
    attention_mask = attnkit.from_numpy(mask)

    def build(checkpointing):
        config = BertConfig(vocab_size=53, block_size=16, n_layer=2, n_head=2, n_embd=16, d_ff=32, dropout=0.2)
        config.gradient_checkpointing = checkpointing
        return BERT(config)

    def loss_of(model):
        sequence, pooled = model(ids, attention_mask=attention_mask)
        logits = model.mlm_head(sequence)
        return F.cross_entropy(logits.reshape(-1, 53), ids.reshape(-1)) + pooled.sum()

    _assert_same_gradients(build, loss_of)


def test_encoder_decoder_gradient_checkpointing_is_bit_identical():
    # the decoder's layers take the encoder's output (memory) as a
    # positional input of their checkpoint: its gradient flows back through
    # the checkpointed encoder
    rng = np.random.default_rng(3)
    src = attnkit.from_numpy(rng.integers(0, 23, size=(2, 7)).astype(np.int64))
    tgt = attnkit.from_numpy(rng.integers(0, 23, size=(2, 5)).astype(np.int64))
    src_mask = np.zeros((2, 7), bool)
    src_mask[0, 5:] = True

    def build(checkpointing):
        config = TransformerConfig(
            src_vocab_size=23, tgt_vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16, d_ff=32
        )
        config.dropout, config.gradient_checkpointing = 0.2, checkpointing
        return Transformer(config)

    def loss_of(model):
        logits = model(src, tgt, src_key_padding_mask=attnkit.from_numpy(src_mask))
        return model.loss(logits, tgt)

    _assert_same_gradients(build, loss_of)
    assert Transformer(
        TransformerConfig(
            n_layer=1, n_embd=8, n_head=2, d_ff=8, src_vocab_size=5, tgt_vocab_size=5, gradient_checkpointing=True
        )
    ).decoder.gradient_checkpointing


def test_gpt_checkpointing_in_eval_and_no_grad_is_a_plain_forward():
    attnkit.manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, gradient_checkpointing=True)
    model = GPT(config).eval()
    ids = attnkit.from_numpy(np.arange(8, dtype=np.int64).reshape(1, 8) % 11)
    with attnkit.no_grad():
        out = model(ids)
    assert out.grad_fn is None
    plain = GPT(GPTConfig(**{**config.__dict__, "gradient_checkpointing": False}))
    plain.load_state_dict(model.state_dict())
    with attnkit.no_grad():
        np.testing.assert_array_equal(plain.eval()(ids).numpy(), out.numpy())


def test_checkpoint_keeps_only_the_inputs():
    # The node of a checkpointed segment saves its input arrays and nothing else.
    attnkit.manual_seed(0)
    block = nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0, norm_first=True)
    x = attnkit.from_numpy(np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32))
    x.requires_grad_()
    y = checkpoint(block, x, causal=True)
    node = y.grad_fn
    assert node.name == "CheckpointBackward"
    assert node.ctx.saved == ()
    assert [a.shape for a in node.ctx.arrays] == [(2, 5, 16)]
    # its inputs: x, then every parameter of the block
    assert len(node.inputs) == 2 + len(list(block.parameters()))


def test_checkpoint_function_with_several_outputs_and_closures():
    rng = np.random.default_rng(1)
    a = attnkit.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)).requires_grad_()
    b = attnkit.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)).requires_grad_()
    w = attnkit.from_numpy(rng.standard_normal((3, 3)).astype(np.float32)).requires_grad_()  # captured

    def function(x, scale, y):
        h = F.dropout(x @ w, 0.5) * scale
        return h + y, (h * y).sum()

    def run(use_checkpoint):
        for t in (a, b, w):
            t.grad = None
        attnkit.manual_seed(3)
        if use_checkpoint:
            out, total = checkpoint(function, a, 2.0, b)
        else:
            out, total = function(a, 2.0, b)
        (out.sum() + total * 3.0).backward()
        return [t.grad.numpy().copy() for t in (a, b, w)]

    plain, ckpt = run(False), run(True)
    for p, c in zip(plain, ckpt):
        np.testing.assert_array_equal(c, p)


def test_checkpoint_parameter_gradients_reach_hooks_once():
    # A module's parameters are inputs of the checkpoint's node: their
    # post-accumulate-grad hooks run once per backward, after their
    # gradient is complete (what data-parallel training needs).
    attnkit.manual_seed(0)
    layer = nn.Linear(4, 4)
    calls = []
    layer.weight.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.numpy().copy()))
    x = attnkit.from_numpy(np.ones((2, 4), np.float32))
    y = checkpoint(layer, x)
    z = layer(y)  # the same weight used again outside the segment
    z.sum().backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], layer.weight.grad.numpy())
    expected = attnkit.from_numpy(np.ones((2, 4), np.float32))
    layer.weight.grad = None
    layer(layer(expected)).sum().backward()
    np.testing.assert_array_equal(calls[0], layer.weight.grad.numpy())


def test_checkpoint_without_grad_is_a_plain_call_and_bad_arguments():
    layer = nn.Linear(3, 2)
    x = attnkit.from_numpy(np.ones((1, 3), np.float32))
    with attnkit.no_grad():
        assert checkpoint(layer, x).grad_fn is None
    with pytest.raises(TypeError, match="checkpoint: argument 'function' expected a callable"):
        checkpoint(3, x)
    with pytest.raises(ValueError, match="keyword argument 'bias'"):
        checkpoint(lambda t, bias: t + bias, x, bias=attnkit.zeros(1, 3).requires_grad_())
    with pytest.raises(TypeError, match="return a Tensor or a tuple of Tensors"):
        checkpoint(lambda t: 3, x.requires_grad_())


def test_run_backward_capture_leaves_grad_alone():
    x = attnkit.from_numpy(np.arange(3, dtype=np.float32)).requires_grad_()
    y = (x * x).sum()
    capture = {id(x): [x, None]}
    run_backward(y, attnkit.ones(())._array, capture=capture)
    assert x.grad is None
    np.testing.assert_array_equal(np.asarray(capture[id(x)][1]), [0.0, 2.0, 4.0])


def test_attnkit_train_gradient_checkpointing_gives_the_same_run(tmp_path):
    from attnkit import cli

    data = tmp_path / "text.txt"
    data.write_text(load_text()[:20_000], encoding="utf-8")
    common = ["train", "--data", str(data), "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16"]
    common += ["--batch-size", "4", "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "2", "--dropout", "0.1"]
    common += ["--no-progress"]
    assert cli.main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "ckpt"), "--gradient-checkpointing"]) == 0
    plain = attnkit.load(str(tmp_path / "plain" / "model.safetensors"))
    ckpt = attnkit.load(str(tmp_path / "ckpt" / "model.safetensors"))
    assert plain.keys() == ckpt.keys()
    for name in plain:
        np.testing.assert_array_equal(ckpt[name].numpy(), plain[name].numpy(), err_msg=name)
    config = load_config(str(tmp_path / "ckpt" / "model.safetensors"))
    assert config["model"]["gradient_checkpointing"] is True

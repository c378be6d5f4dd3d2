"""Trains the encoder-decoder Transformer of "Attention Is All You Need" on a
synthetic sequence task and decodes held-out sources with beam search.

    python examples/seq2seq.py --task reverse

Sources are random symbols 1..V-1; the target is the source (copy) or the
source backwards (reverse), then EOS. Token 0 is both BOS and EOS.
"""

import argparse
import time

import numpy as np

import attnkit
from attnkit.models import Transformer, TransformerConfig


def make_batch(rng, count, length, vocab_size, task):
    """(source, decoder input = BOS + target[:-1], target) as int64 arrays."""
    source = rng.integers(1, vocab_size, size=(count, length))
    output = source[:, ::-1] if task == "reverse" else source
    eos = np.zeros((count, 1), np.int64)
    return source, np.concatenate([eos, output], axis=1), np.concatenate([output, eos], axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["copy", "reverse"], default="copy")
    parser.add_argument("--length", type=int, default=10, help="symbols per source")
    parser.add_argument("--vocab-size", type=int, default=11, help="symbols plus the BOS/EOS token")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--held-out", type=int, default=200, help="sources to decode after training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    attnkit.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    max_len = args.length + 1  # the symbols, then EOS
    config = TransformerConfig(
        src_vocab_size=args.vocab_size,
        tgt_vocab_size=args.vocab_size,
        block_size=max_len,
        n_layer=2,
        n_head=4,
        n_embd=64,
        d_ff=128,
        dropout=0.0,
        label_smoothing=0.0,
    )
    model = Transformer(config)
    print(f"{model.num_parameters():,} parameters; task {args.task}, {args.steps} steps")
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    schedule = attnkit.optim.lr_scheduler.WarmupCosineLR(
        optimizer, warmup_steps=min(50, args.steps), total_steps=args.steps, min_lr_ratio=0.1
    )
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        source, decoder_input, target = (
            attnkit.from_numpy(np.ascontiguousarray(a))
            for a in make_batch(rng, args.batch_size, args.length, args.vocab_size, args.task)
        )
        loss = model.loss(model(source, decoder_input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:.1f} s")

    model.eval()
    source, _, target = make_batch(rng, args.held_out, args.length, args.vocab_size, args.task)
    decoded = model.beam_search(
        attnkit.from_numpy(source), args.beam_size, args.length_penalty, max_len=max_len, bos_id=0, eos_id=0
    ).numpy()
    correct = decoded.shape == target.shape and np.all(decoded == target, axis=1)
    print(
        f"beam search (beam {args.beam_size}, alpha {args.length_penalty}): "
        f"{np.mean(correct):.1%} of {args.held_out} held-out sources exactly right"
    )
    for index in range(3):
        print(f"  {source[index].tolist()} -> {decoded[index, : args.length].tolist()}")


if __name__ == "__main__":
    main()

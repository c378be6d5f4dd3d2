"""Tiny Shakespeare end to end: `attnkit train`'s default run (nanoGPT's CPU
recipe, 2000 steps) against the same run in PyTorch.

    python bench/bench_shakespeare.py [--max-iters 2000] [--threads 2] [--rounds 1] [--no-torch]

attnkit runs ``attnkit.training.train`` exactly as ``attnkit train`` does
(checkpoints and metrics.jsonl in a temporary run directory). PyTorch runs
the same model (bench/torch_gpt.py, with attnkit's initial weights copied
in), the same batches in the same order (the window starts of attnkit's
Philox stream for each step), the same evaluation batches at the same steps,
the same AdamW groups (biases and LayerNorms without decay), the same lr
schedule and gradient clipping; it saves a checkpoint at each evaluation
too. Two PyTorch runs: ``torch`` with torch.optim.AdamW's defaults (what
nanoGPT uses on the CPU), ``torch fused`` with ``fused=True``, PyTorch's
fastest documented CPU form. Each run is a worker process of its own; with
``--rounds N`` the three alternate N times (common.py).

Reported per side: wall time of the training loop (evaluations and
checkpoints included; setup, data loading and the first model build
excluded), seconds per step, tokens/s, and the final train and val loss (the
mean over the fixed evaluation batches). The target: val loss <= 1.95 in at
most 0.7x PyTorch's wall time (nanoGPT reports 1.88 for this recipe).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

import common

import attnkit
from attnkit import benchmarks, data, optim
from attnkit.models import GPT
from attnkit.training import TrainConfig, evaluation_batches, load_corpus, train, train_generator

TARGET_VAL_LOSS = 1.95
TARGET_WALL_RATIO = 0.7


def run_attnkit(config: TrainConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_shakespeare_") as out:
        summary = train(dataclasses.replace(config, out=out))
    return {"wall_s": summary["elapsed_s"], "train_loss": summary["train_loss"], "val_loss": summary["val_loss"]}


def run_torch(torch, config: TrainConfig, optimizer_kind: str) -> dict:
    """The same training in PyTorch, with AdamW's ``optimizer_kind`` form
    (attnkit.benchmarks.TORCH_OPTIMIZERS); see the module docstring."""
    import torch.nn.functional as F
    import torch_gpt

    tokenizer, train_tokens, val_tokens = load_corpus(config)
    # The initial weights of attnkit's run: the same seed, the same model.
    attnkit.manual_seed(config.seed)
    source = GPT(config.model_config(tokenizer.vocab_size))
    model = torch_gpt.GPT(source.config)
    torch_gpt.copy_from_attnkit(model, source)
    torch_parameters = dict(model.named_parameters())
    names = {id(p): name for name, p in source.named_parameters()}
    groups = [
        dict(params=[torch_parameters[names[id(p)]] for p in group["params"]], weight_decay=group["weight_decay"])
        for group in optim.weight_decay_groups(source, config.weight_decay)
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=1e-8,
        **benchmarks.TORCH_OPTIMIZERS[optimizer_kind],
    )
    # attnkit's schedule object gives the factor of each step.
    schedule = optim.WarmupCosineLR(
        optim.SGD(source.parameters(), lr=config.lr),
        config.warmup_iters,
        config.decay_steps(),
        min_lr_ratio=config.min_lr / config.lr,
    )
    batches = train_generator(config.seed)
    eval_sets = [
        [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in evaluation_batches(tokens, config, index)]
        for index, tokens in enumerate((train_tokens, val_tokens))
    ]
    vocab = tokenizer.vocab_size

    def evaluate(batches_of_split) -> float:
        with torch.no_grad():
            return sum(F.cross_entropy(model(x).view(-1, vocab), y.view(-1)).item() for x, y in batches_of_split) / len(
                batches_of_split
            )

    record = {}
    with tempfile.TemporaryDirectory(prefix="bench_shakespeare_torch_") as out:
        start = time.perf_counter()
        for step in range(config.max_iters + 1):
            if step % config.eval_interval == 0 or step == config.max_iters:
                model.eval()
                record = {"step": step, "train_loss": evaluate(eval_sets[0]), "val_loss": evaluate(eval_sets[1])}
                model.train()
                print(
                    f"torch step {step}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}",
                    file=sys.stderr,
                )
                torch.save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                    os.path.join(out, "checkpoint.pt"),
                )
            if step == config.max_iters:
                break
            offsets = data.random_offsets(len(train_tokens), config.batch_size, config.block_size, batches)
            x, y = data.batch_arrays(train_tokens, offsets, config.block_size)
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, vocab), y.view(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * schedule.factor(step + 1)
            optimizer.step()
            loss.item()  # as attnkit's loop reads the loss of every step
        wall = time.perf_counter() - start
    return {"wall_s": wall, "train_loss": record["train_loss"], "val_loss": record["val_loss"]}


def config_of(args) -> TrainConfig:
    return TrainConfig(max_iters=args.max_iters, eval_interval=args.eval_interval, progress=False)


def measure(recorder, side: str, torch, args) -> None:
    config = config_of(args)
    if side == "attnkit":
        result = run_attnkit(config)
    else:
        result = run_torch(torch, config, "fused" if side == "torch fused" else "default")
    recorder.add("train", "shakespeare", side, [result["wall_s"]])
    recorder.facts.update(result)


def main() -> int:
    parser = common.argument_parser(__doc__.splitlines()[0], calls=False)
    parser.set_defaults(threads=[os.cpu_count()], rounds=1)
    parser.add_argument(
        "--max-iters",
        type=int,
        default=TrainConfig.max_iters,
        help=f"training steps (default: {TrainConfig.max_iters}; fewer for a quick check)",
    )
    parser.add_argument("--eval-interval", type=int, default=TrainConfig.eval_interval)
    args = parser.parse_args()
    common.run_worker(args, measure)
    if len(args.threads) != 1:
        parser.error("--threads takes one count here")

    facts = common.print_machine(args)
    names = common.sides(args, peers=("torch", "torch fused"))
    print(f"{args.rounds} round(s) of {', '.join(names)} worker processes at {args.threads[0]} thread(s)")
    _, documents = common.measure_sides(__file__, args, names)
    documents = documents[args.threads[0]]
    config = config_of(args)
    tokens_per_step = config.batch_size * config.block_size

    rows = {}
    print(
        f"\ntiny Shakespeare, {config.max_iters} steps of batch {config.batch_size} x block {config.block_size}, "
        f"{args.threads[0]} threads, {args.rounds} run(s) per side (median wall time, ± half the spread)"
    )
    header = ["side", "wall s", "±", "ms/step", "tokens/s", "train loss", "val loss", "wall / attnkit's"]
    lines = []
    for side, runs in documents.items():
        timing = common.Timing.of_rounds([[run["facts"]["wall_s"]] for run in runs])
        last = runs[-1]["facts"]
        rows[side] = {
            "wall_s": timing.median,
            "all_wall_s": [run["facts"]["wall_s"] for run in runs],
            "spread": timing.spread,
            "ms_per_step": 1e3 * timing.median / max(config.max_iters, 1),
            "tokens_per_s": config.max_iters * tokens_per_step / timing.median,
            "train_loss": last["train_loss"],
            "val_loss": last["val_loss"],
        }
        row = rows[side]
        lines.append(
            [
                side,
                f"{row['wall_s']:.1f}",
                f"{50 * row['spread']:.0f}%",
                f"{row['ms_per_step']:.1f}",
                f"{row['tokens_per_s']:.0f}",
                f"{row['train_loss']:.4f}",
                f"{row['val_loss']:.4f}",
                f"{row['wall_s'] / rows['attnkit']['wall_s']:.2f}",
            ]
        )
    print(common.format_columns(header, lines))
    verdict = {"val_loss_target_met": rows["attnkit"]["val_loss"] <= TARGET_VAL_LOSS}
    peers = [side for side in rows if side != "attnkit"]
    if peers:
        ratio = rows["attnkit"]["wall_s"] / min(rows[side]["wall_s"] for side in peers)
        verdict["wall_ratio"] = ratio
        verdict["wall_ratio_target_met"] = ratio <= TARGET_WALL_RATIO
        print(f"attnkit / the faster PyTorch run, wall time: {ratio:.2f} (target <= {TARGET_WALL_RATIO})")
    print(
        f"attnkit val loss {rows['attnkit']['val_loss']:.4f} "
        f"({'meets' if verdict['val_loss_target_met'] else 'misses'} the target <= {TARGET_VAL_LOSS}"
        f"{'' if config.max_iters == 2000 else '; the target is for 2000 steps'})"
    )
    document = {
        "settings": vars(args),
        "config": dataclasses.asdict(config),
        "results": rows,
        "targets": {"val_loss": TARGET_VAL_LOSS, "wall_ratio": TARGET_WALL_RATIO},
        **verdict,
    }
    path = common.write_document(__file__, facts, document)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

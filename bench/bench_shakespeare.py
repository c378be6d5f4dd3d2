"""Tiny Shakespeare end to end: `attnkit train`'s default run (nanoGPT's CPU
recipe, 2000 steps) against the same run in PyTorch, in one process.

    python bench/bench_shakespeare.py [--max-iters 2000] [--threads 2] [--repeats 1] [--no-torch]

attnkit runs ``attnkit.training.train`` exactly as ``attnkit train`` does
(checkpoints and metrics.jsonl in a temporary run directory). PyTorch runs
the same model (bench/torch_gpt.py, with attnkit's initial weights copied
in), the same batches in the same order (the window starts of attnkit's
Philox stream for each step), the same evaluation batches at the same steps,
the same AdamW groups (biases and LayerNorms without decay), the same lr
schedule and gradient clipping; it saves a checkpoint at each evaluation
too. PyTorch's AdamW is its fused CPU kernel, its fastest.

Reported per side: wall time of the training loop (evaluations and
checkpoints included; setup, data loading and the first model build
excluded), seconds per step, tokens/s, and the final train and val loss (the
mean over the fixed evaluation batches). The target: val loss <= 1.95 in at
most 0.7x PyTorch's wall time (nanoGPT reports 1.88 for this recipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import common  # first: it sets how idle threads wait, before any thread pool starts

import attnkit
from attnkit import data, optim
from attnkit.models import GPT
from attnkit.training import TrainConfig, evaluation_batches, load_corpus, train, train_generator

TARGET_VAL_LOSS = 1.95
TARGET_WALL_RATIO = 0.7


def run_attnkit(config: TrainConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_shakespeare_") as out:
        summary = train(dataclasses.replace(config, out=out))
    return {"wall_s": summary["elapsed_s"], "train_loss": summary["train_loss"], "val_loss": summary["val_loss"]}


def run_torch(torch, config: TrainConfig) -> dict:
    """The same training in PyTorch; see the module docstring."""
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
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=1e-8, fused=True)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-iters",
        type=int,
        default=TrainConfig.max_iters,
        help=f"training steps (default: {TrainConfig.max_iters}; fewer for a quick check)",
    )
    parser.add_argument("--eval-interval", type=int, default=TrainConfig.eval_interval)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the median wall time is reported")
    parser.add_argument("--no-torch", action="store_true", help="run attnkit only")
    args = parser.parse_args()
    torch = common.optional_torch(disabled=args.no_torch)
    common.set_threads(args.threads, torch)
    config = TrainConfig(max_iters=args.max_iters, eval_interval=args.eval_interval, progress=False)
    tokens_per_step = config.batch_size * config.block_size

    runs = {"attnkit": [], "torch": []}
    for _repeat in range(args.repeats):
        # Alternating sides, so a slow spell of a shared machine hits both.
        runs["attnkit"].append(run_attnkit(config))
        if torch is not None:
            runs["torch"].append(run_torch(torch, config))

    rows = {}
    print(
        f"\ntiny Shakespeare, {config.max_iters} steps of batch {config.batch_size} x block {config.block_size}, "
        f"{args.threads} threads, {args.repeats} run(s) per side (median wall time)"
    )
    print(f"{'':8}  {'wall s':>8}  {'ms/step':>8}  {'tokens/s':>9}  {'train loss':>10}  {'val loss':>8}")
    for side, results in runs.items():
        if not results:
            continue
        wall = statistics.median(r["wall_s"] for r in results)
        last = results[-1]
        rows[side] = {
            "wall_s": wall,
            "all_wall_s": [r["wall_s"] for r in results],
            "ms_per_step": 1e3 * wall / max(config.max_iters, 1),
            "tokens_per_s": config.max_iters * tokens_per_step / wall,
            "train_loss": last["train_loss"],
            "val_loss": last["val_loss"],
        }
        row = rows[side]
        print(
            f"{side:8}  {wall:8.1f}  {row['ms_per_step']:8.1f}  {row['tokens_per_s']:9.0f}  "
            f"{row['train_loss']:10.4f}  {row['val_loss']:8.4f}"
        )
    verdict = {"val_loss_target_met": rows["attnkit"]["val_loss"] <= TARGET_VAL_LOSS}
    if "torch" in rows:
        ratio = rows["attnkit"]["wall_s"] / rows["torch"]["wall_s"]
        verdict["wall_ratio"] = ratio
        verdict["wall_ratio_target_met"] = ratio <= TARGET_WALL_RATIO
        print(f"attnkit / torch wall time: {ratio:.2f} (target <= {TARGET_WALL_RATIO})")
    print(
        f"attnkit val loss {rows['attnkit']['val_loss']:.4f} "
        f"({'meets' if verdict['val_loss_target_met'] else 'misses'} the target <= {TARGET_VAL_LOSS}"
        f"{'' if config.max_iters == 2000 else '; the target is for 2000 steps'})"
    )

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "bench_shakespeare.json"
    path.write_text(
        json.dumps(
            {
                "script": "bench_shakespeare.py",
                "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "threads": args.threads,
                "repeats": args.repeats,
                "config": dataclasses.asdict(config),
                "machine": common.machine_facts(torch),
                "results": rows,
                "targets": {"val_loss": TARGET_VAL_LOSS, "wall_ratio": TARGET_WALL_RATIO},
                **verdict,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What tests/test_distributed_mpi.py runs under ``mpiexec -n N``, and the
single-process references it compares with (importing this file runs
nothing).

    python tests/distributed_worker.py SCENARIO OUT_DIR

collectives  every dtype through all_reduce (sum, mean), broadcast and
             all_gather, checked on every rank against values each rank can
             compute for all the others
train        20 steps of a tiny GPT under DistributedDataParallel with AdamW,
             and again from the same start with ZeroRedundancyOptimizer;
             each rank saves its final parameters and the mean losses, rank
             0 also every step's parameters and averaged gradients, AdamW's
             state and ZeRO's consolidated one; each rank checks that AdamW's
             state loaded into a fresh ZeRO gives it its shard
hang SECONDS rank 1 stops answering at step 3 (sleeps); the others must abort
             once a wait has lasted SECONDS (the timeout, set after start-up,
             which may take long on a busy machine)
die SECONDS  rank 1 kills itself at step 3
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import attnkit
import attnkit.distributed as dist
from attnkit import nn, optim
from attnkit.data import get_batch
from attnkit.models import GPT, GPTConfig
from attnkit.nn import functional as F
from attnkit.nn.parallel import DistributedDataParallel
from attnkit.nn.utils import clip_grad_norm_
from attnkit.random import Generator

MODEL = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
BATCH = 6  # the global batch: 3 rows a rank on 2 ranks, 2 on 3
STEPS = 20
SEED = 1234
DATA_STREAM = 2**63
# Small buckets: the tiny model's 27k parameters make a dozen of them, of
# sizes that 2 and 3 ranks do not divide.
BUCKET_MB = 0.01
DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "bool")


def corpus() -> np.ndarray:
    return np.random.default_rng(0).integers(0, MODEL["vocab_size"], 5000)


def build() -> tuple:
    """The model and its AdamW, the same on every call (the seed)."""
    attnkit.manual_seed(SEED)
    model = GPT(GPTConfig(**MODEL))
    return model, optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=1e-2, betas=(0.9, 0.99))


def batches(world_size: int = 1, rank: int = 0):
    """The training batches of the run: rank ``rank``'s rows of each global batch."""
    tokens = corpus()
    generator = Generator(SEED)
    generator.load_state_dict({"seed": SEED, "offset": DATA_STREAM})
    while True:
        yield get_batch(tokens, BATCH, MODEL["block_size"], generator=generator, rank=rank, world_size=world_size)


def loss_of(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def finish_step(model: nn.Module, optimizer) -> None:
    clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def parameters_of(model: nn.Module) -> dict:
    return {name: np.array(p.detach()) for name, p in model.named_parameters()}


def gradients_of(model: nn.Module) -> dict:
    return {name: np.array(p.grad.detach()) for name, p in model.named_parameters()}


# ------------------------------------------------------------ references ---


def train_single_process(steps: int = STEPS, split: int = 1, first_gradients: dict | None = None) -> tuple:
    """(parameters, losses) of one process training on the global batch.
    ``split`` > 1: each step computes the gradient of each of ``split`` parts
    of the batch separately, as the ranks do, and averages them in rank
    order: (g0 + g1 + ...) / split. ``first_gradients``, when given, receives
    the gradients of each part at step 1 (name -> list over the parts)."""
    model, optimizer = build()
    parts = [batches(split, rank) for rank in range(split)]
    losses = []
    for step in range(steps):
        total_loss, sums = 0.0, {}
        for rank in range(split):
            x, y = next(parts[rank])
            optimizer.zero_grad()
            loss = loss_of(model, x, y)
            loss.backward()
            total_loss += loss.item()
            for name, grad in gradients_of(model).items():
                sums[name] = grad if rank == 0 else sums[name] + grad
                if first_gradients is not None and step == 0:
                    first_gradients.setdefault(name, []).append(grad)
        for name, p in model.named_parameters():
            p.grad = attnkit.tensor(sums[name] / np.float32(split) if split > 1 else sums[name])
        finish_step(model, optimizer)
        losses.append(total_loss / split)
    return parameters_of(model), losses


# ------------------------------------------------------------- scenarios ---


def rank_values(dtype: str, rank: int) -> np.ndarray:
    """What rank ``rank`` contributes: values exact in every dtype, different on each rank."""
    base = np.arange(7) - 3
    if dtype == "bool":
        return (base + rank) % 3 == 0
    return (base * (rank + 1) + rank).astype(np.float32 if dtype in ("float16", "bfloat16") else dtype)


def scenario_collectives(rank: int, size: int, out: str) -> None:
    for dtype in DTYPES:
        contributions = [rank_values(dtype, r) for r in range(size)]
        t = attnkit.tensor(contributions[rank], dtype=dtype)
        dist.all_reduce(t, op="sum")
        expected = np.logical_or.reduce(contributions) if dtype == "bool" else np.sum(contributions, axis=0)
        np.testing.assert_array_equal(np.asarray(t), expected, err_msg=f"all_reduce sum {dtype}")
        if dtype not in ("int32", "int64", "bool"):
            t = attnkit.tensor(contributions[rank], dtype=dtype)
            dist.all_reduce(t, op="mean")
            mean = attnkit.tensor(np.sum(contributions, axis=0) / np.float32(size), dtype=dtype)
            np.testing.assert_array_equal(np.asarray(t), np.asarray(mean), err_msg=f"all_reduce mean {dtype}")
        t = attnkit.tensor(contributions[rank], dtype=dtype)
        dist.broadcast(t, src=size - 1)
        np.testing.assert_array_equal(np.asarray(t), np.asarray(attnkit.tensor(contributions[-1], dtype=dtype)))
        gathered = dist.all_gather(attnkit.tensor(contributions[rank], dtype=dtype))
        assert gathered.shape == (size, 7) and gathered.dtype == attnkit.tensor(contributions[0], dtype=dtype).dtype
        np.testing.assert_array_equal(
            np.asarray(gathered), np.stack([np.asarray(attnkit.tensor(c, dtype=dtype)) for c in contributions])
        )
    dist.barrier()
    with open(os.path.join(out, f"collectives-rank{rank}.ok"), "w") as f:
        f.write("ok\n")


def scenario_train(rank: int, size: int, out: str) -> None:
    attnkit.set_num_threads(1)
    results = {}
    states = {}
    for kind in ("ddp", "zero"):
        model, optimizer = build()
        if kind == "zero":
            optimizer = optim.ZeroRedundancyOptimizer(
                optim.weight_decay_groups(model, 0.1), optim.AdamW, lr=1e-2, betas=(0.9, 0.99)
            )
        ddp = DistributedDataParallel(model, bucket_mb=BUCKET_MB)
        data = batches(size, rank)
        losses, trace = [], []
        for _ in range(STEPS):
            x, y = next(data)
            if kind == "ddp":
                trace.append((parameters_of(model), None))
            optimizer.zero_grad()
            loss = loss_of(ddp, x, y)
            loss.backward()
            if kind == "ddp":
                trace[-1] = (trace[-1][0], gradients_of(model))
            finish_step(model, optimizer)
            average = attnkit.tensor([loss.item()], dtype="float32")
            dist.all_reduce(average, op="mean")
            losses.append(average.item())
        results.update({f"{kind}/{k}": v for k, v in parameters_of(model).items()})
        if kind == "ddp" and rank == 0:
            # Every step's parameters (before the step) and averaged gradients, stacked.
            for name in trace[0][0]:
                results[f"steps-parameters/{name}"] = np.stack([p[name] for p, _ in trace])
                results[f"steps-gradients/{name}"] = np.stack([g[name] for _, g in trace])
        results[f"{kind}-losses"] = np.array(losses)
        if kind == "zero":
            results["zero-state-numel"] = np.array(optimizer.local_state_numel())
            results["ddp-buckets"] = np.array(ddp.bucket_sizes)
            optimizer.consolidate_state_dict(to=0)
            if rank == 0:
                states[kind] = optimizer.state_dict()
            # The unsharded AdamW's state (the same on every rank) into a fresh
            # ZeRO: each rank keeps its shard, as it was after the steps.
            fresh = optim.ZeroRedundancyOptimizer(
                optim.weight_decay_groups(model, 0.1), optim.AdamW, lr=1e-2, betas=(0.9, 0.99)
            )
            fresh.load_state_dict(states["ddp"])
            for p, entry in optimizer.optimizer.state.items():
                loaded = fresh.optimizer.state[p]
                assert loaded["step"] == entry["step"] == STEPS
                for key in ("exp_avg", "exp_avg_sq"):
                    np.testing.assert_array_equal(np.asarray(loaded[key]), np.asarray(entry[key]))
        else:
            states[kind] = optimizer.state_dict()
    if rank == 0:  # the consolidated ZeRO state and AdamW's, by parameter number
        for kind, state in states.items():
            for index, entry in state["state"].items():
                results[f"{kind}-state/{index}/step"] = np.array(entry["step"])
                for key in ("exp_avg", "exp_avg_sq"):
                    results[f"{kind}-state/{index}/{key}"] = np.asarray(entry[key])
    np.savez(os.path.join(out, f"train-rank{rank}.npz"), **results)


def scenario_fault(rank: int, size: int, how: str, timeout: float) -> None:
    attnkit.set_num_threads(1)
    model, optimizer = build()
    ddp = DistributedDataParallel(model, bucket_mb=BUCKET_MB)
    data = batches(size, rank)
    for step in range(STEPS):
        if step == 3:
            dist.init(timeout=timeout)
        if rank == 1 and step == 3:
            print(f"rank 1: {'stops answering' if how == 'hang' else 'dies'} at step 3", file=sys.stderr, flush=True)
            if how == "hang":
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = next(data)
        optimizer.zero_grad()
        loss_of(ddp, x, y).backward()
        finish_step(model, optimizer)
    print(f"rank {rank}: finished all steps, which a fault should have prevented", file=sys.stderr)


def main(argv: list) -> None:
    scenario, out = argv[:2]
    rank, size = dist.init()
    if scenario == "collectives":
        scenario_collectives(rank, size, out)
    elif scenario == "train":
        scenario_train(rank, size, out)
    elif scenario in ("hang", "die"):
        scenario_fault(rank, size, scenario, float(argv[2]))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

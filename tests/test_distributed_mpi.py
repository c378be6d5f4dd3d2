"""Data-parallel training across processes: each test launches ``mpiexec -n
2`` or ``-n 3`` on this machine (tests/distributed_worker.py, or ``attnkit
train``) and compares what the ranks computed with one process here.

Skipped, with the reason, where mpi4py or mpiexec is missing;
``pip install "attnkit[mpi]"`` brings both (mpi4py and the MPICH wheel).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SUMMATION_ORDER_ULPS

import attnkit
from attnkit.serialization import load_config

pytest.importorskip("mpi4py", reason="mpi4py is not installed; pip install 'attnkit[mpi]' brings it and MPICH")

import distributed_worker as worker  # noqa: E402


def _next_to_python(name: str):
    """A launcher or script of this environment (a venv's bin/), else from PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else shutil.which(name)


MPIEXEC = _next_to_python("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec next to this Python or on PATH", allow_module_level=True)

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
FAULT_TIMEOUT_S = 2  # the fault tests' timeout, from step 3 on (start-up may take longer)


def mpiexec(n: int, command: list, *, launcher_options=(), timeout_s: float = 120) -> tuple:
    """(CompletedProcess, seconds): ``mpiexec -n n command`` with one thread per rank."""
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.monotonic()
    result = subprocess.run(
        [MPIEXEC, *launcher_options, "-n", str(n), *command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout_s,
    )
    return result, time.monotonic() - start


def run_worker(n: int, scenario: str, out, *arguments, **kwargs) -> tuple:
    return mpiexec(n, [sys.executable, WORKER, scenario, str(out), *map(str, arguments)], **kwargs)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The references here run as the ranks do: one thread (the kernels'
    sums are then in the same order)."""
    previous = attnkit.get_num_threads()
    attnkit.set_num_threads(1)
    yield
    attnkit.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """n -> what each of the n ranks saved in the 'train' scenario (run once per n)."""
    runs = {}

    def get(n: int) -> list:
        if n not in runs:
            out = tmp_path_factory.mktemp(f"train-{n}-ranks")
            result, _ = run_worker(n, "train", out)
            assert result.returncode == 0, result.stderr
            runs[n] = [dict(np.load(out / f"train-rank{rank}.npz")) for rank in range(n)]
        return runs[n]

    return get


# ----------------------------------------------------------- collectives ---


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_for_every_dtype(tmp_path, n):
    result, _ = run_worker(n, "collectives", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == [f"collectives-rank{rank}.ok" for rank in range(n)]


# -------------------------------------------- DDP against one process ---


@pytest.mark.parametrize("n", [2, 3])
def test_ranks_end_identical_and_zero_equals_ddp(trained, n):
    """Every rank holds the same weights after 20 steps, and ZeRO-1 ends on
    DDP's weights bit for bit, holding a 1/n share of AdamW's state."""
    ranks = trained(n)
    names = [key.split("/", 1)[1] for key in ranks[0] if key.startswith("ddp/")]
    for name in names:
        for saved in ranks:
            np.testing.assert_array_equal(saved[f"ddp/{name}"], ranks[0][f"ddp/{name}"], err_msg=name)
            np.testing.assert_array_equal(saved[f"zero/{name}"], ranks[0][f"ddp/{name}"], err_msg=name)
    sizes = [ranks[0][f"ddp/{name}"].size for name in names]
    state = [int(saved["zero-state-numel"]) for saved in ranks]
    assert sum(state) == 2 * sum(sizes)  # exp_avg and exp_avg_sq of every parameter, once
    assert max(state) <= 2 * (sum(sizes) / n + max(sizes))
    if n == 3:  # what 3 ranks are for: buckets whose size they do not divide (MPI splits them unevenly)
        assert any(size % n for size in ranks[0]["ddp-buckets"])


@pytest.mark.parametrize("n", [2, 3])
def test_zero_consolidates_adamw_state(trained, n):
    """ZeRO's shards gathered on rank 0 are AdamW's state after the same
    steps, bit for bit, numbered as AdamW numbers them (and loading AdamW's
    state gives each rank its shard back: checked on the ranks)."""
    saved = trained(n)[0]
    adamw = {key.split("/", 1)[1]: saved[key] for key in saved if key.startswith("ddp-state/")}
    zero = {key.split("/", 1)[1]: saved[key] for key in saved if key.startswith("zero-state/")}
    assert sorted(zero) == sorted(adamw) and adamw
    for key, values in adamw.items():
        np.testing.assert_array_equal(zero[key], values, err_msg=key)


def test_two_ranks_equal_one_process_averaging_their_gradients(trained):
    """DDP on 2 ranks is bit for bit one process that takes each step's
    gradient as (g0 + g1) / 2 of the two halves of the batch: the averaging is
    the only difference from one process on the whole batch (with two
    gradients the order of the sum cannot matter)."""
    ranks = trained(2)
    reference, losses = worker.train_single_process(split=2)
    for name, values in reference.items():
        np.testing.assert_array_equal(ranks[0][f"ddp/{name}"], values, err_msg=name)
    np.testing.assert_array_equal(ranks[0]["ddp-losses"], np.array(losses, np.float32))


def _replay(saved: dict, n: int):
    """For every step of the run: (the averaged gradients DDP computed, the
    n ranks' own gradients, one process's gradient of the whole batch), all
    from the weights DDP had at that step."""
    model, _ = worker.build()
    parts = [worker.batches(n, rank) for rank in range(n)]
    whole = worker.batches()

    def gradients(x, y) -> dict:
        model.zero_grad()
        worker.loss_of(model, x, y).backward()
        return worker.gradients_of(model)

    for step in range(worker.STEPS):
        with attnkit.no_grad():
            for name, p in model.named_parameters():
                np.asarray(p.detach())[...] = saved[f"steps-parameters/{name}"][step]
        averaged = {name: saved[f"steps-gradients/{name}"][step] for name, _ in model.named_parameters()}
        yield averaged, [gradients(*next(part)) for part in parts], gradients(*next(whole))


@pytest.mark.parametrize("n", [2, 3])
def test_ddp_gradient_is_the_ranks_sum_in_some_order(trained, n):
    """At every step each element of DDP's averaged gradient is (g_a + g_b +
    ...) / n for some order of the ranks' own gradients: MPI's summation
    order is the one freedom it has."""
    for step, (averaged, parts, _) in enumerate(_replay(trained(n)[0], n)):
        for name, values in averaged.items():
            sums = []
            for order in itertools.permutations(range(n)):
                total = parts[order[0]][name]
                for rank in order[1:]:
                    total = total + parts[rank][name]
                sums.append(total / np.float32(n))
            matched = np.any([values == s for s in sums], axis=0)
            assert matched.all(), f"step {step + 1}, {name}: {np.sum(~matched)} elements are no order's sum"


@pytest.mark.parametrize("n", [2, 3])
def test_ddp_gradient_is_one_process_gradient_to_rounding(trained, n):
    """From the same weights, at every step, DDP's averaged gradient is one
    process's gradient of the whole global batch within a few units in the
    last place of the tensor's largest gradient."""
    for step, (averaged, _, whole) in enumerate(_replay(trained(n)[0], n)):
        for name, values in averaged.items():
            ulp = np.spacing(np.abs(whole[name]).max())
            ulps = np.abs(values.astype(np.float64) - whole[name]).max() / ulp
            assert ulps <= SUMMATION_ORDER_ULPS, f"step {step + 1}, {name}: {ulps:.1f} ulps from one process"


# --------------------------------------------------------------- faults ---


def test_a_killed_rank_ends_the_job(tmp_path):
    """mpiexec itself notices a rank killed by a signal and ends the others."""
    result, seconds = run_worker(2, "die", tmp_path, FAULT_TIMEOUT_S)
    assert result.returncode != 0
    assert "rank 1: dies at step 3" in result.stderr
    assert "finished all steps" not in result.stderr
    assert seconds < 60


def test_a_killed_rank_under_a_launcher_that_does_not_clean_up(tmp_path):
    """Where the launcher lets the others run on (here its child is a shell,
    which outlives the killed Python), the survivor's wait hits the deadline
    and it aborts the job with a message naming what it waited for."""
    command = f"{sys.executable} {WORKER} die {tmp_path} {FAULT_TIMEOUT_S}; exit $?"
    result, seconds = mpiexec(2, ["sh", "-c", command], launcher_options=["-disable-auto-cleanup"])
    assert result.returncode != 0
    waited = f"the gradient all-reduce (13 buckets) did not complete within {FAULT_TIMEOUT_S} s"
    assert f"attnkit.distributed: rank 0 of 2: {waited}" in result.stderr
    assert "another rank has died or stopped responding; aborting the job" in result.stderr
    assert seconds < 60


def test_a_rank_that_stops_answering(tmp_path):
    """A rank alive but stuck: no launcher notices; the others' deadline does."""
    result, seconds = run_worker(2, "hang", tmp_path, FAULT_TIMEOUT_S)
    assert result.returncode != 0
    assert "rank 1: stops answering at step 3" in result.stderr
    assert f"rank 0 of 2: the gradient all-reduce (13 buckets) did not complete within {FAULT_TIMEOUT_S} s" in (
        result.stderr
    )
    assert seconds < 60


# ------------------------------------------------ attnkit train, resumed ---

TRAIN_FLAGS = [
    "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4",
    "--eval-interval", "10", "--eval-iters", "4", "--num-threads", "1", "--no-progress",
]  # fmt: skip


def _attnkit_train(n: int, *flags) -> None:
    script = _next_to_python("attnkit")
    command = [script] if script else [sys.executable, "-m", "attnkit"]
    if n == 1:
        result = subprocess.run([*command, "train", *flags], capture_output=True, text=True, timeout=120)
    else:
        result, _ = mpiexec(n, [*command, "train", *flags])
    assert result.returncode == 0, result.stderr


def _weights(run_dir) -> dict:
    return {name: np.asarray(t) for name, t in attnkit.load(os.path.join(run_dir, "model.safetensors")).items()}


def _metrics(run_dir) -> list:
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _scores(records: list) -> list:
    """The metrics without the timings."""
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")} for r in records]


def test_attnkit_train_on_two_ranks_resumes_on_one_and_on_two(tmp_path):
    """mpiexec -n 2 attnkit train for 20 steps; the same run stopped at step
    10 and resumed on 2 ranks is that run bit for bit (the checkpoint holds
    all of it); resumed on 1 rank, it continues the same run: the same
    batches, schedule and optimizer state, so it differs only by rounding."""
    whole, on_two, on_one = tmp_path / "whole", tmp_path / "two", tmp_path / "one"
    _attnkit_train(2, *TRAIN_FLAGS, "--max-iters", "20", "--out", str(whole))
    _attnkit_train(2, *TRAIN_FLAGS, "--max-iters", "10", "--out", str(on_two))
    shutil.copytree(on_two, on_one)
    assert sorted(os.listdir(on_two)) == ["metrics.jsonl", "model.safetensors", "training_state.safetensors"]
    _attnkit_train(2, "--resume", "--max-iters", "20", "--no-progress", "--out", str(on_two))
    _attnkit_train(1, "--resume", "--max-iters", "20", "--no-progress", "--num-threads", "1", "--out", str(on_one))

    expected = _weights(whole)
    for name, values in _weights(on_two).items():
        np.testing.assert_array_equal(values, expected[name], err_msg=name)
    assert _scores(_metrics(on_two)) == _scores(_metrics(whole))

    # Rounding moves the weights by ~1e-7 over ten steps of this run (its
    # learning rate is still warming up, about 1e-4); other batches, a
    # restarted optimizer or schedule would move them by about the learning rate.
    for name, values in _weights(on_one).items():
        assert np.abs(values - expected[name]).max() <= 1e-5, name
    one, reference = _metrics(on_one), _metrics(whole)
    assert [(r["step"], r["lr"], r["tokens"]) for r in one] == [(r["step"], r["lr"], r["tokens"]) for r in reference]
    for mine, theirs in zip(one, reference):
        for key in ("train_loss", "val_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (mine["step"], key)


def test_attnkit_train_refuses_a_batch_the_ranks_cannot_split(tmp_path):
    script = _next_to_python("attnkit")
    command = [script] if script else [sys.executable, "-m", "attnkit"]
    result, _ = mpiexec(3, [*command, "train", *TRAIN_FLAGS, "--max-iters", "1", "--out", str(tmp_path / "run")])
    assert result.returncode == 2
    assert "setting 'batch_size' (the global batch) expected a multiple of the 3 ranks, got 4" in result.stderr


def test_ctrl_c_stops_every_rank_at_one_step_and_saves_a_resumable_run(tmp_path):
    """Ctrl-C at a terminal sends SIGINT to the launcher and the ranks, which
    can see it at different steps: they agree on the step to stop at (the
    loss's all-reduce carries the flag), rank 0 saves that step's checkpoint,
    every rank exits with 130, and --resume continues the run on 2 ranks."""
    script = _next_to_python("attnkit")
    command = [script] if script else [sys.executable, "-m", "attnkit"]
    out = tmp_path / "run"
    flags = [*TRAIN_FLAGS, "--max-iters", "100000", "--out", str(out)]
    job = subprocess.Popen(
        [MPIEXEC, "-n", "2", *command, "train", *flags],
        stdout=subprocess.DEVNULL,  # mpiexec says there that it forwards the Ctrl-C
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() or len(_metrics(out)) < 2:  # two evaluations: steps 0 and 10
            assert job.poll() is None and time.monotonic() < deadline, "the run ended or did not start"
            time.sleep(0.1)
        os.killpg(job.pid, signal.SIGINT)
        _, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130, stderr
    assert "interrupted: saving a checkpoint" in stderr
    step = attnkit.load(str(out / "training_state.safetensors"))["step"]
    assert load_config(str(out / "model.safetensors"))["step"] == step >= 10
    _attnkit_train(2, "--resume", "--max-iters", str(step + 5), "--no-progress", "--out", str(out))
    assert _metrics(out)[-1]["step"] == step + 5

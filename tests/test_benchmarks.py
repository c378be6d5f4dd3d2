"""attnkit bench (attnkit.benchmarks) and the method the bench/ scripts share:
workers in alternating rounds, the timing summary, the machine's facts, and
bench/kernel_timer.py. Speed is never asserted; only that each figure is
there and makes sense."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import attnkit
from attnkit import benchmarks

BENCH = Path(__file__).resolve().parents[1] / "bench"

EXPECTED_LINES = [  # (op, peer): one table line each
    ("gemm", "numpy"),
    ("gemm", "torch"),
    ("attention fwd+bwd", "torch"),
    ("softmax", "torch"),
    ("layer_norm forward", "torch"),
    ("train step (config tiny)", "torch"),
    ("train step (config tiny)", "torch fused AdamW"),
    ("decode (config tiny)", "torch"),
]


def test_quick_suite_runs_workers_and_writes_json(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    path = tmp_path / "bench.json"
    threads = attnkit.get_num_threads()
    argv = ["--quick", "--no-torch", "--repeats", "1", "--rounds", "2", "--threads", "1", "--json", str(path)]
    assert benchmarks.main(argv) == 0
    assert attnkit.get_num_threads() == threads  # the parent's setting is untouched
    printed = capfd.readouterr().out
    document = json.loads(path.read_text())
    assert [(row["op"], row["peer"]) for row in document["rows"]] == EXPECTED_LINES
    for op, _ in EXPECTED_LINES:
        assert op in printed
    assert document["threads"] == 1 and document["rounds"] == 2 and document["quick"] is True
    assert document["fma_peak_gflops"] > 0 and document["copy_bandwidth_gbps"] > 0
    machine = document["machine"]
    assert machine["cpu"] and machine["cpu isa"] == attnkit.cpu_isa() and machine["versions"]["numpy"]
    # Each library ran in its own processes, and nothing set a wait policy for them.
    assert set(document["worker thread settings"]) == {"attnkit", "numpy"}
    for settings in document["worker thread settings"].values():
        assert "OMP_WAIT_POLICY" not in settings
    for row in document["rows"]:
        assert row["ours_ms"] > 0 and math.isfinite(row["ours_ms"]) and row["rounds"] == 2
        if row["peer"] == "numpy":
            assert row["peer_ms"] > 0 and row["speedup"] > 0
        else:  # --no-torch: the peer is absent, and so is the ratio
            assert row["peer_ms"] is None and row["speedup"] is None
            assert "absent" in printed
        if row["unit"]:
            assert row["throughput"] > 0 and row["fraction_of_peak"] > 0
    assert document["rows"][-1]["tokens_per_s"] > 0


def test_worker_records_its_side_only(tmp_path):
    path = tmp_path / "worker.json"
    threads = attnkit.get_num_threads()
    try:
        benchmarks.main(["--quick", "--repeats", "2", "--threads", "1", "--worker", "numpy", "--worker-out", str(path)])
    finally:
        attnkit.set_num_threads(threads)
    document = json.loads(path.read_text())
    assert document["side"] == "numpy" and document["threads"] == 1
    (measurement,) = document["measurements"]  # numpy has only the GEMM row
    assert measurement["op"] == "gemm" and measurement["column"] == "numpy"
    assert len(measurement["seconds"]) == 2 and all(s > 0 for s in measurement["seconds"])
    assert measurement["unit"] == "GFLOP/s" and measurement["limit"] == "fma"


WORKER = """
import json, os, sys
side, path = sys.argv[1], sys.argv[-1]
with open(os.environ["LOG"], "a") as log:
    log.write(side + "\\n")
if side == "bad":
    sys.exit(3)
measurement = dict(op="op", case="case", threads=1, column=side, work=2e9, unit="GFLOP/s", limit="fma",
                   seconds=[float(os.environ.get("SECONDS", "1"))], extra={})
with open(path, "w") as f:
    json.dump({"side": side, "measurements": [measurement], "setting": os.environ.get("SETTING")}, f)
"""


def test_run_rounds_alternates_the_sides_and_gives_each_its_environment(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("LOG", str(log))
    commands = {side: [sys.executable, "-c", WORKER, side] for side in ("attnkit", "torch", "numpy")}
    documents = benchmarks.run_rounds(commands, 3, {"numpy": {"SETTING": "numpy's"}, "torch": {"SECONDS": "2"}})
    assert log.read_text().split() == [
        *("attnkit", "torch", "numpy"),
        *("torch", "numpy", "attnkit"),
        *("numpy", "attnkit", "torch"),
    ]
    assert [len(d) for d in documents.values()] == [3, 3, 3]
    assert [d["setting"] for d in documents["numpy"]] == ["numpy's"] * 3
    assert documents["attnkit"][0]["setting"] is None  # one side's setting stays with it
    (row,) = benchmarks.merge_rounds(documents)
    assert list(row["columns"]) == ["attnkit", "torch", "numpy"]
    assert row["columns"]["torch"].median == 2.0 and row["columns"]["torch"].rounds == 3


def test_run_rounds_stops_at_a_failing_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("LOG", str(tmp_path / "log"))
    commands = {side: [sys.executable, "-c", WORKER, side] for side in ("attnkit", "bad")}
    with pytest.raises(RuntimeError, match="the bad worker failed with exit status 3"):
        benchmarks.run_rounds(commands, 2)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        benchmarks.run_rounds(commands, 0)


def test_timed_rounds_warm_up_for_a_minimum_time_unless_told_none():
    calls = []
    seconds = benchmarks.timed_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 3)
    assert [len(v) for v in seconds.values()] == [3, 3]
    assert calls[-6:] == ["a", "b"] * 3  # the timed calls alternate
    assert len(calls) > 8  # a cheap call warms up many times in WARMUP_MIN_S
    calls.clear()
    benchmarks.timed_rounds({"a": lambda: calls.append("a")}, 0, 2)
    assert calls == ["a", "a"]


def test_timing_of_one_round_is_over_its_calls_and_of_several_over_their_medians():
    one = benchmarks.Timing.of_rounds([[3.0, 1.0, 2.0, 10.0, 2.5]])
    assert (one.median, one.low, one.high, one.calls, one.rounds) == (2.5, 1.0, 10.0, 5, 1)
    several = benchmarks.Timing.of_rounds([[1.0, 2.0, 3.0], [4.0, 4.0, 100.0], [0.5, 1.0, 1.5]])
    assert (several.median, several.low, several.high, several.calls, several.rounds) == (2.0, 1.0, 4.0, 9, 3)
    assert several.spread == pytest.approx(1.5)
    for bad in ([], [[1.0], []]):
        with pytest.raises(ValueError, match="non-empty list"):
            benchmarks.Timing.of_rounds(bad)


def test_machine_facts_name_the_cpu_isa_caches_versions_and_date():
    facts = benchmarks.machine_facts()
    assert facts["cpu"] and facts["logical cpus"] >= 1
    assert facts["cpu isa"] == attnkit.cpu_isa() and facts["supported isas"] == attnkit.supported_cpu_isas()
    assert facts["versions"]["attnkit"] == attnkit.__version__ and facts["versions"]["python"]
    assert facts["date"][:2] == "20"
    if Path("/sys/devices/system/cpu/cpu0/cache").is_dir():
        assert any(name.startswith("L1") for name in facts["caches"])
        assert benchmarks.cache_bytes("L1d") >= 4096
    assert benchmarks.cache_bytes("L9") is None
    limits = benchmarks.measure_limits(1, 8, repeats=1)
    assert set(limits) == set(benchmarks.LIMIT_NAMES) and all(v > 0 for v in limits.values())
    text = benchmarks.describe_machine(facts, {1: limits})
    assert facts["cpu"] in text and "FMA peak" in text and "limits at 1 thread(s)" in text


def test_train_step_flops_counts_the_products_and_causal_attention():
    config = attnkit.models.GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    tokens = 12 * 64
    products = 3 * 2 * tokens * (12 * 4 * 128 * 128 + 65 * 128)
    attention = 3.5 * 4 * 4 * 12 * 64 * 64 * 128 * 0.5
    assert benchmarks.train_step_flops(config, 12) == pytest.approx(products + attention, rel=1e-12)


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--repeats", "-1"], ["--rounds", "0"], ["--unknown"]])
def test_bad_arguments_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        benchmarks.main(argv)
    assert raised.value.code == 2
    assert "attnkit bench" in capsys.readouterr().err


# ---------------------------------------------------------- the kernel timer --
TIMED_SCRIPT = """
import json, sys, types
import kernel_timer
import attnkit
import attnkit.nn.functional as F
from attnkit import _C
from attnkit._C import gelu_forward  # a name bound at import

# No native function stays reachable, unwrapped, from any attnkit module.
unwrapped = sorted(
    f"{module_name}.{name}"
    for module_name, module in list(sys.modules.items())
    if module_name.startswith("attnkit")
    for name, value in vars(module).items()
    if isinstance(value, types.BuiltinFunctionType) and getattr(value, "__module__", None) == "attnkit._C"
)
table = {"gelu": getattr(_C, "gelu_forward")}  # a lookup by name, kept in a table
x = attnkit.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True)
with kernel_timer.KernelTimer() as timer:
    F.gelu(x).backward(attnkit.ones(2, 2))  # through the product code
    gelu_forward(x.detach()._array, "none")
    table["gelu"](x.detach()._array, "tanh")
gelu_forward(x.detach()._array, "none")  # after the timer: not counted
print(json.dumps({"unwrapped": unwrapped, "calls": timer.calls, "seconds": timer.seconds,
                  "wrapper": timer.wrapper_seconds_per_call, "python": timer.python_seconds(1.0)}))
"""


def test_kernel_timer_counts_every_native_call_however_it_is_reached(tmp_path):
    script = tmp_path / "timed.py"
    script.write_text(TIMED_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(BENCH / "kernel_timer.py"), str(script)], capture_output=True, text=True, check=True
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["unwrapped"] == []
    assert result["calls"]["gelu_forward"] == 3
    assert result["calls"]["gelu_backward"] == 1
    assert all(seconds > 0 for seconds in result["seconds"].values())
    assert 0 < result["wrapper"] < 1e-3
    assert result["python"] < 1.0


def test_kernel_timer_refuses_a_module_loaded_without_it():
    spec = importlib.util.spec_from_file_location("kernel_timer_under_test", BENCH / "kernel_timer.py")
    kernel_timer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel_timer)
    with pytest.raises(RuntimeError, match="run under bench/kernel_timer.py"):
        kernel_timer.KernelTimer()
    with pytest.raises(RuntimeError, match="before attnkit is imported"):
        kernel_timer.install()


def test_main_usage_without_a_script():
    completed = subprocess.run([sys.executable, str(BENCH / "kernel_timer.py")], capture_output=True, text=True)
    assert completed.returncode != 0 and "usage" in completed.stderr

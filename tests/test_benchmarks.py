"""attnkit bench (attnkit.benchmarks): the suite runs and reports every row.
Speed is never asserted; only that each figure is there and makes sense."""

from __future__ import annotations

import json
import math

import pytest

import attnkit
from attnkit import benchmarks

EXPECTED_OPS = [
    "gemm",
    "attention fwd+bwd",
    "softmax",
    "layer_norm forward",
    "train step (config tiny)",
    "decode (config tiny)",
]


def test_quick_suite_prints_a_table_and_writes_json(tmp_path, capsys, monkeypatch):
    # With the wait policy set, the suite runs in this process (see the next test).
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    path = tmp_path / "bench.json"
    threads = attnkit.get_num_threads()
    assert benchmarks.main(["--quick", "--no-torch", "--repeats", "1", "--threads", "1", "--json", str(path)]) == 0
    assert attnkit.get_num_threads() == threads  # the setting is restored
    printed = capsys.readouterr().out
    document = json.loads(path.read_text())
    assert [row["op"] for row in document["rows"]] == EXPECTED_OPS
    for op in EXPECTED_OPS:
        assert op in printed
    assert document["threads"] == 1 and document["quick"] is True
    assert document["fma_peak_gflops"] > 0 and document["copy_bandwidth_gbps"] > 0
    for row in document["rows"]:
        assert row["ours_ms"] > 0 and math.isfinite(row["ours_ms"])
        if row["op"] == "gemm":
            assert row["peer"] == "numpy" and row["peer_ms"] > 0 and row["speedup"] > 0
        else:  # --no-torch: the peer is absent, and so is the ratio
            assert row["peer"] == "torch" and row["peer_ms"] is None and row["speedup"] is None
            assert "absent" in printed
        if row["unit"]:
            assert row["throughput"] > 0 and row["fraction_of_peak"] > 0
    assert document["rows"][-1]["tokens_per_s"] > 0


def test_without_a_wait_policy_the_suite_runs_in_a_child_process(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    path = tmp_path / "bench.json"
    assert benchmarks.main(["--quick", "--no-torch", "--repeats", "1", "--threads", "1", "--json", str(path)]) == 0
    assert "train step (config tiny)" in capfd.readouterr().out
    assert len(json.loads(path.read_text())["rows"]) == len(EXPECTED_OPS)


def test_train_step_flops_counts_the_products_and_causal_attention():
    config = attnkit.models.GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    tokens = 12 * 64
    products = 3 * 2 * tokens * (12 * 4 * 128 * 128 + 65 * 128)
    attention = 3.5 * 4 * 4 * 12 * 64 * 64 * 128 * 0.5
    assert benchmarks.train_step_flops(config, 12) == pytest.approx(products + attention, rel=1e-12)


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--repeats", "-1"], ["--unknown"]])
def test_bad_arguments_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        benchmarks.main(argv)
    assert raised.value.code == 2
    assert "attnkit bench" in capsys.readouterr().err

"""Process-wide settings: threads, the CPU kernel family (ATTNKIT_CPU_ISA),
the `attnkit info` command, and the CPU allocator's cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import attnkit
from attnkit import _C

KNOWN_ISAS = ("generic", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx")
KNOWN_FEATURES = ("avx2", "avx512", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@pytest.fixture
def restore_threads():
    previous = attnkit.get_num_threads()
    yield
    attnkit.set_num_threads(previous)


def run_python(code, isa=None):
    """Runs `code` in a fresh interpreter (the ISA is picked at import)."""
    env = dict(os.environ)
    env.pop("ATTNKIT_CPU_ISA", None)
    if isa is not None:
        env["ATTNKIT_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------- threads --


@pytest.mark.usefixtures("restore_threads")
def test_set_and_get_num_threads():
    for n in (1, 2, 3, 1):
        attnkit.set_num_threads(n)
        assert attnkit.get_num_threads() == n
    attnkit.set_num_threads(np.int64(2))  # any integral type
    assert attnkit.get_num_threads() == 2


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(
    "bad, error",
    [
        (0, ValueError),
        (-1, ValueError),
        (10**9, ValueError),
        (2.5, TypeError),
        (2.0, TypeError),
        (True, TypeError),
        ("2", TypeError),
        (None, TypeError),
    ],
)
def test_bad_thread_counts(bad, error):
    attnkit.set_num_threads(2)
    with pytest.raises(error, match="set_num_threads.*'n'"):
        attnkit.set_num_threads(bad)
    assert attnkit.get_num_threads() == 2  # unchanged


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_results_do_not_depend_on_the_thread_count(cpu_isa, approximate, rng):
    x = _C.array_from_numpy(rng.uniform(-10, 10, 10**6).astype(np.float32))
    dy = _C.array_from_numpy(rng.standard_normal(10**6).astype(np.float32))
    results = {}
    for threads in (1, 2):
        attnkit.set_num_threads(threads)
        results[threads] = (
            np.asarray(_C.gelu_forward(x, approximate)),
            np.asarray(_C.gelu_backward(dy, x, approximate)),
        )
    for one, two in zip(results[1], results[2]):
        assert one.tobytes() == two.tobytes()


# ------------------------------------------------------------- CPU ISAs --


def test_supported_isas_are_known_and_generic_is_always_there():
    supported = attnkit.supported_cpu_isas()
    assert supported[0] == "generic"
    assert set(supported) <= set(KNOWN_ISAS)
    assert list(supported) == [isa for isa in KNOWN_ISAS if isa in supported]  # best last
    assert attnkit.cpu_isa() in supported
    assert set(supported) <= set(attnkit.build_info()["compiled_isas"])


@pytest.mark.parametrize("isa", attnkit.supported_cpu_isas())
def test_forcing_each_supported_isa(isa):
    result = run_python("import attnkit; print(attnkit.cpu_isa())", isa=isa)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa
    # Case and surrounding blanks do not matter.
    result = run_python("import attnkit; print(attnkit.cpu_isa())", isa=f" {isa.upper()} ")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa


def test_auto_or_unset_picks_the_best():
    best = attnkit.supported_cpu_isas()[-1]
    for isa in (None, "auto", ""):
        result = run_python("import attnkit; print(attnkit.cpu_isa())", isa=isa)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == best


def test_cpu_features_are_known_ordered_and_consistent_with_the_tiers():
    features = attnkit.cpu_features()
    assert list(features) == [f for f in KNOWN_FEATURES if f in features]
    has = set(features)
    # Each extension needs the register file it extends.
    assert not ({"avx512_vnni", "avx512_bf16"} & has) or "avx512" in has
    assert "avx_vnni" not in has or "avx2" in has
    assert not ({"amx_bf16", "amx_int8"} & has) or "amx_tile" in has
    # A tier is offered exactly when its features are all there (on an x86
    # build, which compiles every tier).
    if "avx512" in attnkit.build_info()["compiled_isas"]:
        tiers = {
            "avx2": {"avx2"},
            "avx512": {"avx512"},
            "avx512_vnni": {"avx512", "avx512_vnni"},
            "avx512_bf16": {"avx512", "avx512_vnni", "avx512_bf16"},
            "amx": {"avx512", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"},
        }
        for tier, needs in tiers.items():
            assert (tier in attnkit.supported_cpu_isas()) == needs.issubset(has), tier


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs Linux's /proc/cpuinfo")
def test_cpu_features_agree_with_the_kernels_flags():
    """CPUID as we read it against Linux's reading of it: a feature the kernel
    lists is one we find (AMX too, once it grants us the tile state), and we
    never claim one it does not list."""
    with open("/proc/cpuinfo") as f:
        flags_line = next((line for line in f if line.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    if not flags:
        pytest.skip("/proc/cpuinfo lists no flags")
    linux_names = {
        "avx512_vnni": "avx512_vnni",
        "avx_vnni": "avx_vnni",
        "avx512_bf16": "avx512_bf16",
        "amx_tile": "amx_tile",
        "amx_bf16": "amx_bf16",
        "amx_int8": "amx_int8",
    }
    has = set(attnkit.cpu_features())
    for ours, linux in linux_names.items():
        assert (ours in has) == (linux in flags), ours


def test_a_bogus_isa_fails_the_import_and_lists_the_valid_names():
    result = run_python("import attnkit", isa="sse9")
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "ATTNKIT_CPU_ISA" in result.stderr and "sse9" in result.stderr
    for name in ("auto",) + KNOWN_ISAS:
        assert name in result.stderr


def test_an_isa_this_cpu_lacks_fails_the_import_clearly():
    lacking = [isa for isa in KNOWN_ISAS if isa not in attnkit.supported_cpu_isas()]
    if not lacking:
        pytest.skip("this CPU and build run every ISA attnkit has")
    result = run_python("import attnkit", isa=lacking[-1])
    assert result.returncode != 0
    assert "RuntimeError" in result.stderr and f"cannot run {lacking[-1]}" in result.stderr
    assert "available here: " + ", ".join(attnkit.supported_cpu_isas()) in result.stderr


# ------------------------------------------------------------ attnkit info --


def console_script():
    """The `attnkit` entry point installed next to this interpreter."""
    for folder in (os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))):
        path = os.path.join(folder, "attnkit")
        if os.path.exists(path):
            return path
    pytest.skip("the attnkit console script is not installed next to this interpreter")


@pytest.mark.parametrize("command", ["console script", "python -m attnkit"])
def test_info_prints_version_isa_threads_and_cuda(command):
    argv = [console_script()] if command == "console script" else [sys.executable, "-m", "attnkit"]
    env = dict(os.environ)
    env.pop("ATTNKIT_CPU_ISA", None)
    result = subprocess.run(argv + ["info"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    facts = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("  ")
        facts[key.strip()] = value.strip()
    assert facts["version"] == attnkit.__version__
    assert facts["cpu isa"] == attnkit.supported_cpu_isas()[-1]
    assert facts["cpu isas available"] == ", ".join(attnkit.supported_cpu_isas())
    assert facts["cpu features"] == (", ".join(attnkit.cpu_features()) or "none beyond the baseline")
    assert int(facts["threads"]) >= 1
    assert facts["cuda"] == attnkit.build_info()["cuda"]
    assert facts["build type"] and facts["compiler"]


def test_info_json_and_usage_errors():
    import json

    result = subprocess.run(
        [sys.executable, "-m", "attnkit", "info", "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["version"] == attnkit.__version__ and "cuda" in facts and "threads" in facts
    result = subprocess.run([sys.executable, "-m", "attnkit"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "usage" in result.stderr


def test_build_info():
    info = attnkit.build_info()
    assert info["version"] == attnkit.__version__
    assert {"build_type", "compiler", "cuda", "compiled_isas"} <= set(info)


# -------------------------------------------------------------- allocator --


def test_cpu_allocator_reuses_freed_blocks():
    size = (3 << 20) + 123  # an odd size, not used elsewhere in the tests
    first = _C.empty([size], "float32")
    address = first.data_ptr
    assert address % 64 == 0  # cache-line / AVX-512 aligned
    before = attnkit.cpu_memory_stats()
    assert before["allocated_bytes"] >= first.nbytes
    del first  # back to the cache, not to the system
    cached = attnkit.cpu_memory_stats()
    assert cached["cached_bytes"] >= before["cached_bytes"] + size * 4
    second = _C.empty([size], "float32")
    after = attnkit.cpu_memory_stats()
    assert after["cache_hits"] == before["cache_hits"] + 1
    assert after["allocations"] == before["allocations"] + 1
    assert second.data_ptr == address  # the very block freed a moment ago
    del second


def test_empty_cpu_cache_returns_the_cached_blocks():
    block = _C.empty([1 << 20], "float32")
    del block
    assert attnkit.cpu_memory_stats()["cached_bytes"] > 0
    attnkit.empty_cpu_cache()
    stats = attnkit.cpu_memory_stats()
    assert stats["cached_bytes"] == 0
    hits = stats["cache_hits"]
    _C.empty([1 << 20], "float32")
    assert attnkit.cpu_memory_stats()["cache_hits"] == hits  # nothing left to reuse

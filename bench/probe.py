"""The machine's limits, as attnkit's benchmarks measure them: memory bandwidth
(read, write, copy, triad over a footprint far above the L3) and FP32 FMA peak
per ISA, at each thread count.

    python bench/probe.py [--threads 1 2] [--probe-mib 512]
"""

from __future__ import annotations

import json

import common  # first: it sets how idle threads wait, before any thread pool starts

import attnkit


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0], timed=False)
    args = parser.parse_args()

    facts = common.machine_facts()
    for key, value in facts.items():
        print(f"{key:<16} {value}")
    print()

    kinds = ["read", "write", "copy", "triad"]
    isas = attnkit.supported_cpu_isas()
    header = ["threads"] + [f"{k} GB/s" for k in kinds] + [f"fma {isa} GFLOP/s" for isa in isas]
    print("  ".join(header))
    results = {}
    for threads in args.threads:
        bandwidth = {k: common.memory_bandwidth(k, threads, args.probe_mib) for k in kinds}
        peak = {isa: common.fma_peak(threads, isa) for isa in isas}
        results[threads] = {"memory_bandwidth_gbps": bandwidth, "fma_peak_gflops": peak}
        cells = [str(threads)] + [f"{bandwidth[k]:.1f}" for k in kinds] + [f"{peak[i]:.1f}" for i in isas]
        print("  ".join(c.rjust(len(h)) for c, h in zip(cells, header)))

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "probe.json"
    path.write_text(json.dumps({"machine": facts, "probe_mib": args.probe_mib, "by_threads": results}, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

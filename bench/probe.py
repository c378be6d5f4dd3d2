"""The machine's limits, as attnkit's benchmarks measure them: memory bandwidth
(read, write, copy, triad over a footprint far above the L3) and FP32 FMA peak
per ISA, at each thread count, each in ``--rounds`` separate processes.

    python bench/probe.py [--threads 1 2] [--probe-mib 512] [--rounds 3]
"""

from __future__ import annotations

import statistics

import common

import attnkit
from attnkit import _C

KINDS = ["read", "write", "copy", "triad"]


def measure(recorder, side: str, torch, args) -> None:
    threads = recorder.threads
    recorder.facts["GB/s"] = {
        kind: _C.probe_memory_bandwidth(kind, args.probe_mib * common.MIB, threads, 5) for kind in KINDS
    }
    recorder.facts["GFLOP/s"] = {isa: _C.probe_fma_peak(threads, isa) for isa in attnkit.supported_cpu_isas()}


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0], peers=False, calls=False)
    args = parser.parse_args()
    common.run_worker(args, measure)

    facts = common.print_machine(args)
    _, documents = common.measure_sides(__file__, args, ["attnkit"])
    isas = attnkit.supported_cpu_isas()
    header = ["threads"] + [f"{k} GB/s" for k in KINDS] + [f"fma {isa} GFLOP/s" for isa in isas]
    lines, results = [], {}
    for threads, by_side in documents.items():
        rounds = [document["facts"] for document in by_side["attnkit"]]
        results[threads] = {}
        line = [str(threads)]
        for unit, names in (("GB/s", KINDS), ("GFLOP/s", isas)):
            for name in names:
                values = [r[unit][name] for r in rounds]
                median = statistics.median(values)
                results[threads][f"{name} {unit}"] = {"median": median, "low": min(values), "high": max(values)}
                line.append(f"{median:.1f} ±{50 * (max(values) - min(values)) / median:.0f}%")
        lines.append(line)
    print(f"\nmedians of {args.rounds} process(es); ±: half the spread")
    print(common.format_columns(header, lines))
    path = common.write_document(__file__, facts, {"settings": vars(args), "by_threads": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

"""The ``attnkit`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    import attnkit

    info = attnkit.build_info()
    facts = {
        "version": attnkit.__version__,
        "build type": info["build_type"],
        "compiler": info["compiler"],
        "cpu isa": attnkit.cpu_isa(),
        "cpu isas available": ", ".join(attnkit.supported_cpu_isas()),
        "cpu isas compiled": ", ".join(info["compiled_isas"]),
        "openmp threads": attnkit.get_num_threads(),
        "openmp version": info["openmp"],
        "cuda": info["cuda"],
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="attnkit", description="attnkit: Transformers on attnkit's own kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print the version, build and CPU/CUDA facts")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""Run benchmarks: `python -m bench [name ...] [--scale small|full]` (see README)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHES = {
    "core": "bench.core_eval",
    "scheduler": "bench.scheduler",
    "signals": "bench.signals",
    "http-check": "bench.http_check",
    "delete": "bench.deletion",
    "export": "bench.export",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHES)}"
    )
    parser.add_argument(
        "--scale",
        choices=("small", "full"),
        default="full",
        help="full: the sizes the budgets are stated for; small: a quick smoke run",
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    failed = []
    for name in names:
        module = importlib.import_module(BENCHES[name])
        print(f"\n== {name}: {module.__doc__.strip().splitlines()[0]}")
        started = time.perf_counter()
        ok = module.run(args.scale)
        print(f"   ({time.perf_counter() - started:.1f} s)")
        if not ok:
            failed.append(name)
    if failed:
        print(f"\nover budget: {', '.join(failed)}")
        return 1
    print("\nall benchmarks within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())

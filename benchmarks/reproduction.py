"""The command line and the results file shared by the paper-reproduction scripts (`benchmarks/repro_*.py`)."""

import argparse
import json
import os
import time


def reproduction_parser(doc, default_out, smoke_help):
    """An argument parser with the options every reproduction has: `--smoke` and `--out`.

    Args:
        doc: the script's module docstring; its first line describes the command.
        default_out: the default output directory (under `benchmarks/results/`).
        smoke_help: what `--smoke` scales down (the tests run it).

    Returns:
        An `argparse.ArgumentParser` to which the script adds its own options.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--out", default=default_out, help="directory for results.json and the PNGs")
    return parser


def run_costs(start, cpu_start):
    """Wall and CPU seconds since `start` / `cpu_start` and the library versions, for the results file.

    The machine is shared: CPU time (all threads) tells the cost apart from the waiting.
    """
    import keras
    import tensorflow as tf

    return {
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def write_results(out, results, **json_options):
    """Writes `results` to `out/results.json` (indented) and says where; returns the path."""
    path = os.path.join(out, "results.json")
    with open(path, "w") as handle:
        json.dump(results, handle, indent=1, **json_options)
    wall = results.get("wall_seconds")
    print(f"wrote {path}" + ("" if wall is None else f" ({wall:.0f} s)"), flush=True)
    return path

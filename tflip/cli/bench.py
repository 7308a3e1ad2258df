"""`tflip bench`: runs the benchmark scripts of a source checkout and prints their ratio tables."""

import importlib.util
import os
import sys

SCRIPTS = {
    "layers": "bench_layers.py",
    "penalties": "bench_penalties.py",
    "activations": "bench_activations.py",
}
DEFAULT = ("layers", "penalties")  # bench_layers.py runs bench_activations.py too


def benchmarks_directory():
    """The `benchmarks/` folder next to the `tflip` package (present in a source checkout / editable install)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(here, "benchmarks")


def add_parser(commands):
    parser = commands.add_parser(
        "bench",
        help="run the speed/quality benchmarks and print their ratio tables",
        description=(
            "Runs benchmarks/bench_*.py (side-by-side timings whose ratios are meaningful on a noisy machine, "
            "and quality tables). Needs a source checkout of tflip (the scripts are not installed)."
        ),
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run, of {', '.join(sorted(SCRIPTS))} (default: {' and '.join(DEFAULT)}; "
                             "layers includes activations)")
    parser.add_argument("--quick", action="store_true", help="small shapes and budgets (a smoke run)")
    parser.set_defaults(run=run, check=check)
    return parser


def check(parser, args):
    unknown = sorted(set(args.names) - set(SCRIPTS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(SCRIPTS)}")
    if not os.path.isdir(benchmarks_directory()):
        raise ValueError(f"no benchmarks directory at {benchmarks_directory()}: `tflip bench` needs a source checkout")


def load(name):
    """Imports a benchmark script as a module (its `main(argv)` runs it)."""
    directory = benchmarks_directory()
    path = os.path.join(directory, SCRIPTS[name])
    spec = importlib.util.spec_from_file_location(f"tflip_benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    # The scripts import their shared helper `timing` from their own folder.
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec.loader.exec_module(module)
    return module


def run(args):
    results = {}
    for name in args.names or DEFAULT:
        print(f"== {name} ({SCRIPTS[name]}{' --quick' if args.quick else ''}) ==", flush=True)
        results[name] = load(name).main(["--quick"] if args.quick else [])
    return results

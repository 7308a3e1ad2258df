"""The `tflip` command: `tflip demo`, `tflip estimate-w1`, `tflip bench` (also `python -m tflip`).

Exit status: 0 on success, 2 for bad command-line input (argparse's
convention, with a message naming the flag), 1 if the run itself failed.
"""

import argparse
import os
import sys


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def writable_directory(path):
    """Creates `path` if needed and checks that files can be written there; returns it or raises ValueError."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".tflip-write-test")
        with open(probe, "w") as handle:
            handle.write("")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"output directory {path!r} is not writable: {error.strerror or error}") from None
    return path


def build_parser():
    from tflip.cli import bench, demo, estimate

    parser = argparse.ArgumentParser(
        prog="tflip", description="Lipschitz-constrained networks and Wasserstein GANs for Keras."
    )
    parser.add_argument("--version", action="version", version=f"tflip {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in (demo, estimate, bench):
        module.add_parser(commands)
    return parser


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflip")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def main(argv=None):
    """Entry point of the `tflip` console script. Returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.check(parser, args)  # flag combinations argparse cannot express
    except ValueError as error:
        parser.error(str(error))
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("tflip: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a failed run reports why and exits non-zero
        print(f"tflip {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0

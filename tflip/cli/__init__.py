"""The `tflip` command: `tflip demo`, `tflip estimate-w1`, `tflip bench` (also `python -m tflip`).

Exit status: 0 on success, 2 for bad command-line input (argparse's
convention, with a message naming the flag), 1 if the run itself failed.
"""

import argparse
import os
import sys


def _number(convert, accept, description):
    """An argparse `type` converting with `convert` and accepting values for which `accept` holds."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")


def add_network_arguments(parser, depth=3, width=128):
    """The critic architecture flags shared by `demo` and `estimate-w1`."""
    from tflip.models.mlp import ACTIVATIONS, CONSTRAINTS

    parser.add_argument("--constraint", choices=CONSTRAINTS, default="bjorck",
                        help="critic weight constraint (default: %(default)s)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="groupsort",
                        help="critic activation (default: %(default)s)")
    parser.add_argument("--group-size", type=positive_int, default=2, help="GroupSort group size (default: 2)")
    parser.add_argument("--depth", type=non_negative_int, default=depth, help="hidden layers (default: %(default)s)")
    parser.add_argument("--width", type=positive_int, default=width, help="hidden width (default: %(default)s)")


def check_network_arguments(args):
    from tflip.models.mlp import check_width

    if args.activation == "groupsort" and args.group_size < 2:
        raise ValueError("--group-size must be at least 2")
    check_width(args.width, args.activation, args.group_size, name="--width")


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

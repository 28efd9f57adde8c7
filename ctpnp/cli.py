"""The ``ctpnp`` command: argument parsing, progress and one-line errors only."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("ctpnp", "torch", "numpy", "odl", "astra-toolbox", "pydicom", "nibabel"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _info(_: argparse.Namespace) -> int:
    import torch

    from ctpnp.projector import cuda_available

    for name, version in _versions().items():
        print(f"{name:15s} {version}")
    print(f"{'torch CUDA':15s} {'yes' if torch.cuda.is_available() else 'no'}")
    print(f"{'ASTRA CUDA':15s} {'yes (astra_cuda)' if cuda_available() else 'no (astra_cpu, 2D)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctpnp",
        description="Low-dose CT reconstruction with convergent plug-and-play priors.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, CUDA availability")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("ctpnp: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users, the traceback with --debug
        if args.debug:
            raise
        print(f"ctpnp: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Check (and for automatic sources download) one source's raw data: what the download_<source> rules run.

    python -m lfa.sources check cifar10 --root data/raw/cifar10 --marker data/raw/cifar10/.verified
"""

from __future__ import annotations

import argparse
import json
import sys

from lfa.errors import LfaError
from lfa.plugins import load_plugins
from lfa.sources import ensure_raw, source_names


def _plugins(argv: list[str] | None) -> list[str]:
    """The ``--plugin`` files, imported before the parser lists the sources (a plugin may register one)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    return pre.parse_known_args(argv)[0].plugin


def main(argv: list[str] | None = None) -> int:
    try:
        load_plugins(_plugins(argv), "--plugin")
    except LfaError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog="python -m lfa.sources", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="check the raw data of a source, downloading it if automatic and missing")
    p.add_argument("source", choices=source_names())
    p.add_argument("--root", required=True, help="the raw-data folder of the source")
    p.add_argument("--marker", help="JSON marker written on success")
    p.add_argument("--log", help="file the outcome is appended to")
    p.add_argument("--specs", default="[]", help="JSON list of dataset specs using the source")
    p.add_argument("--no-download", action="store_true", help="only check, never download")
    p.add_argument("--plugin", action="append", default=[], help="a plugin file or module to import first")
    args = parser.parse_args(argv)
    try:
        ensure_raw(args.source, args.root, json.loads(args.specs), marker=args.marker, log=args.log,
                   download=not args.no_download)
    except LfaError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

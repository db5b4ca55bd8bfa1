"""`python -m scratchlm data`: list and fetch the registered data files."""

from __future__ import annotations

import argparse

from scratchlm.data import REGISTRY, default_data_dir, fetch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list or fetch the course's data files",
        description="List the registered data files, or fetch them (cache, then $SCRATCHLM_DATA_MIRROR, "
        "then download), verifying each file's sha256.",
    )
    parser.add_argument("action", choices=["list", "fetch"], help="list the files, or fetch them")
    parser.add_argument("names", nargs="*", metavar="NAME", help="files to fetch (default: all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"cache folder: {default_data_dir()}")
        for entry in REGISTRY.values():
            print(f"{entry.name:16} {entry.filename:22} {entry.description}")
        return 0
    for name in args.names or list(REGISTRY):
        print(f"{name}: {fetch(name)}")
    return 0

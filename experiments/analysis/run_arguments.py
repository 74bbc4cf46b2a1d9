"""Command-line arguments shared by the experiment scripts that read trained runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Positional run directories and ``--checkpoint`` (one checkpoint, with one run)."""
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--checkpoint", type=Path, help="one checkpoint (with one run)")


def parse_run_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; ``--checkpoint`` with several runs is a usage error (exit 2)."""
    args = parser.parse_args()
    if args.checkpoint and len(args.runs) > 1:
        parser.error("--checkpoint needs exactly one run")
    return args

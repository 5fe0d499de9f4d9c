"""Committed generated files (CRDs, reference docs): write them, or check that they are current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def sync(directory: Path, files: dict[str, str], *, check: bool = False) -> list[str]:
    """Write (or with ``check`` only compare) ``files`` into ``directory``; returns the names that differ."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, text in files.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale


def main(
    prog: str, description: str, render: Callable[[], dict[str, str]], default_dir: Path, argv: list[str] | None = None
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--out", type=Path, default=default_dir, help="directory to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    stale = sync(args.out, render(), check=args.check)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python -m {prog}`", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {args.out / name}")
    return 0

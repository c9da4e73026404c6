"""`python -m preflight_bundle check DIR...`: checks bundles as Preflight opens them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .check import BundleError, bundle_dirs, check_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preflight_bundle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="check bundles: a bundle folder (<model>/<version>/) or a model repository",
        description="Checks each bundle with the rules of Preflight's bundle format: the manifest, the folder "
        "layout, the model file, the fallback, samples, hold-out and reference. Exit code 0 when every bundle "
        "passes, 1 when one does not, 2 on a usage error.",
    )
    check.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    check.add_argument("--strict", action="store_true", help="an unknown manifest key is an error, not a warning")
    args = parser.parse_args(argv)

    failed = 0
    for d in args.dirs:
        if not d.is_dir():
            print(f"{d}: not a folder", file=sys.stderr)
            return 2
        bundles = bundle_dirs(d)
        if not bundles:
            print(f"{d}: no bundle here (neither manifest.toml nor <model>/<version>/ folders)", file=sys.stderr)
            failed += 1
        for b in bundles:
            try:
                checked = check_bundle(b)
            except BundleError as e:
                print(f"error: {e}")
                failed += 1
                continue
            for w in checked.warnings:
                print(f"{'error' if args.strict else 'warning'}: {w}")
            if args.strict and checked.warnings:
                failed += 1
                continue
            print(f"ok: {b}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

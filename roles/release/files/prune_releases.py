#!/usr/bin/env python3
"""Remove unfinished releases and all but the newest ``--keep`` finished ones.

A release directory without ``release.json`` was never finished: it is removed.
Finished releases are ranked by the ``built_at`` of their manifest; the targets
of ``--protect-link`` (current, previous) are always kept, whatever their age.
With ``--wheels``, wheelhouses no kept release names are removed too.
Prints JSON ``{"removed": [...], "kept": [...]}``.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--releases", required=True, type=Path)
    parser.add_argument("--keep", required=True, type=int)
    parser.add_argument("--protect-link", action="append", default=[], type=Path)
    parser.add_argument("--wheels", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.keep < 2:
        sys.exit("prune: --keep must be at least 2")
    if not args.releases.is_dir():
        print(json.dumps({"removed": [], "kept": []}))
        return 0

    protected = {link.resolve().name for link in args.protect_link if link.is_symlink()}
    finished, removed, houses = [], [], {}
    for release in sorted(p for p in args.releases.iterdir() if p.is_dir() and not p.is_symlink()):
        manifest = release / "release.json"
        if not manifest.is_file():
            if release.name not in protected:
                removed.append(release)
            continue
        try:
            data = json.loads(manifest.read_text())
        except ValueError:
            data = {}
        houses[release.name] = data.get("wheelhouse_key", "")
        finished.append((data.get("built_at", ""), release.name, release))

    finished.sort(reverse=True)
    kept = [r for _, _, r in finished[: args.keep]]
    kept += [r for _, name, r in finished[args.keep :] if name in protected]
    removed += [r for _, name, r in finished[args.keep :] if name not in protected]

    if args.wheels and args.wheels.is_dir():
        used = {houses[r.name] for r in kept}
        removed += [w for w in sorted(args.wheels.iterdir()) if w.is_dir() and w.name not in used]

    if not args.dry_run:
        for path in removed:
            shutil.rmtree(path)
    print(json.dumps({"removed": sorted(r.name for r in removed), "kept": sorted(r.name for r in kept)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

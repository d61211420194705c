"""Bring the state directory to a schema: `python -m notes.migrate [--to N]`.

Run before any host switches (asgi.deploy's before-switch hook), as the app runs,
from the new release, it moves the state up to the schema that release expects.
A rollback's before-switch hook runs it from the release being left, with
`--to` the older schema: only the newer code knows how to undo its own changes.
Safe to run twice.
"""

from __future__ import annotations

import argparse
import sys

from notes.store import SCHEMA, Store


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="notes.migrate")
    parser.add_argument("--to", type=int, default=SCHEMA, help=f"the schema to move to (default {SCHEMA})")
    target = parser.parse_args(argv).to
    store = Store.from_environment()
    if store.directory is None:
        print("notes.migrate: no STATE_DIRECTORY: nothing to migrate")
        return 0
    before = store.schema()
    if target > SCHEMA:
        print(f"notes.migrate: this release knows schemas up to {SCHEMA}, not {target}", file=sys.stderr)
        return 1
    if before > SCHEMA:
        print(f"notes.migrate: the state is at schema {before}, newer than this release's {SCHEMA}", file=sys.stderr)
        return 1
    store.set_schema(target)
    print(f"notes.migrate: schema {before} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

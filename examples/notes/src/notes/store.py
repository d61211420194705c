"""Notes on disk: one JSON file in the state directory, and the schema version a migration wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

# The schema this code expects; `python -m notes.migrate` brings the state directory to it.
SCHEMA = 1


class Store:
    def __init__(self, directory: Path | None):
        self.directory = directory
        self.memory: list[dict] = []

    @classmethod
    def from_environment(cls) -> Store:
        directory = os.environ.get("STATE_DIRECTORY")
        return cls(Path(directory) if directory else None)

    def _file(self) -> Path | None:
        return self.directory / "notes.json" if self.directory else None

    def all(self) -> list[dict]:
        path = self._file()
        if path is None:
            return list(self.memory)
        return json.loads(path.read_text()) if path.exists() else []

    def add(self, text: str) -> dict:
        notes = self.all()
        note = {"id": len(notes) + 1, "text": text}
        notes.append(note)
        path = self._file()
        if path is None:
            self.memory = notes
        else:
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(notes))
            tmp.replace(path)
        return note

    def schema(self) -> int:
        marker = self.directory / "schema" if self.directory else None
        return int(marker.read_text()) if marker and marker.exists() else 0

    def set_schema(self, version: int) -> None:
        # Atomically: the live release reads the marker on every request while a migration writes it.
        marker = self.directory / "schema"
        tmp = marker.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(str(version))
        tmp.replace(marker)

"""The runbooks a control plane knows: every `*.yaml` of a directory, checked when it starts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from control_plane.domain import FieldError, InvalidInput, NotFound
from runbooks.model import Runbook, load_runbook_file, matches

SHIPPED = Path(__file__).resolve().parents[2] / "runbooks" / "library"


class RunbookLibrary:
    def __init__(self, books: Iterable[Runbook]) -> None:
        self._books = {b.name: b for b in books}

    @classmethod
    def load(cls, directory: Path) -> RunbookLibrary:
        """Every runbook in `directory`; InvalidInput naming each bad file and path (a typo in a
        runbook must stop the start, not surface at 3 a.m. when its alert fires)."""
        if not directory.is_dir():
            raise InvalidInput(f"{directory}: no such runbook directory (DRCTL_RUNBOOK_DIR)")
        books: list[Runbook] = []
        errors: list[FieldError] = []
        for path in sorted(directory.glob("*.yaml")):
            try:
                books.append(load_runbook_file(path))
            except InvalidInput as exc:
                errors += [FieldError(f"{path.name}:{e.path}", e.message) for e in exc.errors] or [
                    FieldError(path.name, str(exc))
                ]
        names = [b.name for b in books]
        errors += [
            FieldError(n, "two runbooks have this name")
            for n in sorted({n for n in names if names.count(n) > 1})
        ]
        if errors:
            raise InvalidInput(f"{directory}: {errors[0].path}: {errors[0].message}", errors)
        return cls(books)

    def get(self, name: str) -> Runbook:
        book = self._books.get(name)
        if book is None:
            raise NotFound(f"no runbook {name!r} (GET /v1/runbooks lists them)")
        return book

    def all(self) -> list[Runbook]:
        return [self._books[n] for n in sorted(self._books)]

    def triggered_by(
        self, alertname: str, incident_kind: str | None, labels: Mapping[str, str]
    ) -> list[Runbook]:
        return [
            b for b in self.all() if any(matches(t, alertname, incident_kind, labels) for t in b.triggers)
        ]

"""Read the JSONL that verl's ``file`` logger writes (``trainer.logger=[...,file]``): one reader for the project.

verl's ``FileLogger`` (``verl/utils/tracking.py``) appends one line per logged step,
``{"step": <int>, "data": {<metric>: <value>, ...}}``, to ``$VERL_FILE_LOGGER_PATH`` (or
``$VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl``). It opens the file in ``w`` mode, so a resumed run starts a
new file; the reproduction launchers keep the previous one as ``metrics.<time>.jsonl``.

:func:`read_metrics` returns the records flattened, ``[{"step": s, **metrics}, ...]``, in file order. It can read a
file that verl is still writing: a last line without its newline is a write in progress and is left out, while any
other line that is not a file-logger record is an error naming ``path:line`` (a wrong file should not read as an
empty run).

Layer 2 (foundations).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["is_metrics_file", "read_metrics"]


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
        step, data = int(entry["step"]), entry["data"]
        if not isinstance(data, dict):
            raise TypeError(f"'data' is a {type(data).__name__}, not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: not a verl file-logger record ({exc})") from exc
    return {"step": step, **data}


def read_metrics(path: str | Path, missing_ok: bool = True) -> list[dict[str, Any]]:
    """The per-step records of one file-logger JSONL: ``[{"step": s, **metrics}, ...]`` in file order.

    Args:
        path: the JSONL file.
        missing_ok: return ``[]`` for a file that does not exist yet (a run that has not logged a step), instead of
            raising ``FileNotFoundError``.

    Raises:
        ValueError: a complete line that is not a file-logger record, with ``path:line`` in the message.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    lines = text.split("\n")
    in_progress = lines.pop()  # "" when the file ends with a newline; otherwise a line verl is still writing
    records = [_record(line, f"{path}:{number}") for number, line in enumerate(lines, start=1) if line.strip()]
    if in_progress.strip():
        try:
            records.append(_record(in_progress, f"{path}:{len(lines) + 1}"))
        except ValueError:
            pass  # half-written: the next read will have it
    return records


def is_metrics_file(path: str | Path) -> bool:
    """Whether the first non-empty line of ``path`` is a file-logger record (not, e.g., a dump of generations)."""
    with open(path) as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and set(entry) == {"step", "data"}

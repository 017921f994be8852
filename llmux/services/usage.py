"""Per-key usage in SQLite: per UTC day, client (the key's name, never the key) and model.

The numbers are the canonical record's (``request_done`` is fed every request's record, as the
metrics are), so nothing is counted twice: tokens (prompt, completion, cached, reasoning), the
seconds of audio transcribed, the characters spoken and the seconds of speech made. A request
counts once it has named a served model; one the access gate refused (``refused``) does not.

The event loop only adds to an in-memory total (a dict update under a lock); a writer thread
folds the totals into the database every ``flush_s`` seconds and at shutdown, in one
transaction of upserts. A reader flushes first, so it sees every request that has ended. A
process killed without a shutdown (SIGKILL, a power cut) loses at most ``flush_s`` of usage.
WAL mode: readers (``sqlite3`` on the host, a backup) never block the writer.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from llmux.engines.worker import run_in_thread
from llmux.protocol.errors import InvalidRequest
from llmux.protocol.usage import UsageReport, UsageRow

log = structlog.get_logger("llmux.usage")

FILE_NAME = "usage.sqlite3"
COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "audio_seconds",
    "speech_seconds",
    "characters",
)
"""Columns summed per (day, client, model); ``audio_seconds`` transcribed, ``speech_seconds``
and ``characters`` spoken."""
GROUPS = ("day", "client", "model")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, client TEXT NOT NULL, model TEXT NOT NULL,
    {", ".join(f"{c} {'REAL' if c.endswith('seconds') else 'INTEGER'} NOT NULL DEFAULT 0" for c in COUNTERS)},
    PRIMARY KEY (day, client, model)
)"""
_UPSERT = (
    f"INSERT INTO usage (day, client, model, {', '.join(COUNTERS)}) VALUES (?, ?, ?{', ?' * len(COUNTERS)}) "  # noqa: S608 (column names are this module's constants; values are bound)
    f"ON CONFLICT (day, client, model) DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in COUNTERS)}"
)


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def counts_of(record: dict[str, Any]) -> dict[str, float] | None:
    """A finished request's contribution, or None if it is not usage (no client or model, or
    refused by the access gate)."""
    if not record.get("client") or not record.get("model") or not record.get("physical") or record.get("refused"):
        return None
    counts: dict[str, float] = {"requests": 1}
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
        counts[name] = record.get(name) or 0
    route = record.get("route") or ""
    if route.endswith("/audio/transcriptions"):
        counts["audio_seconds"] = record.get("audio_s") or 0.0
    elif route.endswith("/audio/speech"):
        counts["speech_seconds"] = record.get("audio_s") or 0.0
        counts["characters"] = record.get("chars") or 0
    return counts


class UsageStore:
    """``path`` None: an in-memory database (an app built without a data directory, in tests)."""

    def __init__(self, path: Path | None, *, flush_s: float = 5.0, today: Callable[[], str] = _today) -> None:
        self.path = path
        self.flush_s = flush_s
        self._today = today
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
        self._db.execute(_SCHEMA)
        self._pending: dict[tuple[str, str, str], dict[str, float]] = {}
        self._lock = threading.Lock()  # guards _pending: held for a dict update, never across SQL
        self._db_lock = threading.Lock()  # one user of the connection at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the event loop's side: O(1) per request -----------------------------------------------

    def request_done(self, record: dict[str, Any]) -> None:
        counts = counts_of(record)
        if counts is None:
            return
        key = (self._today(), str(record["client"]), str(record["model"]))
        with self._lock:
            row = self._pending.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in counts.items():
                row[name] += value

    # ---- the writer thread -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except sqlite3.Error as exc:  # a full disk: keep the totals in memory, try again
                log.error("usage.flush_failed", error=str(exc))

    def flush(self) -> int:
        """Write what accumulated; returns the rows written. Any thread; the event loop waits
        only for the swap of the in-memory totals, never for the database."""
        with self._db_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            try:
                self._db.execute("BEGIN")
                self._db.executemany(_UPSERT, [(*k, *(v[c] for c in COUNTERS)) for k, v in pending.items()])
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                with self._lock:  # put them back: nothing is lost
                    for key, row in pending.items():
                        into = self._pending.setdefault(key, dict.fromkeys(COUNTERS, 0))
                        for name in COUNTERS:
                            into[name] += row[name]
                raise
            return len(pending)

    def close(self) -> None:
        """Stop the writer and write what is left (at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()
        with self._db_lock:
            self._db.close()

    # ---- reads -------------------------------------------------------------------------------

    def query(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        client: str | None = None,
        group_by: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """Summed rows between ``start`` and ``end`` (UTC days, inclusive), one per distinct
        value of the ``group_by`` columns (``GROUPS``), ordered by them. Any thread."""
        groups = [g for g in GROUPS if g in set(group_by)]
        where, args = [], []
        for clause, value in (("day >= ?", start), ("day <= ?", end), ("client = ?", client)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = (
            f"SELECT {', '.join([*groups, *(f'SUM({c})' for c in COUNTERS)])} FROM usage"  # noqa: S608 (names from GROUPS/COUNTERS only; values are bound)
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + (f" GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}" if groups else "")
        )
        self.flush()
        with self._db_lock:
            rows = self._db.execute(sql, args).fetchall()
        names = [*groups, *COUNTERS]
        return [dict(zip(names, row, strict=True)) for row in rows if row[len(groups)] is not None]


class UsageService:
    """The reports behind ``GET /v1/usage`` and ``GET /v1/admin/usage``."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store

    async def report(
        self, *, start: str | None, end: str | None, group_by: str | None, client: str | None, groups: tuple[str, ...]
    ) -> UsageReport:
        """``group_by``: comma-separated names out of ``groups``; ``client`` None: every key."""
        first, last = _day(start, "start"), _day(end, "end")
        wanted = [g.strip() for g in (group_by or "").split(",") if g.strip()]
        for name in wanted:
            if name not in groups:
                raise InvalidRequest(f"group_by {name!r}: one of {', '.join(groups)}", param="group_by")
        rows = await run_in_thread(
            lambda _: self.store.query(start=first, end=last, client=client, group_by=wanted), name="usage-query"
        )
        ordered = [g for g in GROUPS if g in wanted]
        total = _row({c: sum(r[c] for r in rows) for c in COUNTERS})
        return UsageReport(start=first, end=last, group_by=ordered, data=[_row(r) for r in rows], total=total)


def _day(value: str | None, param: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequest(f"{param} must be a date, YYYY-MM-DD (UTC), not {value!r}.", param=param) from None


def _row(sums: dict[str, Any]) -> UsageRow:
    ints = {c: int(sums[c] or 0) for c in COUNTERS if not c.endswith("seconds")}
    return UsageRow(
        day=sums.get("day"),
        client=sums.get("client"),
        model=sums.get("model"),
        total_tokens=ints["prompt_tokens"] + ints["completion_tokens"],
        audio_seconds=round(float(sums["audio_seconds"] or 0), 3),
        speech_seconds=round(float(sums["speech_seconds"] or 0), 3),
        **ints,
    )

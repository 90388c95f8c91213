"""The read model the edge answers from: rows projected from the topics, in SQLite (default)
or PostgreSQL (with a DSN), rebuildable from the topics.

- A row keeps the event's own bytes, whose sensitive fields stay sealed as on the wire; they
  are opened only when a row is served, by a process that holds the keys.
- What queries filter on is in columns. A person's record keys, the person id and times are
  pseudonyms or plain times. A code is stored as a keyed pseudonym of (system, code), so the
  table does not say which tests a patient had.
- The offsets consumed are written in the same database transaction as the rows, so a
  restart resumes exactly where the last commit ended.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg

from hs_common.errors import HealthStreamError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS offsets (
        topic TEXT NOT NULL, partition_id INTEGER NOT NULL, next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition_id))""",
    """CREATE TABLE IF NOT EXISTS persons (
        person_id TEXT PRIMARY KEY, status TEXT NOT NULL, merged_into TEXT,
        event BYTEA NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS person_records (
        record_key TEXT PRIMARY KEY, person_id TEXT NOT NULL, linked_at BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS person_records_person ON person_records (person_id)",
    # keyed pseudonyms of what a person is found by: the resident ID, family name, birth date
    """CREATE TABLE IF NOT EXISTS person_identifiers (
        identifier_key TEXT NOT NULL, person_id TEXT NOT NULL,
        PRIMARY KEY (identifier_key, person_id))""",
    "CREATE INDEX IF NOT EXISTS person_identifiers_person ON person_identifiers (person_id)",
    """CREATE TABLE IF NOT EXISTS projection (
        name TEXT PRIMARY KEY, version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS observations (
        institution TEXT NOT NULL, observation_id TEXT NOT NULL, patient_key TEXT NOT NULL,
        code_key TEXT, category TEXT NOT NULL, effective_at BIGINT NOT NULL,
        event BYTEA NOT NULL, PRIMARY KEY (institution, observation_id))""",
    """CREATE INDEX IF NOT EXISTS observations_patient
        ON observations (patient_key, effective_at)""",
    """CREATE TABLE IF NOT EXISTS conditions (
        institution TEXT NOT NULL, condition_id TEXT NOT NULL, patient_key TEXT NOT NULL,
        recorded_at BIGINT NOT NULL, event BYTEA NOT NULL,
        PRIMARY KEY (institution, condition_id))""",
    "CREATE INDEX IF NOT EXISTS conditions_patient ON conditions (patient_key, recorded_at)",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT NOT NULL, action TEXT NOT NULL, patient_key TEXT NOT NULL,
        at BIGINT NOT NULL, received BIGINT NOT NULL, event BYTEA NOT NULL,
        PRIMARY KEY (alert_id, action))""",
    "CREATE INDEX IF NOT EXISTS alerts_received ON alerts (received)",
    "CREATE INDEX IF NOT EXISTS alerts_patient ON alerts (patient_key, at)",
    """CREATE TABLE IF NOT EXISTS audit_anchors (
        chain TEXT PRIMARY KEY, sequence BIGINT NOT NULL, hash TEXT NOT NULL)""",
    # the open platform's clients (hs.edge.client.v1): the latest version of each
    """CREATE TABLE IF NOT EXISTS clients (
        client_id TEXT PRIMARY KEY, version BIGINT NOT NULL, status TEXT NOT NULL,
        event BYTEA NOT NULL)""",
    # each client's requests per UTC day, counted from the audit trail
    """CREATE TABLE IF NOT EXISTS client_usage (
        client_id TEXT NOT NULL, day TEXT NOT NULL, requests BIGINT NOT NULL,
        refusals BIGINT NOT NULL, rate_limited BIGINT NOT NULL, PRIMARY KEY (client_id, day))""",
    """CREATE TABLE IF NOT EXISTS reviews (
        record_key TEXT PRIMARY KEY, status TEXT NOT NULL, decided_at BIGINT NOT NULL,
        event BYTEA NOT NULL)""",
    # hs-quality's closed windows per source and data type, and its alerts
    """CREATE TABLE IF NOT EXISTS quality_windows (
        institution TEXT NOT NULL, scored_type TEXT NOT NULL, size TEXT NOT NULL,
        window_start BIGINT NOT NULL, event BYTEA NOT NULL,
        PRIMARY KEY (institution, scored_type, size, window_start))""",
    """CREATE TABLE IF NOT EXISTS quality_alerts (
        alert_id TEXT NOT NULL, action TEXT NOT NULL, institution TEXT NOT NULL,
        at BIGINT NOT NULL, event BYTEA NOT NULL, PRIMARY KEY (alert_id, action))""",
)


# the tables holding event bytes, with their primary keys
EVENT_TABLES = {
    "persons": ("person_id",),
    "observations": ("institution", "observation_id"),
    "conditions": ("institution", "condition_id"),
    "alerts": ("alert_id", "action"),
    "reviews": ("record_key",),
    "quality_windows": ("institution", "scored_type", "size", "window_start"),
    "quality_alerts": ("alert_id", "action"),
}


class Connection(Protocol):
    """A DB-API connection in autocommit mode: transactions are begun explicitly."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Any: ...
    def close(self) -> None: ...


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Page:
    rows: list[bytes]  # the events, oldest first
    next_cursor: str | None  # pass back to get the next page


class StoreUnavailable(HealthStreamError):
    """The database did not answer; a PostgreSQL connection is opened again for the next
    statement."""


class Store:
    """SQL over a DB-API connection; `placeholder` is "?" (SQLite) or "%s" (PostgreSQL)."""

    def __init__(
        self, connection: Connection, placeholder: str = "?",
        reconnect: Callable[[], Connection] | None = None,
    ) -> None:  # fmt: skip
        self.db, self.mark, self.reconnect = connection, placeholder, reconnect
        with self.transaction():
            for statement in SCHEMA:
                self._run(statement.replace("BYTEA", "BLOB") if placeholder == "?" else statement)

    @classmethod
    def open(cls, database: str) -> Store:
        """A PostgreSQL DSN (postgresql://...) or the path of a SQLite file."""
        if database.startswith(("postgresql://", "postgres://")):
            return cls.postgres(database)
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        return cls.sqlite(database)

    @classmethod
    def sqlite(cls, path: Path | str) -> Store:
        connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=5000")
        return cls(connection)

    @classmethod
    def postgres(cls, dsn: str) -> Store:
        def connect() -> Connection:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=10)

        return cls(connect(), "%s", connect)

    def _run(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        try:
            return self.db.execute(sql.replace("?", self.mark), parameters)
        except (psycopg.OperationalError, sqlite3.OperationalError) as error:
            lost = getattr(self.db, "broken", False) or getattr(self.db, "closed", False)
            if self.reconnect is not None and lost:
                with suppress(psycopg.OperationalError):  # still down: tried again next time
                    self.db = self.reconnect()
            raise StoreUnavailable(
                f"the read model did not answer ({type(error).__name__})"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        self._run("BEGIN")
        try:
            yield self
        except BaseException:
            self._run("ROLLBACK")
            raise
        self._run("COMMIT")

    # --- writes (the projector) -------------------------------------------------------

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self._run("SELECT partition_id, next_offset FROM offsets WHERE topic = ?", (topic,))
        return {int(p): int(o) for p, o in rows.fetchall()}

    def consumed(self, topic: str, partition: int, offset: int) -> None:
        self._run(
            "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition_id) "
            "DO UPDATE SET next_offset = excluded.next_offset",
            (topic, partition, offset + 1),
        )

    def put_person(
        self, person_id: str, status: str, merged_into: str | None, record_keys: Iterable[str],
        at: datetime, event: bytes, identifier_keys: Iterable[str] = (),
    ) -> None:  # fmt: skip
        self._run(
            "INSERT INTO persons VALUES (?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
            "status = excluded.status, merged_into = excluded.merged_into, event = excluded.event",
            (person_id, status, merged_into, event),
        )
        self._run("DELETE FROM person_identifiers WHERE person_id = ?", (person_id,))
        if status != "ACTIVE":
            return
        for identifier_key in set(identifier_keys):
            self._run("INSERT INTO person_identifiers VALUES (?, ?)", (identifier_key, person_id))
        for record_key in record_keys:  # the newest decision about a record wins
            self._run(
                "INSERT INTO person_records VALUES (?, ?, ?) ON CONFLICT (record_key) DO UPDATE "
                "SET person_id = excluded.person_id, linked_at = excluded.linked_at "
                "WHERE excluded.linked_at >= person_records.linked_at",
                (record_key, person_id, micros(at)),
            )

    def put_observation(
        self, institution: str, observation_id: str, patient_key: str, code_key: str | None,
        category: str, effective_at: datetime, event: bytes,
    ) -> None:  # fmt: skip
        self._run(
            "INSERT INTO observations VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (institution, observation_id) DO UPDATE SET "
            "patient_key = excluded.patient_key, code_key = excluded.code_key, "
            "category = excluded.category, effective_at = excluded.effective_at, "
            "event = excluded.event",
            (institution, observation_id, patient_key, code_key, category,
             micros(effective_at), event),
        )  # fmt: skip

    def put_condition(
        self, institution: str, condition_id: str, patient_key: str, recorded_at: datetime,
        event: bytes,
    ) -> None:  # fmt: skip
        self._run(
            "INSERT INTO conditions VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (institution, condition_id) DO UPDATE SET "
            "patient_key = excluded.patient_key, recorded_at = excluded.recorded_at, "
            "event = excluded.event",
            (institution, condition_id, patient_key, micros(recorded_at), event),
        )

    def put_alert(
        self, alert_id: str, action: str, patient_key: str, at: datetime, event: bytes
    ) -> None:
        """`received` orders the live stream: strictly increasing in this store."""
        (last,) = self._run("SELECT COALESCE(MAX(received), 0) FROM alerts").fetchone()
        received = max(time.time_ns() // 1000, int(last) + 1)
        self._run(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id, action) DO NOTHING",
            (alert_id, action, patient_key, micros(at), received, event),
        )

    def put_quality_window(
        self, institution: str, scored_type: str, size: str, start: datetime, event: bytes
    ) -> None:
        self._run(
            "INSERT INTO quality_windows VALUES (?, ?, ?, ?, ?) ON CONFLICT "
            "(institution, scored_type, size, window_start) DO UPDATE SET event = excluded.event",
            (institution, scored_type, size, micros(start), event),
        )

    def put_quality_alert(
        self, alert_id: str, action: str, institution: str, at: datetime, event: bytes
    ) -> None:
        self._run(
            "INSERT INTO quality_alerts VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id, action) DO NOTHING",
            (alert_id, action, institution, micros(at), event),
        )

    def quality_sources(self) -> list[str]:
        rows = self._run(
            "SELECT DISTINCT institution FROM quality_windows ORDER BY institution"
        ).fetchall()
        return [str(institution) for (institution,) in rows]

    def quality_windows(self, institution: str, size: str, since: datetime) -> list[bytes]:
        """The source's windows of `size` from `since`, oldest first."""
        rows = self._run(
            "SELECT event FROM quality_windows WHERE institution = ? AND size = ? AND "
            "window_start >= ? ORDER BY window_start, scored_type",
            (institution, size, micros(since)),
        ).fetchall()
        return [bytes(event) for (event,) in rows]

    def quality_alerts(self, institution: str) -> list[bytes]:
        rows = self._run(
            "SELECT event FROM quality_alerts WHERE institution = ? ORDER BY at, action DESC",
            (institution,),
        ).fetchall()
        return [bytes(event) for (event,) in rows]

    def put_link(self, record_key: str, action: str, at: datetime, event: bytes) -> None:
        """A REVIEW opens the record's review; a later decision about the record closes it."""
        if action == "REVIEW":
            self._run(
                "INSERT INTO reviews VALUES (?, 'OPEN', ?, ?) ON CONFLICT (record_key) DO UPDATE "
                "SET status = 'OPEN', decided_at = excluded.decided_at, event = excluded.event",
                (record_key, micros(at), event),
            )
        else:
            self.close_review(record_key, at)

    def close_review(self, record_key: str, at: datetime) -> None:
        self._run(
            "UPDATE reviews SET status = 'DECIDED' WHERE record_key = ? AND decided_at <= ?",
            (record_key, micros(at)),
        )

    def put_client(self, client_id: str, version: int, status: str, event: bytes) -> None:
        """A client's version, unless the store holds a later one."""
        self._run(
            "INSERT INTO clients VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET "
            "version = excluded.version, status = excluded.status, event = excluded.event "
            "WHERE excluded.version > clients.version",
            (client_id, version, status, event),
        )

    def revoked_clients(self) -> set[str]:
        rows = self._run("SELECT client_id FROM clients WHERE status = 'REVOKED'").fetchall()
        return {str(client_id) for (client_id,) in rows}

    def client(self, client_id: str) -> bytes | None:
        row = self._run("SELECT event FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        return bytes(row[0]) if row else None

    def clients(self) -> list[bytes]:
        rows = self._run("SELECT event FROM clients ORDER BY client_id").fetchall()
        return [bytes(event) for (event,) in rows]

    def count_usage(self, client_id: str, day: str, refused: bool, rate_limited: bool) -> None:
        self._run(
            "INSERT INTO client_usage VALUES (?, ?, 1, ?, ?) ON CONFLICT (client_id, day) "
            "DO UPDATE SET requests = client_usage.requests + 1, "
            "refusals = client_usage.refusals + excluded.refusals, "
            "rate_limited = client_usage.rate_limited + excluded.rate_limited",
            (client_id, day, int(refused), int(rate_limited)),
        )

    def usage(self, client_id: str) -> list[tuple[str, int, int, int]]:
        """(day, requests, refusals, rate-limited) of a client, the latest day first."""
        rows = self._run(
            "SELECT day, requests, refusals, rate_limited FROM client_usage WHERE client_id = ? "
            "ORDER BY day DESC",
            (client_id,),
        ).fetchall()
        return [(str(d), int(n), int(r), int(x)) for d, n, r, x in rows]

    def put_anchor(self, chain: str, sequence: int, hash_: str) -> None:
        """The audit chain's head, recorded outside the trail (see `audit.verify`)."""
        self._run(
            "INSERT INTO audit_anchors VALUES (?, ?, ?) ON CONFLICT (chain) DO UPDATE SET "
            "sequence = excluded.sequence, hash = excluded.hash "
            "WHERE excluded.sequence > audit_anchors.sequence",
            (chain, sequence, hash_),
        )

    def anchors(self) -> list[tuple[str, int, str]]:
        rows = self._run("SELECT chain, sequence, hash FROM audit_anchors").fetchall()
        return [(str(c), int(n), str(h)) for c, n, h in rows]

    def rewrite_events(self, rewrite: Callable[[bytes], bytes | None], page: int = 500) -> int:
        """Pass every stored event through `rewrite` (None: keep it as it is) and store what it
        returns, page by page. A row the projector changed meanwhile is left to it."""
        rewritten = 0
        for table, key in EVENT_TABLES.items():
            columns = ", ".join(key)
            after: tuple[Any, ...] | None = None
            while True:
                where = f"WHERE ({columns}) > ({', '.join('?' * len(key))}) " if after else ""
                rows = self._run(
                    f"SELECT {columns}, event FROM {table} {where}ORDER BY {columns} LIMIT ?",  # noqa: S608 (names from EVENT_TABLES)
                    (*(after or ()), page),
                ).fetchall()
                if not rows:
                    break
                with self.transaction():
                    for *row_key, event in rows:
                        fresh = rewrite(bytes(event))
                        if fresh is not None:
                            match = " AND ".join(f"{k} = ?" for k in key)
                            self._run(
                                f"UPDATE {table} SET event = ? WHERE {match} AND event = ?",  # noqa: S608
                                (fresh, *row_key, event),
                            )
                            rewritten += 1
                after = tuple(rows[-1][: len(key)])
        return rewritten

    def events(self) -> Iterator[bytes]:
        """Every stored event, table by table."""
        for table in EVENT_TABLES:
            for (event,) in self._run(f"SELECT event FROM {table}").fetchall():  # noqa: S608
                yield bytes(event)

    def projection_version(self, name: str) -> int:
        row = self._run("SELECT version FROM projection WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def project_again(self, name: str, version: int, topics: Sequence[str]) -> None:
        """Read `topics` from their start again (the projection `name` changed to `version`)."""
        with self.transaction():
            for topic in topics:
                self._run("DELETE FROM offsets WHERE topic = ?", (topic,))
            self._run(
                "INSERT INTO projection VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                "version = excluded.version",
                (name, version),
            )

    # --- reads (the API) ----------------------------------------------------------------

    def persons_with_identifier(self, identifier_key: str, limit: int = 20) -> list[str]:
        return self.persons_with_any([identifier_key], limit)

    def persons_with_any(self, keys: Sequence[str], limit: int) -> list[str]:
        """Persons found by any of `keys`, those found by most of them first (one index
        lookup a key)."""
        counts: dict[str, int] = {}
        for key in dict.fromkeys(keys):
            rows = self._run(
                "SELECT person_id FROM person_identifiers WHERE identifier_key = ? LIMIT ?",
                (key, limit),
            ).fetchall()
            for (person_id,) in rows:
                counts[str(person_id)] = counts.get(str(person_id), 0) + 1
        return sorted(counts, key=lambda p: (-counts[p], p))[:limit]

    def person_of_record(self, record_key: str) -> str | None:
        row = self._run(
            "SELECT person_id FROM person_records WHERE record_key = ?", (record_key,)
        ).fetchone()
        return str(row[0]) if row else None

    def open_reviews(self, limit: int = 100) -> list[bytes]:
        rows = self._run(
            "SELECT event FROM reviews WHERE status = 'OPEN' ORDER BY decided_at, record_key "
            "LIMIT ?",
            (limit,),
        ).fetchall()
        return [bytes(event) for (event,) in rows]

    def review(self, record_key: str) -> bytes | None:
        row = self._run(
            "SELECT event FROM reviews WHERE record_key = ? AND status = 'OPEN'", (record_key,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def person(self, person_id: str) -> tuple[bytes, list[str]] | None:
        """A person's golden record event and its record keys (following merges)."""
        seen: set[str] = set()
        while person_id not in seen:
            seen.add(person_id)
            row = self._run(
                "SELECT status, merged_into, event FROM persons WHERE person_id = ?", (person_id,)
            ).fetchone()
            if row is None:
                return None
            status, merged_into, event = row
            if status == "MERGED" and merged_into:
                person_id = merged_into
                continue
            keys = self._run(
                "SELECT record_key FROM person_records WHERE person_id = ? ORDER BY record_key",
                (person_id,),
            ).fetchall()
            return bytes(event), [k for (k,) in keys]
        return None

    def observations(
        self, record_keys: Sequence[str], since: datetime | None = None,
        until: datetime | None = None, code_keys: Sequence[str] = (),
        category: str | None = None, limit: int = 50, cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:  # fmt: skip
        """The observations of these records, oldest (or newest) first, a page at a time."""
        if not record_keys:
            return Page([], None)
        where = [f"patient_key IN ({', '.join('?' * len(record_keys))})"]
        parameters: list[Any] = list(record_keys)
        if since is not None:
            where.append("effective_at >= ?")
            parameters.append(micros(since))
        if until is not None:
            where.append("effective_at < ?")
            parameters.append(micros(until))
        if code_keys:
            where.append(f"code_key IN ({', '.join('?' * len(code_keys))})")
            parameters += list(code_keys)
        if category is not None:
            where.append("category = ?")
            parameters.append(category)
        if cursor is not None:
            at, institution, observation_id = _cursor(cursor)
            after = "<" if newest_first else ">"
            where.append(
                f"(effective_at {after} ? OR (effective_at = ? AND (institution {after} ? OR "
                f"(institution = ? AND observation_id {after} ?))))"
            )
            parameters += [at, at, institution, institution, observation_id]
        order = " DESC" if newest_first else ""
        # the conditions are fixed fragments with placeholders; values are parameters only
        rows = self._run(
            "SELECT effective_at, institution, observation_id, event FROM observations WHERE "  # noqa: S608
            + " AND ".join(where)
            + f" ORDER BY effective_at{order}, institution{order}, observation_id{order} LIMIT ?",
            (*parameters, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows and more else None
        next_cursor = f"{last[0]}|{last[1]}|{last[2]}" if last else None
        return Page([bytes(event) for *_, event in rows], next_cursor)

    def alerts_received_after(
        self, after: int, record_keys: Sequence[str] | None = None, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """Alert events projected after `after` (a `received` value), for the live stream;
        only these records' when given."""
        where = "received > ?"
        parameters: list[Any] = [after]
        if record_keys is not None:
            if not record_keys:
                return []
            where += f" AND patient_key IN ({', '.join('?' * len(record_keys))})"
            parameters += list(record_keys)
        rows = self._run(
            f"SELECT received, event FROM alerts WHERE {where} ORDER BY received LIMIT ?",  # noqa: S608
            (*parameters, limit),
        ).fetchall()
        return [(int(received), bytes(event)) for received, event in rows]

    def alert(self, alert_id: str) -> bytes | None:
        row = self._run(
            "SELECT event FROM alerts WHERE alert_id = ? AND action = 'OPENED'", (alert_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def conditions(self, record_keys: Sequence[str], limit: int = 500) -> list[bytes]:
        """The diagnoses of these records, oldest first."""
        if not record_keys:
            return []
        rows = self._run(
            "SELECT event FROM conditions WHERE patient_key IN "  # noqa: S608
            f"({', '.join('?' * len(record_keys))}) "
            "ORDER BY recorded_at, institution, condition_id LIMIT ?",
            (*record_keys, limit),
        ).fetchall()
        return [bytes(event) for (event,) in rows]

    def alerts(self, record_keys: Sequence[str], limit: int = 100) -> list[bytes]:
        if not record_keys:
            return []
        rows = self._run(
            f"SELECT event FROM alerts WHERE patient_key IN ({', '.join('?' * len(record_keys))})"  # noqa: S608
            " ORDER BY at, alert_id LIMIT ?",
            (*record_keys, limit),
        ).fetchall()
        return [bytes(event) for (event,) in rows]


def _cursor(text: str) -> tuple[int, str, str]:
    try:
        at, institution, observation_id = text.split("|", 2)
        return int(at), institution, observation_id
    except ValueError:
        raise ValueError("the paging cursor is not one this service gave") from None

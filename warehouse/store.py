"""The warehouse: atomic hive-partitioned Parquet per stage table, a journal for rows that must
survive a crash one by one, and a DuckDB catalog of views for analysts."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import TABLES

log = logging.getLogger(__name__)

SCHEMA_PARTITION = "run_id=__schema__"


class WarehouseError(RuntimeError):
    pass


class WarehouseBusy(WarehouseError):
    pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_parquet(table: pa.Table, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot and a .tmp suffix keep the half-written file out of every *.parquet glob.
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def conform(table_name: str, rows: pa.Table | Sequence[dict]) -> pa.Table:
    """Check rows against the table's schema; the error names the table and the problem."""
    schema = TABLES[table_name]
    try:
        if isinstance(rows, pa.Table):
            missing = set(schema.names) - set(rows.column_names)
            if missing:
                raise ValueError(f"missing columns {sorted(missing)}")
            t = rows.select(schema.names).cast(schema)
        else:
            for i, row in enumerate(rows):
                extra = set(row) - set(schema.names)
                if extra:
                    raise ValueError(f"row {i} has unknown columns {sorted(extra)}")
            t = pa.Table.from_pylist(list(rows), schema=schema)
    except (ValueError, TypeError, pa.ArrowException) as e:
        raise WarehouseError(f"rows for table {table_name!r} do not fit its schema: {e}") from e
    if t.num_rows and t.column("id").null_count:
        raise WarehouseError(f"rows for table {table_name!r} have a null id")
    return t


class Warehouse:
    def __init__(self, root: str | Path, catalog: str | Path | None = None):
        self.root = Path(root).expanduser().resolve()
        self.catalog_path = Path(catalog).resolve() if catalog else self.root / "catalog.duckdb"
        self._lock_fh = None
        self._initialised = False

    # ---- layout -------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def init(self) -> None:
        """Create the layout and an empty typed file per table, so every view has a match.
        Checked once per Warehouse object: every query passes through here."""
        if self._initialised:
            return
        for name, schema in TABLES.items():
            placeholder = self.table_dir(name) / SCHEMA_PARTITION / "part-0.parquet"
            current = schema.remove(schema.get_field_index("run_id"))
            if not placeholder.exists() or pq.read_schema(placeholder) != current:
                _atomic_write_parquet(current.empty_table(), placeholder)
        self._initialised = True

    # ---- writer lock --------------------------------------------------------------------
    def acquire_writer(self) -> None:
        """One writing process per warehouse; a second one fails at once with who holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / ".writer.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise WarehouseBusy(
                f"warehouse {self.root} is being written by {holder}; wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {dt.datetime.now(dt.UTC).isoformat()}")
        fh.flush()
        self._lock_fh = fh
        # Temp files of a writer that was killed mid-write; no glob ever saw them.
        for tmp in self.root.glob("**/.*.tmp"):
            tmp.unlink(missing_ok=True)

    def release_writer(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # ---- writes -------------------------------------------------------------------------
    def write(self, table: str, rows: pa.Table | Sequence[dict], run_id: str) -> Path | None:
        """Append rows as one new Parquet part of the run's partition (atomic)."""
        t = conform(table, rows)
        if t.num_rows == 0:
            return None
        t = t.drop_columns(["run_id"])  # the partition directory carries it
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        dest = self.table_dir(table) / f"run_id={run_id}" / name
        _atomic_write_parquet(t, dest)
        return dest

    # ---- journal: rows made durable one at a time, compacted into Parquet ---------------
    def journal_path(self, table: str, run_id: str) -> Path:
        return (
            self.root / "_journal" / table / f"{run_id}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
        )

    def compact_journals(self, table: str) -> int:
        """Turn every closed journal of a table into a Parquet part; idempotent after a crash."""
        rows_total = 0
        jdir = self.root / "_journal" / table
        for path in sorted(jdir.glob("*.jsonl")) if jdir.exists() else []:
            rows, bad = [], 0
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1  # a line cut short by a crash: its call is simply made again
            if bad:
                log.warning("journal %s: skipped %d incomplete line(s)", path.name, bad)
            by_run: dict[str, list[dict]] = {}
            for row in rows:
                row["created_at"] = dt.datetime.fromisoformat(row["created_at"])
                by_run.setdefault(row["run_id"], []).append(row)
            for run_id, run_rows in by_run.items():
                t = conform(table, run_rows).drop_columns(["run_id"])
                # Named after the journal, so redoing an interrupted compaction overwrites it.
                dest = (
                    self.table_dir(table) / f"run_id={run_id}" / f"part-journal-{path.stem}.parquet"
                )
                _atomic_write_parquet(t, dest)
            path.unlink()
            rows_total += len(rows)
        return rows_total

    # ---- reads --------------------------------------------------------------------------
    def scan_sql(self, table: str) -> str:
        glob = str(self.table_dir(table) / "**" / "*.parquet").replace("'", "''")
        return (
            f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
            f"union_by_name = true, hive_types = {{'run_id': VARCHAR}})"
        )

    def views_sql(self) -> str:
        sql = files("warehouse").joinpath("views.sql").read_text(encoding="utf-8")
        for name in TABLES:
            sql = sql.replace("{scan:" + name + "}", self.scan_sql(name))
        return sql

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the analyst views: the writer's own read path."""
        self.init()
        con = duckdb.connect(":memory:")
        try:
            con.execute(self.views_sql())
        except duckdb.Error as e:
            con.close()
            raise self._explain(e) from e
        return con

    def query(self, sql: str, params: Iterable | None = None) -> pa.Table:
        con = self.connect()
        try:
            return con.sql(sql, params=list(params) if params else None).to_arrow_table()
        except duckdb.Error as e:
            raise self._explain(e) from e
        finally:
            con.close()

    def _explain(self, err: duckdb.Error) -> Exception:
        """A damaged file (never one of ours: writes are atomic) gets an error that names it."""
        m = re.search(r"'([^']+\.parquet)'", str(err))
        if m and Path(m.group(1)).is_relative_to(self.root):
            first = str(err).splitlines()[0]
            return WarehouseError(
                f"unreadable Parquet file {m.group(1)} ({first}). Move it out of the warehouse "
                f"(for example into {self.root / '_quarantine'}) and run again; the rows in "
                "every other file are intact."
            )
        return err

    def ids(self, table: str, where: str = "") -> set[str]:
        sql = f"SELECT DISTINCT id FROM {table}" + (f" WHERE {where}" if where else "")
        return set(self.query(sql).column("id").to_pylist())

    # ---- the analysts' catalog ----------------------------------------------------------
    def ensure_catalog(self, attempts: int = 20) -> Path:
        """Create or refresh the DuckDB catalog file only when its views are out of date, so a
        running build never holds it while analysts read."""
        self.init()
        sql = self.views_sql()
        stamp = hashlib.sha256(sql.encode()).hexdigest()
        if self.catalog_path.exists():
            try:
                with duckdb.connect(str(self.catalog_path), read_only=True) as con:
                    row = con.execute(
                        "SELECT value FROM _convoforge_meta WHERE key = 'views'"
                    ).fetchall()
                if row and row[0][0] == stamp:
                    return self.catalog_path
            except duckdb.Error:
                pass
        for i in range(attempts):
            try:
                with duckdb.connect(str(self.catalog_path)) as con:
                    try:
                        con.execute(sql)
                    except duckdb.InvalidInputException as e:
                        raise self._explain(e) from e
                    con.execute(
                        "CREATE OR REPLACE TABLE _convoforge_meta AS "
                        "SELECT 'views' AS key, ? AS value",
                        [stamp],
                    )
                return self.catalog_path
            except duckdb.IOException as e:  # an analyst has it open; their session is short
                if i == attempts - 1:
                    raise WarehouseError(
                        f"cannot update the catalog {self.catalog_path}: {e}. "
                        "Close other DuckDB sessions on it and retry."
                    ) from e
                time.sleep(0.5)
        return self.catalog_path

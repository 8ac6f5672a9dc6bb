"""SQL source: any SQLAlchemy URL plus a query or a table name."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def read_sql(url: str | None, query: str | None = None, table: str | None = None) -> pd.DataFrame:
    """Run ``query`` (or read the whole ``table``) against the database at ``url``.

    >>> read_sql("sqlite:///plant.db", table="readings")
    >>> read_sql("postgresql+psycopg://ml@db/plant", query="SELECT * FROM readings WHERE day > '2026-01-01'")

    Rows come back ordered as the query orders them; give the query an ORDER BY so that the same
    data always gives the same snapshot (and DVC skips retraining when nothing changed).
    """
    import pandas as pd
    import sqlalchemy as sa

    if not url:
        raise EdgeopsError(
            "ingest.sql.url is not set", fix="set a SQLAlchemy URL, e.g. sqlite:///plant.db"
        )
    if bool(query) == bool(table):
        raise EdgeopsError(
            "ingest.sql needs exactly one of 'query' or 'table'",
            fix="set one and leave the other null",
        )
    if table and not _IDENT.match(table):
        raise EdgeopsError(
            f"ingest.sql.table {table!r} is not a plain table name", fix="use 'query'"
        )
    safe_url = _redact(url)
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise EdgeopsError(
            f"cannot use database URL {safe_url}: {exc}",
            fix="use a SQLAlchemy URL such as sqlite:///path/plant.db and install its driver",
        ) from exc
    if url.startswith("sqlite:///") and ":memory:" not in url:
        from pathlib import Path

        db_path = Path(url.removeprefix("sqlite:///"))
        if not db_path.is_file():
            raise EdgeopsError(
                f"SQLite database {db_path} does not exist", fix="check ingest.sql.url"
            )
    sql = query if query else f"SELECT * FROM {table}"
    try:
        with engine.connect() as conn:
            df = pd.read_sql(sa.text(sql), conn)
    except sa.exc.OperationalError as exc:
        raise EdgeopsError(
            f"database {safe_url} could not run the query: {exc.orig}",
            fix="check the server is reachable, the credentials, and the table or query",
        ) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise EdgeopsError(
            f"database {safe_url} query failed: {exc}", fix="check the query"
        ) from exc
    finally:
        engine.dispose()
    if df.empty:
        raise EdgeopsError(f"the query against {safe_url} returned no rows", fix="check the query")
    from edgeops.sources import parse_timestamps

    return parse_timestamps(df)


def _redact(url: str) -> str:
    """Hide the password of a URL in messages (up to the last '@': a password may hold one)."""
    if "://" not in url:  # too malformed to parse: show nothing before the '@'
        return re.sub(r"^.*@", "***@", url)
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)

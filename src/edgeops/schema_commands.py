"""``edgeops schema infer``: registered on the ``schema`` group by :func:`register`."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    from edgeops.infer import Proposal

#: where dvc.yaml's ingest stage looks for new files
WATCHED = Path("data/external")


def register(group: typer.Typer, command: Callable[..., Any]) -> None:
    """Add ``infer`` to the ``schema`` group (``command`` adds friendly errors, telemetry off)."""
    command(group, "infer")(schema_infer)


def schema_infer(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            metavar="COLUMN",
            help="The label column (needed unless --with-production).",
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH",
            help="A CSV/Parquet file or a folder of them [default: the ingest source in "
            "params.yaml].",
            show_default=False,
        ),
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option("--sql", metavar="URL", help="Read a database (SQLAlchemy URL) instead."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", metavar="TABLE", help="With --sql: the table to read."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", metavar="SQL", help="With --sql: the query to run."),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop", metavar="COL", help="A column that is never a feature (repeatable)."
        ),
    ] = None,
    id_columns: Annotated[
        list[str] | None,
        typer.Option("--id-columns", metavar="COL", help="An ID column, dropped (repeatable)."),
    ] = None,
    sep: Annotated[
        str | None,
        typer.Option(metavar="CHAR", help="CSV separator: , ; \\t or | [default: detected]."),
    ] = None,
    decimal: Annotated[
        str | None,
        typer.Option(metavar="CHAR", help="Decimal mark: . or , [default: detected]."),
    ] = None,
    thousands: Annotated[
        str | None,
        typer.Option(metavar="CHAR", help="Thousands separator, '' for none [default: detected]."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="File encoding, e.g. cp1252 [default: UTF-8 if valid, else cp1252].",
        ),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            metavar="FORMAT",
            help="Date format, e.g. '%d.%m.%Y %H:%M' [default: dd.mm.yyyy forms and ISO].",
        ),
    ] = None,
    max_categories: Annotated[
        int,
        typer.Option(metavar="N", help="Text with more distinct values is free text (dropped)."),
    ] = 50,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write the YAML here instead of stdout."),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Write the proposal into the params file (keeps comments)."),
    ] = False,
    with_production: Annotated[
        bool,
        typer.Option(
            "--with-production",
            help="Propose the change of the contract in params.yaml that the source plus the "
            "devices' labelled rows need; faults (stuck or impossible readings) are flagged, "
            "never proposed.",
        ),
    ] = False,
    params: Annotated[Path, typer.Option(metavar="FILE", help="The params file.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Propose a schema from data, for a person to review (validate.schema in params.yaml).

    The data is read as ingest reads it (CSV encoding, separator, decimal mark and dates are
    detected and reported; --sep, --decimal, --thousands, --encoding, --date-format override).
    Identifiers and free-text columns are proposed under drop, with the reason; a binary target
    gets a positive_class. Stderr says what was detected. --apply writes validate.schema,
    bundle.model_name (unless edgeops init named the model) and (with PATH or --sql) the ingest
    source into params.yaml.

    --with-production judges the data the next training run will see (the source plus the
    devices' labelled rows, as ingest joins them) against the contract in params.yaml and
    proposes only the change: per column the old and new range or categories and the rows it
    admits. Rows that look like faults (stuck at one value, far outside, impossible sign,
    missing) are flagged and never admitted; --apply then refuses.

    Exit codes: 0 proposed (printed or written) or nothing to change, 2 an error (the message
    says how to fix it), 4 faults found (--with-production: nothing written).

    \b
    Examples:
      edgeops schema infer data/external/ --target failure -o proposed-schema.yaml
      edgeops schema infer --with-production --apply
      edgeops schema infer export.csv -t Ausfall --id-columns "Auftrag Nr" --apply
      edgeops schema infer --sql sqlite:///plant.db --table readings -t failure
    """
    from edgeops import atomic
    from edgeops.infer import propose
    from edgeops.params import load_params
    from edgeops.sources.csv import describe_dialect
    from edgeops.stages.ingest import tidy_columns

    given = {
        "sep": sep,
        "decimal": decimal,
        "thousands": thousands,
        "encoding": encoding,
        "date_format": date_format,
    }
    flags = {k: v for k, v in given.items() if v is not None}
    if with_production:
        return _with_production(path, sql, table, query, given, params, apply, out)
    if target is None:
        raise EdgeopsError(
            "--target is needed: name the label column",
            fix="e.g. edgeops schema infer data/external --target failure",
        )
    if path is not None and sql:
        raise EdgeopsError("give either a PATH or --sql, not both")
    if (table or query) and not sql:
        raise EdgeopsError("--table and --query read a database", fix="add --sql URL")
    if sql and bool(table) == bool(query):
        raise EdgeopsError("--sql needs exactly one of --table or --query")
    if sql and flags:
        raise EdgeopsError(f"{_flag_names(flags)} apply to CSV files, not to a database")
    need_params = apply or (path is None and not sql)
    cfg = load_params(params) if need_params or params.is_file() else {}
    test_size = float((cfg.get("split") or {}).get("test_size", 0.2))

    df, detected, name, where, ingest_update = _load(path, sql, table, query, given, params, cfg)
    df = tidy_columns(df)

    def log(message: str) -> None:
        typer.echo(message, err=True)

    log(f"read {where}: {len(df):,} rows x {df.shape[1]} columns")
    if detected.get("csv"):
        log(f"  csv: {describe_dialect(detected['csv'])}")
    proposal = propose(
        df,
        target,
        source=name,
        drop=tuple(drop or ()),
        id_columns=tuple(id_columns or ()),
        max_categories=max_categories,
        test_size=test_size,
    )
    for line in proposal.summary():
        log(f"  {line}")
    header = (
        f"proposed from {where} ({len(df):,} rows): review ranges, categories and null shares,\n"
        "then paste under `validate: schema:` in params.yaml (or run again with --apply)\n"
        f"proposed bundle.model_name: {proposal.model_name}"
    )
    text = proposal.to_yaml(header)
    if out is not None:
        atomic.write_text(out, text)
        log(f"wrote {out}: {len(proposal.schema.columns)} columns, target {target!r}")
    if apply:
        changed = apply_to_params(params, proposal, ingest_update)
        log(f"updated {params}: {', '.join(changed)} (review it: git diff {params})")
        csv_path = (ingest_update or {}).get("csv", {}).get("path")
        if csv_path and not _is_under(Path(csv_path), WATCHED, params):
            log(
                f"  note: dvc.yaml's ingest stage watches {WATCHED}/: new rows in {csv_path} "
                "re-run the pipeline only with `dvc repro -f -s ingest`"
            )
        if sql and _has_password(sql):
            log(f"  warning: {params} now holds the database password: keep it out of git")
    if out is None and not apply:
        typer.echo(text, nl=False)


#: exit code of --with-production when the data holds faults
EXIT_FAULTS = 4


def _with_production(
    path: Path | None,
    sql: str | None,
    table: str | None,
    query: str | None,
    given: dict[str, str | None],
    params: Path,
    apply: bool,
    out: Path | None,
) -> None:
    """``--with-production``: the contract change the source plus the devices' rows need."""
    import yaml

    from edgeops import atomic, contract
    from edgeops.params import load_params
    from edgeops.schema import schema_from_params
    from edgeops.sources.production import add_production
    from edgeops.stages.ingest import drop_columns, tidy_columns

    cfg = load_params(params)
    schema = schema_from_params(cfg)
    df = drop_columns(tidy_columns(_load(path, sql, table, query, given, params, cfg)[0]), schema)[
        0
    ]
    production = dict((cfg.get("ingest") or {}).get("production") or {})
    store = Path(str(production.get("path") or "data/production"))
    production["path"] = str(store if store.is_absolute() else params.resolve().parent / store)
    data, keys, _ = add_production(df, {**production, "include": True}, schema, len(df))
    proposal = contract.propose(schema, data, [str(t) for t in keys["target"]])
    typer.echo(
        f"read {len(df):,} source rows + {len(keys):,} labelled rows from the devices "
        f"({production['path']})",
        err=True,
    )
    if not proposal.broken:
        typer.echo("the data keeps the contract (validate.schema): nothing to change", err=True)
        return
    text = "\n".join(proposal.lines()) + "\n"
    if out is not None:
        atomic.write_text(out, yaml.safe_dump(proposal.to_dict(), sort_keys=False))
    typer.echo(text, nl=False)
    if proposal.faults:
        raise EdgeopsError(
            f"{len(proposal.faults)} fault(s) in the data: no change proposed for them"
            + (", nothing written" if apply else ""),
            fix=contract.FAULT_FIX,
            exit_code=EXIT_FAULTS,
        )
    if apply:
        changed = contract.apply(params, proposal)
        typer.echo(
            f"updated {params}: validate.schema of {', '.join(changed)} (review it: git diff "
            f"{params})",
            err=True,
        )


def _load(
    path: Path | None,
    sql: str | None,
    table: str | None,
    query: str | None,
    given: dict[str, str | None],
    params: Path,
    cfg: dict[str, Any],
) -> tuple[Any, dict[str, Any], str, str, dict[str, Any] | None]:
    """Read the data as ingest would: (frame, what was detected, a name for the model, a
    description for messages, what --apply writes under ``ingest``)."""
    import copy

    from edgeops.sources.dialect import OPTIONS

    flags = {k: v for k, v in given.items() if v is not None}
    flag_names = _flag_names(flags)
    ingest_update: dict[str, Any] | None
    detected: dict[str, Any] = {}
    if path is not None:
        from edgeops.sources.csv import read_with_dialect

        df, dialect = read_with_dialect(path, flags)
        detected = {"csv": dialect} if dialect else {}
        name, where = (path.stem if path.is_file() else path.resolve().name), str(path)
        csv_cfg = {"path": _relative(path, params), **{k: given[k] for k in OPTIONS}}
        ingest_update = {"source": "csv", "csv": csv_cfg}
    elif sql:
        from edgeops.sources.sql import read_sql

        df = read_sql(sql, query=query, table=table)
        name, where = table or _database_name(sql), (f"table {table}" if table else "the query")
        ingest_update = {"source": "sql", "sql": {"url": sql, "table": table, "query": query}}
    else:
        from edgeops.params import section
        from edgeops.sources import read_source

        ingest = copy.deepcopy(section(cfg, "ingest"))
        source = ingest.get("source", "simulator")
        if flags:
            if source != "csv":
                raise EdgeopsError(
                    f"{flag_names} apply to CSV files, but ingest.source is {source!r}",
                    fix="give the CSV file or folder as PATH",
                )
            ingest["csv"] = {**(ingest.get("csv") or {}), **flags}
        name, where = _source_name(ingest)
        df, detected = read_source(_paths_from(ingest, params.resolve().parent))
        ingest_update = {"csv": flags} if flags else None
    return df, detected, name, where, ingest_update


def named_at_init(root: Path) -> str | None:
    """The model name a project was given by ``edgeops init --model`` (kept by --apply); None for
    the example and for a folder not made by init (the proposal's name is taken then)."""
    from edgeops.project.template import STATE_FILE, ProjectState

    if not (root / STATE_FILE).is_file():
        return None
    answers = ProjectState.read(root).answers
    return None if answers.example else answers.model


def apply_to_params(path: Path, proposal: Proposal, ingest: dict[str, Any] | None) -> list[str]:
    """Write the proposal into the params file in place, keeping its comments and layout.

    ``validate.schema`` and ``bundle.model_name`` (unless ``edgeops init`` named the model) are
    replaced; ``ingest`` (a partial section,
    e.g. ``{"source": "csv", "csv": {"path": ...}}``) is merged. Returns the keys changed.
    """
    import yaml
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    from edgeops import atomic
    from edgeops.schema import schema_from_dict

    rt = round_trip()
    data = rt.load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise EdgeopsError(
            f"{path} does not hold a mapping of sections",
            fix="see the comments in a params.yaml made by edgeops init",
        )
    changed = []
    validate = data.get("validate")
    if not isinstance(validate, dict):
        validate = data["validate"] = CommentedMap()
    old = validate.get("schema")
    new = rt.load(proposal.to_yaml(comment_col=27 + 4))  # nested 4 deep: comments at column 31
    validate["schema"] = new
    _move_trailing(old, new)
    changed.append("validate.schema")
    bundle = data.get("bundle")
    if not isinstance(bundle, dict):
        bundle = data["bundle"] = CommentedMap()
    if bundle.get("model_name") != named_at_init(path.resolve().parent):
        bundle["model_name"] = proposal.model_name
        changed.append("bundle.model_name")
    if ingest:
        section = data.get("ingest")
        if not isinstance(section, dict):
            section = data["ingest"] = CommentedMap()
        for key, value in ingest.items():
            if not isinstance(value, dict):
                section[key] = value
                changed.append(f"ingest.{key}")
                continue
            sub = section.get(key)
            if not isinstance(sub, dict):
                sub = section[key] = CommentedMap()
            for k, v in value.items():
                quoted = key == "csv" and k != "path" and isinstance(v, str)
                sub[k] = DoubleQuotedScalarString(v) if quoted else v
                changed.append(f"ingest.{key}.{k}")
    buf = io.StringIO()
    rt.dump(data, buf)
    text = buf.getvalue()
    # what the pipeline will read (PyYAML) must be the proposal
    back = yaml.safe_load(text)
    schema_from_dict(back["validate"]["schema"])
    atomic.write_text(path, text)
    return changed


def round_trip() -> Any:
    from ruamel.yaml import YAML

    rt = YAML()  # round-trip: comments, key order, quoting and flow style are kept
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines
    rt.indent(mapping=2, sequence=4, offset=2)  # params.yaml's layout
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return rt


def _move_trailing(old: Any, new: Any) -> None:
    """Carry the blank lines/comments after the old value's last item over to the new value
    (ruamel keeps them on the deepest block collection that ends there)."""
    tokens = next((n.ca.end for n in reversed(_last_blocks(old)) if n.ca.end), None)
    chain = _last_blocks(new)
    if tokens and chain:
        if chain[-1].ca.comment is None:
            chain[-1].ca.comment = [None, None]  # ruamel emits ca.end only with this set
        chain[-1].ca.end = tokens


def _last_blocks(node: Any) -> list[Any]:
    """``node``, its last item, that one's last item ...: as long as they are block collections."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    out = []
    while isinstance(node, CommentedMap | CommentedSeq) and not node.fa.flow_style():
        out.append(node)
        if not len(node):
            break
        node = node[list(node.keys())[-1]] if isinstance(node, CommentedMap) else node[-1]
    return out


def _flag_names(flags: dict[str, Any]) -> str:
    return ", ".join(f"--{k.replace('_', '-')}" for k in flags)


def _relative(path: Path, params: Path) -> str:
    """``path`` as the params file should name it: relative to its folder when inside it."""
    rel = os.path.relpath(path.resolve(), params.resolve().parent)
    return Path(rel).as_posix() if not rel.startswith("..") else path.resolve().as_posix()


def _is_under(path: Path, folder: Path, params: Path) -> bool:
    base = params.resolve().parent
    full = path if path.is_absolute() else base / path
    return full.resolve().is_relative_to((base / folder).resolve())


def _paths_from(ingest: dict[str, Any], base: Path) -> dict[str, Any]:
    """``ingest`` with relative file paths read from ``base`` (the params file's folder, where
    the pipeline runs), not from the current directory."""
    csv_cfg = ingest.get("csv") or {}
    if csv_cfg.get("path") and not Path(str(csv_cfg["path"])).is_absolute():
        ingest["csv"] = {**csv_cfg, "path": str(base / str(csv_cfg["path"]))}
    url = str((ingest.get("sql") or {}).get("url") or "")
    sqlite = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and ":memory:" not in url and not Path(sqlite).is_absolute():
        ingest["sql"] = {**ingest["sql"], "url": f"sqlite:///{base / sqlite}"}
    return ingest


def _source_name(ingest: dict[str, Any]) -> tuple[str, str]:
    """(a name for the model, a description) of the configured source."""
    source = ingest.get("source", "simulator")
    cfg = ingest.get(source) or {}
    if source == "csv":
        p = Path(str(cfg.get("path")))
        return (p.stem if p.suffix else p.name), f"{p} [ingest.csv.path]"
    if source == "sql":
        if cfg.get("table"):
            return str(cfg["table"]), f"table {cfg['table']} [ingest.sql]"
        return _database_name(str(cfg.get("url"))), "the query [ingest.sql.query]"
    return "plant", "the demo plant simulator [ingest.source]"


def _database_name(url: str) -> str:
    tail = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    return Path(tail.rsplit("/", 1)[-1]).stem or "sql"


def _has_password(url: str) -> bool:
    return "://" in url and ":" in url.split("://", 1)[1].split("@", 1)[0] and "@" in url

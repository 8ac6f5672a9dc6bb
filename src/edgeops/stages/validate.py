"""Stage ``validate``: check the raw data against the reviewed schema with Great Expectations.

The suite is derived from ``validate.schema``: the exact column set, the minimum row count, for
every numeric column its type, range and null share, for every categorical column its allowed
values and null share, and a target that is present with at least two classes. The stage writes
a JSON summary and a self-contained HTML report (``validation_report``: no script, no URL, it
opens without network) under ``reports/validation/``; on any failed expectation it exits
non-zero with one line per failure (expectation, column, bad rows) and nothing downstream runs.

Large files are checked on a sample, so memory stays bounded (GX on the whole frame peaked at
3.25 GB for 10M rows: 32 GB at 100M). When the Parquet file has more rows than
``validate.sample_rows`` (default 2,000,000; 0 = never sample; the count comes from the file's
metadata, no data is read for it), the suite runs on a uniform random sample of
n = max(sample_rows, schema.min_rows) rows, drawn without replacement with a fixed seed
(``numpy.random.default_rng(0)``, so a rerun checks the same rows) and read one row group at a
time: the file costs one row group plus the sample, GX ~0.65 GB for 2M sampled rows. (When n
is more than 2 % of the rows, numpy's draw briefly holds 8 bytes per row: 0.8 GB at 100M.) Files
with at most sample_rows rows are read whole, as before. The summary keeps ``rows`` (the file's
rows) and adds ``checked_rows`` and ``sampled``; failure lines say "k of a n-row sample of N
rows fail", and the report says what was sampled.

What a sample finds and what it misses:

* A defect in a share p of the rows (out of range, unknown category, text in a number column, a
  missing label) is missed with probability at most (1-p)^n ≈ e^(-n·p) (drawing without
  replacement only does better). With n = 2,000,000 it is found with 99 % probability when
  p ≥ -ln(0.01)/n = 2.3e-6, i.e. in 231 or more of 100M rows; 23 bad rows of 100M (p = 2.3e-7)
  are found with probability 1-e^(-0.46) = 37 % only. Rarer defects need the whole file.
* The null-share ("mostly") checks estimate a share p with standard error sqrt(p(1-p)/n), at
  most sqrt(0.25/n) = 0.00035 at n = 2M (0.00010-0.00012 near the demo's 2-3 % limits): a null
  share within 3 standard errors of its limit (about 0.001 at worst) can pass or fail by chance.
* The column set and the column types are exact: the sample has the file's columns and dtypes.
* The row-count check runs on the sample, which is why n is never below ``schema.min_rows``; a
  sampled file has more than n rows, so the check's verdict holds for the file.
* The target's class count is checked on the sample: a class with a share q of the rows is
  absent from it with probability (1-q)^n, above 1 % for q < 2.3e-6 (230 or fewer of 100M); then the
  stage fails with "1 distinct value(s) in the sample" although the file has two classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, row_count, section
from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, Schema, schema_from_dict
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int64",
    "Float64",
]
TIMESTAMP_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
DEFAULT_SAMPLE_ROWS = 2_000_000  # validate.sample_rows when params.yaml does not set it
SAMPLE_SEED = 0  # the sample's rows depend on the file's row count only: reruns check the same rows


def sample_rows_param(cfg: dict[str, Any]) -> int:
    """``validate.sample_rows`` from the ``validate`` params section (0 = never sample)."""
    return row_count(cfg, "validate", "sample_rows", DEFAULT_SAMPLE_ROWS)


def sample_size(num_rows: int, sample_rows: int, min_rows: int) -> int | None:
    """How many rows to check of a file with ``num_rows`` rows: None for all of them (the file
    has at most ``sample_rows`` rows, sampling is off, or the sample would be the whole file),
    else ``max(sample_rows, min_rows)``."""
    if sample_rows <= 0 or num_rows <= sample_rows:
        return None
    n = max(sample_rows, min_rows)
    return n if n < num_rows else None


def sample_indices(num_rows: int, n: int, seed: int = SAMPLE_SEED) -> Any:
    """``n`` distinct row positions of ``num_rows``, uniform, sorted (a numpy int64 array)."""
    from edgeops.parquet_sample import sample_positions

    return sample_positions(num_rows, n, seed)


def read_sample(path: str | Path, n: int, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """A uniform random sample of ``n`` rows of the Parquet file at ``path``, in file order
    (:func:`edgeops.parquet_sample.sample_rows`: one row group at a time, so peak memory is one
    row group plus the sample; the dtypes ``pd.read_parquet`` gives the whole file)."""
    from edgeops.parquet_sample import sample_rows

    return sample_rows(path, n, seed).reset_index(drop=True)


def read_data(path: str | Path, sample_rows: int, min_rows: int) -> tuple[pd.DataFrame, int]:
    """The rows to check and the file's row count: the whole file (``pd.read_parquet``) when it
    has at most ``sample_rows`` rows, else a sample (:func:`sample_size`, :func:`read_sample`)."""
    import pandas as pd

    from edgeops.parquet_sample import rows_and_columns

    num_rows = rows_and_columns(path)[0]
    n = sample_size(num_rows, sample_rows, min_rows)
    if n is None:
        return pd.read_parquet(path), num_rows
    return read_sample(path, n), num_rows


def build_expectations(schema: Schema) -> list[Any]:
    """The GX expectations the schema implies, in a stable order."""
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=schema.names, exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=schema.min_rows),
    ]
    for col in schema.columns:
        if col.name == schema.target:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
            exps.append(gxe.ExpectColumnUniqueValueCountToBeBetween(column=col.name, min_value=2))
        elif col.max_null_share < 1.0:
            mostly = 1.0 - col.max_null_share
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name, mostly=mostly))
        if col.type == NUMERIC:
            exps.append(
                gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=NUMERIC_TYPES)
            )
            if col.min is not None or col.max is not None:
                exps.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=col.name, min_value=col.min, max_value=col.max
                    )
                )
        elif col.type == CATEGORICAL:
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col.name, value_set=list(col.categories or ())
                )
            )
        elif col.type == TIMESTAMP:
            exps.append(
                gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=TIMESTAMP_TYPES)
            )
    return exps


def validate(
    df: pd.DataFrame,
    schema: Schema,
    report: str | Path | None = None,
    dataset: str = "the data frame",
    rows: int | None = None,
) -> dict[str, Any]:
    """Run the schema's suite on ``df``; return a JSON-ready summary (``success`` and ``failures``).

    With ``report`` the HTML validation report of this run is written there (atomically), naming
    ``dataset`` as what was checked. GX's Data Docs are not built: they need the internet.
    ``rows`` is the number of rows of the data ``df`` is a uniform random sample of (None: ``df``
    is all of it); the summary's ``rows`` is that number, ``checked_rows`` is ``len(df)``.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas(name="edgeops")
        .add_dataframe_asset(name="raw")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="edgeops_schema"))
    for exp in build_expectations(schema):
        suite.add_expectation(exp)
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name="raw_vs_schema", data=batch_def, suite=suite)
    )
    result = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")

    total = len(df) if rows is None else rows
    missing = set(schema.names) - set(df.columns)  # reported once, by the column-set check
    failures = [
        _failure(r, df, total)
        for r in result.results
        if not r.success and r.expectation_config.kwargs.get("column") not in missing
    ]
    # table-level problems first, then by column; one line per column and problem
    failures.sort(key=lambda f: (f["column"] is not None, f["column"] or "", f["expectation"]))
    summary = {
        "success": bool(result.success),
        "rows": total,
        "checked_rows": len(df),
        "sampled": len(df) < total,
        "columns": list(df.columns),
        "statistics": {k: _num(v) for k, v in result.statistics.items()},
        "failures": failures,
        "expectations": [
            {
                "expectation": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"),
                "success": bool(r.success),
            }
            for r in result.results
        ],
    }
    if report is not None:
        from edgeops.stages.validation_report import write_report

        write_report(
            report,
            result,
            dataset=dataset,
            rows=total,
            columns=len(df.columns),
            failures=failure_lines(summary),
            checked_rows=len(df),
        )
    return summary


def failure_lines(summary: dict[str, Any]) -> list[str]:
    """One human line per failed expectation."""
    lines = []
    for f in summary["failures"]:
        where = f"column {f['column']!r}" if f["column"] else "table"
        lines.append(f"  - {f['expectation']} on {where}: {f['detail']}")
    return lines


def _checked(rows: int, total: int) -> str:
    """What the bad-row counts are out of: "2,000 rows", or "a 500-row sample of 2,000 rows"."""
    return f"{total:,} rows" if rows >= total else f"a {rows:,}-row sample of {total:,} rows"


def _failure(r: Any, df: pd.DataFrame, total: int) -> dict[str, Any]:
    import pandas as pd

    rows = _checked(len(df), total)
    cfg = r.expectation_config
    res = r.result or {}
    column = cfg.kwargs.get("column")
    exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
    bad = res.get("unexpected_count")
    if exc:
        detail = f"could not be evaluated ({exc.splitlines()[0][:200]})"
    elif cfg.type == "expect_column_values_to_be_in_type_list" and column in df.columns:
        s = df[column]
        if "datetime64" in str(cfg.kwargs.get("type_list")):
            detail = f"holds {s.dtype} values, expected timestamps"
        else:
            not_num = s.notna() & pd.to_numeric(s, errors="coerce").isna()
            bad = int(not_num.sum())
            examples = [_num(v) for v in s[not_num].unique()[:5]]
            detail = f"holds {s.dtype} values, expected numbers; {bad:,} of {rows} are not numbers"
            detail += f" (e.g. {examples})" if examples else ""
    elif cfg.type == "expect_column_values_to_be_between" and res.get("unexpected_count") is None:
        detail = "could not be checked: the column is not numeric"
    elif bad is not None:
        examples = list(dict.fromkeys(_num(v) for v in res.get("partial_unexpected_list") or []))[
            :5
        ]
        detail = f"{bad:,} of {rows} fail"
        if examples:
            detail += f" (e.g. {examples})"
        if cfg.type == "expect_column_values_to_be_between":
            detail += (
                f"; allowed range [{cfg.kwargs.get('min_value')}, {cfg.kwargs.get('max_value')}]"
            )
        if cfg.type == "expect_column_values_to_not_be_null":
            detail = f"{bad:,} of {rows} are missing (allowed share {1 - (cfg.kwargs.get('mostly') or 1):.3f})"
    elif cfg.type == "expect_table_columns_to_match_set":
        observed = set(res.get("observed_value") or [])
        expected = set(cfg.kwargs.get("column_set") or [])
        detail = f"missing columns {sorted(expected - observed)}, unexpected columns {sorted(observed - expected)}"
    elif cfg.type == "expect_column_unique_value_count_to_be_between":
        detail = (
            f"the target has {_num(res.get('observed_value'))} distinct value(s)"
            f"{' in the sample' if len(df) < total else ''}; "
            "a classifier needs at least 2 classes"
        )
    else:
        detail = f"observed {_num(res.get('observed_value'))}"
    return {"expectation": cfg.type, "column": column, "unexpected_count": bad, "detail": detail}


def _num(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def main() -> None:
    p = runner.parser("validate", __doc__)
    p.add_argument("--data", default="data/raw/dataset.parquet")
    p.add_argument("--summary", default="reports/validation/summary.json")
    p.add_argument(
        "--report",
        default="reports/validation/report.html",
        help="the HTML validation report (self-contained; default: %(default)s)",
    )
    args = p.parse_args()

    def body() -> None:
        cfg = section(load_params(args.params), "validate")
        schema = schema_from_dict(cfg.get("schema"))
        sample_rows = sample_rows_param(cfg)
        if not Path(args.data).is_file():
            raise EdgeopsError(
                f"{args.data} not found", fix="run the ingest stage first (dvc repro)"
            )
        df, rows = read_data(args.data, sample_rows, schema.min_rows)
        if len(df) < rows:
            runner.log(
                "validate",
                f"{args.data} has {rows:,} rows, more than validate.sample_rows ({sample_rows:,}): "
                f"checking a uniform random sample of {len(df):,} rows (seed {SAMPLE_SEED}) "
                "against the schema (Great Expectations)",
            )
        else:
            runner.log(
                "validate", f"checking {rows:,} rows against the schema (Great Expectations)"
            )
        summary = validate(df, schema, report=args.report, dataset=args.data, rows=rows)
        atomic.write_json(args.summary, summary)
        stats = summary["statistics"]
        runner.log(
            "validate",
            f"{stats.get('successful_expectations')}/{stats.get('evaluated_expectations')} "
            f"expectations passed; summary -> {args.summary}, report -> {args.report}",
        )
        if not summary["success"]:
            raise EdgeopsError(
                f"{args.data} failed validation:\n" + "\n".join(failure_lines(summary)),
                fix="fix the data at its source, or (if the data is right) update validate.schema "
                "in params.yaml after review",
            )

    runner.run("validate", body, args.params)


if __name__ == "__main__":
    main()

"""Stage ``validate``: check the raw data against the reviewed schema with Great Expectations.

The suite is derived from ``validate.schema``: the exact column set, the minimum row count, for
every numeric column its type, range and null share, for every categorical column its allowed
values and null share, and a target that is present with at least two classes. The stage writes
a JSON summary and a self-contained HTML report (``validation_report``: no script, no URL, it
opens without network) under ``reports/validation/``; on any failed expectation it exits
non-zero with one line per failure (expectation, column, bad rows) and nothing downstream runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section
from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, Schema, schema_from_dict
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "Int64", "Float64"]  # fmt: skip
TIMESTAMP_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]


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
) -> dict[str, Any]:
    """Run the schema's suite on ``df``; return a JSON-ready summary (``success`` and ``failures``).

    With ``report`` the HTML validation report of this run is written there (atomically), naming
    ``dataset`` as what was checked. GX's Data Docs are not built: they need the internet.
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

    missing = set(schema.names) - set(df.columns)  # reported once, by the column-set check
    failures = [
        _failure(r, df)
        for r in result.results
        if not r.success and r.expectation_config.kwargs.get("column") not in missing
    ]
    # table-level problems first, then by column; one line per column and problem
    failures.sort(key=lambda f: (f["column"] is not None, f["column"] or "", f["expectation"]))
    summary = {
        "success": bool(result.success),
        "rows": len(df),
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

        write_report(report, result, dataset=dataset, rows=len(df), columns=len(df.columns),
                     failures=failure_lines(summary))  # fmt: skip
    return summary


def failure_lines(summary: dict[str, Any]) -> list[str]:
    """One human line per failed expectation."""
    lines = []
    for f in summary["failures"]:
        where = f"column {f['column']!r}" if f["column"] else "table"
        lines.append(f"  - {f['expectation']} on {where}: {f['detail']}")
    return lines


def _failure(r: Any, df: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    rows = len(df)
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
            detail = f"holds {s.dtype} values, expected numbers; {bad:,} of {rows:,} rows are not numbers"
            detail += f" (e.g. {examples})" if examples else ""
    elif cfg.type == "expect_column_values_to_be_between" and res.get("unexpected_count") is None:
        detail = "could not be checked: the column is not numeric"
    elif bad is not None:
        examples = list(dict.fromkeys(_num(v) for v in res.get("partial_unexpected_list") or []))[
            :5
        ]
        detail = f"{bad:,} of {rows:,} rows fail"
        if examples:
            detail += f" (e.g. {examples})"
        if cfg.type == "expect_column_values_to_be_between":
            detail += (
                f"; allowed range [{cfg.kwargs.get('min_value')}, {cfg.kwargs.get('max_value')}]"
            )
        if cfg.type == "expect_column_values_to_not_be_null":
            detail = f"{bad:,} of {rows:,} rows are missing (allowed share {1 - (cfg.kwargs.get('mostly') or 1):.3f})"
    elif cfg.type == "expect_table_columns_to_match_set":
        observed = set(res.get("observed_value") or [])
        expected = set(cfg.kwargs.get("column_set") or [])
        detail = f"missing columns {sorted(expected - observed)}, unexpected columns {sorted(observed - expected)}"
    elif cfg.type == "expect_column_unique_value_count_to_be_between":
        detail = (
            f"the target has {_num(res.get('observed_value'))} distinct value(s); "
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
        import pandas as pd

        schema = schema_from_dict(section(load_params(args.params), "validate").get("schema"))
        if not Path(args.data).is_file():
            raise EdgeopsError(
                f"{args.data} not found", fix="run the ingest stage first (dvc repro)"
            )
        df = pd.read_parquet(args.data)
        runner.log("validate", f"checking {len(df):,} rows against the schema (Great Expectations)")
        summary = validate(df, schema, report=args.report, dataset=args.data)
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

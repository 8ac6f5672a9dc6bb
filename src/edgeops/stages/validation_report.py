"""The validation report: one self-contained HTML page from a Great Expectations result.

GX's own Data Docs load Bootstrap, jQuery, Vega and fonts from public CDNs (plus a logo from a
cloud bucket), so without internet they render unstyled with empty tables. This page has inline
CSS only: no script, no font, no image, no URL. Its Content-Security-Policy allows nothing but
the inline style, so even a value that slipped through could load nothing. Every value from the
data is escaped.

The header says which dataset, how many rows, the verdict and when, and lists the failures in
words (the stage's own lines); when the stage checked a sample of a large file
(``validate.sample_rows``), one sentence says so and what such a sample finds. The table has one
row per expectation, the failed ones first: column, expectation, its arguments, passed or failed,
what was observed (or why it could not be evaluated) and a few of the unexpected values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from edgeops import atomic

MAX_EXAMPLES = 5  # distinct unexpected values shown per expectation
MAX_LIST = 8  # items of a list argument (a value set, a type list) shown before "+N more"
MAX_TEXT = 300  # characters of one value shown
_HIDDEN_KWARGS = {"batch_id", "column", "result_format", "catch_exceptions", "meta"}


@dataclass(frozen=True)
class Check:
    """One expectation's outcome, as the report shows it."""

    expectation: str
    column: str | None
    arguments: str
    success: bool
    observed: str
    unexpected: list[str]
    error: str | None = None


def checks_from_result(result: Any) -> list[Check]:
    """The checks of a GX ``ExpectationSuiteValidationResult``: the failed ones first, each group
    in GX's order."""
    checks = []
    for r in result.results:
        cfg = r.expectation_config
        error = _error(r.exception_info or {})
        res = r.result or {}
        checks.append(
            Check(
                expectation=cfg.type,
                column=cfg.kwargs.get("column"),
                arguments=_arguments(cfg.kwargs),
                success=bool(r.success),
                observed=_observed(res),
                unexpected=_examples(res),
                error=error,
            )
        )
    return sorted(checks, key=lambda c: c.success)  # stable: False (failed) first


def result_time(result: Any) -> datetime:
    """When GX ran the validation (its ``meta``), or now."""
    when = (getattr(result, "meta", None) or {}).get("validation_time")
    return when if isinstance(when, datetime) else datetime.now(UTC)


def render_html(
    checks: list[Check],
    *,
    dataset: str,
    rows: int,
    columns: int,
    when: datetime,
    failures: Sequence[str] = (),
    checked_rows: int | None = None,
) -> str:
    """The report page: a header with the verdict and ``failures`` (one line each, in words),
    then one table row per check. ``checked_rows`` < ``rows``: the checks ran on a uniform
    random sample of that many of the ``rows`` rows, and the header says so."""
    failed = sum(not c.success for c in checks)
    verdict = "PASSED" if not failed else "FAILED"
    summary = (
        f"all {len(checks)} expectations met"
        if not failed
        else f"{failed} of {len(checks)} expectations failed"
    )
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "\n".join(_row(i, c) for i, c in enumerate(checks, 1))
    problems = "".join(f"<li>{escape(line.strip().removeprefix('- '))}</li>" for line in failures)
    return _PAGE.format(
        title=escape(f"Validation {verdict}: {dataset}"),
        verdict_class="pass" if not failed else "fail",
        verdict=verdict,
        summary=escape(summary),
        dataset=escape(dataset),
        rows=f"{rows:,}",
        columns=f"{columns:,}",
        when=escape(stamp),
        failures=f'<ul class="failures">{problems}</ul>' if problems else "",
        sample=_sample_sentence(checked_rows, rows),
        body=body,
    )


def write_report(
    path: str | Path,
    result: Any,
    *,
    dataset: str,
    rows: int,
    columns: int,
    failures: Sequence[str] = (),
    checked_rows: int | None = None,
) -> None:
    """Render the report of ``result`` and write it to ``path`` atomically (``checked_rows``:
    see :func:`render_html`)."""
    html = render_html(
        checks_from_result(result),
        dataset=dataset,
        rows=rows,
        columns=columns,
        when=result_time(result),
        failures=failures,
        checked_rows=checked_rows,
    )
    atomic.write_text(path, html)


def sample_sentence(checked_rows: int, rows: int) -> str:
    """What a uniform random sample of ``checked_rows`` of ``rows`` rows finds, in one sentence
    (plain text): 99 % detection for a problem in at least a share -ln(0.01)/N of the rows."""
    share = min(1.0, -math.log(0.01) / checked_rows)  # (1-p)^N <= e^(-N p) = 0.01
    return (
        f"Checked a uniform random sample of {checked_rows:,} of {rows:,} rows "
        "(validate.sample_rows); a problem in a share p of the rows is found with probability "
        f"1-(1-p)^N, N = {checked_rows:,}: with this sample, 99 % for any problem in at least "
        f"{share:.2g} of the rows ({share * 100:.3g} %, {math.ceil(share * rows):,} of "
        f"{rows:,} rows)."
    )


def _sample_sentence(checked_rows: int | None, rows: int) -> str:
    if checked_rows is None or checked_rows >= rows:
        return ""
    return f'<p class="sample">{escape(sample_sentence(checked_rows, rows))}</p>\n'


def _row(number: int, c: Check) -> str:
    status = '<td class="pass">passed</td>' if c.success else '<td class="fail">FAILED</td>'
    observed = escape(c.observed)
    if c.error:
        observed = f'<span class="error">error: {escape(c.error)}</span>'
    examples = ", ".join(f"<code>{escape(v)}</code>" for v in c.unexpected)
    column = f"<code>{escape(c.column)}</code>" if c.column is not None else "<i>table</i>"
    return (
        f'<tr class="{"ok" if c.success else "bad"}"><td class="n">{number}</td><td>{column}</td>'
        f"<td><code>{escape(c.expectation)}</code></td><td>{escape(c.arguments)}</td>"
        f"{status}<td>{observed}</td><td>{examples}</td></tr>"
    )


def _error(info: dict[str, Any]) -> str | None:
    """The first line of the exception GX caught: ``info`` is one exception's info, or (when a
    metric failed) a dict of them by metric."""
    infos = [info, *(v for v in info.values() if isinstance(v, dict))]
    for i in infos:
        if i.get("raised_exception") and i.get("exception_message"):
            return str(i["exception_message"]).strip().splitlines()[0][:MAX_TEXT]
    return None


def _arguments(kwargs: dict[str, Any]) -> str:
    parts = [f"{k}={_value(v)}" for k, v in kwargs.items() if k not in _HIDDEN_KWARGS]
    return "; ".join(parts)


def _observed(res: dict[str, Any]) -> str:
    if "observed_value" in res:
        return _value(res["observed_value"])
    bad, total = res.get("unexpected_count"), res.get("element_count")
    if bad is None or total is None:
        return ""
    text = f"{int(bad):,} of {int(total):,} rows unexpected"
    text += f" ({_percent(res.get('unexpected_percent'))})"
    missing = res.get("missing_count")
    return text + (f"; {int(missing):,} missing" if missing else "")


def _examples(res: dict[str, Any]) -> list[str]:
    """A few distinct unexpected values (GX keeps up to 20 of them in a SUMMARY result)."""
    seen: dict[str, None] = {}
    for v in res.get("partial_unexpected_list") or []:
        seen.setdefault(_value(v), None)
        if len(seen) == MAX_EXAMPLES:
            break
    return list(seen)


def _percent(p: Any) -> str:
    return f"{float(p):.2f} %" if isinstance(p, (int, float)) else "?"


def _value(v: Any) -> str:
    """A value as a person reads it: strings quoted, null for None/NaN, lists shortened."""
    import numpy as np  # loaded already: GX and pandas use it

    if isinstance(v, (np.number, np.bool_)):  # not datetime64: its item() can be an int
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        text = "null"
    elif isinstance(v, str):
        text = repr(v)
    elif isinstance(v, (list, tuple, set, frozenset)):
        items = [_value(x) for x in (sorted(v, key=str) if isinstance(v, (set, frozenset)) else v)]
        more = f", +{len(items) - MAX_LIST} more" if len(items) > MAX_LIST else ""
        text = "[" + ", ".join(items[:MAX_LIST]) + more + "]"
    else:
        text = str(v)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem;
       color: #1f2328; background: #fff; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .5rem; }}
.verdict {{ display: inline-block; padding: .15rem .6rem; border-radius: .3rem; color: #fff; }}
.verdict.pass {{ background: #1a7f37; }} .verdict.fail {{ background: #cf222e; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: 1rem 0; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; }}
table {{ border-collapse: collapse; width: 100%; font-size: .9rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left;
          vertical-align: top; overflow-wrap: break-word; }}
td.pass, td.fail, td.n {{ white-space: nowrap; }}
th {{ background: #f6f8fa; position: sticky; top: 0; }}
tr.bad {{ background: #ffebe9; }}
td.pass {{ color: #1a7f37; font-weight: 600; }} td.fail {{ color: #cf222e; font-weight: 700; }}
.error, .failures {{ color: #cf222e; }}
code {{ font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }}
footer {{ margin-top: 1rem; color: #59636e; font-size: .8rem; }}
</style>
</head>
<body>
<h1>Data validation <span class="verdict {verdict_class}">{verdict}</span></h1>
<dl>
<dt>Verdict</dt><dd>{verdict}: {summary}</dd>
<dt>Dataset</dt><dd><code>{dataset}</code></dd>
<dt>Rows</dt><dd>{rows} ({columns} columns)</dd>
<dt>Validated</dt><dd>{when}</dd>
</dl>
{sample}{failures}
<table>
<thead><tr><th>#</th><th>Column</th><th>Expectation</th><th>Arguments</th><th>Result</th>
<th>Observed</th><th>Unexpected values (examples)</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
<footer>The Great Expectations suite derived from <code>validate.schema</code> in params.yaml,
run by the validate stage (edgeops.stages.validate).</footer>
</body>
</html>
"""

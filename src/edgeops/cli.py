"""The ``edgeops`` command. Heavy libraries are imported inside the commands that need them,
so ``edgeops --help`` and the edge agent's start stay fast."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops import __version__
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off

app = typer.Typer(
    name="edgeops",
    help="On-prem MLOps: plant data -> validated model -> signed ONNX bundle on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s per call
)
schema_app = typer.Typer(
    help="Propose and check the dataset schema (validate.schema).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schema_app, name="schema")
keys_app = typer.Typer(
    help="Bundle signing keys (ed25519).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(keys_app, name="keys")
bundle_app = typer.Typer(
    help="Inspect and verify model bundles.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(bundle_app, name="bundle")
edge_app = typer.Typer(
    help="The edge agent (runs on the device).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(edge_app, name="edge")


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn an EdgeopsError (or a missing optional dependency) into one message and an exit code."""
    try:
        yield
    except EdgeopsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except ImportError as exc:
        typer.echo(
            f"error: this command needs the pipeline libraries ({exc.name or exc} is missing)\n"
            "  fix: pip install 'edgeops[pipeline]'  (or `make demo`, which installs everything)",
            err=True,
        )
        raise typer.Exit(1) from None


def command(group: typer.Typer, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Register a command that runs with telemetry off and friendly errors."""

    def wrap(fn: Callable[..., Any]) -> Any:
        import functools

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            telemetry_off()
            with friendly_errors():
                return fn(*args, **kwargs)

        return group.command(name)(inner)

    return wrap


@command(app, "version")
def version() -> None:
    """Print the edgeops version."""
    typer.echo(__version__)


@command(schema_app, "infer")
def schema_infer(
    path: Annotated[Path, typer.Argument(help="A CSV or Parquet file (or a folder of them).")],
    target: Annotated[str, typer.Option("--target", "-t", help="The label column.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the YAML here instead of stdout.")
    ] = None,
) -> None:
    """Propose a schema from data, for a person to review and paste under validate.schema.

    Example: edgeops schema infer data/external/plant.csv --target failure -o schema.yaml
    """
    import yaml

    from edgeops import atomic
    from edgeops.schema import infer_schema
    from edgeops.sources.csv import read_files

    df = read_files(path)
    schema = infer_schema(df, target)
    text = (
        f"# proposed from {path} ({len(df):,} rows): review ranges, categories and null shares,\n"
        "# then paste under `validate: schema:` in params.yaml\n"
        + yaml.safe_dump(schema.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(out, text)
        typer.echo(f"wrote {out}: {len(schema.columns)} columns, target {target!r}", err=True)


@command(app, "simulate")
def simulate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="A .csv, .parquet or .db (SQLite) file.")
    ],
    rows: Annotated[int, typer.Option(help="Number of readings.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 42,
    scenario: Annotated[
        str, typer.Option(help="baseline | hot_summer | biased_sensor | new_product_mix")
    ] = "baseline",
    table: Annotated[str, typer.Option(help="Table name for a .db output.")] = "readings",
) -> None:
    """Write demo plant data from the built-in simulator to a file or an SQLite table.

    Example: edgeops simulate --rows 5000 --scenario hot_summer -o data/external/summer.csv
    """
    from edgeops import atomic
    from edgeops.sources.simulator import simulate as run_simulator

    df = run_simulator(rows=rows, seed=seed, scenario=scenario)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".db", ".sqlite"):
        raise EdgeopsError(
            f"cannot write {out}: unknown file type", fix="use .csv, .parquet or .db"
        )
    with atomic.atomic_path(out) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            import sqlite3

            with sqlite3.connect(tmp) as conn:
                df.to_sql(table, conn, index=False)
    typer.echo(f"wrote {len(df):,} rows ({scenario}) to {out}", err=True)


@command(keys_app, "init")
def keys_init(
    key_dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Key directory, outside the repo [default: $EDGEOPS_KEY_DIR or ~/.config/edgeops/keys]",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing (exit 0) when a key pair exists.")
    ] = False,
) -> None:
    """Create the ed25519 key pair that signs bundles (private key mode 0600).

    Give devices the public key (signing.pub); the private key never leaves this host.
    """
    from edgeops.keys import PRIVATE_NAME, default_key_dir, init_keys

    target = key_dir or default_key_dir()
    if if_missing and (target / PRIVATE_NAME).exists():
        typer.echo(f"signing key exists: {target / PRIVATE_NAME}", err=True)
        return
    private, public = init_keys(target, force=force)
    what = "no signing key found: created a development key pair" if if_missing else "created"
    typer.echo(f"{what}: {private} (mode 0600) and {public}", err=True)
    typer.echo(
        "devices verify bundles with the public key: copy it to them, keep the private key here",
        err=True,
    )


@command(bundle_app, "verify")
def bundle_verify(
    bundle_dir: Annotated[Path, typer.Argument(help="The bundle directory (e.g. models/bundle).")],
    public_key: Annotated[
        Path, typer.Option("--public-key", "-k", help="The trusted signing.pub.")
    ],
) -> None:
    """Check a bundle as a device would: signature, file hashes, runtime, golden examples.

    Exit codes: 0 ok, 10 missing file, 11 unsigned, 12 wrong key, 13 manifest edited,
    14 unsupported format, 15 file altered, 16 onnxruntime too old, 17 golden check failed,
    18 bad public key.
    """
    from edgeops.edge.bundle import BundleError, load_public_key, verify_bundle

    try:
        bundle = verify_bundle(bundle_dir, load_public_key(public_key))
    except BundleError as exc:
        typer.echo(f"error: bundle rejected ({exc.name}): {exc}", err=True)
        raise typer.Exit(exc.code) from None
    m = bundle.manifest
    typer.echo(
        f"ok: {m['model']['name']} {bundle.version} signed by {m['signing_key_id']}; "
        f"{len(m['files'])} file(s) match; {len(m['golden']['examples'])} golden examples "
        f"reproduced (max |Δp| {bundle.golden_max_abs_diff:.1e})"
    )


@command(edge_app, "serve")
def edge_serve(
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Versions, state and the inference log live here."),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="The trusted signing.pub.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8710].")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with any AgentConfig setting.")
    ] = None,
    deploy_token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the deploy token [default: $EDGEOPS_DEPLOY_TOKEN]."),
    ] = None,
    predict_token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the predict token [default: $EDGEOPS_PREDICT_TOKEN]."),
    ] = None,
    no_predict_auth: Annotated[
        bool,
        typer.Option(
            "--no-predict-auth", help="Serve /v1/predict without a token (trusted network only)."
        ),
    ] = False,
) -> None:
    """Run the edge agent: verify, switch, serve, log, roll back (onnxruntime only).

    Example: EDGEOPS_DEPLOY_TOKEN=... EDGEOPS_PREDICT_TOKEN=... edgeops edge serve
    --state-dir /var/lib/edgeops --public-key /etc/edgeops/signing.pub
    """
    from edgeops.edge.config import ConfigError, load_config, read_token

    try:
        cfg = load_config(
            config, state_dir=state_dir, public_key=public_key, host=host, port=port,
            predict_auth=False if no_predict_auth else None,
        )  # fmt: skip
        cfg.deploy_token = read_token(deploy_token_file, "EDGEOPS_DEPLOY_TOKEN") or cfg.deploy_token
        cfg.predict_token = (
            read_token(predict_token_file, "EDGEOPS_PREDICT_TOKEN") or cfg.predict_token
        )
        cfg.validate()
    except ConfigError as exc:
        raise EdgeopsError(str(exc), fix="see `edgeops edge serve --help`") from None
    from edgeops.edge.agent import serve

    typer.echo(f"edgeops agent on http://{cfg.host}:{cfg.port} (state {cfg.state_dir})", err=True)
    serve(cfg)


def main() -> None:
    """Entry point of the ``edgeops`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())

"""The ``edgeops`` command. Heavy libraries are imported inside the commands that need them,
so ``edgeops --help`` and the edge agent's start stay fast."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

import edgeops
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off

HELP = """On-prem MLOps: plant data -> validated model -> signed ONNX bundle on edge devices.

\b
Examples:
  edgeops doctor            # is this host ready?
  edgeops deploy --all      # gate, then canary first, then the rest
  edgeops status            # every target: version, health, stage
  edgeops deploy --help     # each command: options, examples, exit codes

Exit codes: 0 ok, 1 a run or check failed or a library is missing, 2 an error (the message
says how to fix it) or a wrong option; commands with more list them in their --help.

Shell completion: edgeops --install-completion, or edgeops completion bash|zsh|fish.
"""

app = typer.Typer(
    name="edgeops",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s per call
)
schema_app = typer.Typer(
    help="Propose and check the dataset schema (validate.schema).\n\n"
    "Example: edgeops schema infer data/external/ --target failure",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schema_app, name="schema")
keys_app = typer.Typer(
    help="Bundle signing keys (ed25519).\n\nExample: edgeops keys init",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(keys_app, name="keys")
bundle_app = typer.Typer(
    help="Inspect and verify model bundles.\n\n"
    "\b\nExample:\n  edgeops bundle verify models/bundle -k ~/.config/edgeops/keys/signing.pub",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bundle_app, name="bundle")
edge_app = typer.Typer(
    help="The edge agent (runs on the device).\n\n"
    "Example: edgeops edge serve --config /etc/edgeops/agent.yaml",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(edge_app, name="edge")


class Command(TyperCommand):
    """Typer's command, with each argument shown by its metavar alone: ``BUNDLE_DIR`` in the
    usage line and the Arguments list (Typer shows ``{bundle_dir}`` and ``bundle_dir <path>``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or str(param.name).upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


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

        return group.command(name, cls=Command)(inner)

    return wrap


ParamsOpt = Annotated[Path, typer.Option("--params", metavar="FILE", help="The params file.")]
BundleOpt = Annotated[Path, typer.Option("--bundle", metavar="DIR", help="The bundle directory.")]
TargetsOpt = Annotated[
    Path | None,
    typer.Option(
        "--targets", metavar="FILE", help="Targets file [default: deploy.targets in params]."
    ),
]
RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", metavar="FILE", help="Registry file [default: deploy.registry]."),
]
AuditOpt = Annotated[
    Path | None,
    typer.Option("--audit-log", metavar="FILE", help="Audit log [default: deploy.audit_log]."),
]
PubOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        metavar="FILE",
        help="Trusted signing.pub [default: targets file, then key dir].",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(edgeops.__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the edgeops version and exit.",
        ),
    ] = False,
) -> None:
    pass


@command(app, "version")
def version() -> None:
    """Print the edgeops version (the same as `edgeops --version`).

    Example: edgeops version
    """
    typer.echo(edgeops.__version__)


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@command(app, "completion")
def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> None:
    """Print the shell completion script (commands and options complete with TAB).

    `edgeops --install-completion` installs it for the shell you run instead. zsh reads
    completion files from the folders on $fpath (add ~/.zfunc before compinit).

    \b
    Examples:
      edgeops completion bash > ~/.local/share/bash-completion/completions/edgeops
      edgeops completion zsh > ~/.zfunc/_edgeops
      edgeops completion fish > ~/.config/fish/completions/edgeops.fish
    """
    from typer.completion import get_completion_script

    script = get_completion_script(
        prog_name="edgeops", complete_var="_EDGEOPS_COMPLETE", shell=shell.value
    )
    typer.echo(script)


def _register_schema() -> None:
    from edgeops.schema_commands import register

    register(schema_app, command)


_register_schema()


@command(app, "simulate")
def simulate(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Write to a .csv, .parquet or .db (SQLite) file."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", metavar="NAME", help="... or send to this target's agent."),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Number of readings [default: 50000 to a file, 1000 to a target]."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Random seed: the same seed gives the same data [default: 42 to a file, "
            "a random one (printed) to a target].",
        ),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="baseline | hot_summer | biased_sensor | new_product_mix"
        ),
    ] = "baseline",
    table: Annotated[
        str, typer.Option(metavar="NAME", help="Table name for a .db output.")
    ] = "readings",
    rate: Annotated[
        float,
        typer.Option(metavar="N", help="Target: requests per second (0 = as fast as possible)."),
    ] = 0.0,
    batch: Annotated[int, typer.Option(metavar="N", help="Target: rows per request.")] = 1,
    feedback_share: Annotated[
        float,
        typer.Option(
            metavar="SHARE", help="Target: share of the requests whose true labels are sent back."
        ),
    ] = 0.2,
    feedback_delay: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Target: seconds between a prediction and its feedback."
        ),
    ] = 0.0,
    label_flip: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            help="Target: share of feedback labels replaced by another class (concept "
            "drift: the plant's failures no longer follow the model).",
        ),
    ] = 0.0,
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
) -> None:
    """Demo plant data from the built-in simulator: to a file (--out) or to an agent (--target).

    To an agent, the readings go to /v1/predict and, for a share of the requests, the true label
    follows as feedback, --feedback-delay seconds later (a failure is known after the fact).

    Exit codes: 0 written or sent, 2 an error (the message says how to fix it).

    \b
    Examples:
      edgeops simulate --scenario hot_summer -o data/external/summer.csv
      edgeops simulate --target demo-local --scenario hot_summer --rows 2000 \\
          --feedback-share 0.3 --feedback-delay 5
    """
    if (out is None) == (target is None):
        raise EdgeopsError(
            "choose where the readings go: --out FILE or --target NAME (one of them)"
        )
    if target is not None:
        from edgeops.deploy.targets import AgentClient, load_targets
        from edgeops.monitor import simulate as traffic
        from edgeops.params import load_params

        p = load_params(params)
        targets_file = targets or (p.get("deploy") or {}).get("targets", "deploy/targets.yaml")
        (t,) = load_targets(targets_file).select([target])
        seed = traffic.random_seed() if seed is None else seed
        typer.echo(f"seed {seed} (repeat this traffic with --seed {seed})", err=True)
        records, labels, classes = traffic.build_rows(p, scenario, rows or 1000, seed)
        with traffic.progress_bar(len(records), f"{target} ({scenario})") as (progress, log):
            summary = traffic.send_traffic(
                AgentClient(t), records, labels, rate=rate, feedback_share=feedback_share,
                feedback_delay=feedback_delay, batch=batch, seed=seed, label_flip=label_flip,
                classes=classes, progress=progress, log=log,
            )  # fmt: skip
        typer.echo(traffic.format_summary(summary, target))
        return
    from edgeops import atomic
    from edgeops.sources.simulator import simulate as run_simulator

    assert out is not None
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".db", ".sqlite"):
        raise EdgeopsError(
            f"cannot write {out}: unknown file type", fix="use .csv, .parquet or .db"
        )
    df = run_simulator(rows=rows or 50_000, seed=42 if seed is None else seed, scenario=scenario)
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
            metavar="DIR",
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

    Exit codes: 0 created (or, with --if-missing, already there), 2 an error (e.g. a key pair
    exists: --force replaces it).

    Example: edgeops keys init --dir /etc/edgeops/keys
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
    bundle_dir: Annotated[
        Path,
        typer.Argument(metavar="BUNDLE_DIR", help="The bundle directory (e.g. models/bundle)."),
    ],
    public_key: Annotated[
        Path,
        typer.Option("--public-key", "-k", metavar="FILE", help="The trusted signing.pub."),
    ],
) -> None:
    """Check a bundle as a device would: signature, file hashes, runtime, golden examples.

    Exit codes: 0 ok, 10 missing file, 11 unsigned, 12 wrong key, 13 manifest edited,
    14 unsupported format, 15 file altered, 16 onnxruntime too old, 17 golden check failed,
    18 bad public key, 19 malformed manifest.

    \b
    Example:
      edgeops bundle verify models/bundle -k ~/.config/edgeops/keys/signing.pub
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
        typer.Option(
            "--state-dir", metavar="DIR", help="Versions, state and the inference log live here."
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", metavar="FILE", help="The trusted signing.pub."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Bind address [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="Port [default: 8710].")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", metavar="FILE", help="YAML file with any AgentConfig setting."
        ),
    ] = None,
    deploy_token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="File holding the deploy token [default: $EDGEOPS_DEPLOY_TOKEN]."
        ),
    ] = None,
    predict_token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="File holding the predict token [default: $EDGEOPS_PREDICT_TOKEN].",
        ),
    ] = None,
    no_predict_auth: Annotated[
        bool,
        typer.Option(
            "--no-predict-auth", help="Serve /v1/predict without a token (trusted network only)."
        ),
    ] = False,
) -> None:
    """Run the edge agent: verify, switch, serve, log, roll back (onnxruntime only).

    Exit codes: 2 a configuration error (the agent does not start); otherwise it serves until
    it is stopped.

    \b
    Example:
      EDGEOPS_DEPLOY_TOKEN=... EDGEOPS_PREDICT_TOKEN=... edgeops edge serve \\
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


def _ctx(params: Path, targets: Path | None, registry: Path | None, audit: Path | None, public_key: Path | None,
         test_data: Path | None = None):  # fmt: skip
    from edgeops.deploy.operations import DeployContext

    return DeployContext.load(params, targets, registry, audit, public_key, test_data)


@command(app, "gate")
def gate_cmd(
    bundle: BundleOpt = Path("models/bundle"),
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="NAME",
            help="A target whose champion counts (repeatable) [default: all].",
        ),
    ] = None,
    test_data: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Test split [default: deploy.test_data]."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
) -> None:
    """Champion vs challenger: would this bundle be promoted? Writes reports/gate.json.

    Exit codes: 0 promote, 3 refused (a normal outcome: the champion stays), 2 an error.

    Example: edgeops gate --bundle models/bundle --target line-1
    """
    from edgeops.deploy import operations

    ctx = _ctx(params, targets, registry, audit_log, public_key, test_data)
    report = operations.gate(ctx, bundle, ctx.targets.select(target))
    typer.echo(f"{'promote' if report['promote'] else 'refuse'}: {report['reason']}")
    if not report["promote"]:
        raise typer.Exit(3)


@command(app, "deploy")
def deploy_cmd(
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", metavar="NAME", help="Deploy to this target (repeatable)."),
    ] = None,
    all_targets: Annotated[
        bool, typer.Option("--all", help="Deploy to every target in the targets file.")
    ] = False,
    bundle: BundleOpt = Path("models/bundle"),
    force: Annotated[
        bool, typer.Option("--force", help="Skip the gate (recorded in the audit log).")
    ] = False,
    replace_model: Annotated[
        bool,
        typer.Option(
            "--replace-model",
            help="Deploy although the targets run another model (name, inputs or classes "
            "differ); recorded in the audit log.",
        ),
    ] = False,
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why: manual, scheduled, drift, ... (recorded).")
    ] = "manual",
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
) -> None:
    """Gate, then a staged rollout: canary first, each target checked, everything undone on failure.

    \b
    Exit codes:
      0  deployed (or every target already runs this version)
      3  refused: by the gate, or another model runs there (see --replace-model)
      4  the rollout failed and was rolled back
      2  another error (the message says how to fix it)

    \b
    Examples:
      edgeops deploy --all
      edgeops deploy --target line-1 --force --reason "hotfix"
    """
    from edgeops.deploy import operations

    if bool(target) == all_targets:
        raise EdgeopsError("choose the targets: --target NAME (repeatable) or --all")
    ctx = _ctx(params, targets, registry, audit_log, public_key)
    operations.deploy(ctx, bundle, None if all_targets else target, force=force, reason=reason,
                      log=lambda m: typer.echo(m, err=True), replace_model=replace_model)  # fmt: skip


@command(app, "rollback")
def rollback_cmd(
    target: Annotated[
        str, typer.Option("--target", "-t", metavar="NAME", help="The target to roll back.")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="VERSION", help="A version still on the device [default: previous]."
        ),
    ] = None,
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded).")] = (
        "manual rollback"
    ),
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
) -> None:
    """Return a target to its previous (or a named) model version, and record it.

    Exit codes: 0 rolled back, 2 an error: an unknown target, no previous version or no such
    version on the device, the agent unreachable (the message says which).

    \b
    Examples:
      edgeops rollback --target line-1 --reason "false alarms since 2.1.0"
      edgeops rollback --target line-1 --to 2.0.0
    """
    from edgeops.deploy import operations

    ctx = _ctx(params, targets, registry, audit_log, public_key)
    r = operations.rollback(ctx, target, to, reason=reason)
    typer.echo(f"{r['target']}: {r['from']} -> {r['to']}")


@command(app, "status")
def status_cmd(
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", metavar="NAME", help="Only this target (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='One JSON document: {"ok": ..., "targets": [...]}.')
    ] = False,
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
) -> None:
    """Table of targets: active and previous version, health, last seen, registry stage.

    Every selected target is asked (5 s timeout each) and the whole table is printed; then each
    target that needs a look gets a line on stderr. Healthy (HEALTH `ready`) means: the agent
    answers with the deploy token, serves a model, and a version on probation has had no model
    errors.

    \b
    Exit codes:
      0  every selected target is ready
      9  a target is unreachable, refuses the token, serves no model or has model
         errors on probation (see HEALTH and the lines on stderr)
      2  an error (the message says how to fix it)

    \b
    Examples:
      edgeops status
      edgeops status --target line-1 --json
    """
    import json

    from edgeops.deploy import operations

    ctx = _ctx(params, targets, registry, audit_log, public_key)
    rows = operations.status(ctx, target)
    sick = [r for r in rows if not r["ok"]]
    if as_json:
        typer.echo(json.dumps({"ok": not sick, "targets": rows}, indent=2))
    else:
        typer.echo(operations.format_table(rows))
    for r in sick:
        typer.echo(r["problem"], err=True)
    if sick:
        raise typer.Exit(operations.EXIT_UNHEALTHY)


@command(app, "predict")
def predict_cmd(
    target: Annotated[
        str, typer.Option("--target", "-t", metavar="NAME", help="The target to ask.")
    ],
    rows: Annotated[
        str | None,
        typer.Option(
            "--rows",
            metavar="JSON",
            help="A JSON list of rows, e.g. '[{\"torque_nm\": 40, ...}]' [default: the "
            "bundle's first golden example].",
        ),
    ] = None,
    bundle: BundleOpt = Path("models/bundle"),
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
) -> None:
    """Send rows to a target's agent and print its answer: one JSON document on stdout.

    What was sent goes to stderr, so the answer can be piped (e.g. to jq).

    Exit codes: 0 answered, 2 an error (bad --rows, rows refused, the agent unreachable).

    \b
    Examples:
      edgeops predict --target line-1
      edgeops predict -t line-1 --rows "$(cat rows.json)" | jq .predictions
    """
    import json

    from edgeops.deploy.targets import AgentClient, load_targets
    from edgeops.params import load_params

    cfg = load_params(params).get("deploy") or {}
    (t,) = load_targets(targets or cfg.get("targets", "deploy/targets.yaml")).select([target])
    if rows is None:
        manifest = bundle / "manifest.json"
        if not manifest.is_file():
            raise EdgeopsError(
                f"no bundle at {bundle} to take a golden example from",
                fix="pass --rows '[{...}]', or --bundle DIR",
            )
        payload = [json.loads(manifest.read_text())["golden"]["examples"][0]["inputs"]]
        what = f"the first golden example of {bundle}"
    else:
        try:
            payload = json.loads(rows)
        except ValueError as exc:
            raise EdgeopsError(f"--rows is not valid JSON: {exc}") from None
        payload = [payload] if isinstance(payload, dict) else payload
        if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
            raise EdgeopsError(
                "--rows must be a JSON list of rows, each an object of column: value",
                fix="""--rows '[{"torque_nm": 40, ...}]'""",
            )
        what = "--rows"
    shown = json.dumps(payload[0]) if len(payload) == 1 else f"{len(payload)} rows"
    typer.echo(f"{t.name} <- {what}: {shown}", err=True)
    typer.echo(json.dumps(AgentClient(t).predict(payload), indent=2))


def _register_orchestration() -> None:
    from edgeops.orchestration.commands import register

    register(app, command)


_register_orchestration()


def _register_monitor() -> None:
    from edgeops.monitor.commands import register

    register(app, command)


_register_monitor()


def main() -> None:
    """Entry point of the ``edgeops`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())

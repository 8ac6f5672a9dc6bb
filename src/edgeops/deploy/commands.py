"""The deploy-side commands of the ``edgeops`` CLI: gate, deploy, rollback, status, predict.

Registered on the main app by :func:`register`; the deploy machinery is imported inside each
command only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError

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


audit_app = typer.Typer(
    help="The deploy records: the registry and the hash-chained, signed audit log.\n\n"
    "Exit codes: 0 ok, 12 the records do not verify, 2 an error.\n\n"
    "Example: edgeops audit verify",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add gate, deploy, rollback, status and predict to the main app, in this order
    (``command`` adds friendly errors, telemetry off)."""
    command(app, "gate")(gate_cmd)
    command(app, "deploy")(deploy_cmd)
    command(app, "rollback")(rollback_cmd)
    command(app, "status")(status_cmd)
    command(app, "predict")(predict_cmd)
    command(audit_app, "verify")(audit_verify_cmd)
    command(audit_app, "seal")(audit_seal_cmd)
    app.add_typer(audit_app, name="audit")
    command(agent_app, "start")(agent_start_cmd)
    command(agent_app, "stop")(agent_stop_cmd)
    app.add_typer(agent_app, name="agent")


agent_app = typer.Typer(
    help="Start or stop a project's agent on this machine (its address: deploy/targets.yaml).\n\n"
    "Exit codes: 0 done, 2 an error (the message says the fix).\n\n"
    "Example: edgeops agent start && edgeops deploy --all",
    no_args_is_help=True,
    rich_markup_mode=None,
)
AgentTargetArg = Annotated[
    str | None,
    typer.Argument(
        metavar="TARGET", help="A target on loopback [default: the only one in the targets file]."
    ),
]
StateDirOpt = Annotated[
    Path, typer.Option("--state-dir", metavar="DIR", help="The agent's state, log and pid file.")
]


def _local(target: str | None, state_dir: Path, params: Path, targets: Path | None) -> Any:
    from edgeops.deploy.local_agent import local_agent
    from edgeops.params import load_params

    cfg = load_params(params).get("deploy") or {}
    return local_agent(
        Path(targets or cfg.get("targets", "deploy/targets.yaml")), target, state_dir
    )


def agent_start_cmd(
    target: AgentTargetArg = None,
    state_dir: StateDirOpt = Path("data/agent"),
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
) -> None:
    """Start the agent of a target on this machine, in the background, at the target's url.

    Its deploy, predict and feedback tokens are files in the key directory
    (TARGET-deploy.token, ...), made on first start; the target's token_file names the
    deploy token. Does nothing when the agent answers already.

    Exit codes: 0 running, 2 an error (not a loopback target, the port taken, no public key).

    \b
    Examples:
      edgeops agent start
      edgeops agent start line-test --state-dir /tmp/agent-line-test
    """
    from edgeops.deploy.local_agent import start

    start(_local(target, state_dir, params, targets), log=lambda m: typer.echo(m, err=True))


def agent_stop_cmd(
    target: AgentTargetArg = None,
    state_dir: StateDirOpt = Path("data/agent"),
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
) -> None:
    """Stop the agent that `edgeops agent start` started (its pid file); nothing else.

    Exit codes: 0 stopped (or not running), 2 an error.

    Example: edgeops agent stop
    """
    from edgeops.deploy.local_agent import stop

    stop(_local(target, state_dir, params, targets), log=lambda m: typer.echo(m, err=True))


def _ctx(
    params: Path,
    targets: Path | None,
    registry: Path | None,
    audit: Path | None,
    public_key: Path | None,
    test_data: Path | None = None,
):
    from edgeops.deploy.operations import DeployContext

    return DeployContext.load(params, targets, registry, audit, public_key, test_data)


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
    from edgeops.deploy.gate import figures_text

    report = operations.gate(ctx, bundle, ctx.targets.select(target))
    typer.echo(figures_text(report), nl=False)
    typer.echo(f"{'promote' if report['promote'] else 'refuse'}: {report['reason']}")
    if not report["promote"]:
        raise typer.Exit(3)


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
    operations.deploy(
        ctx,
        bundle,
        None if all_targets else target,
        force=force,
        reason=reason,
        log=lambda m: typer.echo(m, err=True),
        replace_model=replace_model,
    )


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
      12 the deploy records (registry, audit log) do not verify: changed outside
         edgeops (the line on stderr names what; see `edgeops audit verify`)
      2  an error (the message says how to fix it)

    \b
    Examples:
      edgeops status
      edgeops status --target line-1 --json
    """
    import json

    from edgeops.deploy import operations
    from edgeops.deploy.records import EXIT_BROKEN, RecordsBroken

    ctx = _ctx(params, targets, registry, audit_log, public_key)
    rows = operations.status(ctx, target)
    sick = [r for r in rows if not r["ok"]]
    try:
        ctx.verify_records()
        broken = None
    except RecordsBroken as exc:
        broken = exc
    records = {"ok": broken is None, "problem": broken and broken.problem}
    if as_json:
        doc = {"ok": not sick and not broken, "targets": rows, "records": records}
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(operations.format_table(rows))
    for r in sick:
        typer.echo(r["problem"], err=True)
    if broken:
        typer.echo(f"error: {broken}", err=True)
        raise typer.Exit(EXIT_BROKEN)
    if sick:
        raise typer.Exit(operations.EXIT_UNHEALTHY)


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


def audit_verify_cmd(
    params: ParamsOpt = Path("params.yaml"),
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
    targets: TargetsOpt = None,
) -> None:
    """Check that the registry and the audit log are what edgeops last signed.

    Every audit entry carries the chain hash of the ones before it; the chain head and the
    registry's hash are signed with the bundle signing key (deploy/audit.seal). An entry edited,
    removed or reordered, an edit or deletion of the registry, or entries appended by hand are
    named here; gate, deploy, rollback and doctor refuse to act on them.

    Exit codes: 0 the records verify, 12 they do not (the message names what), 2 an error.

    Example: edgeops audit verify
    """
    ctx = _ctx(params, targets, registry, audit_log, public_key)
    state = ctx.verify_records()
    if not state.signed:
        typer.echo("ok: no deploy records yet (the first deploy starts the signed audit chain)")
        return
    typer.echo(
        f"ok: {state.entries} audit entries chained and signed, the registry as signed"
        + (
            f" (the first {state.anchor.entries} taken as they were)"
            if state.anchor.entries
            else ""
        )
    )


def audit_seal_cmd(
    reason: Annotated[
        str,
        typer.Option(metavar="TEXT", help="Why these records are taken as they are (recorded)."),
    ],
    params: ParamsOpt = Path("params.yaml"),
    registry: RegistryOpt = None,
    audit_log: AuditOpt = None,
    public_key: PubOpt = None,
    targets: TargetsOpt = None,
) -> None:
    """Sign the records as they are now, after a person has reviewed them.

    For records written before edgeops signed them, or a change a person made on purpose
    (restored from a backup, a corrected entry). What did not verify is recorded in an audit
    entry ``records_sealed`` with the reason and who sealed; from then on the records verify.
    Needs the private signing key (bundle.signing_key, EDGEOPS_KEY_DIR).

    Exit codes: 0 signed, 2 an error (no signing key, or no reason).

    \b
    Example:
      edgeops audit seal --reason "registry restored from the 12-01 backup"
    """
    from edgeops.deploy.records import RecordsBroken

    if not reason.strip():
        raise EdgeopsError("say why: --reason TEXT (it is recorded)")
    ctx = _ctx(params, targets, registry, audit_log, public_key)
    try:
        ctx.verify_records()
        found = None
    except RecordsBroken as exc:
        found = exc.problem
    seal = ctx.audit.seal
    assert seal is not None
    with seal.writing(reanchor=True) as state:
        ctx.audit.append_at(state.head, "records_sealed", reason=reason, found=found)
    typer.echo(
        f"sealed: {state.entries + 1} audit entries" + (f"; found: {found}" if found else "")
    )

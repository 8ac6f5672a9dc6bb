"""The signing-key, bundle and device commands of the ``edgeops`` CLI: ``keys init``,
``bundle verify`` and ``edge serve``, in groups added to the main app by :func:`register`.

The edge agent's base install runs ``edgeops edge serve`` without the pipeline extras: this
module imports typer only, everything else is imported inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError

keys_app = typer.Typer(
    help="Bundle signing keys (ed25519).\n\nExample: edgeops keys init",
    no_args_is_help=True,
    rich_markup_mode=None,
)
bundle_app = typer.Typer(
    help="Inspect and verify model bundles.\n\n"
    "\b\nExample:\n  edgeops bundle verify models/bundle -k ~/.config/edgeops/keys/signing.pub",
    no_args_is_help=True,
    rich_markup_mode=None,
)
edge_app = typer.Typer(
    help="The edge agent (runs on the device).\n\n"
    "Example: edgeops edge serve --config /etc/edgeops/agent.yaml",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add the ``keys``, ``bundle`` and ``edge`` groups to the main app, in this order
    (``command`` adds friendly errors, telemetry off)."""
    command(keys_app, "init")(keys_init)
    command(bundle_app, "verify")(bundle_verify)
    command(edge_app, "serve")(edge_serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(bundle_app, name="bundle")
    app.add_typer(edge_app, name="edge")


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
    feedback_token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="File holding the feedback token: /v1/feedback takes it (or the deploy token), "
            "never the predict token [default: $EDGEOPS_FEEDBACK_TOKEN].",
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
      export EDGEOPS_DEPLOY_TOKEN=... EDGEOPS_PREDICT_TOKEN=...
      export EDGEOPS_FEEDBACK_TOKEN=...
      edgeops edge serve \\
          --state-dir /var/lib/edgeops --public-key /etc/edgeops/signing.pub
    """
    from edgeops.edge.config import ConfigError, load_config, read_token

    try:
        cfg = load_config(
            config,
            state_dir=state_dir,
            public_key=public_key,
            host=host,
            port=port,
            predict_auth=False if no_predict_auth else None,
        )
        cfg.deploy_token = read_token(deploy_token_file, "EDGEOPS_DEPLOY_TOKEN") or cfg.deploy_token
        cfg.predict_token = (
            read_token(predict_token_file, "EDGEOPS_PREDICT_TOKEN") or cfg.predict_token
        )
        cfg.feedback_token = (
            read_token(feedback_token_file, "EDGEOPS_FEEDBACK_TOKEN") or cfg.feedback_token
        )
        cfg.validate()
    except ConfigError as exc:
        raise EdgeopsError(str(exc), fix="see `edgeops edge serve --help`") from None
    from edgeops.edge.agent import serve

    typer.echo(f"edgeops agent on http://{cfg.host}:{cfg.port} (state {cfg.state_dir})", err=True)
    serve(cfg)

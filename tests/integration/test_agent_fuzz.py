"""Fuzz the running agent from its own published OpenAPI spec: no request may get a 5xx.

A real agent (``edgeops edge serve`` in a subprocess, loopback only) serves a deployed bundle, so
/v1/predict runs the model. Schemathesis reads /openapi.json from that agent and generates
requests for every operation, schema-conforming (positive) and schema-violating (negative).
Most calls carry the right bearer token so the generated bodies get past auth to validation;
some carry none, a wrong one or the other kind. A last round of plain Hypothesis requests goes to
random paths with random methods and bodies. Every answer must be < 500, every error must be
JSON ``{"error": {"code": ...}}``, and afterwards the agent must still predict its golden
examples and count no 5xx of its own.

Generation is seeded (``EDGEOPS_FUZZ_SEED``, default fixed) so a failure reproduces; set another
seed to explore further.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, PREDICT_TOKEN, AgentProcess
from tests.bundles import make_bundle

pytestmark = pytest.mark.integration

MIN_REQUESTS = 500
SEED = int(os.environ.get("EDGEOPS_FUZZ_SEED", "20261121"))
# examples per operation and generation mode; /v1/predict gets the most
EXAMPLES = {"/v1/predict": 150, "/v1/feedback": 60, "/v1/rollback": 40, "/v1/logs": 40,
            "/v1/bundles": 30}  # fmt: skip
DEFAULT_EXAMPLES = 15
RANDOM_REQUESTS = 120
ROW_REQUESTS = 150
# which token each path needs (status takes either)
NEEDS = {"/v1/predict": "predict", "/v1/feedback": "predict", "/v1/status": "predict"}
WRONG = "not-a-token-" + "x" * 20


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def right_token(path: str) -> str:
    return PREDICT_TOKEN if NEEDS.get(path) == "predict" else DEPLOY_TOKEN


def auth_headers(path: str, choice: str) -> dict[str, str]:
    """``choice``: right (the token the endpoint needs), none, wrong, other (the other kind)."""
    right = right_token(path)
    if choice == "right":
        return bearer(right)
    if choice == "wrong":
        return bearer(WRONG)
    if choice == "other":
        return bearer(DEPLOY_TOKEN if right == PREDICT_TOKEN else PREDICT_TOKEN)
    return {}


# 6 in 9 calls carry the right token
AUTH_CHOICES = ["right"] * 6 + ["none", "wrong", "other"]


class Recorder:
    """Counts requests and checks every answer."""

    def __init__(self) -> None:
        self.count = 0
        self.statuses: Counter[tuple[str, int]] = Counter()

    def check(self, label: str, status: int, headers: Any, body: bytes, what: str) -> None:
        self.count += 1
        self.statuses[(label, status)] += 1
        assert status < 500, f"{what} -> {status}: {body[:500]!r}"
        ctype = headers.get("content-type") or ""
        if isinstance(ctype, list):  # schemathesis' Response: header -> list of values
            ctype = ctype[0] if ctype else ""
        if status >= 400:
            assert ctype.startswith("application/json"), f"{what} -> {status} as {ctype!r}"
            try:
                err = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError) as exc:
                raise AssertionError(
                    f"{what} -> {status}: not an error JSON: {body[:300]!r}"
                ) from exc
            assert isinstance(err.get("code"), str) and err["code"], f"{what}: {err!r}"
            assert isinstance(err.get("message"), str), f"{what}: {err!r}"
        elif ctype.startswith("application/json"):
            json.loads(body)


@pytest.fixture(scope="module")
def agent(tmp_path_factory, signing_keys: Path):
    tmp = tmp_path_factory.mktemp("fuzz")
    bundle = make_bundle(tmp / "bundle", signing_keys, "1.0.0")
    state = tmp / "state"
    state.mkdir()
    with AgentProcess(state, signing_keys / "signing.pub", {}) as proc:
        status, body = http(proc.url, "POST", "/v1/bundles", tar_bundle(bundle),
                            {**bearer(DEPLOY_TOKEN), "Content-Type": "application/gzip"})  # fmt: skip
        assert status == 201, body
        manifest = json.loads((bundle / "manifest.json").read_text())
        yield proc, manifest


def http(url: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def fuzz_spec(url: str, rec: Recorder) -> None:
    """Schemathesis: every operation of the published spec, positive and negative cases."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    # /v1/bundles takes the raw .tar.gz: send the generated bytes as they are
    schemathesis.serializer.alias("application/gzip", "application/octet-stream")
    schema = schemathesis.openapi.from_url(url + "/openapi.json", timeout=10)
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/predict", "/v1/feedback", "/v1/rollback", "/v1/logs"} <= paths, paths

    def runner(op: Any, mode: GenerationMode) -> Any:
        label = f"{op.method.upper()} {op.path} [{mode.value}]"

        @seed(SEED)
        @settings(max_examples=EXAMPLES.get(op.path, DEFAULT_EXAMPLES), deadline=None,
                  database=None, phases=[Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=op.as_strategy(mode), auth=st.sampled_from(AUTH_CHOICES))
        def run(case: Any, auth: str) -> None:
            r = case.call(base_url=url, session=session, headers=auth_headers(op.path, auth),
                          timeout=15)  # fmt: skip
            what = (f"{label} auth={auth} body={getattr(case, 'body', None)!r:.300} "
                    f"query={case.query!r:.200} path={case.path_parameters!r:.200}")  # fmt: skip
            rec.check(label, r.status_code, r.headers, r.content, what)

        return run

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                runner(op, mode)()
            except Exception as exc:
                # hypothesis gives up on a mode with nothing to vary (e.g. negative cases for
                # an operation without parameters): that is not a finding
                if mode is GenerationMode.NEGATIVE and type(exc).__name__ in (
                    "Unsatisfiable", "Unsupported", "SkipTest"
                ):  # fmt: skip
                    continue
                raise


def fuzz_rows(url: str, rec: Recorder, manifest: dict[str, Any]) -> None:
    """Hypothesis: near-valid predict bodies built from the golden rows, so the values (huge,
    tiny, negative, wrong types, unicode, unknown categories, nulls, extra or missing keys)
    reach the model and not only the validator."""
    import requests
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st

    session = requests.Session()
    goldens = [e["inputs"] for e in manifest["golden"]["examples"]]
    inputs = {i["name"]: i for i in manifest["inputs"]}
    names = sorted(inputs)
    anything = st.one_of(
        st.none(), st.booleans(), st.text(max_size=20),
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**130), 2**130),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )  # fmt: skip
    number = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=32),  # incl. +-3.4e38, subnormals
        st.integers(-(2**24), 2**24),
        st.sampled_from([0, -0.0, 1e-45, 3.4e38, -3.4e38, 3.5e38, 2**53 + 1, 2**64, 10**39]),
    )

    def plausible(name: str) -> Any:
        spec = inputs[name]
        if spec["dtype"] != "float32":  # a category: a known one, or an unknown string
            return st.sampled_from(spec["categories"]) | st.text(max_size=10)
        return (number | st.none()) if spec["nullable"] else number

    @st.composite
    def row(draw: Any) -> dict[str, Any]:
        r = dict(draw(st.sampled_from(goldens)))
        for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
            # mostly values of the right kind (they reach the model), sometimes anything at all
            r[name] = draw(anything if draw(st.integers(0, 9)) == 0 else plausible(name))
        if draw(st.integers(0, 19)) == 0:
            r.pop(draw(st.sampled_from(names)))
        if draw(st.integers(0, 19)) == 0:
            r[draw(st.text(max_size=8))] = draw(anything)
        return r

    @seed(SEED)
    @settings(max_examples=ROW_REQUESTS, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(rows=st.lists(row(), min_size=1, max_size=4), auth=st.sampled_from(AUTH_CHOICES))
    def run(rows: list[dict[str, Any]], auth: str) -> None:
        headers = {**auth_headers("/v1/predict", auth), "Content-Type": "application/json"}
        body = json.dumps({"rows": rows}).encode()
        r = session.post(url + "/v1/predict", data=body, headers=headers, timeout=15)
        rec.check(
            "rows POST /v1/predict",
            r.status_code,
            r.headers,
            r.content,
            f"auth={auth} {body[:400]!r}",
        )

    run()


def fuzz_random(url: str, rec: Recorder) -> None:
    """Plain Hypothesis: random methods, paths, headers and bodies, with and without auth."""
    import requests
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st

    session = requests.Session()
    known = ["/v1/predict", "/v1/feedback", "/v1/bundles", "/v1/rollback", "/v1/logs",
             "/v1/status", "/healthz", "/readyz", "/metrics", "/v1/bundles/1.0.0", "/openapi.json"]  # fmt: skip
    segment = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).map(
        lambda s: requests.utils.quote(s, safe="")
    )
    path = st.one_of(
        st.sampled_from(known),
        st.lists(segment, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
        st.builds(lambda k, s: k + "/" + s, st.sampled_from(known), segment),
    )
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
    body = st.one_of(
        st.none(), st.binary(max_size=200), json_value.map(lambda v: json.dumps(v).encode())
    )
    ctype = st.sampled_from([None, "application/json", "application/gzip", "text/plain",
                             "multipart/form-data; boundary=x", "application/json; charset=utf-8"])  # fmt: skip
    method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])

    @seed(SEED)
    @settings(max_examples=RANDOM_REQUESTS, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        method=method,
        path=path,
        body=body,
        ctype=ctype,
        auth=st.sampled_from(AUTH_CHOICES + ["deploy"]),
    )
    def run(method: str, path: str, body: bytes | None, ctype: str | None, auth: str) -> None:
        headers = bearer(DEPLOY_TOKEN) if auth == "deploy" else auth_headers(path, auth)
        if ctype:
            headers["Content-Type"] = ctype
        r = session.request(method, url + path, data=body, headers=headers, timeout=15)
        what = f"{method} {path} ctype={ctype} auth={auth} body={body!r:.300}"
        # HEAD answers have no body to check
        content = b'{"error": {"code": "head", "message": ""}}' if method == "HEAD" else r.content
        rec.check(f"random {method}", r.status_code, r.headers, content, what)

    run()


def test_fuzz_the_published_spec_gets_no_5xx(agent) -> None:
    proc, manifest = agent
    rec = Recorder()
    fuzz_spec(proc.url, rec)
    fuzz_rows(proc.url, rec, manifest)
    fuzz_random(proc.url, rec)
    summary = "\n".join(f"  {n:5d}  {k} -> {s}" for (k, s), n in sorted(rec.statuses.items()))
    print(f"{rec.count} requests\n{summary}")
    assert rec.count >= MIN_REQUESTS, f"only {rec.count} requests were made:\n{summary}"
    # the fuzz reached past auth and validation into the model
    assert rec.statuses[("rows POST /v1/predict", 200)] > 0, summary

    # still serving: a golden example predicts as signed, the agent is ready, and it counted no 5xx
    example = manifest["golden"]["examples"][0]
    status, body = http(proc.url, "POST", "/v1/predict", json.dumps({"rows": [example["inputs"]]}).encode(),
                        {**bearer(PREDICT_TOKEN), "Content-Type": "application/json"})  # fmt: skip
    assert status == 200, body
    pred = json.loads(body)["predictions"][0]
    assert pred["label"] == example["label"]
    classes = [str(c) for c in manifest["classes"]]
    for c, p in zip(classes, example["probabilities"], strict=True):
        assert abs(pred["probabilities"][c] - p) < 1e-5
    assert http(proc.url, "GET", "/readyz")[0] == 200
    status, body = http(proc.url, "GET", "/v1/status", headers=bearer(DEPLOY_TOKEN))
    assert status == 200, body
    st = json.loads(body)
    assert st["errors"] == 0, st["requests"]
    assert st["active"]["version"] == "1.0.0"
    assert proc.proc.poll() is None

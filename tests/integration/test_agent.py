"""The edge agent for real: `edgeops edge serve` in a subprocess on 127.0.0.1, real signed bundles.

Each test starts its own agent (or shares a module-scoped one where the test only reads state)
and talks HTTP to it with httpx. Bundles are built once per module from a small trained model.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import shutil
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeops.edge.bundle import key_id, load_public_key, verify_bundle
from edgeops.edge.store import tar_bundle
from edgeops.keys import init_keys, load_private_key
from tests.agent_process import DEPLOY_TOKEN, FEEDBACK_TOKEN, PREDICT_TOKEN, AgentProcess, Agents
from tests.bundles import make_bundle, make_failing_bundle

pytestmark = pytest.mark.integration

V1, V2, V3, BAD = "1.0.0", "2.0.0", "3.0.0", "9.0.0-failing"
CRASH_ITERATIONS = 50


# ---- helpers ---------------------------------------------------------------------------------
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


DEPLOY = auth(DEPLOY_TOKEN)
PREDICT = auth(PREDICT_TOKEN)
FEEDBACK = auth(FEEDBACK_TOKEN)


def client(agent: AgentProcess) -> httpx.Client:
    # trust_env=False: never route loopback traffic through a proxy from the environment
    return httpx.Client(base_url=agent.url, timeout=30.0, trust_env=False)


def upload(c: httpx.Client, body: bytes, content_type: str = "application/gzip") -> httpx.Response:
    return c.post("/v1/bundles", content=body, headers={**DEPLOY, "Content-Type": content_type})


def deploy(c: httpx.Client, bundle: Path) -> dict[str, Any]:
    r = upload(c, tar_bundle(bundle))
    assert r.status_code == 201, r.text
    return r.json()


def predict(c: httpx.Client, rows: Any, token: str = PREDICT_TOKEN) -> httpx.Response:
    return c.post("/v1/predict", json={"rows": rows}, headers=auth(token))


def status(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/v1/status", headers=DEPLOY)
    assert r.status_code == 200, r.text
    return r.json()


def active_version(c: httpx.Client) -> str | None:
    active = status(c)["active"]
    return None if active is None else active["version"]


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The JSON error body (asserting that it is one)."""
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    return body["error"]


def error_fields(r: httpx.Response) -> set[str]:
    return {f["field"] for f in error_of(r).get("fields", [])}


def manifest_of(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def golden_examples(bundle: Path, known_only: bool = True, n: int | None = None) -> list[dict]:
    """The bundle's (first ``n``) golden examples; ``known_only`` leaves out the probe rows with
    an unseen category, which an agent refuses with 422 unless ``unknown_categories: accept``."""
    manifest = manifest_of(bundle)
    cats = {i["name"]: set(i["categories"]) for i in manifest["inputs"] if "categories" in i}
    return [
        ex
        for ex in manifest["golden"]["examples"]
        if not known_only
        or all(ex["inputs"][k] is None or ex["inputs"][k] in allowed for k, allowed in cats.items())
    ][:n]


def golden_rows(bundle: Path, known_only: bool = True, n: int | None = None) -> list[dict]:
    return [dict(ex["inputs"]) for ex in golden_examples(bundle, known_only, n)]


def assert_golden(body: dict, bundle: Path, known_only: bool = True, n: int | None = None) -> None:
    """The predictions for a bundle's golden inputs are its golden labels and probabilities."""
    manifest = manifest_of(bundle)
    classes = [str(c) for c in manifest["classes"]]
    examples = golden_examples(bundle, known_only, n)
    assert body["model_version"] == manifest["model"]["version"]
    assert len(body["predictions"]) == len(examples)
    for ex, pred in zip(examples, body["predictions"], strict=True):
        assert str(pred["label"]) == str(ex["label"])
        assert sorted(pred["probabilities"]) == sorted(classes)
        got = [pred["probabilities"][c] for c in classes]
        assert got == pytest.approx(ex["probabilities"], abs=1e-6)


def predict_golden(
    c: httpx.Client, bundle: Path, known_only: bool = True, n: int | None = None
) -> dict[str, Any]:
    """Predict a bundle's golden inputs and check the answer against its golden outputs."""
    r = predict(c, golden_rows(bundle, known_only, n))
    assert r.status_code == 200, r.text
    body = r.json()
    assert_golden(body, bundle, known_only, n)
    return body


def read_logs(c: httpx.Client, after: int = 0, limit: int = 5000) -> dict[str, Any]:
    r = c.get("/v1/logs", params={"after": after, "limit": limit}, headers=DEPLOY)
    assert r.status_code == 200, r.text
    return r.json()


def resign(bundle: Path, key_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a bundle's manifest and sign it again with the key in ``key_dir``."""
    manifest = manifest_of(bundle)
    edit(manifest)
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "manifest.json").write_bytes(raw)
    sig = load_private_key(key_dir / "signing.key").sign(raw)
    (bundle / "manifest.sig").write_bytes(base64.b64encode(sig) + b"\n")


def snapshot(state_dir: Path) -> dict[str, str]:
    """Every path under the state directory with its sha256 (directories as 'dir'), except the
    inference log, which legitimately changes while the agent serves."""
    out = {}
    for p in sorted(state_dir.rglob("*")):
        rel = p.relative_to(state_dir).as_posix()
        if rel.startswith("inference.db"):
            continue
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def metric_samples(c: httpx.Client) -> tuple[str, dict[tuple[str, frozenset], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics")
    assert r.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="module")
def v1(bundle_dir: Path, signing_keys: Path) -> Path:
    return make_bundle(bundle_dir / "v1", signing_keys, V1, C=1.0)


@pytest.fixture(scope="module")
def v2(bundle_dir: Path, signing_keys: Path) -> Path:
    return make_bundle(bundle_dir / "v2", signing_keys, V2, C=0.05)


@pytest.fixture(scope="module")
def v3(bundle_dir: Path, signing_keys: Path) -> Path:
    return make_bundle(bundle_dir / "v3", signing_keys, V3, C=0.3)


@pytest.fixture(scope="module")
def failing(bundle_dir: Path, signing_keys: Path) -> Path:
    return make_failing_bundle(bundle_dir / "failing", signing_keys, BAD)


# ---- 1. serve, feedback, logs, switch, rollback, status, metrics -----------------------------
def test_serve_feedback_logs_switch_rollback_and_metrics(agents: Agents, v1: Path, v2: Path):
    # unknown_categories: accept, so that every golden example goes through the API, including
    # the probe row with an unseen category (the default, reject, is
    # tested by test_bad_predict_requests_get_a_json_error_and_change_nothing[unknown_category])
    agent = agents.start({"unknown_categories": "accept"})
    all_rows = golden_rows(v1, known_only=False)
    assert len(all_rows) == 10 and any(r["machine_type"] not in ("L", "M", "H") for r in all_rows)
    with client(agent) as c:
        # nothing deployed yet: alive, not ready, predictions refused with a JSON 503
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        assert error_of(predict(c, golden_rows(v1)))["code"] == "no_model"
        # no model, no classes to check a label against: none is taken
        r = c.post("/v1/feedback", json={"request_id": "a" * 32, "label": 1}, headers=FEEDBACK)
        assert r.status_code == 503 and error_of(r)["code"] == "no_model"
        assert status(c)["active"] is None

        result = deploy(c, v1)
        assert result["version"] == V1 and result["previous"] is None
        assert result["probation"] is False  # the first model has nothing to fall back to
        assert c.get("/readyz").json() == {"status": "ready", "model_version": V1}

        # the golden examples come back exactly
        body = predict_golden(c, v1, known_only=False)
        rid = body["request_id"]
        assert isinstance(rid, str) and len(rid) >= 16

        # labels are a privilege: the predict token (what plant clients hold) may not give them
        refused = c.post("/v1/feedback", json={"request_id": rid, "label": 0}, headers=PREDICT)
        assert refused.status_code == 403 and "feedback token" in error_of(refused)["message"]
        # ... and the feedback token may not predict
        assert predict(c, all_rows[:1], token=FEEDBACK_TOKEN).status_code == 403
        # feedback on every row of that request, and on one row of another
        fb = c.post("/v1/feedback", json={"request_id": rid, "label": 1}, headers=FEEDBACK)
        assert fb.status_code == 200, fb.text
        assert fb.json() == {"updated": len(body["predictions"])}
        two = predict(c, all_rows[:2]).json()
        fb = c.post(
            "/v1/feedback",
            json={"request_id": two["request_id"], "label": "0", "row": 1},
            headers=FEEDBACK,
        )
        assert fb.json() == {"updated": 1}
        missing = c.post(
            "/v1/feedback", json={"request_id": "f" * 32, "label": 1}, headers=FEEDBACK
        )
        assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_request"
        for bad in (7, "yes", "01"):  # not a class of the model: refused, never stored
            not_a_class = c.post(
                "/v1/feedback",
                json={"request_id": two["request_id"], "label": bad},
                headers=FEEDBACK,
            )
            assert not_a_class.status_code == 422 and "label" in error_fields(not_a_class)

        singles = [predict(c, all_rows[i : i + 1]).json()["request_id"] for i in range(5)]

        # the log holds every row, with its features, prediction and feedback
        logged = read_logs(c)["items"]
        n_rows = len(body["predictions"]) + 2 + 5
        assert len(logged) == n_rows
        first = [row for row in logged if row["request_id"] == rid]
        assert [row["row"] for row in first] == list(range(len(body["predictions"])))
        for row, inputs, pred in zip(first, all_rows, body["predictions"], strict=True):
            assert row["feedback"] == "1" and row["feedback_ts"] is not None
            assert row["model_version"] == V1
            assert row["features"] == inputs
            assert row["label"] == str(pred["label"])
            expected = list(pred["probabilities"].values())
            assert row["probabilities"] == pytest.approx(expected, abs=1e-6)
        second = [row for row in logged if row["request_id"] == two["request_id"]]
        assert [(row["row"], row["feedback"]) for row in second] == [(0, None), (1, "0")]
        assert {row["request_id"] for row in logged} == {rid, two["request_id"], *singles}

        # paging by cursor visits every row once, in order, over several requests
        cursor, seen, pages = 0, [], 0
        while True:
            page = read_logs(c, after=cursor, limit=4)
            if not page["items"]:
                assert page["next"] == cursor
                break
            pages += 1
            assert page["next"] == page["items"][-1]["id"]
            seen += [row["id"] for row in page["items"]]
            cursor = page["next"]
        assert pages == -(-n_rows // 4) >= 4
        assert seen == [row["id"] for row in logged] == sorted(set(seen))
        assert read_logs(c, after=logged[-3]["id"])["items"] == logged[-2:]

        # deploy v2: active, v1 previous, on probation
        result = deploy(c, v2)
        assert result["version"] == V2 and result["previous"] == V1 and result["probation"] is True
        st = status(c)
        assert st["active"]["version"] == V2 and st["previous"] == V1
        assert st["probation"]["version"] == V2
        assert set(st["versions"]) == {V1, V2}
        predict_golden(c, v2, known_only=False)

        # roll back to the previous version
        r = c.post("/v1/rollback", json={}, headers=DEPLOY)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == V1 and r.json()["previous"] == V2
        st = status(c)
        assert st["active"]["version"] == V1 and st["previous"] == V2 and st["probation"] is None
        predict_golden(c, v1, known_only=False)

        # roll forward to a named version
        r = c.post("/v1/rollback", json={"version": V2, "reason": "forward"}, headers=DEPLOY)
        assert r.status_code == 200, r.text
        st = status(c)
        assert st["active"]["version"] == V2 and st["previous"] == V1
        predict_golden(c, v2, known_only=False)

        # unknown and already-active targets are JSON errors that change nothing
        r = c.post("/v1/rollback", json={"version": "7.7.7"}, headers=DEPLOY)
        assert r.status_code == 404 and error_of(r)["code"] == "unknown_version"
        r = c.post("/v1/rollback", json={"version": "../versions"}, headers=DEPLOY)
        assert r.status_code == 404 and error_of(r)["code"] == "unknown_version"
        r = c.post("/v1/rollback", json={"version": V2}, headers=DEPLOY)
        assert r.status_code == 409 and error_of(r)["code"] == "already_active"
        st = status(c)
        assert st["active"]["version"] == V2 and st["previous"] == V1
        events = [(e["event"], e["version"], e.get("from")) for e in st["history"]]
        assert events == [
            ("activate", V1, None),
            ("activate", V2, V1),
            ("rollback", V1, V2),
            ("rollback", V2, V1),
        ]
        assert st["history"][-1]["reason"] == "forward"
        assert st["requests"]["/v1/predict 200"] == 10

        # metrics (the log-size gauge is refreshed once a second)
        logged_rows = n_rows + 3 * len(all_rows)
        deadline = time.monotonic() + 10
        while True:
            text, samples = metric_samples(c)
            rows = sample(samples, "edgeops_inference_log_rows")
            if rows == logged_rows or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for name in (
            "edgeops_requests_total",
            "edgeops_model_info",
            "edgeops_predictions_total",
            "edgeops_request_seconds_bucket",
            "edgeops_inference_log_rows",
        ):
            assert name in text
        assert sample(samples, "edgeops_model_info", version=V2, model="plant-failure") == 1.0
        assert sample(samples, "edgeops_model_info", version=V1, model="plant-failure") is None
        assert sample(samples, "edgeops_requests_total", endpoint="/v1/predict", status="200") == 10
        assert sample(samples, "edgeops_requests_total", endpoint="/v1/predict", status="503") == 1
        assert sample(samples, "edgeops_requests_total", endpoint="/v1/predict", status="403") == 1
        assert sample(samples, "edgeops_requests_total", endpoint="/v1/bundles", status="201") == 2
        n_pred = sum(v for (n, _), v in samples.items() if n == "edgeops_predictions_total")
        assert n_pred == logged_rows
        count = sample(samples, "edgeops_request_seconds_count", endpoint="/v1/predict")
        assert (
            count
            == sample(samples, "edgeops_request_seconds_bucket", endpoint="/v1/predict", le="+Inf")
            == 12
        )
        assert rows == logged_rows


# ---- 2. rejected uploads change nothing -----------------------------------------------------
@pytest.fixture(scope="module")
def other_keys(tmp_path_factory) -> Path:
    key_dir = tmp_path_factory.mktemp("other-keys")
    init_keys(key_dir)
    return key_dir


@pytest.fixture(scope="module")
def candidate(bundle_dir: Path, v1: Path, signing_keys: Path, pub: Path) -> Path:
    """A valid bundle of a version the device has never seen; each rejection case damages a copy
    in exactly one way, so an agent that let the damage through would switch to it."""
    out = bundle_dir / "candidate"
    shutil.copytree(v1, out)
    resign(out, signing_keys, lambda m: m["model"].update(version="5.0.0"))
    verify_bundle(out, load_public_key(pub))  # the undamaged candidate is good
    return out


def _tampered_model(b: Path, keys: Path, other: Path) -> bytes:
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (b / "model.onnx").write_bytes(bytes(data))
    return tar_bundle(b)


def _unsigned(b: Path, keys: Path, other: Path) -> bytes:
    (b / "manifest.sig").unlink()
    return tar_bundle(b)


def _other_key(b: Path, keys: Path, other: Path) -> bytes:
    other_id = key_id(load_private_key(other / "signing.key").public_key())
    resign(b, other, lambda m: m.update(signing_key_id=other_id))
    return tar_bundle(b)


def _edited_after_signing(b: Path, keys: Path, other: Path) -> bytes:
    m = manifest_of(b)
    m["metrics"] = {"roc_auc": 0.999}
    (b / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return tar_bundle(b)


def _golden_fails(b: Path, keys: Path, other: Path) -> bytes:
    def edit(m: dict[str, Any]) -> None:
        p0, p1 = m["golden"]["examples"][0]["probabilities"]
        m["golden"]["examples"][0]["probabilities"] = [p0 - 0.01, p1 + 0.01]

    resign(b, keys, edit)  # a valid signature by the trusted key: only the golden check fails
    return tar_bundle(b)


def _not_an_archive(b: Path, keys: Path, other: Path) -> bytes:
    return b"this is not a tarball, just some bytes\n" * 20


def _garbage_gzip(b: Path, keys: Path, other: Path) -> bytes:
    return b"\x1f\x8b\x08\x00" + random.Random(3).randbytes(4000)


def _path_traversal(b: Path, keys: Path, other: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for f in sorted(b.iterdir()):
            tf.add(f, arcname=f.name)
        data = b"owned\n"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _symlink(b: Path, keys: Path, other: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for f in sorted(b.iterdir()):
            if f.name != "model.onnx":
                tf.add(f, arcname=f.name)
        info = tarfile.TarInfo("model.onnx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


REJECTIONS = {
    # case: (damage, content type, HTTP status, error code)
    "tampered_model": (_tampered_model, "application/gzip", 422, "hash_mismatch"),
    "unsigned": (_unsigned, "application/gzip", 422, "missing_signature"),
    "signed_by_other_key": (_other_key, "application/gzip", 422, "wrong_key"),
    "manifest_edited": (_edited_after_signing, "application/gzip", 422, "bad_signature"),
    "golden_fails": (_golden_fails, "application/gzip", 422, "golden_check_failed"),
    "not_an_archive": (_not_an_archive, "application/gzip", 400, "bad_archive"),
    "garbage_gzip": (_garbage_gzip, "application/octet-stream", 400, "bad_archive"),
    "path_traversal": (_path_traversal, "application/gzip", 400, "bad_archive"),
    "symlink": (_symlink, "application/gzip", 400, "bad_archive"),
    "wrong_content_type": (
        lambda b, k, o: tar_bundle(b),
        "application/json",
        415,
        "unsupported_media_type",
    ),
}


@pytest.fixture(scope="module")
def serving_agent(module_agents: Agents, v1: Path, v2: Path) -> AgentProcess:
    """v1 then v2 deployed, v2 committed (probation passed): a device with history."""
    agent = module_agents.start({"probation_requests": 1})
    with client(agent) as c:
        deploy(c, v1)
        deploy(c, v2)
        predict_golden(c, v2)  # ends the probation
        st = status(c)
        assert st["probation"] is None and st["history"][-1]["event"] == "commit"
    return agent


def _device_view(st: dict[str, Any]) -> dict[str, Any]:
    return {k: st[k] for k in ("active", "previous", "probation", "versions", "history")}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejected_upload_leaves_everything_unchanged(
    case: str,
    serving_agent: AgentProcess,
    candidate: Path,
    v2: Path,
    signing_keys: Path,
    other_keys: Path,
    tmp_path: Path,
):
    damage, content_type, want_status, want_code = REJECTIONS[case]
    damaged = Path(shutil.copytree(candidate, tmp_path / "damaged"))
    body = damage(damaged, signing_keys, other_keys)
    state_dir = serving_agent.state_dir
    with client(serving_agent) as c:
        before, files_before = _device_view(status(c)), snapshot(state_dir)
        assert before["active"]["version"] == V2

        r = upload(c, body, content_type)
        assert r.status_code == want_status, r.text
        assert error_of(r)["code"] == want_code

        assert _device_view(status(c)) == before
        assert snapshot(state_dir) == files_before
        assert list((state_dir / "incoming").iterdir()) == []
        assert not (state_dir / "loading").exists()
        assert not list(state_dir.parent.rglob("escaped.txt"))
        predict_golden(c, v2)


# ---- 3. SIGKILL in the middle of a switch ----------------------------------------------------
def upload_in_background(url: str, body: bytes) -> tuple[threading.Thread, dict[str, Any]]:
    """POST a bundle from a thread; ``result`` gets ``response`` or ``error`` (agent died)."""
    result: dict[str, Any] = {}

    def send() -> None:
        try:
            with httpx.Client(base_url=url, timeout=15.0, trust_env=False) as uc:
                result["response"] = upload(uc, body)
        except httpx.HTTPError as exc:
            result["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender, result


def test_sigkill_during_upload_never_loses_the_active_model(
    agents: Agents, v1: Path, v2: Path, v3: Path
):
    """Kill the agent at a random moment of an upload, over and over: after each restart it
    serves either the old or the new version, fully, and never nothing."""
    bundles = {V1: v1, V2: v2, V3: v3}
    bodies = {v: tar_bundle(b) for v, b in bundles.items()}
    agent = agents.start({"probation_requests": 1, "keep_versions": 3})
    state_dir = agent.state_dir
    rng = random.Random(20261121)
    outcomes: Counter[str] = Counter()
    with client(agent) as c:
        deploy(c, v1)
    # time one upload the way the loop makes them (first upload after a start, from a thread)
    agent.kill()
    agent.start()
    start = time.perf_counter()
    sender, result = upload_in_background(agent.url, bodies[V2])
    sender.join(timeout=30)
    upload_seconds = time.perf_counter() - start
    assert result["response"].status_code == 201, result
    active = V2
    # half the kills are aimed at the agent's work; of the rest, half land within the upload's
    # round trip and half anywhere in 0-300 ms, before, during or after it
    window = min(0.3, upload_seconds * 1.2)
    for i in range(CRASH_ITERATIONS):
        target = rng.choice(sorted(set(bundles) - {active}))
        sender, result = upload_in_background(agent.url, bodies[target])
        if rng.random() < 0.5:
            # aim at the agent's side of the switch: wait until the upload is being written,
            # then kill within the next few tens of milliseconds (unpack, verify, commit)
            deadline = time.monotonic() + 0.3
            while not any((state_dir / "incoming").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.015))
        else:
            time.sleep(rng.uniform(0.0, window if rng.random() < 0.5 else 0.3))
        agent.kill()
        sender.join(timeout=20)
        assert not sender.is_alive()
        if any((state_dir / "incoming").iterdir()):
            outcomes["killed_mid_upload"] += 1  # an unpacked or half-verified upload was left
        agent.start()

        where = f"iteration {i}: {active} -> {target}, upload {result}"
        with client(agent) as c:
            assert c.get("/readyz").status_code == 200, where
            st = status(c)
            assert st["active"] is not None, where
            now = st["active"]["version"]
            assert now in (active, target), where
            response = result.get("response")
            if response is not None:
                # an answered upload is durable: 201 means the switch survived the kill
                assert response.status_code == 201, (where, response.text)
                assert now == target, where
            assert set(st["versions"]) <= set(bundles), where
            body = predict_golden(c, bundles[now])  # the whole model, not just its name
            assert body["model_version"] == now
        assert list((state_dir / "incoming").iterdir()) == [], where
        assert not (state_dir / "loading").exists(), where
        assert not list(state_dir.glob(".state.json.*")), where
        outcomes["switched" if now != active else "kept"] += 1
        outcomes["answered" if result.get("response") is not None else "cut"] += 1
        active = now
    print(f"crash outcomes (upload {upload_seconds * 1000:.0f} ms):", dict(outcomes))
    # the random delays hit both sides of the switch
    assert outcomes["switched"] >= 5 and outcomes["kept"] >= 5, outcomes
    assert outcomes["killed_mid_upload"] >= 1, outcomes


# ---- 4. probation: automatic rollback, and a crash while loading a new version --------------
def negative_torque_rows(bundle: Path) -> list[dict[str, Any]]:
    """Valid rows the failing bundle answers with NaN (its golden examples never go there)."""
    row = golden_rows(bundle)[0]
    return [{**row, "torque_nm": -5.0}]


def test_probation_rolls_back_a_failing_model_by_itself(agents: Agents, v1: Path, failing: Path):
    cfg = {"probation_min_requests": 5, "probation_max_error_rate": 0.2, "probation_requests": 1000}
    agent = agents.start(cfg)
    with client(agent) as c:
        deploy(c, v1)
        result = deploy(c, failing)  # passes every check: its golden examples are fine
        assert result["version"] == BAD and result["previous"] == V1 and result["probation"]
        assert predict_golden(c, failing)["model_version"] == BAD  # good rows still work

        failures = 0
        for _ in range(30):
            r = predict(c, negative_torque_rows(v1))
            if r.status_code == 200:
                break
            assert r.status_code == 500, r.text
            assert error_of(r)["code"] == "model_error"
            assert "Traceback" not in r.text
            failures += 1
        # 1 good + 4 bad requests: 5 seen (probation_min_requests), 80% errors > 20%: the
        # 4th failure triggers the rollback, the next request is answered by v1
        assert failures == 4, failures
        assert r.json()["model_version"] == V1

        st = status(c)
        assert st["active"]["version"] == V1 and st["previous"] == BAD
        assert st["probation"] is None
        last = st["history"][-1]
        assert last["event"] == "rollback" and last["by"] == "agent", last
        assert last["version"] == V1 and last["from"] == BAD
        assert "error rate" in last["reason"], last
        for _ in range(5):
            r = predict(c, negative_torque_rows(v1))
            assert r.status_code == 200 and r.json()["model_version"] == V1, r.text
        predict_golden(c, v1)
        _, samples = metric_samples(c)
        assert sample(samples, "edgeops_rollbacks_total", trigger="probation") == 1.0
        assert sample(samples, "edgeops_model_info", version=V1, model="plant-failure") == 1.0

    # the decision is durable
    agent.kill()
    agent.start()
    with client(agent) as c:
        assert active_version(c) == V1
        assert status(c)["probation"] is None
        predict_golden(c, v1)


def test_crash_while_loading_a_version_on_probation_boots_the_previous_one(
    agents: Agents, v1: Path, v2: Path
):
    """Boot writes the ``loading`` marker before it loads the active version and removes it
    after. Finding the marker at the next start means the last boot died loading that version:
    if it is still on probation the agent goes back to the previous version and says why."""
    agent = agents.start({"probation_requests": 1000})
    state_dir = agent.state_dir
    with client(agent) as c:
        deploy(c, v1)
        assert deploy(c, v2)["probation"] is True
        assert status(c)["probation"]["version"] == V2
    agent.kill()
    (state_dir / "loading").write_text(V2)  # as if the agent had died loading v2 at start-up
    agent.start()
    with client(agent) as c:
        st = status(c)
        assert st["active"]["version"] == V1 and st["previous"] == V2, st
        assert st["probation"] is None
        last = st["history"][-1]
        assert last["event"] == "rollback" and last["by"] == "agent", last
        assert last["version"] == V1 and last["from"] == V2
        assert "died while loading 2.0.0" in last["reason"], last
        assert not (state_dir / "loading").exists()
        predict_golden(c, v1)
        _, samples = metric_samples(c)
        assert sample(samples, "edgeops_rollbacks_total", trigger="crash") == 1.0

    # a stale marker for a committed version is no reason to roll back: the agent loads it
    agent.kill()
    (state_dir / "loading").write_text(V1)
    agent.start()
    with client(agent) as c:
        st = status(c)
        assert st["active"]["version"] == V1 and st["previous"] == V2
        assert st["history"][-1]["event"] == "rollback"  # nothing new recorded
        assert not (state_dir / "loading").exists()
        predict_golden(c, v1)


# ---- 5. auth and request limits ---------------------------------------------------------------
@pytest.fixture(scope="module")
def limited_agent(module_agents: Agents, v1: Path) -> AgentProcess:
    agent = module_agents.start({"max_body_bytes": 2048, "max_rows": 3})
    with client(agent) as c:
        deploy(c, v1)
    return agent


ENDPOINTS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("POST", "/v1/bundles"),
    ("POST", "/v1/rollback"),
    ("GET", "/v1/logs"),
    ("GET", "/v1/status"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_requests_without_a_valid_token_are_refused(
    limited_agent: AgentProcess, method: str, path: str
):
    with client(limited_agent) as c:
        for headers in ({}, auth("not-the-token"), {"Authorization": DEPLOY_TOKEN}):
            r = c.request(
                method,
                path,
                headers={**headers, "Content-Type": "application/json"},
                content=b"{}" if method == "POST" else None,
            )
            assert r.status_code == 401, (headers, r.text)
            assert error_of(r)["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("POST", "/v1/bundles", PREDICT_TOKEN),
        ("POST", "/v1/rollback", PREDICT_TOKEN),
        ("GET", "/v1/logs", PREDICT_TOKEN),
    ],
)
def test_the_predict_token_cannot_deploy_roll_back_or_read_logs(
    limited_agent: AgentProcess, v1: Path, method: str, path: str, token: str
):
    with client(limited_agent) as c:
        ctype = "application/gzip" if path == "/v1/bundles" else "application/json"
        r = c.request(
            method,
            path,
            headers={**auth(token), "Content-Type": ctype},
            content=b"{}" if method == "POST" else None,
        )
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "forbidden"
        assert active_version(c) == V1
        # status is open to both tokens; the deploy (operator) token may also predict
        assert c.get("/v1/status", headers=auth(token)).status_code == 200
        assert predict(c, golden_rows(v1, n=3), token=DEPLOY_TOKEN).status_code == 200


def _row(**changes: Any) -> dict[str, Any]:
    row = {
        "machine_type": "M",
        "product_line": "pump",
        "air_temp_k": 300.1,
        "process_temp_k": 310.2,
        "spindle_speed_rpm": 1500.0,
        "torque_nm": 40.0,
        "tool_wear_min": 100.0,
        "vibration_mm_s": 2.5,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def _json_body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


ROW_JSON = json.dumps(_row())
BAD_PREDICTS = {
    # case: (body, content type, status, error code, fields the error must name)
    "body_over_limit": (
        _json_body({"rows": [_row(product_line="x" * 3000)]}),
        "application/json",
        413,
        "body_too_large",
        set(),
    ),
    "too_many_rows": (
        _json_body({"rows": [_row()] * 4}),
        "application/json",
        413,
        "too_many_rows",
        set(),
    ),
    "malformed_json": (
        b'{"rows": [' + ROW_JSON.encode(),
        "application/json",
        400,
        "invalid_json",
        set(),
    ),
    "empty_body": (b"", "application/json", 400, "invalid_json", set()),
    "not_utf8": (b'{"rows": "\xff\xfe"}', "application/json", 400, "invalid_json", set()),
    "wrong_content_type": (
        _json_body({"rows": [_row()]}),
        "text/plain",
        415,
        "unsupported_media_type",
        set(),
    ),
    "form_content_type": (
        b"rows=1",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        set(),
    ),
    "nan_literal": (
        ('{"rows": [' + ROW_JSON.replace("40.0", "NaN") + "]}").encode(),
        "application/json",
        422,
        "invalid_value",
        set(),
    ),
    "infinity_literal": (
        ('{"rows": [' + ROW_JSON.replace("40.0", "-Infinity") + "]}").encode(),
        "application/json",
        422,
        "invalid_value",
        set(),
    ),
    "string_for_number": (
        _json_body({"rows": [_row(torque_nm="40")]}),
        "application/json",
        422,
        "invalid_rows",
        {"torque_nm"},
    ),
    "bool_for_number": (
        _json_body({"rows": [_row(tool_wear_min=True)]}),
        "application/json",
        422,
        "invalid_rows",
        {"tool_wear_min"},
    ),
    "number_for_category": (
        _json_body({"rows": [_row(machine_type=1)]}),
        "application/json",
        422,
        "invalid_rows",
        {"machine_type"},
    ),
    "huge_number": (
        _json_body({"rows": [_row(torque_nm=1e300)]}),
        "application/json",
        422,
        "invalid_rows",
        {"torque_nm"},
    ),
    "null_not_allowed": (
        _json_body({"rows": [_row(torque_nm=None)]}),
        "application/json",
        422,
        "invalid_rows",
        {"torque_nm"},
    ),
    "missing_field": (
        _json_body({"rows": [_row(tool_wear_min=...)]}),
        "application/json",
        422,
        "invalid_rows",
        {"tool_wear_min"},
    ),
    "extra_field": (
        _json_body({"rows": [_row(colour="red")]}),
        "application/json",
        422,
        "invalid_rows",
        {"colour"},
    ),
    "unknown_category": (
        _json_body({"rows": [_row(machine_type="XL")]}),
        "application/json",
        422,
        "invalid_rows",
        {"machine_type"},
    ),
    "empty_rows": (_json_body({"rows": []}), "application/json", 422, "invalid_rows", {"rows"}),
    "rows_not_a_list": (
        _json_body({"rows": {"a": 1}}),
        "application/json",
        422,
        "invalid_rows",
        {"rows"},
    ),
    "no_rows_key": (
        _json_body({"data": [_row()]}),
        "application/json",
        422,
        "invalid_request",
        {"rows"},
    ),
    "extra_top_level_key": (
        _json_body({"rows": [_row()], "debug": True}),
        "application/json",
        422,
        "invalid_request",
        {"debug"},
    ),
    "not_an_object": (_json_body([_row()]), "application/json", 422, "invalid_request", {"rows"}),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTS))
def test_bad_predict_requests_get_a_json_error_and_change_nothing(
    limited_agent: AgentProcess, v1: Path, case: str
):
    body, content_type, want_status, want_code, want_fields = BAD_PREDICTS[case]
    with client(limited_agent) as c:
        r = c.post("/v1/predict", content=body, headers={**PREDICT, "Content-Type": content_type})
        assert r.status_code == want_status, r.text
        err = error_of(r)
        assert err["code"] == want_code, err
        assert want_fields <= error_fields(r), err
        assert "Traceback" not in r.text
        # the agent keeps serving
        predict_golden(c, v1, n=3)


def test_oversized_chunked_body_is_refused(limited_agent: AgentProcess, v1: Path):
    """No Content-Length (chunked): the agent counts while it reads and stops at the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"rows": [' + ROW_JSON.encode()
        for _ in range(20):
            yield b"," + ROW_JSON.encode()
        yield b"]}"

    with client(limited_agent) as c:
        r = c.post(
            "/v1/predict", content=chunks(), headers={**PREDICT, "Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert error_of(r)["code"] == "body_too_large"
        predict_golden(c, v1, n=3)


def test_limits_still_let_good_requests_through(limited_agent: AgentProcess, v1: Path):
    with client(limited_agent) as c:
        r = predict(c, [_row(), _row(air_temp_k=None, vibration_mm_s=None), _row(machine_type="H")])
        assert r.status_code == 200, r.text  # exactly max_rows rows, nulls where allowed
        assert len(r.json()["predictions"]) == 3
        bad_feedback = c.post(
            "/v1/feedback", json={"request_id": "", "label": None, "x": 1}, headers=FEEDBACK
        )
        assert bad_feedback.status_code == 422
        assert {"request_id", "label", "x"} <= error_fields(bad_feedback)
        bad_logs = c.get("/v1/logs", params={"limit": 0}, headers=DEPLOY)
        assert bad_logs.status_code == 422 and error_of(bad_logs)["code"] == "invalid_request"
        unknown = c.get("/v1/nothing-here")
        assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
        # after every bad request above and in the other tests: still the same model, serving
        assert c.get("/readyz").status_code == 200
        assert active_version(c) == V1
        predict_golden(c, v1, n=3)


# ---- 6. inference log retention and data minimisation ----------------------------------------
def test_inference_log_forgets_rows_older_than_the_retention(agents: Agents, v1: Path):
    retention = 2.0
    agent = agents.start(
        {"log_retention_days": retention / 86400, "log_purge_interval_seconds": 0.5}
    )
    with client(agent) as c:
        deploy(c, v1)
        old = [predict_golden(c, v1, n=2)["request_id"] for _ in range(3)]
        first = read_logs(c)["items"]
        assert {row["request_id"] for row in first} == set(old) and len(first) == 6
        time.sleep(retention + 1.5)
        new = predict_golden(c, v1, n=2)["request_id"]
        now = time.time()
        items = read_logs(c)["items"]
        assert {row["request_id"] for row in items} == {new}, items
        assert all(row["ts"] >= now - retention - 0.5 for row in items), items
        assert min(row["id"] for row in items) > max(row["id"] for row in first)
        # feedback on a purged request is a 404, not a silent success
        r = c.post("/v1/feedback", json={"request_id": old[0], "label": 1}, headers=FEEDBACK)
        assert r.status_code == 404 and error_of(r)["code"] == "unknown_request"


def test_inference_log_drops_and_hashes_configured_fields(agents: Agents, v1: Path):
    agent = agents.start({"log_drop_fields": ["product_line"], "log_hash_fields": ["machine_type"]})
    mixed = [_row(machine_type=t) for t in ("L", "M", "H")]
    rows = golden_rows(v1) + mixed
    with client(agent) as c:
        deploy(c, v1)
        body = predict_golden(c, v1)  # the model itself still sees every field
        r = predict(c, mixed)
        assert r.status_code == 200, r.text
        items = read_logs(c)["items"]
    assert [row["request_id"] for row in items] == [body["request_id"]] * (len(rows) - 3) + [
        r.json()["request_id"]
    ] * 3
    hashes: dict[str, str] = {}
    for row, sent in zip(items, rows, strict=True):
        logged = row["features"]
        assert "product_line" not in logged
        assert logged["machine_type"].startswith("sha256:"), logged
        assert sent["machine_type"] not in logged["machine_type"][len("sha256:") :]
        # the same value always hashes the same (rows can still be grouped), different differ
        assert (
            hashes.setdefault(sent["machine_type"], logged["machine_type"])
            == logged["machine_type"]
        )
        rest = {k: v for k, v in sent.items() if k not in ("product_line", "machine_type")}
        assert {k: v for k, v in logged.items() if k != "machine_type"} == rest
    assert len(hashes) == 3 and len(set(hashes.values())) == 3, hashes


# ---- 7. collecting the log by cursor: rows once, late feedback on its own cursor --------------
def _collect(
    read: Callable[..., dict[str, Any]], after: int, limit: int, log_id: str, last: int
) -> tuple[list[dict[str, Any]], list[int], int]:
    """Page ``read`` (AgentClient.logs or .feedback_log) to the end: (items, page sizes, cursor)."""
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor = after
    while True:
        page = read(after=cursor, limit=limit)
        assert set(page) == {"items", "next", "last", "log_id"}, page
        assert page["log_id"] == log_id and page["last"] == last, page
        if not page["items"]:
            assert page["next"] == cursor
            return items, sizes, cursor
        sizes.append(len(page["items"]))
        items += page["items"]
        assert page["next"] > cursor
        cursor = page["next"]


def test_logs_and_late_feedback_are_collected_exactly_once_by_cursor(
    agents: Agents, v1: Path, monkeypatch: pytest.MonkeyPatch
):
    from edgeops.deploy.targets import AgentClient, Target

    monkeypatch.setenv("EDGEOPS_TEST_COLLECT_TOKEN", DEPLOY_TOKEN)
    agent = agents.start()
    api = AgentClient(Target(name="edge", url=agent.url, token_env="EDGEOPS_TEST_COLLECT_TOKEN"))
    empty = api.logs()
    log_id = empty["log_id"]
    assert isinstance(log_id, str) and len(log_id) == 32
    assert empty == {"items": [], "next": 0, "last": 0, "log_id": log_id}
    assert api.feedback_log() == {"items": [], "next": 0, "last": 0, "log_id": log_id}
    with client(agent) as c:
        deploy(c, v1)
        big = predict(c, (golden_rows(v1) * 4)[:30]).json()["request_id"]
        small = [predict(c, golden_rows(v1, n=2)).json()["request_id"] for _ in range(3)]

        # the rows, by id cursor, in pages of 7: each once, none with feedback yet
        rows, sizes, cursor = _collect(api.logs, 0, 7, log_id, last=36)
        assert sizes == [7, 7, 7, 7, 7, 1] and cursor == 36
        assert [r["id"] for r in rows] == list(range(1, 37))
        assert [r["request_id"] for r in rows] == [big] * 30 + [s for s in small for _ in (0, 1)]
        assert all(r["feedback"] is None for r in rows)

        # ground truth arrives after the rows were collected
        assert api.feedback(big, 1) == {"updated": 30}
        assert api.feedback(small[0], "0", row=1) == {"updated": 1}
        assert api.feedback(small[2], 1) == {"updated": 2}
        # nothing new on the id cursor ...
        assert api.logs(after=cursor) == {"items": [], "next": cursor, "last": 36, "log_id": log_id}
        # ... every feedback event on the feedback cursor, once, the 30-row one in one page
        events, sizes, fcursor = _collect(api.feedback_log, 0, 7, log_id, last=3)
        assert sizes == [30, 3] and fcursor == 3
        assert set(events[0]) == {"id", "request_id", "row", "feedback", "feedback_ts", "seq"}
        assert [(e["id"], e["feedback"], e["seq"]) for e in events] == (
            [(i, "1", 1) for i in range(1, 31)] + [(32, "0", 2), (35, "1", 3), (36, "1", 3)]
        )
        assert all(e["feedback_ts"] is not None for e in events)
        by_id = {r["id"]: r for r in rows}
        assert all(
            (by_id[e["id"]]["request_id"], by_id[e["id"]]["row"]) == (e["request_id"], e["row"])
            for e in events
        )
        # the same with a limit larger than the log: one page
        assert _collect(api.feedback_log, 0, 5000, log_id, last=3)[0] == events

        # a corrected label comes again, on a new seq, and only it
        assert api.feedback(small[0], "1", row=1) == {"updated": 1}
        again = api.feedback_log(after=fcursor)
        assert [(e["id"], e["feedback"], e["seq"]) for e in again["items"]] == [(32, "1", 4)]
        assert again["next"] == again["last"] == 4
        _, samples = metric_samples(c)
        assert (
            sample(samples, "edgeops_requests_total", endpoint="/v1/logs/feedback", status="200")
            or 0
        ) >= 5

    # a restart keeps the log, its id and both cursors
    agent.stop()
    agent.start()
    assert api.logs(after=36) == {"items": [], "next": 36, "last": 36, "log_id": log_id}
    assert api.feedback_log(after=4) == {"items": [], "next": 4, "last": 4, "log_id": log_id}
    # a wiped log (agent reset) has a new id: the collector's cursors no longer apply
    agent.stop()
    for p in agent.state_dir.glob("inference.db*"):
        p.unlink()
    agent.start()
    reset = api.logs()
    assert reset["log_id"] != log_id and reset["last"] == 0 and reset["items"] == []
    assert api.feedback_log()["last"] == 0


@pytest.mark.parametrize(
    ("token", "status_code", "code"),
    [
        (None, 401, "unauthorized"),
        ("not-the-token", 401, "unauthorized"),
        (PREDICT_TOKEN, 403, "forbidden"),
    ],
)
def test_the_feedback_log_needs_the_deploy_token(
    limited_agent: AgentProcess, token: str | None, status_code: int, code: str
):
    with client(limited_agent) as c:
        r = c.get("/v1/logs/feedback", headers=auth(token) if token else {})
        assert r.status_code == status_code, r.text
        assert error_of(r)["code"] == code
        if status_code == 401:
            assert r.headers["www-authenticate"] == "Bearer"
        # with the deploy token: the same query bounds as /v1/logs
        for params in ({"limit": 0}, {"limit": 5001}, {"after": -1}, {"after": "x"}):
            bad = c.get("/v1/logs/feedback", params=params, headers=DEPLOY)
            assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_request", params
        ok = c.get("/v1/logs/feedback", headers=DEPLOY)
        assert ok.status_code == 200 and set(ok.json()) == {"items", "next", "last", "log_id"}


# ---- 8. any text in the headers that carry who and why ----------------------------------------
def test_any_unicode_reason_and_actor_reach_the_history_exactly(agents: Agents, v1: Path, v2: Path):
    """The deploy client carries reason and actor in headers (RFC 8187 when they are not plain
    ASCII): a Polish name, an en dash and a newline arrive as they were written."""
    from edgeops.deploy.targets import AgentClient, Target

    agent = agents.start()
    token = agents.root / "deploy.token"
    token.write_text(DEPLOY_TOKEN + "\n")
    api = AgentClient(Target("line-1", agent.url, token_file=str(token)))
    actor, reason = "Łukasz Dvořák", "hot fix – line 2\nsecond line: 温度"
    api.upload(tar_bundle(v1), reason="first", actor="prefect")
    api.upload(tar_bundle(v2), reason=reason, actor=actor)
    api.rollback(None, reason="zurück – Kühlung", actor="Zoë Ørsted")
    history = api.status()["history"]
    switched = [h for h in history if h["version"] == V2 and h["event"] == "activate"][-1]
    assert (switched["by"], switched["reason"]) == (actor, reason)
    back = history[-1]
    assert (back["event"], back["by"], back["reason"]) == (
        "rollback",
        "Zoë Ørsted",
        "zurück – Kühlung",
    )
    # one log line per switch: the newline is escaped, it cannot forge a second line
    lines = agent.log_path.read_text(encoding="utf-8").splitlines()
    assert any("by Łukasz Dvořák: hot fix – line 2\\nsecond line: 温度" in line for line in lines)
    assert not any(line.startswith("second line") for line in lines)


# ---- 9. files only the agent's user can read, however it was started ---------------------------
def test_the_agent_keeps_its_state_and_log_private_without_systemd(
    agents: Agents, v1: Path
) -> None:
    """Started from a shell with umask 022, over a state directory and an inference log that
    an earlier start left readable by everyone: both are the owner's only once it serves."""
    import os
    import sqlite3
    import stat

    agent = AgentProcess(agents.root / "open-state", agents.public_key)
    agent.state_dir.mkdir(mode=0o755)
    os.chmod(agent.state_dir, 0o755)
    with sqlite3.connect(agent.state_dir / "inference.db") as db:  # an earlier start's log
        db.execute("CREATE TABLE earlier (x)")
    os.chmod(agent.state_dir / "inference.db", 0o644)
    old = os.umask(0o022)  # the child inherits it: a login shell's usual umask
    try:
        agents.started.append(agent.start())
    finally:
        os.umask(old)
    with client(agent) as c:
        deploy(c, v1)
        assert predict(c, golden_rows(v1, n=2)).status_code == 200
        time.sleep(1.5)  # the log writer's batch
    modes = {
        p.relative_to(agent.state_dir).as_posix() or ".": stat.S_IMODE(p.stat().st_mode)
        for p in [agent.state_dir, *agent.state_dir.rglob("*")]
    }
    assert modes["."] == 0o700 and modes["versions"] == 0o700, modes
    assert modes["inference.db"] == 0o600, modes
    assert all(not m & 0o077 for m in modes.values()), modes  # nothing for group or others

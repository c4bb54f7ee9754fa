"""Runs from the Prefect UI: `convoforge serve` registers the deployments; a run created through
the API exactly as the UI's Run button creates it is executed and lands in the warehouse; the Run
form renders the typed parameters (headless Chromium)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import fake_roles_toml, interruptible
from tests.doubles.fake_openai import FakeOpenAI
from warehouse.store import Warehouse

CONFIG = """
name = "uitest"
[warehouse]
root = "{root}"
[topics]
limit_meta_topics = 1
subtopics_per_topic = 2
[questions]
per_subtopic = 2
[dialogues]
rounds_min = 2
rounds_max = 2
"""


@pytest.fixture(scope="module")
def fake_module():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(scope="module")
def served(tmp_path_factory, fake_module, prefect_server):
    """One `convoforge serve` for the module, as a user would leave it running."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg_path = tmp / "serve.toml"
    cfg_path.write_text(CONFIG.format(root=tmp / "wh") + fake_roles_toml(fake_module.url))
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "convoforge.cli", "serve", "--config", str(cfg_path)],
        env={**os.environ, "PREFECT_API_URL": prefect_server}, cwd=tmp,
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=interruptible,
    )  # fmt: skip
    api = httpx.Client(base_url=prefect_server, timeout=10)
    deadline = time.monotonic() + 90
    deps = {}
    while len(deps) < 2:
        assert proc.poll() is None, (tmp / "serve.log").read_text()
        assert time.monotonic() < deadline, "deployments never registered"
        r = api.post(
            "/deployments/filter", json={"deployments": {"tags": {"all_": ["convoforge"]}}}
        )
        deps = {d["name"]: d for d in r.json()}
        time.sleep(0.5)
    yield api, deps, tmp / "wh"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("convoforge serve did not stop on Ctrl-C") from None
    finally:
        log.close()


def _wait_final(api: httpx.Client, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/flow_runs/{run_id}").json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish: {run['state']}")


def test_run_button_starts_a_build_that_completes(served, fake_module):
    fake = fake_module
    api, deps, root = served
    build = deps["build"]
    params = build["parameters"]["config"]
    assert params["warehouse"]["root"] == str(root)  # the form's default is runnable as is
    assert params["llm"]["assistant"]["base_url"] == fake.url
    # What the UI's "Quick run" posts: the deployment's own defaults, a scheduled state.
    r = api.post(
        f"/deployments/{build['id']}/create_flow_run",
        json={"state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"}},
    )
    assert r.status_code == 201, r.text
    run = _wait_final(api, r.json()["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    wh = Warehouse(root)
    assert wh.query("SELECT count(*) AS n FROM dataset").to_pylist() == [{"n": 4}]
    runs = wh.query("SELECT status FROM runs").to_pylist()
    assert runs == [{"status": "completed"}]
    arts = api.post(
        "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    ).json()
    kinds = {a["type"] for a in arts}
    assert "markdown" in kinds and "progress" in kinds, arts
    summary = next(a for a in arts if a["key"] == "run-summary")
    assert "| dialogues | 4 |" in summary["data"]
    progress = [a for a in arts if a["type"] == "progress"]
    assert {a["key"] for a in progress} >= {"progress-dialogues"}
    assert all(a["data"] == 100.0 for a in progress)


def test_backfill_deployment_with_form_parameters(served):
    api, deps, root = served
    dep = deps["backfill"]
    count = "SELECT count(*) AS n FROM dataset"
    before = Warehouse(root).query(count).to_pylist()[0]["n"]  # 4 if the build test ran first
    params = dict(dep["parameters"])
    params["target"] = {**params["target"], "target_dialogues": before + 2}
    r = api.post(
        f"/deployments/{dep['id']}/create_flow_run",
        json={"parameters": params, "state": {"type": "SCHEDULED"}},
    )
    run = _wait_final(api, r.json()["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    # The backfill made exactly the 2 missing dialogues.
    assert Warehouse(root).query(count).to_pylist() == [{"n": before + 2}]
    runs = Warehouse(root).query("SELECT summary_json FROM runs ORDER BY created_at").to_pylist()
    assert json.loads(runs[-1]["summary_json"])["stages"]["dialogues"]["rows_written"] == 2


def test_run_form_renders_typed_parameters(served, prefect_server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian's chromium is missing: `make browser` installs it"
    api, deps, _ = served
    ui = prefect_server.removesuffix("/api")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{ui}/deployments/deployment/{deps['build']['id']}/run", timeout=60000)
        page.wait_for_selector("text=Rounds Min", timeout=60000)
        text = page.inner_text("body")
        structured = page.locator("text=json_schema").count()
        page.screenshot(path=str(tmp_path / "run-form.png"), full_page=True)
        browser.close()
    for field in (
        "config (Optional)",
        "Seed",
        "Warehouse",
        "Rounds Min",
        "Rounds Max",
        "Budget Usd",
        "Concurrency",
        "Meta Topics",
        "Assistant",
        "Base Url",
        "Max Tokens",
    ):
        assert field in text, f"the Run form does not show {field!r}"
    assert structured >= 4, "the Literal field of each role should render as a choice"

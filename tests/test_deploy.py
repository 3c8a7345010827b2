"""The deploy files, checked offline: they parse, name real commands, settings and endpoints."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import aiohttp
import yaml

from assetd.config import Settings
from assetd.daemon.cli import app as assetd_app
from assetd.daemon.embedded import free_port
from assetd.daemon.http import HttpServer
from assetd.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_yaml_files_parse() -> None:
    """compose and Kubernetes files are valid YAML (every document)."""
    files = [DEPLOY / "compose.yaml", *sorted((DEPLOY / "k8s").glob("*.yaml"))]
    for f in files:
        docs = list(yaml.safe_load_all(f.read_text()))
        assert docs and all(d for d in docs), f
    kinds = [d["kind"] for d in yaml.safe_load_all((DEPLOY / "k8s" / "assetd.yaml").read_text())]
    assert kinds == ["ConfigMap", "Secret", "Deployment", "Service"]


def test_image_command_exists_in_the_package() -> None:
    """The Dockerfile runs the ``assetd`` console script's ``run`` command, as do compose,
    Kubernetes and systemd."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["assetd"] == "assetd.daemon.cli:main"
    docker = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["assetd"]' in docker and 'CMD ["run"]' in docker
    commands = {c.name or (c.callback.__name__ if c.callback else "")
                for c in assetd_app.registered_commands}
    assert "run" in commands
    assert "ExecStart=/opt/assetd/venv/bin/assetd run" in \
        (DEPLOY / "systemd" / "assetd.service").read_text()
    deployment = list(yaml.safe_load_all((DEPLOY / "k8s" / "assetd.yaml").read_text()))[2]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["run"]


def test_every_assetd_variable_in_deploy_files_is_a_setting() -> None:
    """No ASSETD_* name in deploy/ that the daemon would silently ignore."""
    known = {f"ASSETD_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for f in DEPLOY.rglob("*"):
        if f.is_file():
            used |= set(re.findall(r"\bASSETD_[A-Z_]+\b", f.read_text()))
    roles = {"ASSETD_DAEMON_PASSWORD", "ASSETD_PIPELINE_PASSWORD", "ASSETD_SERVICE_PASSWORD",
             "ASSETD_OPERATOR_PASSWORD", "ASSETD_CI_PASSWORD", "ASSETD_ALICE_PASSWORD",
             # nats-server's variables, not assetd's
             "ASSETD_IN", "ASSETD_OUT", "ASSETD_DLQ"}  # stream names
    used = {u for u in used if not u.startswith("ASSETD_OUT_")}  # ASSETD_OUT_<project>
    assert used - roles <= known, sorted(used - roles - known)


def test_beyond_loopback_the_deploy_files_carry_an_http_token() -> None:
    """Every deploy file that binds the HTTP port beyond loopback also passes a bearer token
    (the daemon refuses to start without one)."""
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "assetd.yaml").read_text()))
    env = {e["name"]: e.get("value") for e in docs[2]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["ASSETD_HTTP_HOST"] == "0.0.0.0" and "ASSETD_HTTP_TOKEN" not in env
    assert docs[1]["stringData"]["ASSETD_HTTP_TOKEN"], "the token comes from the secret"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["assetd-1"]["environment"]
    assert service["ASSETD_HTTP_HOST"] == "0.0.0.0"
    assert service["ASSETD_HTTP_TOKEN"] == "${ASSETD_HTTP_TOKEN:?}"
    assert "-e ASSETD_HTTP_TOKEN=" in (DEPLOY / "Dockerfile").read_text()


async def test_probes_point_at_real_endpoints() -> None:
    """The paths the probes use answer on a real HttpServer."""
    deployment = list(yaml.safe_load_all((DEPLOY / "k8s" / "assetd.yaml").read_text()))[2]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    paths = [container["livenessProbe"]["httpGet"]["path"],
             container["readinessProbe"]["httpGet"]["path"]]
    assert paths == ["/healthz", "/readyz"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "/readyz" in " ".join(compose["services"]["assetd-1"]["healthcheck"]["test"])

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    async def refresh() -> None:
        return None

    port = free_port()
    server = HttpServer(host="127.0.0.1", port=port, metrics=Metrics(), ready=ready,
                        refresh=refresh)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for path in [*paths, "/metrics"]:
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    assert r.status == 200, path
    finally:
        await server.stop()

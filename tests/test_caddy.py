"""deploy/caddy/Caddyfile run by a real Caddy in front of a real ingress: the webhook goes
through and is answered, and what the Caddyfile does not forward never reaches the ingress.

Plain HTTP on a local port stands in for the certificate Caddy would obtain for SKYTIDE_DOMAIN
(no ACME server is reachable here); the upstream `ingress:8080` (compose's service name) is
pointed at the test's ingress. Skipped where `caddy` is absent (Debian package caddy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from ops.embedded import free_port
from tests.conftest import eventually
from tests.helpers import fresh, post_webhook, settled

ROOT = Path(__file__).resolve().parent.parent
CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy not installed (Debian package caddy)")


async def _status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


@pytest.fixture
def caddy_in_front(tmp_path):
    """Factory: Caddy with the repository's Caddyfile, forwarding to `upstream`; its URL."""
    processes = []

    def start(upstream: str) -> str:
        port, admin = free_port(), free_port()
        env = {
            **os.environ,
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "SKYTIDE_DOMAIN": f"http://127.0.0.1:{port}",
        }
        adapted = subprocess.run(
            [
                CADDY,
                "adapt",
                "--config",
                str(ROOT / "deploy" / "caddy" / "Caddyfile"),
                "--adapter",
                "caddyfile",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert adapted.returncode == 0, adapted.stderr
        text = adapted.stdout
        assert text.count('"dial":"ingress:8080"') == 1, text
        config = json.loads(text.replace('"dial":"ingress:8080"', f'"dial":"{upstream}"'))
        config["admin"] = {"listen": f"127.0.0.1:{admin}"}
        (tmp_path / "caddy.json").write_text(json.dumps(config))
        processes.append(
            subprocess.Popen(
                [CADDY, "run", "--config", str(tmp_path / "caddy.json")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "caddy.log").open("w"),
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


async def test_the_caddyfile_forwards_webhooks_to_the_ingress_and_nothing_else(
    system, make_org, gupshup, deps, caddy_in_front
):
    org = await make_org("docdeck")
    async with system() as s:
        proxy = caddy_in_front(s.url.split("//")[1])
        assert await eventually(lambda: _status(proxy + "/healthz"), timeout_s=30) == 200
        status, body = await post_webhook(proxy, fresh("gupshup/gupshup_v2_text.json"))
        assert (status, body) == (200, "")
        await gupshup.wait_for_sent(1, timeout_s=15)
        await eventually(lambda: settled(deps.redis, org))
        # The development ingress serves /metrics and /readyz on its port (METRICS_PORT unset),
        # and the chat page: Caddy forwards none of them.
        for path in ("/metrics", "/readyz", "/", "/chat"):
            assert await _status(s.url + path) in (200, 405), path  # there, behind the proxy
            assert await _status(proxy + path) == 404, path
        assert await _status(proxy + "/inbox") == 200
    assert len(gupshup.sent) == 1

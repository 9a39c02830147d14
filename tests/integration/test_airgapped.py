"""Air-gapped sites: the service's main paths need nothing from the internet at run time.

`driftline up` (broker, collector, scheduler, API), HTTP ingest and the
Evidently report page run in a sandbox without a network: a fresh network
namespace with only loopback (`unshare -n`, where this runs as root), and in
any case under a guard (tests/integration/netguard) that refuses and records
every lookup or connection leaving 127.0.0.1, in every Python process of the
run. The report page must embed its scripts: a page that loads Plotly from a
CDN would be blank at an air-gapped site.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUARD = Path(__file__).parent / "netguard"
# What a browser would fetch: script files, style sheets, CSS imports and urls, frames. (The inline bundle
# names hosts in strings it never loads for these charts, e.g. Plotly's topojson default for geo maps.)
EXTERNAL = re.compile(
    rb"<script[^>]*\ssrc\s*=|<link[^>]*\shref\s*=\s*[\"']?(?:https?:)?//|@import\s+(?:url\()?\s*[\"']?(?:https?:)?//|"
    rb"url\(\s*[\"']?(?:https?:)?//|<iframe[^>]*\ssrc\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)


def network_namespace() -> list[str]:
    """A command prefix running in a new network namespace with loopback up, or [] where that is not possible."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return []
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return []
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def guarded_env(log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(GUARD), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DRIFTLINE_NET_GUARD_LOG"] = str(log)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    return env


def test_the_guard_refuses_and_records_what_leaves_the_machine(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    done = subprocess.run([sys.executable, "-c", "import urllib.request\n"
                           "try:\n    urllib.request.urlopen('https://pypi.org/simple/', timeout=5)\n"
                           "except OSError as exc:\n    print('refused', exc)\n"
                           "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1) if False else None"],
                          env=guarded_env(log), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "network guard" in done.stdout, (done.stdout, done.stderr)
    assert "getaddrinfo 'pypi.org'" in log.read_text()


@pytest.mark.slow
def test_up_ingest_and_the_report_page_run_without_a_network(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    sandbox = network_namespace()
    done = subprocess.run([*sandbox, sys.executable, "-m", "tests.integration.offline_run", str(tmp_path)],
                          cwd=ROOT, env=guarded_env(log), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    up_log = (tmp_path / "up.log").read_text()[-3000:]
    assert result["banner"].startswith("Driftline is up."), up_log
    assert result["ingested"] == [200, 200] and result["report_status"] == 200, (result, up_log)
    assert result["up_exit"] == 0, up_log
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"reached for the network (sandbox: {sandbox[:2] or 'guard only'}):\n{attempts}"
    page = Path(result["report"]).read_bytes()
    assert len(page) > 100_000 and page.count(b"<script") >= 1  # Evidently's bundle is inline
    assert EXTERNAL.search(b'<script src="https://cdn.plot.ly/plotly-2.35.2.min.js">')  # the check can fail
    assert EXTERNAL.findall(page) == [], "the report page loads resources from outside"
    # Issue 17, must-show 7: /docs renders from local assets, Authorize takes a token, Try it out answers 200.
    docs = result["docs"]
    assert docs["operations"] >= 20 and docs["try_it_out_status"] == "200", docs
    assert docs["resource_origins"] == [result["api"]], docs  # nothing from a CDN

"""README.md's walkthrough, run verbatim: its code blocks, extracted between the markers, in order.

The blocks run in a fresh folder holding `.venv` (this test's virtual environment) and the demo's
COGs in `eobatch-data/buckets/demo-data`, as after the README's first command. Bash blocks and
the Python block (fed to `.venv/bin/python`) run in one bash session, so what one step exports
the next one sees; the block marked "in the background" (`eobatch serve`) is started first and
polled until it answers. The walkthrough uses port 8000, so everything runs in a private network
namespace where no other server can hold that port (`unshare`), or on the host when it cannot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from eobatch.demo_data import write_demo_collection

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"
BACKGROUND = "<!-- walkthrough: in the background -->"


def walkthrough() -> list[tuple[str, str, bool]]:
    """(language, code, in the background) of every code block between the markers."""
    text = README.read_text()
    section = text.split("<!-- walkthrough: start -->", 1)[1].split("<!-- walkthrough: end -->")[0]
    blocks = []
    for match in re.finditer(r"(<!-- [^\n]* -->\n)?```(\w+)\n(.*?)```", section, re.S):
        blocks.append((match[2], match[3], (match[1] or "").strip() == BACKGROUND))
    return blocks


def driver(blocks: list[tuple[str, str, bool]]) -> str:
    """One bash script: the background block, a wait for its port, then every other block."""
    lines = ["set -euo pipefail", 'if [ -n "${PRIVATE_NETWORK:-}" ]; then ip link set lo up; fi']
    for language, code, background in blocks:
        if background:
            assert language == "bash"
            lines += [
                f"( {code.strip()} ) > serve.log 2>&1 &",
                "SERVE=$!",
                "trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT",
                WAIT_FOR_SERVICE,
            ]
    for language, code, background in blocks:
        if background:
            continue
        lines.append(f"echo '>>> {language} block'")
        if language == "bash":
            lines.append(code)
        else:
            assert language == "python"
            lines.append(f".venv/bin/python - <<'PYTHON'\n{code}PYTHON")
    return "\n".join(lines) + "\n"


WAIT_FOR_SERVICE = """.venv/bin/python - <<'PYTHON'
import time, httpx
deadline = time.monotonic() + 180
while True:
    try:
        if httpx.get("http://127.0.0.1:8000/healthz", timeout=2).status_code == 200:
            break
    except httpx.TransportError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("eobatch serve did not come up: " + open("serve.log").read())
    time.sleep(0.3)
PYTHON"""


def _isolated_network() -> list[str] | None:
    """The command prefix of a private network namespace, where port 8000 is always free."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    prefix = ["unshare", "--net", "--map-root-user"]
    probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def _port_8000_free() -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", 8000)) != 0


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough()
    assert [lang for lang, _, _ in blocks] == ["bash", "bash", "bash", "python", "bash", "bash"]
    assert "SentinelHubBYOC" in blocks[3][1] and "BatchProcessClient" in blocks[3][1]
    assert "SentinelHubRequest" in blocks[3][1]

    prefix = _isolated_network()
    if prefix is None and not _port_8000_free():
        if os.environ.get("CI"):
            pytest.fail("port 8000 is busy and no network namespace can be made (unshare)")
        pytest.skip("port 8000 is busy and no network namespace can be made (unshare)")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    write_demo_collection(tmp_path / "eobatch-data" / "buckets" / "demo-data")
    (tmp_path / "walkthrough.sh").write_text(driver(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOBATCH_", "SH_"))}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path), "COLUMNS": "200"}
    if prefix:
        env["PRIVATE_NETWORK"] = "1"
    result = subprocess.run(
        [*(prefix or []), "bash", "walkthrough.sh"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    serve_log = (tmp_path / "serve.log").read_text() if (tmp_path / "serve.log").exists() else ""
    assert result.returncode == 0, out + result.stderr + serve_log

    # step 4: four tiles registered, a preview as a numpy array, the task started
    assert out.count("INGESTED") == 4
    assert re.search(r"preview \(330, 300\) mean NDVI 0\.\d+", out), out
    task_id = re.search(r"batch task (\S+) started", out).group(1)
    # step 5: the watch ended DONE and said where the results are
    assert re.search(r"status\s+DONE", out)
    results = tmp_path / "eobatch-data" / "buckets" / "results" / "ndvi" / task_id
    assert f"{results.resolve()}/mosaic-default-3035.vrt" in out.replace("\n", "")
    # step 6: the listing and the mosaic's description
    info = _last_json(out)
    assert info["crs"] == "EPSG:3035" and info["count"] == 1 and info["dtype"] == "float32"
    assert np.isnan(info["nodata"]) and info["descriptions"] == ["default"]

    tiffs = sorted(results.glob("*/default.tiff"))
    assert len(tiffs) == 4
    collection = pystac.Collection.from_file(str(results / "collection.json"))
    assert sorted(i.id for i in collection.get_items()) == sorted(p.parent.name for p in tiffs)
    with rasterio.open(tiffs[0]) as tiff:
        assert tiff.crs.to_epsg() == 3035 and tiff.res == (20.0, 20.0)
        assert np.isfinite(tiff.read(1)).any()


def _last_json(text: str) -> dict:
    """The last top-level JSON object printed (`rio info --indent 2`)."""
    start = text.rindex("\n{") + 1
    end = text.index("\n}", start) + 2
    return json.loads(text[start:end])

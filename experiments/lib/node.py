"""Run a TF.js layers model in Node (``web/tools/tfjs_predict.mjs``) from Python, for cross-checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.lib.paths import REPO
from pnpjax.errors import NodeToolError, NodeUnavailableError

__all__ = [
    "NodeToolError",
    "NodeUnavailableError",
    "WEB_DIR",
    "PREDICT_SCRIPT",
    "JS_PREDICT_SCRIPT",
    "node_executable",
    "tfjs_predict_in_node",
    "js_predict_in_node",
]

WEB_DIR = REPO / "web"
PREDICT_SCRIPT = WEB_DIR / "tools" / "tfjs_predict.mjs"
JS_PREDICT_SCRIPT = WEB_DIR / "tools" / "js_predict.mjs"


def node_executable() -> str | None:
    """Path of the ``node`` binary on PATH, or None."""
    return shutil.which("node")


def _check_environment() -> str:
    """Return the node binary, or raise NodeUnavailableError saying how to fix the setup."""
    node = node_executable()
    if node is None:
        raise NodeUnavailableError("`node` not found on PATH; install Node.js >= 18, then run `cd web && npm ci`")
    if not (WEB_DIR / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file():
        raise NodeUnavailableError(f"{WEB_DIR / 'node_modules'} has no @tensorflow/tfjs; run `cd web && npm ci`")
    if not PREDICT_SCRIPT.is_file():
        raise NodeUnavailableError(f"missing {PREDICT_SCRIPT}")
    return node


def tfjs_predict_in_node(
    model_dir: str | os.PathLike[str], x: np.ndarray, *, timeout: float = 120.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict ``x`` (N, K, 2) with TF.js 4.22 (cpu backend) in Node; returns (output float32, userDefinedMetadata).

    ``x`` is sent as float32 (what TF.js uses); metadata is ``{}`` when the model has none.
    """
    node = _check_environment()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"x must have shape (N, K, 2), got {arr.shape}")
    with tempfile.TemporaryDirectory(prefix="pnpjax-node-") as tmp:
        inp, out = Path(tmp) / "input.json", Path(tmp) / "output.json"
        # float32 -> Python float is exact, and repr round-trips, so Node sees the same float32 values.
        inp.write_text(json.dumps(arr.astype(np.float64).tolist()), encoding="utf-8")
        try:
            proc = subprocess.run(
                [node, str(PREDICT_SCRIPT), str(Path(model_dir).resolve()), str(inp), str(out)],
                cwd=WEB_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeToolError(f"tfjs_predict.mjs timed out after {timeout:.0f} s") from exc
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit code {proc.returncode}"
            raise NodeToolError(msg)
        result = json.loads(out.read_text(encoding="utf-8"))
    output = np.asarray(result["output"], dtype=np.float32)
    metadata = result.get("metadata") or {}
    return output, metadata


def js_predict_in_node(
    module: str | os.PathLike[str], payload: dict[str, Any], *, timeout: float = 120.0
) -> dict[str, Any]:
    """Run a `pnpjax export --format js` module in plain Node (``web/tools/js_predict.mjs``).

    ``payload``: {"landmarks": [...], "camera": optional, "bad": optional}; returns the script's
    JSON output (poses, three, errors, metadata; see the script).
    """
    node = node_executable()
    if node is None:
        raise NodeUnavailableError("`node` not found on PATH; install Node.js >= 18")
    with tempfile.TemporaryDirectory(prefix="pnpjax-js-") as tmp:
        inp, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps(payload), encoding="utf-8")
        try:
            proc = subprocess.run(
                [node, str(JS_PREDICT_SCRIPT), str(module), str(inp), str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeToolError(f"js_predict.mjs timed out after {timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise NodeToolError((proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
        return json.loads(out.read_text(encoding="utf-8"))


class WebServer:
    """web/tools/serve.mjs on a free port, 127.0.0.1 only, with `models` mounted at /models."""

    def __init__(self, models: Path):
        self.proc = subprocess.Popen(
            ["node", str(WEB_DIR / "tools" / "serve.mjs"), "--port", "0", "--mount", f"/models={models}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("serving http://127.0.0.1:"):
            self.proc.kill()
            raise NodeToolError(f"serve.mjs did not start: {line} {self.proc.stderr.read()}")
        self.url = line.split()[1]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a raw path (no client-side normalisation of '..')."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

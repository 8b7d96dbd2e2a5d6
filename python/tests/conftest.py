"""Fixtures: real `tally serve` processes built from this checkout.

The binary is built once per session from the repo root (two directories up
from this file), or taken from $TALLY_BIN, and serves the embedded default
fraud repo. With no `go` on
PATH the tests are skipped, unless TALLY_REQUIRE_SERVER=1 (as `make python`
sets), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import tally

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0

# API keys of the auth server (plain secrets: at least 16 characters).
READ_KEY = "reader-secret-0123456789"
INGEST_KEY = "producer-secret-0123456789"
ADMIN_KEY = "admin-secret-0123456789"


def _require_server() -> bool:
    return os.environ.get("TALLY_REQUIRE_SERVER") == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A running `tally serve` on a free loopback port with a fresh data dir."""

    def __init__(self, binary: Path, workdir: Path, config: str | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "serve.log"
        args = [str(binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(workdir / "data")]
        if config is not None:
            cfg = workdir / "tally.yaml"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"tally serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tally serve not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def tally_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("TALLY_BIN")
    if prebuilt:
        return Path(prebuilt)
    go = shutil.which("go")
    if go is None:
        msg = "`go` is not on PATH: cannot build tally to test against"
        if _require_server():
            pytest.fail(msg + " (TALLY_REQUIRE_SERVER=1)")
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("bin") / "tally"
    res = subprocess.run([go, "build", "-o", str(out), "./cmd/tally"], cwd=REPO_ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"go build ./cmd/tally failed:\n{res.stderr}")
    return out


@pytest.fixture(scope="session")
def server(tally_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default-repo server every test shares: tests keep apart by using
    their own entity names (see `uid`)."""
    s = Server(tally_binary, tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def auth_server(tally_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that requires API keys: one per scope."""
    config = f"""
api_keys:
  - {{name: reader, key: "{READ_KEY}", scopes: [read]}}
  - {{name: producer, key: "{INGEST_KEY}", scopes: [ingest]}}
  - {{name: admin, key: "{ADMIN_KEY}", scopes: [admin]}}
durability: {{fsync: never}}
"""
    s = Server(tally_binary, tmp_path_factory.mktemp("serve-auth"), config)
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[tally.Client]:
    with tally.Client(server.url, timeout=10) as c:
        yield c


@pytest.fixture
def fresh_client(tally_binary: Path, tmp_path: Path) -> Iterator[tally.Client]:
    """A client of a server of its own, with an empty log: historical tests
    import the past in time order, before any live event (see the README)."""
    s = Server(tally_binary, tmp_path)
    try:
        with tally.Client(s.url, timeout=10) as c:
            yield c
    finally:
        s.stop()


@pytest.fixture
def uid() -> str:
    """A user id no other test uses."""
    return "u-" + uuid.uuid4().hex[:12]

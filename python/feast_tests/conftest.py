"""Fixtures for the Feast compatibility suite: a real `tally serve` built from
this checkout, the Feast repo `tally feast-repo` generates for it, applied with
the real Feast SDK (`feast apply`), and a FeatureStore whose remote online store
is that server.

Runs in the venv the harness's Feast peer uses (.venv-bench, Feast 0.67 from
PyPI): `make feast-compat`. With no `go` on PATH the tests are skipped, unless
TALLY_REQUIRE_SERVER=1 (as make sets), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
APPLY_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A running `tally serve` on a free loopback port with a fresh data dir."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "serve.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(workdir / "data")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
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
        if os.environ.get("TALLY_REQUIRE_SERVER") == "1":
            pytest.fail(msg + " (TALLY_REQUIRE_SERVER=1)")
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("bin") / "tally"
    res = subprocess.run([go, "build", "-o", str(out), "./cmd/tally"], cwd=REPO_ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"go build ./cmd/tally failed:\n{res.stderr}")
    return out


@pytest.fixture(scope="session")
def server(tally_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tally_binary, tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def feast_repo(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated Feast repo, applied: `feast apply` must accept it."""
    repo = tmp_path_factory.mktemp("feast_repo")
    res = subprocess.run(
        [str(server.binary), "feast-repo", "--out", str(repo), "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, f"tally feast-repo failed:\n{res.stderr}"
    feast_cli = Path(sys.executable).parent / "feast"
    res = subprocess.run(
        [str(feast_cli), "apply"], cwd=repo, capture_output=True, text=True, timeout=APPLY_TIMEOUT_S
    )
    assert res.returncode == 0, f"feast apply refused the generated repo:\n{res.stdout}\n{res.stderr}"
    return repo


@pytest.fixture(scope="session")
def store(feast_repo: Path):  # type: ignore[no-untyped-def]
    from feast import FeatureStore

    return FeatureStore(repo_path=str(feast_repo))

"""Fixtures for the server tests: start `g4 serve` on a free loopback port with the default
model and stop it afterwards. Binary: $G4_BIN (set by ctest); model: $G4_MODEL or the cache."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

G4_BIN = os.environ.get("G4_BIN", str(Path(__file__).resolve().parents[2] / "build/release/g4"))
MODEL = os.environ.get(
    "G4_MODEL",
    str(Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4")) / "models/gemma-3-270m-q4_k_m.gguf"))
MODEL_ID = Path(MODEL).stem
# G4_TSAN=1 (make test-tsan): a ThreadSanitizer build, 5-15x slower. It runs what the
# ASan/UBSan build runs (G4_SANITIZED), which keeps the concurrency tests (batching,
# disconnects, queueing, SIGTERM, bad requests) and skips the load test and browser page.
TSAN = os.environ.get("G4_TSAN") == "1"
SANITIZED = os.environ.get("G4_SANITIZED") == "1" or TSAN
SANITIZER_REPORT = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer", "runtime error:")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args, ready_timeout=120, port=None, model=None):
        """model: a GGUF path to serve instead of the default MODEL."""
        if model is None and not Path(MODEL).exists():
            pytest.fail(f"default model not found at {MODEL} (run `g4 pull`)")
        model = model or MODEL
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"g4serve-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [G4_BIN, "serve", "-m", str(model), "--port", str(self.port), "--threads", "2", *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"g4 serve exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("g4 serve did not become ready: " + self.log_text())

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()[-4000:]

    def metric(self, name):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.check_sanitizer()
        return self.proc.returncode

    def check_sanitizer(self):
        """A sanitizer report in the server's log fails the test that ran it, with the report."""
        text = self.log_path.read_text(errors="replace")
        for marker in SANITIZER_REPORT:
            if marker in text:
                at = text.index(marker)
                pytest.fail("g4 serve: sanitizer report:\n" + text[max(0, at - 200):at + 6000])


@pytest.fixture(scope="session")
def server():
    s = Server("--parallel", "8", "--max-queue", "256")
    yield s
    code = s.stop()
    assert code == 0, s.log_path.read_text()[-4000:]


def post(url, body, headers=None, timeout=300):
    """POST JSON (or raw bytes); returns (status, parsed body or text, headers)."""
    data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status, hdrs = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs

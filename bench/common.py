"""What the bench/ scripts share: where the build they measure is, a free loopback port, and
waiting for a server they started to listen. Imported by bench/compare, bench/ab and
bench/startup (Python puts a script's own folder on its import path)."""
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The musl build: the binary users run, and the one docs/PERFORMANCE.md measures.
JAM = ROOT / "target" / "x86_64-unknown-linux-musl" / "release" / "jam"
# Benchmarks stay on loopback.
HOST = "127.0.0.1"


def die(msg):
    sys.exit(f"bench/{Path(sys.argv[0]).name}: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what):
    """Returns once `proc` (named `what` in errors) accepts on HOST:port; exits if it cannot."""
    for _ in range(100):
        if proc.poll() is not None:
            die(f"{what} exited at start (code {proc.returncode})")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{what} is not listening on {HOST}:{port}")

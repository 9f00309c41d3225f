"""What the bench/ scripts share: where the build they measure is, starting jam on a port it
picks and reading the address it prints, and a port for the servers that need one given.
Imported by bench/compare, bench/ab and bench/startup (Python puts a script's own folder on its
import path)."""
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The musl build: the binary users run, and the one docs/PERFORMANCE.md measures.
JAM = ROOT / "target" / "x86_64-unknown-linux-musl" / "release" / "jam"
# Benchmarks stay on loopback.
HOST = "127.0.0.1"


def die(msg):
    sys.exit(f"bench/{Path(sys.argv[0]).name}: {msg}")


def start_jam(binary, *args, env=None):
    """Starts `binary serve --listen HOST:0 ARGS...` and returns (process, port), the port read
    from the address jam prints when it listens: no port is guessed, so none can be taken by
    someone else in between. Its later log lines are read and dropped."""
    proc = spawn_jam(binary, *args, env=env)
    return proc, listening_port(proc)


def spawn_jam(binary, *args, env=None):
    """Starts `binary serve --listen HOST:0 ARGS...` with its log on a pipe, for listening_port.
    The load comes from one address, so the per-address limit is lifted to the global one (where
    the build has one: bench/ab may compare with a build from before it)."""
    help_text = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True).stdout
    lift = ["--max-per-address", "20000"] if "--max-per-address" in help_text else []
    return subprocess.Popen([str(binary), "serve", "--listen", f"{HOST}:0", *lift, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def listening_port(proc):
    """The port in the start line of a jam started by spawn_jam; its later lines are dropped."""
    for line in proc.stderr:
        if "listening on " in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return int(line.split("listening on ", 1)[1].split(";", 1)[0].rsplit(":", 1)[1])
    proc.wait()
    die(f"jam serve exited at start (code {proc.returncode})")


# bench/floor.c, built by build_floor: the least a TIME server can do, the physical-limit reference.
FLOOR_SOURCE = ROOT / "bench" / "floor.c"
FLOOR = ROOT / "target" / "floor"


def build_floor():
    """Builds bench/floor.c with cc when the binary is missing or older than its source."""
    if not FLOOR.exists() or FLOOR.stat().st_mtime < FLOOR_SOURCE.stat().st_mtime:
        if not shutil.which("cc"):
            die("cc is needed to build bench/floor.c (apt-get install gcc)")
        FLOOR.parent.mkdir(exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", str(FLOOR), str(FLOOR_SOURCE)], check=True)


def redis_command(port):
    """redis-server on HOST:port with nothing saved and room for the sweep's connections. Not in
    protected mode, which turns away every loopback address but 127.0.0.1 (jam bench --sources)."""
    return ["redis-server", "--port", str(port), "--bind", HOST, "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--logfile", "/dev/null", "--maxclients", "20000"]


def free_port():
    """A port for servers that must be given a number (redis, the lab's Python server): free when
    asked, so another process could take it before they bind; they then fail to start, loudly."""
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


CONNTRACK = Path("/proc/sys/net/netfilter")


def conntrack_drops():
    """Packets the kernel's connection tracking dropped since boot (a full table drops SYNs),
    or None where it does not track."""
    try:
        lines = Path("/proc/net/stat/nf_conntrack").read_text().split("\n")
    except OSError:
        return None
    column = lines[0].split().index("drop")
    return sum(int(line.split()[column], 16) for line in lines[1:] if line.strip())


def wait_for_conntrack(room, what):
    """Waits (up to the 120 s a closed connection's entry lingers) until the kernel's connection
    tracking table has room for `room` more connections. Where netfilter tracks loopback (a host
    running Docker does), every connection keeps an entry for 120 s after it closes, and a full
    table drops new SYNs without a counter of its own: clients just time out. Back-to-back bursts
    of 10,000 filled this machine's 262,144 entries within a minute."""
    try:
        limit = int((CONNTRACK / "nf_conntrack_max").read_text())
    except OSError:
        return
    start, said = time.monotonic(), False
    # A tenth of the table is left to whatever else runs beside (bench/soak's clients).
    while 0.9 * limit - int((CONNTRACK / "nf_conntrack_count").read_text()) < room and time.monotonic() - start < 130:
        if not said:
            print(f"  waiting for room for {room} connections in the connection tracking table before {what}",
                  file=sys.stderr)
            said = True
        time.sleep(1)

"""The local shared metastore: a Derby network server over ``<data dir>/metastore_db``, started
on demand by the first job, left running for the next, stopped by
``./spark-submit.sh metastore stop``. Every job, ``sql``, notebook and test connects to it, so
several processes can use one data dir at once (embedded Derby admits one JVM).

    python -m mljobs.metastore start|stop|status [--data-dir DIR] [--port N]

The server's pid and port are recorded in ``<data dir>/metastore.json``; a file lock around
start makes two jobs starting at once share one server; a dead pid means restart.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from mljobs.errors import MljobsError

RECORD = "metastore.json"
PORT_ENV = "MLJOBS_METASTORE_PORT"
CLIENT_DRIVER = "org.apache.derby.jdbc.ClientDriver"
START_TIMEOUT_S = 60


def _record_path(data_dir: Path) -> Path:
    return Path(data_dir) / RECORD


def read_record(data_dir: Path) -> dict | None:
    try:
        return json.loads(_record_path(data_dir).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def running(data_dir: Path) -> dict | None:
    """The record of a live server for data_dir (pid alive and port answering), else None."""
    rec = read_record(data_dir)
    if rec and _pid_alive(rec["pid"]) and _port_open(rec["port"]):
        return rec
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _start_lock(data_dir: Path):
    with open(Path(data_dir) / "metastore.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _classpath() -> str:
    from mljobs import jars

    derby = sorted(jars.spark_jars_dir().glob("derby-*.jar"))
    return os.pathsep.join(str(p) for p in [*jars.fetch_all("derby"), *derby])


def _launch(data_dir: Path, port: int) -> int:
    # A small heap and the serial collector: a local metastore holds little, and the JVM waits
    # between jobs on a laptop.
    cmd = ["java", "-Xmx512m", "-XX:+UseSerialGC", f"-Dderby.system.home={data_dir}", "-cp", _classpath(),
           "org.apache.derby.drda.NetworkServerControl", "start", "-h", "127.0.0.1", "-p", str(port), "-noSecurityManager"]
    log = open(_rotated(Path(data_dir) / "metastore.log"), "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # outlives the job that started it
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MljobsError(f"the metastore server exited at start (code {proc.returncode}); see {log.name}")
        if _port_open(port):
            return proc.pid
        time.sleep(0.3)
    proc.kill()
    raise MljobsError(f"the metastore server did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S} s; see {log.name}")


def _rotated(log: Path, keep_bytes: int = 10 << 20) -> Path:
    """log, its previous content moved to log.1 once it passes keep_bytes."""
    if log.exists() and log.stat().st_size > keep_bytes:
        log.replace(log.with_name(log.name + ".1"))
    return log


def ensure_server(data_dir: Path, port: int | None = None) -> dict:
    """The running server of data_dir, started first when there is none (or its record is stale)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(data_dir):
        rec = running(data_dir)
        if rec:
            return rec
        port = port or int(os.environ.get(PORT_ENV) or 0) or _free_port()
        rec = {"pid": _launch(data_dir, port), "port": port, "host": "127.0.0.1"}
        _record_path(data_dir).write_text(json.dumps(rec) + "\n")
        return rec


def stop(data_dir: Path, timeout_s: float = 30) -> bool:
    """Stop data_dir's server; False when none was running."""
    rec = read_record(data_dir)
    _record_path(data_dir).unlink(missing_ok=True)
    if not rec or not _pid_alive(rec["pid"]):
        return False
    os.kill(rec["pid"], 15)  # Derby shuts down cleanly on SIGTERM (its shutdown hook)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(rec["pid"]) and time.monotonic() < deadline:
        _reap(rec["pid"])
        time.sleep(0.2)
    if _pid_alive(rec["pid"]):
        os.kill(rec["pid"], 9)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (started in this process): no zombie
    except ChildProcessError:
        pass


def embedded_holder(data_dir: Path) -> int | None:
    """The pid of another process that has data_dir's metastore open in embedded mode, else None.

    Derby holds a POSIX lock on ``metastore_db/dbex.lck`` while a JVM has the database booted;
    F_GETLK names the holder without taking the lock (Linux; elsewhere a lock probe, pid -1).
    Our own JVM (the gateway this process started, or the spark-submit JVM that started it)
    is not another process."""
    try:
        fd = os.open(Path(data_dir) / "metastore_db" / "dbex.lck", os.O_RDWR)
    except OSError:
        return None
    try:
        pid = _lock_holder(fd)
    finally:
        os.close(fd)
    if pid is None or pid in (os.getpid(), os.getppid()) or _ppid(pid) == os.getpid():
        return None
    return pid


def _lock_holder(fd: int) -> int | None:
    if sys.platform.startswith("linux"):
        flock = "@hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
        got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(flock, fcntl.F_WRLCK, 0, 0, 0, 0))
        l_type, _, _, _, pid = struct.unpack(flock, got)
        return None if l_type == fcntl.F_UNLCK else pid
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return -1
    fcntl.lockf(fd, fcntl.LOCK_UN)
    return None


def _ppid(pid: int) -> int | None:
    out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(out) if out.isdigit() else None


def describe_process(pid: int) -> str:
    """'pid N (its command)', shortened; a pyspark gateway JVM is described by its Python parent."""
    if pid < 0:
        return "another process"
    cmd = _command(pid)
    parent = _ppid(pid) if cmd.endswith("pyspark-shell") else None
    if parent:
        pid, cmd = parent, _command(parent)
    job = next((w for w in cmd.split() if w.endswith(".py")), None)
    shown = f"{Path(job).name}{cmd.split(job, 1)[1][:60]}" if job else cmd[:80]
    return f"pid {pid} ({shown.strip()})" if shown.strip() else f"pid {pid}"


def _command(pid: int) -> str:
    # -ww: the whole command line (ps cuts it to $COLUMNS or 80 characters otherwise)
    return subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()


def check_not_held(data_dir: Path, server_pid: int | None = None) -> None:
    """MljobsError naming the process (other than data_dir's server) that holds the database."""
    holder = embedded_holder(data_dir)
    if holder not in (None, server_pid):
        raise MljobsError(held_message(data_dir, holder))


def held_message(data_dir: Path, pid: int) -> str:
    server = running(data_dir)
    if server and server["pid"] == pid:
        return (f"the metastore of {data_dir} is open in its server (pid {pid}), so --metastore embedded cannot "
                "open it: leave out --metastore embedded, or stop the server (./spark-submit.sh metastore stop)")
    return (f"the metastore of {data_dir} is open in embedded mode by {describe_process(pid)}, which admits no "
            "other process: wait for it or stop it (run it without --metastore embedded, and jobs share the server)")


def client_jar() -> Path:
    """The Derby network client jar (the driver side of the server), as fetched by jars.py."""
    from mljobs import jars

    return next(p for p in jars.jar_paths("derby") if p.name.startswith("derbyclient-"))


def connection_url(data_dir: Path, port: int) -> str:
    return f"jdbc:derby://127.0.0.1:{port}/{Path(data_dir) / 'metastore_db'};create=true"


def status(data_dir: Path) -> dict:
    rec = running(data_dir)
    return {"running": bool(rec), "data_dir": str(data_dir), **(rec or {})}


def main(argv=None) -> int:
    from mljobs.datadir import resolve_data_dir

    p = argparse.ArgumentParser(prog="./spark-submit.sh metastore")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--data-dir")
    p.add_argument("--port", type=int)
    a = p.parse_args(argv)
    ddir = resolve_data_dir(a.data_dir)
    try:
        if a.action == "start":
            ensure_server(ddir, a.port)
        elif a.action == "stop":
            stop(ddir)
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(status(ddir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# What the Hive client's failure says when the metastore cannot be reached or is held.
_UNAVAILABLE = ("SessionHiveMetaStoreClient", "Another instance of Derby may have already booted",
                "java.net.ConnectException", "DERBY SQL error")


def unavailable_message(exc: BaseException, data_dir: Path) -> str | None:
    """One actionable line when exc is the metastore being held (embedded) or gone (server), else None."""
    text = str(exc)
    if not any(s in text for s in _UNAVAILABLE):
        return None
    if running(data_dir) is None and read_record(data_dir):
        return "the metastore server stopped during the job (committed tables are kept); run the job again: it restarts the server"
    holder = embedded_holder(data_dir)
    return held_message(data_dir, holder if holder is not None else -1)

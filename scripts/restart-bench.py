#!/usr/bin/env python3
"""Restart time and memory of a stream of --msgs messages (issue 14).

For each server (jetcore and nats-server, same data): load the stream with
`jetcore-bench js pub --keep`, then restart it after SIGTERM and after
kill -9, timing from the start of the process until `STREAM.INFO` answers
with every message, and sample the resident memory (VmRSS) of an empty
server, after each restart, and after a full ordered replay.

    scripts/restart-bench.py --msgs 10000000 --out perf/results/restart
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target/release/jetcore-bench")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command(kind, binary, port, store):
    if kind == "jetcore":
        return [binary, "-p", str(port), "--store_dir", store, "--sync", "interval=1s"]
    return [binary, "-js", "-p", str(port), "-sd", store]


def info(port, stream):
    """STREAM.INFO over a plain socket (a client library's reconnect backoff
    would blur the timing)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
                  b"SUB _INBOX.rb 1\r\n"
                  + f"PUB $JS.API.STREAM.INFO.{stream} _INBOX.rb 0\r\n\r\n".encode())
        while True:
            line = f.readline()
            if not line:
                raise OSError("closed")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG") or line.startswith(b"HMSG"):
                n = int(line.split()[-1])
                body = f.read(n + 2)[:n]
                if line.startswith(b"HMSG"):
                    hl = int(line.split()[-2])
                    body = body[hl:]
                return json.loads(body) if body else {}


def port_free(port):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_and_wait(cmd, port, stream, want):
    """Starts the server; returns (process, seconds until the stream answers
    with `want` messages)."""
    # A process killed with io_uring requests in flight releases its sockets
    # a moment after it is reaped: the clock starts once the port is free.
    while not port_free(port):
        time.sleep(0.01)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open("/tmp/restart-bench-server.log", "a"))
    while True:
        if p.poll() is not None:
            sys.exit(f"server exited: {cmd}")
        try:
            st = info(port, stream)
            if st.get("state", {}).get("messages") == want:
                return p, time.monotonic() - t0
        except Exception:
            pass
        if time.monotonic() - t0 > 300:
            sys.exit("no answer within 300 s")
        time.sleep(0.01)


def stop(p, sig):
    p.send_signal(sig)
    p.wait()


def replay(port, stream, msgs):
    subprocess.run([BENCH, "js", "consume", "-s", f"127.0.0.1:{port}", "--stream", stream,
                    "--msgs", str(msgs), "--mode", "ordered", "--no-preload", "--duration", "600s"],
                   check=True, stdout=subprocess.DEVNULL)


def one(kind, binary, msgs, size, port):
    store = tempfile.mkdtemp(prefix=f"restart-{kind}-", dir=os.environ.get("STORE_ROOT"))
    cmd = command(kind, binary, port, store)
    out = {"server": kind, "msgs": msgs, "size": size}
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open("/tmp/restart-bench-server.log", "a"))
        time.sleep(1.0)
        out["rss_empty_mib"] = rss_mib(p.pid)
        t0 = time.monotonic()
        subprocess.run([BENCH, "js", "pub", "-s", f"127.0.0.1:{port}", "--stream", "R",
                        "--msgs", str(msgs), "--size", str(size), "--keep",
                        "--duration", "900s"], check=True, stdout=subprocess.DEVNULL)
        out["load_s"] = time.monotonic() - t0
        out["rss_loaded_mib"] = rss_mib(p.pid)
        stop(p, signal.SIGTERM)
        out["disk_mib"] = sum(os.path.getsize(os.path.join(d, f))
                              for d, _, fs in os.walk(store) for f in fs) / 2**20
        p, t = start_and_wait(cmd, port, "R", msgs)
        out["restart_sigterm_s"] = t
        out["restart_cpu_s"] = cpu_s(p.pid)
        time.sleep(0.5)
        out["rss_after_restart_mib"] = rss_mib(p.pid)
        stop(p, signal.SIGKILL)
        p, t = start_and_wait(cmd, port, "R", msgs)
        out["restart_kill9_s"] = t
        time.sleep(0.5)
        out["rss_after_kill9_restart_mib"] = rss_mib(p.pid)
        t0 = time.monotonic()
        replay(port, "R", msgs)
        out["replay_s"] = time.monotonic() - t0
        out["rss_after_replay_mib"] = rss_mib(p.pid)
        stop(p, signal.SIGTERM)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--msgs", type=int, default=10_000_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--jetcore", default=os.path.join(ROOT, "target/release/jetcore"))
    ap.add_argument("--jetcore-old", help="a second jetcore binary (label jetcore-old)")
    ap.add_argument("--nats-server", default=shutil.which("nats-server"))
    ap.add_argument("--servers", default="jetcore,nats-server")
    ap.add_argument("--port", type=int, default=24222)
    ap.add_argument("--out")
    a = ap.parse_args()
    results = []
    for kind in a.servers.split(","):
        binary = {"jetcore": a.jetcore, "jetcore-old": a.jetcore_old}.get(kind, a.nats_server)
        r = one("jetcore" if kind.startswith("jetcore") else "nats-server",
                binary, a.msgs, a.size, a.port)
        r["label"] = kind
        print(json.dumps(r), flush=True)
        results.append(r)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "restart.json"), "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

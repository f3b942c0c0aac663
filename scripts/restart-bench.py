#!/usr/bin/env python3
"""Restart time and memory of a stream of --msgs messages (issue 14).

For each server (jetcore and nats-server, same data): load the stream with
`jetcore-bench js pub --keep`, then restart it after SIGTERM and after
kill -9, timing from the start of the process until `STREAM.INFO` answers
with every message, and sample the resident memory (VmRSS) of an empty
server, after each restart, and after a full ordered replay.

    scripts/restart-bench.py --msgs 10000000 --out perf/results/restart

With --streams S the load is S streams (R0..R{S-1}) of --msgs each, and the
restart waits for all of them. With --gets N, after the kill -9 restart (page
cache dropped first with --drop-caches), N gets of random sequences
(`STREAM.MSG.GET`, one at a time) while a publisher adds to the stream at
--pub-rate msgs/s: their latency percentiles.
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


def start_and_wait(cmd, port, streams, want):
    """Starts the server; returns (process, seconds until every stream answers
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
            if all(info(port, s).get("state", {}).get("messages") == want for s in streams):
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


def random_gets(port, stream, msgs, n, rate):
    """n gets of random sequences in 1..msgs, one at a time, while a
    publisher adds to the stream at `rate` msgs/s: latency percentiles (ms)."""
    import random
    import socket
    publisher = subprocess.Popen(
        [BENCH, "js", "pub", f"s.{stream}", "-s", f"127.0.0.1:{port}", "--stream", stream, "--keep",
         "--msgs", str(rate * 600), "--rate", str(rate), "--size", "16", "--duration", "600s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    rnd = random.Random(7)
    lat = []
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    f.readline()  # INFO
    s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
              b"SUB _INBOX.g 1\r\n")
    for _ in range(n):
        seq = rnd.randint(1, msgs)
        body = json.dumps({"seq": seq}).encode()
        t0 = time.perf_counter()
        s.sendall(f"PUB $JS.API.STREAM.MSG.GET.{stream} _INBOX.g {len(body)}\r\n".encode()
                  + body + b"\r\n")
        while True:
            line = f.readline()
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG") or line.startswith(b"HMSG"):
                reply = f.read(int(line.split()[-1]) + 2)
                break
        lat.append((time.perf_counter() - t0) * 1000)
        if b'"message"' not in reply:
            sys.exit(f"get {seq}: {reply[:200]!r}")
    s.close()
    publisher.terminate()
    publisher.wait()
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return {"gets": n, "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
            "max_ms": lat[-1], "pub_rate": rate}


def one(kind, binary, msgs, size, port, streams=1, gets=0, drop=False, rate=10000):
    store = tempfile.mkdtemp(prefix=f"restart-{kind}-", dir=os.environ.get("STORE_ROOT"))
    cmd = command(kind, binary, port, store)
    out = {"server": kind, "msgs": msgs, "size": size, "streams": streams}
    names = ["R"] if streams == 1 else [f"R{i}" for i in range(streams)]
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open("/tmp/restart-bench-server.log", "a"))
        time.sleep(1.0)
        out["rss_empty_mib"] = rss_mib(p.pid)
        t0 = time.monotonic()
        for name in names:
            subprocess.run([BENCH, "js", "pub", f"s.{name}", "-s", f"127.0.0.1:{port}", "--stream", name,
                            "--msgs", str(msgs), "--size", str(size), "--keep",
                            "--duration", "900s"], check=True, stdout=subprocess.DEVNULL)
        out["load_s"] = time.monotonic() - t0
        out["rss_loaded_mib"] = rss_mib(p.pid)
        stop(p, signal.SIGTERM)
        out["disk_mib"] = sum(os.path.getsize(os.path.join(d, f))
                              for d, _, fs in os.walk(store) for f in fs) / 2**20
        p, t = start_and_wait(cmd, port, names, msgs)
        out["restart_sigterm_s"] = t
        out["restart_cpu_s"] = cpu_s(p.pid)
        time.sleep(0.5)
        out["rss_after_restart_mib"] = rss_mib(p.pid)
        stop(p, signal.SIGKILL)
        if drop:
            subprocess.run(["sync"])
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        p, t = start_and_wait(cmd, port, names, msgs)
        out["restart_kill9_s"] = t
        time.sleep(0.5)
        out["rss_after_kill9_restart_mib"] = rss_mib(p.pid)
        if gets:
            out["gets"] = random_gets(port, names[0], msgs, gets, rate)
            out["rss_after_gets_mib"] = rss_mib(p.pid)
        t0 = time.monotonic()
        replay(port, names[0], msgs)
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
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--gets", type=int, default=0)
    ap.add_argument("--pub-rate", type=int, default=10000)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    results = []
    for kind in a.servers.split(","):
        binary = {"jetcore": a.jetcore, "jetcore-old": a.jetcore_old}.get(kind, a.nats_server)
        r = one("jetcore" if kind.startswith("jetcore") else "nats-server",
                binary, a.msgs, a.size, a.port, a.streams, a.gets, a.drop_caches, a.pub_rate)
        r["label"] = kind
        print(json.dumps(r), flush=True)
        results.append(r)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "restart.json"), "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

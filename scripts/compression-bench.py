#!/usr/bin/env python3
"""Compression at rest (`compression: "s2"`) on JSON events: disk used by the
sealed segments of the same messages stored with s2 and without, and what
reading them back costs (an ordered replay's time and server CPU per message,
and random direct gets), jetcore only (nats-server's own s2 store for
comparison with --nats-server).

usage: compression-bench.py [--msgs N] [--gets N] [--out DIR]
"""
import argparse, asyncio, json, os, random, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH = os.path.join(ROOT, "target/release/jetcore-bench")
JETCORE = os.path.join(ROOT, "target/release/jetcore")
PORT = 24666


def event(i, rnd):
    return json.dumps({
        "id": f"evt-{i:09d}", "ts": 1765000000000 + i * 13, "type": rnd.choice(["page_view", "click", "add_to_cart", "purchase"]),
        "user": f"user-{rnd.randrange(50000)}", "session": f"{rnd.getrandbits(64):016x}",
        "path": f"/products/{rnd.randrange(2000)}", "referrer": rnd.choice(["", "https://www.google.com/", "https://news.example.com/a"]),
        "ua": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        "amount": round(rnd.random() * 200, 2), "ok": True,
    }).encode()


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().split(")")[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def start(kind, binary, store):
    if kind == "jetcore":
        cmd = [binary, "-p", str(PORT), "--store_dir", store, "--sync", "interval=1s"]
    else:
        cmd = [binary, "-p", str(PORT), "-js", "-sd", store]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return p


async def load(msgs):
    import nats
    nc = await nats.connect(f"nats://127.0.0.1:{PORT}")
    js = nc.jetstream()
    for name, comp in (("Z", "s2"), ("P", "none")):
        await nc.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(
            {"name": name, "subjects": [f"{name}.>"], "storage": "file", "compression": comp}).encode())
        rnd = random.Random(7)
        for i in range(1, msgs + 1):
            await nc.publish(f"{name}.ev", event(i, rnd))
            if i % 5000 == 0:
                await nc.flush()
        await nc.flush()
        while True:
            r = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{name}", b"")).data)
            if r["state"]["messages"] == msgs:
                break
            await asyncio.sleep(0.1)
    await nc.close()


async def gets(stream, msgs, n):
    import nats
    nc = await nats.connect(f"nats://127.0.0.1:{PORT}")
    rnd = random.Random(11)
    lat = []
    for _ in range(n):
        seq = rnd.randint(1, msgs)
        t0 = time.perf_counter()
        r = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq}).encode())
        lat.append((time.perf_counter() - t0) * 1000)
        assert b'"message"' in r.data, r.data[:200]
    await nc.close()
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)]}


def disk(store, stream, kind):
    total = 0
    for d, _, fs in os.walk(store):
        if os.path.basename(d) != stream and not d.endswith(f"/{stream}/msgs"):
            continue
        for f in fs:
            if kind == "jetcore" and not (f.endswith(".seg") or f.endswith(".sz")):
                continue
            if kind == "nats-server" and not f.endswith(".blk"):
                continue
            total += os.path.getsize(os.path.join(d, f))
    return total


def one(kind, binary, msgs, ngets):
    store = tempfile.mkdtemp(prefix=f"comp-{kind}-")
    out = {"server": kind, "msgs": msgs}
    try:
        p = start(kind, binary, store)
        asyncio.run(load(msgs))
        time.sleep(3.0)  # sealed segments packed in the background
        p.send_signal(signal.SIGTERM); p.wait()
        rnd = random.Random(7)
        out["payload_bytes_avg"] = sum(len(event(i, rnd)) for i in range(1, 1001)) / 1000
        out["disk_s2"] = disk(store, "Z", kind)
        out["disk_none"] = disk(store, "P", kind)
        out["ratio"] = out["disk_s2"] / out["disk_none"]
        if kind == "jetcore":
            # Sealed segments only (the one being written stays as written).
            d = lambda n: os.path.join(store, "jetstream/streams", n)
            sz = sorted(f for f in os.listdir(d("Z")) if f.endswith(".sz"))
            seg = sorted(f for f in os.listdir(d("P")) if f.endswith(".seg"))[:len(sz)]
            out["sealed_s2"] = sum(os.path.getsize(os.path.join(d("Z"), f)) for f in sz)
            out["sealed_none"] = sum(os.path.getsize(os.path.join(d("P"), f)) for f in seg)
            out["sealed_ratio"] = out["sealed_s2"] / max(1, out["sealed_none"])
        p = start(kind, binary, store)
        for name in ("P", "Z"):
            c0, t0 = cpu_s(p.pid), time.monotonic()
            subprocess.run([BENCH, "js", "consume", "-s", f"127.0.0.1:{PORT}", "--stream", name, "--msgs", str(msgs),
                            "--mode", "ordered", "--no-preload", "--duration", "600s"], check=True, stdout=subprocess.DEVNULL)
            t, c = time.monotonic() - t0, cpu_s(p.pid) - c0
            out[f"replay_{name}"] = {"s": t, "server_cpu_us_per_msg": c * 1e6 / msgs}
            out[f"gets_{name}"] = asyncio.run(gets(name, msgs, ngets))
        p.send_signal(signal.SIGTERM); p.wait()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--msgs", type=int, default=300_000)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--jetcore", default=JETCORE)
    ap.add_argument("--nats-server", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    runs = [one("jetcore", a.jetcore, a.msgs, a.gets)]
    if a.nats_server:
        runs.append(one("nats-server", a.nats_server, a.msgs, a.gets))
    for r in runs:
        print(json.dumps(r, indent=1))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "compression.json"), "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())

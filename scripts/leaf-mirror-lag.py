#!/usr/bin/env python3
"""How far a nats-server hub's mirror of a jetcore stream trails async publishing.

Starts a nats-server hub (JetStream domain `hub`) and a jetcore leaf (domain `edge`)
dialling it, creates stream EV on jetcore and EV_M on the hub mirroring it through
`$JS.edge.API`, publishes MSGS messages of SIZE bytes to EV with WINDOW acks in
flight (nats-py), and reports when the last ack came and when the hub's mirror held
the last message (its stream info polled every 2 ms). The same run with a nats-server
leaf instead of jetcore (LEAF=nats-server) gives the reference.

    MSGS=100000 ROUNDS=3 python3 scripts/leaf-mirror-lag.py
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import nats

MSGS = int(os.environ.get("MSGS", "100000"))
SIZE = int(os.environ.get("SIZE", "128"))
WINDOW = int(os.environ.get("WINDOW", "256"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
JETCORE = os.environ.get("JETCORE", "target/release/jetcore")
LEAVES = os.environ.get("LEAF", "jetcore nats-server").split()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def wait_port(port):
    for _ in range(400):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.025)
    raise SystemExit(f"port {port} never opened")


async def api(nc, subject, body):
    r = await nc.request(subject, json.dumps(body).encode(), timeout=5)
    return json.loads(r.data)


async def one_round(leaf_kind, work):
    hub_port, hub_leaf, leaf_port = free_port(), free_port(), free_port()
    with open(f"{work}/hub.conf", "w") as f:
        f.write(f"server_name: hub\nlisten: 127.0.0.1:{hub_port}\n"
                f"jetstream {{ store_dir: \"{work}/hub\", domain: hub }}\n"
                f"leafnodes {{ listen: \"127.0.0.1:{hub_leaf}\" }}\n")
    with open(f"{work}/leaf.conf", "w") as f:
        f.write(f"server_name: edge\nlisten: 127.0.0.1:{leaf_port}\n"
                f"jetstream {{ store_dir: \"{work}/leaf-{leaf_kind}\", domain: edge }}\n"
                f"leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{hub_leaf}\", "
                f"compression: off }} ] }}\n")
    hub = subprocess.Popen(["nats-server", "-c", f"{work}/hub.conf"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    binary = JETCORE if leaf_kind == "jetcore" else "nats-server"
    leaf = subprocess.Popen([binary, "-c", f"{work}/leaf.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_port(hub_port)
        await wait_port(leaf_port)
        h = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        e = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        for _ in range(200):  # the leaf connection is up when the domain answers
            try:
                if (await api(h, "$JS.edge.API.INFO", {})).get("domain") == "edge":
                    break
            except Exception:
                pass
            await asyncio.sleep(0.05)
        r = await api(e, "$JS.API.STREAM.CREATE.EV", {"name": "EV", "subjects": ["ev.>"]})
        assert "error" not in r, r
        r = await api(h, "$JS.API.STREAM.CREATE.EV_M", {
            "name": "EV_M",
            "mirror": {"name": "EV", "external": {"api": "$JS.edge.API", "deliver": ""}}})
        assert "error" not in r, r
        js = e.jetstream()
        payload = b"x" * SIZE
        pending = []
        start = time.monotonic()
        for i in range(MSGS):
            pending.append(asyncio.ensure_future(js.publish("ev.x", payload)))
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        last_ack = time.monotonic()
        while True:
            info = await api(h, "$JS.API.STREAM.INFO.EV_M", {})
            if info["state"]["last_seq"] >= MSGS:
                break
            await asyncio.sleep(0.002)
        complete = time.monotonic()
        await h.close()
        await e.close()
        return MSGS / (last_ack - start), (complete - last_ack) * 1000
    finally:
        for p in (leaf, hub):
            p.kill()
            p.wait()


async def main():
    print("leaf\tround\tpub_msgs_per_sec\tmirror_complete_ms_after_last_ack")
    for r in range(1, ROUNDS + 1):
        for kind in LEAVES:
            with tempfile.TemporaryDirectory() as work:
                rate, lag = await one_round(kind, work)
            print(f"{kind}\t{r}\t{rate:.0f}\t{lag:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

# aioice (Debian python3-aioice 0.8, run by /usr/bin/python3) as an ICE peer for natkit's
# interop tests. It speaks the ice-peers line protocol (test/helpers/ice-peers/README.md):
# one JSON object per line on stdin (commands) and stdout (events). End of stdin ends it.
#
# aioice.Connection(ice_controlling, components=1), UDP only, no STUN/TURN server.
# What aioice 0.8 cannot do, and how this peer handles it:
#  - Loopback: aioice.ice.get_host_addresses() drops 127.0.0.1 and ::1 on purpose and has
#    no interface filter, so gather_candidates() would bind every non-loopback address and
#    nothing on loopback. The peer replaces that module function with one that returns the
#    --address values (default 127.0.0.1); gather_candidates() then binds only those.
#  - No trickle of its own candidates: gather_candidates() returns when all are gathered,
#    so the peer prints them all, then end-of-candidates.
#  - No state events and no selected-pair event: connect() returns once a pair is
#    nominated (or raises ConnectionError); the peer reports "checking" when it calls
#    connect(), "connected" and the selected pair (Connection._nominated[1], a private
#    field: the only place aioice keeps it) when connect() returns, "failed" if it raises.
#  - connect() needs the remote ufrag/pwd, so the peer calls it when remote-params arrive
#    (gathering is done by then: it starts at once and takes no network round trip).
#    connect() also fails at once ("ICE negotiation failed") when its check list is empty:
#    no remote candidate yet and no check received before the call (earlier checks are kept
#    in _early_checks and become peer-reflexive pairs inside connect()). A peer whose
#    candidates are never signalled (Chromium's non-loopback ones) is only learned from its
#    checks, so the peer also waits for a remote candidate or an early check, however late
#    the first check comes on a loaded machine.
#  - Remote candidates are accepted before and after connect(); after end-of-candidates
#    aioice raises ValueError for more, which the peer reports as an error event.
#  - Nomination: as controlling agent aioice sets USE-CANDIDATE on every check
#    (aggressive nomination, RFC 5245 8.1.1.2, removed from RFC 8445).
import argparse
import asyncio
import json
import sys

import aioice
import aioice.ice
from aioice import Candidate, Connection


def out(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cand_json(c):
    return {"address": c.host, "port": c.port, "type": c.type}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["controlling", "controlled"], required=True)
    ap.add_argument("--address", action="append")
    args = ap.parse_args()
    addresses = args.address or ["127.0.0.1"]

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
    conn = Connection(ice_controlling=args.role == "controlling", components=1)
    out({"ev": "local-params", "ufrag": conn.local_username, "pwd": conn.local_password})
    out({"ev": "state", "state": "new", "native": "new"})
    await conn.gather_candidates()
    for c in conn.local_candidates:
        out({"ev": "candidate", "line": "candidate:" + c.to_sdp()})
    out({"ev": "end-of-candidates"})

    loop = asyncio.get_running_loop()
    tasks = set()

    def spawn(coro):
        t = loop.create_task(coro)
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        return t

    async def run_connect():
        out({"ev": "state", "state": "checking", "native": "connect()"})
        while not conn._remote_candidates and not conn._early_checks:
            await asyncio.sleep(0.01)
        try:
            await conn.connect()
        except ConnectionError as e:
            out({"ev": "state", "state": "failed", "native": "ConnectionError: %s" % e})
            return
        pair = conn._nominated.get(1)
        out({"ev": "state", "state": "connected", "native": "connect() returned"})
        if pair is not None:
            out({"ev": "selected-pair", "local": cand_json(pair.local_candidate), "remote": cand_json(pair.remote_candidate)})
        while True:
            try:
                data = await conn.recv()
            except ConnectionError:
                return
            out({"ev": "data", "hex": data.hex()})

    async def add(c):
        try:
            await conn.add_remote_candidate(c)
        except ValueError as e:
            out({"ev": "error", "message": "add_remote_candidate: %s" % e})

    # stdin, line by line, without blocking the event loop
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connecting = False
    while True:
        raw = await reader.readline()
        if not raw:
            break
        text = raw.decode().strip()
        if not text:
            continue
        try:
            msg = json.loads(text)
        except ValueError:
            out({"ev": "error", "message": "not JSON: " + text})
            continue
        cmd = msg.get("cmd")
        if cmd == "remote-params":
            conn.remote_username = msg["ufrag"]
            conn.remote_password = msg["pwd"]
            if not connecting:
                connecting = True
                spawn(run_connect())
        elif cmd == "candidate":
            line = msg.get("line", "")
            if line.startswith("a="):
                line = line[2:]
            if line.startswith("candidate:"):
                line = line[len("candidate:"):]
            try:
                c = Candidate.from_sdp(line)
            except (ValueError, IndexError) as e:
                out({"ev": "error", "message": "bad candidate line %r: %s" % (msg.get("line"), e)})
                continue
            await add(c)
        elif cmd == "end-of-candidates":
            await add(None)
        elif cmd == "send":
            try:
                await conn.send(bytes.fromhex(msg["hex"]))
            except ConnectionError as e:
                out({"ev": "error", "message": "send: %s" % e})
        elif cmd == "close":
            break
        else:
            out({"ev": "error", "message": "unknown cmd %r" % cmd})

    await conn.close()
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out({"ev": "closed"})


asyncio.run(main())

# aioice (Debian python3-aioice 0.8, run by /usr/bin/python3) as an ICE peer for natkit's
# interop tests. It speaks the ice-peers line protocol (test/helpers/ice-peers/README.md):
# one JSON object per line on stdin (commands) and stdout (events). End of stdin ends it.
# aioice's log (INFO: pair states, peer-reflexive candidates, "ICE completed/failed") and
# each command as it arrives go to stderr with UTC times of day, the clock of the test's
# event timeline, so a failing test shows who did what when.
#
# aioice.Connection(ice_controlling, components=1), UDP only, no STUN/TURN server.
# What aioice 0.8 does that this peer relies on or works around (ice.py, Connection):
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
#    (gathering is done by then: it is local and finishes before stdin is read).
#    request_received() answers every check whose MESSAGE-INTEGRITY is right (and, once
#    the remote ufrag is known, whose USERNAME is); before connect() has formed any pair
#    it keeps the check in _early_checks, and connect() turns those into peer-reflexive
#    pairs with triggered checks. After that an incoming check goes to check_incoming()
#    at once (RFC 8445 7.3.1.3 and 7.3.1.4).
#  - connect()'s check loop (check_periodic) keeps running, every 20 ms, while the check
#    list is empty as long as end-of-candidates has not come: it waits for candidates or
#    checks. Once end-of-candidates has come, an empty check list ends connect() at once
#    with "ICE negotiation failed".
#  - End-of-candidates when aioice knows no remote candidate breaks it for good:
#    add_remote_candidate(None) calls _prune_components(), which drops every component
#    without a known remote candidate, here all of them (_components becomes empty). A
#    pair nominated afterwards never makes len(_nominated) equal len(_components), so as
#    controlled agent connect() never returns and as controlling agent the first check
#    that succeeds ends in "ICE failed". A remote agent whose candidates are never
#    signalled (Chromium's non-loopback ones, which the tests filter out) is known only
#    from its checks, and its end-of-candidates may well come before its first check.
#    So the peer holds a remote end-of-candidates while aioice knows no remote candidate
#    and gives it to aioice the moment aioice learns one from a check, as peer-reflexive
#    (the peer's Connection subclass hooks check_incoming(), which aioice calls for each
#    early check inside connect() and for each later check as it comes). Until then
#    connect() waits for checks, as above. A candidate line after a held
#    end-of-candidates gets the error aioice itself would give.
#  - Remote candidates are accepted before and after connect(); after end-of-candidates
#    aioice raises ValueError for more, which the peer reports as an error event.
#  - Nomination: as controlling agent aioice sets USE-CANDIDATE on every check
#    (aggressive nomination, RFC 5245 8.1.1.2, removed from RFC 8445). As controlled
#    agent it takes the first pair that both succeeded and was nominated by the peer.
#  - A check it sends times out only after 7 transmissions (0.5 s doubling, about 63 s),
#    so a loaded machine does not fail a pair; a 400 answer (wrong credentials) fails the
#    pair at once.
import argparse
import asyncio
import json
import logging
import sys
import time

import aioice
import aioice.ice
from aioice import Candidate, Connection


def out(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cand_json(c):
    return {"address": c.host, "port": c.port, "type": c.type}


class PeerConnection(Connection):
    """aioice's Connection, telling the peer after each check that reached check_incoming()."""

    on_check = None

    def check_incoming(self, message, addr, protocol):
        super().check_incoming(message, addr, protocol)
        if self.on_check is not None:
            self.on_check()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["controlling", "controlled"], required=True)
    ap.add_argument("--address", action="append")
    args = ap.parse_args()
    addresses = args.address or ["127.0.0.1"]

    logging.Formatter.converter = time.gmtime
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s.%(msecs)03d %(name)s %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("peer")

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
    conn = PeerConnection(ice_controlling=args.role == "controlling", components=1)
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

    def report_crash(t):
        # anything but ConnectionError (handled above) is a harness or aioice bug: say so
        if not t.cancelled() and t.exception() is not None:
            out({"ev": "error", "message": "connect task: %r" % t.exception()})

    async def add(c):
        try:
            await conn.add_remote_candidate(c)
        except ValueError as e:
            out({"ev": "error", "message": "add_remote_candidate: %s" % e})

    # A remote end-of-candidates waits here while aioice knows no remote candidate (see
    # the header: it would drop the component for good).
    eoc_held = False

    async def release_end_of_candidates():
        nonlocal eoc_held
        if eoc_held and conn.remote_candidates:
            eoc_held = False
            log.info("end-of-candidates given to aioice now that it knows %s", conn.remote_candidates[0])
            await add(None)

    conn.on_check = lambda: spawn(release_end_of_candidates()) if eoc_held else None

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
        log.info("command %s", text[:200])
        if cmd == "remote-params":
            conn.remote_username = msg["ufrag"]
            conn.remote_password = msg["pwd"]
            if not connecting:
                connecting = True
                spawn(run_connect()).add_done_callback(report_crash)
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
            if eoc_held:
                # what aioice itself answers to a candidate after end-of-candidates
                out({"ev": "error", "message": "add_remote_candidate: Cannot add remote candidate after end-of-candidates."})
                continue
            await add(c)
        elif cmd == "end-of-candidates":
            if conn.remote_candidates:
                await add(None)
            elif eoc_held:
                out({"ev": "error", "message": "end-of-candidates given twice"})
            else:
                eoc_held = True
                log.info("end-of-candidates held: aioice knows no remote candidate yet")
        elif cmd == "send":
            try:
                await conn.send(bytes.fromhex(msg["hex"]))
            except ConnectionError as e:
                out({"ev": "error", "message": "send: %s" % e})
        elif cmd == "sync":
            out({"ev": "synced", "id": str(msg.get("id", ""))})
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

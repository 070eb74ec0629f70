// The NAT lab: real NATs, made of Linux network namespaces, veth pairs and nftables, for
// tests that must cross a kernel's NAT rather than a simulated one. Needs root, `ip`
// (iproute2) and `nft` (nftables).
//
// Topology (one lab; every namespace is this lab's own, named nk-<pid>-<seq>-<role>):
//
//                        inet (a bridge "br0": the public segment 203.0.113.0/24, TEST-NET-3)
//          ┌──────────────┬──────────────┴───────┬──────────────────────┐
//      server           nat0 (router)          nat1 (router)         client2 ('none' / 'firewall':
//  203.0.113.1        wan 203.0.113.101      wan 203.0.113.102        a public host on the segment,
//  203.0.113.2        lan 10.0.1.1/24        lan 10.0.2.1/24          203.0.113.203)
//  203.0.113.3 (relay)
//                         │                      │
//                     client0 10.0.1.2       client1 10.0.2.2   (+ more clients behind the same router)
//
// Interfaces are created straight inside their namespaces (`ip link add X netns A type veth
// peer name Y netns B`), so short fixed names (eth0, wan, lan, hpo, hpi, p0..) never exist in
// the host's namespace and cannot collide with another lab or another person's run; the
// nftables table (`ip natkit`) lives inside the router's namespace for the same reason. Only
// the namespace names are global, and they carry the pid and a per-process counter.
//
// API
//   const lab = await createNatLab({ nat: 'symmetric', hairpin: false });
//   const lab = await createNatLab({ clients: [{ nat: 'full-cone' }, { nat: 'symmetric' }, { behind: 0 }] });
//     nat: a NatType preset or an RFC 4787 behaviour { mapping, filtering, portAllocation, hairpin }.
//     clients[i].behind = j puts client i behind the same router (NAT) as client j.
//     mappingTimeoutSec: idle lifetime of UDP mappings and their filters, seconds (default 300),
//       in the lab's tables and in conntrack alike; clients[i].mappingTimeoutSec for one NAT.
//     clients[i].loss: percent of packets the NAT's WAN side drops, each way (see setLoss).
//   const lab = await createPeerLab('symmetric', 'port-restricted-cone', { mappingTimeoutSec, loss });
//     issue 8's layout: two peers (lab.peers), each behind its own NAT, and the servers.
//   lab.server.ns, lab.server.addresses            [primary, alternate] public addresses (RFC 5780)
//   lab.server.relayAddress                        a third, for a TURN server beside the STUN server
//   lab.clients[i] / lab.client (= clients[0]):    { index, ns, address, gateway, nat }
//   lab.nat (= lab.client.nat): { type, ns, publicAddress, privateAddress, subnet, mapping, filtering,
//                                 portAllocation, hairpin, mappingTimeoutSec, loss }
//                                 (ns: the namespace whose nftables does it)
//   lab.spawn(ns, cmd, args, opts)  -> LabProcess { child (the ChildProcess), pid, exited, stdout(),
//                                      stderr(), waitFor(re, {timeoutMs}), stop() }   via `ip netns exec`
//   lab.run(ns, cmd, args, { timeoutMs, input }) -> { code, signal, stdout, stderr, timedOut }
//   lab.waitForListener(ns, { proto, port, address, timeoutMs })   polls `ss` until the socket exists
//   lab.describe()                                 addresses, routes, nft ruleset (with the live
//                                                  mapping tables) of every namespace: for failures
//   lab.setLoss(client, percent)                   loss on the client's NAT's WAN side, both ways; 0 removes it
//   lab.lossCounters(client)                       { inbound, outbound } packets the loss has dropped
//   lab.flushMappings(client, { udpOnly })         the NAT forgets every mapping (conntrack -F + the lab's tables)
//   lab.changePublicAddress(client, address?)      the NAT is renumbered live (mappings lost); returns the address
//   lab.natState(client)                           { mappings (the lab's table, with time left), conntrack entries }
//     (client: a LabClient or its index; every client behind one router shares its NAT;
//      flushMappings, changePublicAddress and natState need `conntrack`, Debian's conntrack)
//   lab.tmpdir                                     a directory of the lab's own, removed by destroy()
//   await lab.destroy()                            idempotent: stops every process, deletes every namespace
//   startStund(lab), startTurnserver(lab)          the classic STUN servers on the server's two addresses
//   needNatLab(ctx, ...programs)                   for tests: skip (or, under CI, fail) when root, ip,
//                                                  nft, `ip netns` or a program is missing
//   systemProgram(name)                            a program from /usr/bin etc., never node_modules/.bin
//   routerRuleset(rules)                           the nftables text a router gets
// Addresses: public segment 203.0.113.0/24 (server .1, .2 and .3, router n .101+n, a renumbered
// router from .11, a client without NAT .201+i); behind router n, 10.0.(n+1).0/24 with the
// router at .1 and its clients from .2.
//
// How each NAT is built (nftables in the router's namespace, table `ip natkit`). Linux's own
// snat/masquerade gives port preservation and conntrack filtering but not a real mapping table,
// so the lab keeps one itself with dynamic nftables maps, filled on the way out after the snat
// (a filter chain at priority srcnat+10 reads the chosen port from `ct reply proto-dst`):
//   @out    internal address . port [. remote address]  ->  mapped port     (mapping, EIM/ADM)
//   @in     mapped port  ->  internal address . port                        (inbound translation)
//   @taken  mapped ports in use                   (so port preservation never shares a port)
//   @permit mapped port [. remote address [. remote port]]                    (filtering, ADF/APDF)
// Outbound UDP: a known mapping is reused (`snat to PUB : <key> map @out`), else a port is
// allocated: 'preserve' keeps the source port unless it is taken (then a random one),
// 'random' is `fully-random`, 'sequential' is `numgen inc`. Inbound UDP that opens a new
// conntrack is translated with `dnat ip to udp dport map @in` only if the filter admits it:
// EIF always, ADF if (port . remote address) is in @permit, APDF if (port . address . port) is.
// Replies of existing conntracks pass as usual. Anything else addressed to the router is dropped
// (no ICMP), as a home router would. TCP and ICMP get the plain snat with the same allocation
// and are filtered by conntrack only (APDF).
//
// Mapping lifetime: a UDP mapping (and what its filter admits) lives mappingTimeoutSec after
// its last packet, in either direction: RFC 4787 REQ-6 requires outbound refresh and allows
// inbound refresh, and Linux conntrack refreshes on both, so the lab's tables do too (chain
// `refresh` updates them for inbound packets as chain `record` does for outbound ones), and
// the namespace's conntrack UDP timeouts (nf_conntrack_udp_timeout and _stream, per network
// namespace) are set to the same value. An APDM NAT's outbound mapping is its conntrack entry
// alone; either way, a mapping idle for longer is gone from both (test/natlab/nat-ops.test.ts
// watches both expire, and natcheck --lifetime measures it).
//
// Operations on a live NAT (nat-ops.test.ts shows each with real traffic):
//   loss      table `netdev natkit_loss` on the router's "wan" (a host's own "eth0"): `numgen
//             random` drops in the ingress and egress hooks, IPv4 only, counted. Not tc netem:
//             kernels without sch_netem (this one) cannot do it, and nothing is lost by it: the
//             drop happens where netem's would, after the NAT has translated (and recorded) an
//             outgoing packet and before it sees an incoming one. Loss only, no delay.
//   flush     conntrack -F (or -D -p udp) and the lab's maps and sets emptied, while a table
//             `ip natkit_gate` drops every packet at prerouting, so no flow sees half of it.
//   renumber  the same gate; the wan address, the hairpin routes and the NAT's table (its
//             mapping tables start empty) replaced; conntrack flushed.
//   'none'                  a public address on the segment, no NAT, no filter
//   'firewall'              a public address, stateful filter in the host (only replies: APDF)
//   'full-cone'             EIM + EIF, port preserving
//   'restricted-cone'       EIM + ADF, port preserving
//   'port-restricted-cone'  EIM + APDF, port preserving
//   'symmetric'             APDM (a new random port for each new 5-tuple) + APDF
// Hairpinning (RFC 4787 REQ-9), when on: packets from inside to the NAT's public address are
// routed through a veth loop (hpo -> hpi) inside the router, so they are translated exactly as
// if they had left (snat to the sender's mapping) and come back in (filter, then dnat to the
// target's mapping): the receiver sees the sender's external address and port, and the
// target mapping's filtering applies, so hairpinned hole punching between two clients behind
// one NAT works as it would between two NATs. (A one-pass dnat+snat cannot do that: a sender's
// first, dropped packet must still open its own mapping's filter.) When off, the router drops
// them. Note that a client sending to its own mapping from the same socket (Vovida's test) is
// admitted by every cone NAT, as that mapping itself addressed it; from another socket (coturn's
// test) only by EIF.
//
// Limits: IPv4 only; hairpinning for UDP only; TCP is translated but not hole-punchable, and its
// mappings keep conntrack's TCP timeouts (mappingTimeoutSec is for UDP);
// a random port (symmetric) equals the previous one with probability 1/64512, so a classifier
// can see a symmetric NAT as cone once in ~64k runs.
//
// Robustness: createNatLab checks root, `ip`, `nft` and that `ip netns` works; it deletes
// leftovers of crashed runs (namespaces nk-<pid>-... whose recorded creator, in this pid
// namespace, is gone; or unrecorded ones older than a day); a process 'exit' hook deletes the
// labs a process did not destroy. IPv4 only.
import { type ChildProcess, type SpawnOptions, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir as tmpdir_ } from 'node:os';
import { join } from 'node:path';
import {
  DEPENDENCES,
  type Dependence,
  type LabNatInfo,
  type NatBehaviour,
  type NatClientSpec,
  type NatType,
  PRESETS,
  type PortAllocation,
  defaultPortAllocation,
} from './nat-behaviour.js';
import { DEBIAN_PACKAGES, type SkipCtx, isRoot, needRoot, skipOrFail, systemProgram } from './programs.js';

export { systemProgram };

// ---------------------------------------------------------------------------------------
// Types

// The presets, behaviours and client specs the virtual network takes too: test/helpers/nat-behaviour.ts.
export type { Dependence, NatBehaviour, NatType, PortAllocation } from './nat-behaviour.js';

export interface ClientSpec extends NatClientSpec {
  /** Idle lifetime of this NAT's UDP mappings, seconds (default: the lab's mappingTimeoutSec). */
  mappingTimeoutSec?: number;
  /** Percent of IPv4 packets dropped on this NAT's WAN side, each direction (see NatLab.setLoss). */
  loss?: number;
}

export interface NatLabOptions {
  /** Shorthand for clients: [{ nat, hairpin }]. */
  nat?: NatType | NatBehaviour;
  hairpin?: boolean;
  clients?: ClientSpec[];
  /**
   * Idle lifetime of UDP mappings (and their filters), seconds, for every NAT (and firewall)
   * of the lab: both the lab's own mapping tables and conntrack's UDP timeouts in the NAT's
   * namespace. Default 300 (RFC 4787 REQ-5: at least 2 minutes, 5 recommended).
   */
  mappingTimeoutSec?: number;
}

export interface LabNat extends LabNatInfo {
  /** The namespace whose nftables implements it: the router, the client itself ('firewall'), or undefined ('none'). */
  ns: string | undefined;
  /** Idle lifetime of UDP mappings, seconds (undefined for 'none'). */
  mappingTimeoutSec: number | undefined;
  /** Percent of IPv4 packets dropped each way on the WAN side (0: none); changed by setLoss. */
  loss: number;
}

/** One UDP mapping of a NAT, from the lab's own table (@in). */
export interface LabMapping {
  /** The NAT's public address and port. */
  external: string;
  /** The client's address and port it translates to. */
  internal: string;
  /** Time left before it expires if idle, ms. */
  expiresMs: number;
}

/** A conntrack entry of a NAT or firewall. */
export interface LabConntrack {
  proto: string;
  /** Seconds left before it expires if idle. */
  timeoutSec: number;
  /** The entry as `conntrack -L` prints it. */
  entry: string;
}

export interface NatState {
  mappings: LabMapping[];
  conntrack: LabConntrack[];
}

export interface LabClient {
  index: number;
  ns: string;
  address: string;
  gateway: string | undefined;
  nat: LabNat;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunResult extends ExitInfo {
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface LabProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly description: string;
  /** Resolves when the process has exited and its stdio is closed. */
  readonly exited: Promise<ExitInfo>;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `re` in stdout+stderr; rejects on exit or timeout. */
  waitFor(re: RegExp, opts?: { timeoutMs?: number }): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after graceMs (default 2000); resolves when it has exited. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

export interface NatLab {
  readonly id: string;
  readonly namespaces: readonly string[];
  /** A directory for this lab's files (servers' pid files, databases); removed by destroy(). */
  readonly tmpdir: string;
  readonly inet: { ns: string; subnet: string };
  /**
   * The public servers' namespace: `addresses` are the two a STUN server needs for RFC 5780
   * (primary, alternate); `relayAddress` is a third, for a TURN server beside them.
   */
  readonly server: { ns: string; addresses: [string, string]; relayAddress: string };
  readonly clients: readonly LabClient[];
  readonly client: LabClient;
  readonly nat: LabNat;
  spawn(ns: string, cmd: string, args?: readonly string[], opts?: SpawnOptions): LabProcess;
  run(ns: string, cmd: string, args?: readonly string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
  /**
   * Drops `percent` % (0-100, two decimals) of the IPv4 packets crossing the WAN side of the
   * client's NAT, in each direction independently: nftables `numgen random` in netdev
   * ingress and egress hooks on the router's "wan" (the client's own "eth0" without a
   * router), so the NAT has done its work on an outgoing packet before it is lost. 0 removes
   * the loss. (Not tc netem: the lab's kernels may lack sch_netem; nftables needs nothing
   * but the kernel's nf_tables, and drops at the same point.)
   */
  setLoss(client: LabClient | number, percent: number): Promise<void>;
  /** Packets the loss rules of the client's NAT have dropped: inbound (to the NAT), outbound. */
  lossCounters(client: LabClient | number): Promise<{ inbound: number; outbound: number }>;
  /**
   * Forgets every mapping of the client's NAT at once, as a NAT reboot does: conntrack's
   * entries (`conntrack -F`, or `-D -p udp` with udpOnly) and the lab's own tables, with the
   * NAT holding every packet back (dropped) while it happens. Live sessions through it break.
   */
  flushMappings(client: LabClient | number, opts?: { udpOnly?: boolean }): Promise<void>;
  /**
   * Gives the client's NAT a new public address on the segment (default: the next free one
   * from 203.0.113.11), as when an ISP renumbers a line: every mapping is lost, the old
   * address stops answering. Updates `nat.publicAddress` of every client behind it; returns it.
   */
  changePublicAddress(client: LabClient | number, address?: string): Promise<string>;
  /** The client's NAT's live UDP mappings (the lab's own table) and its conntrack entries. */
  natState(client: LabClient | number): Promise<NatState>;
  /** Polls `ss` in `ns` until a socket listens there; `abort` (checked each poll) gives up early. */
  waitForListener(ns: string, opts: { proto: 'udp' | 'tcp'; port: number; address?: string; timeoutMs?: number; abort?: () => boolean }): Promise<void>;
  describe(): Promise<string>;
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// Presets

interface Resolved {
  type: NatType | 'custom';
  mapping: Dependence | 'none';
  filtering: Dependence | 'none';
  portAllocation: PortAllocation;
  hairpin: boolean;
  routed: boolean; // has a router namespace
}

function resolve(nat: NatType | NatBehaviour | undefined, hairpin: boolean | undefined): Resolved {
  if (nat === undefined || typeof nat === 'string') {
    const type = nat ?? 'port-restricted-cone';
    const p = PRESETS[type];
    if (!p) throw new NatLabError(`unknown NAT type ${JSON.stringify(type)}; one of ${Object.keys(PRESETS).join(', ')}`);
    const routed = type !== 'none' && type !== 'firewall';
    if (hairpin && !routed) throw new NatLabError(`hairpin needs a NAT; '${type}' has none`);
    return { type, ...p, hairpin: hairpin ?? false, routed };
  }
  if (!DEPENDENCES.includes(nat.mapping) || !DEPENDENCES.includes(nat.filtering)) {
    throw new NatLabError(`bad NAT behaviour ${JSON.stringify(nat)}: mapping and filtering are one of ${DEPENDENCES.join(', ')}`);
  }
  const portAllocation = nat.portAllocation ?? defaultPortAllocation(nat.mapping);
  return { type: 'custom', mapping: nat.mapping, filtering: nat.filtering, portAllocation, hairpin: nat.hairpin ?? hairpin ?? false, routed: true };
}

/** The RFC 4787 behaviour of a preset or behaviour, as the lab builds it ('none': no translation, or no filter). */
export function natBehaviour(nat: NatType | NatBehaviour): { mapping: Dependence | 'none'; filtering: Dependence | 'none'; portAllocation: PortAllocation } {
  const r = resolve(nat, undefined);
  return { mapping: r.mapping, filtering: r.filtering, portAllocation: r.portAllocation };
}

export class NatLabError extends Error {
  override name = 'NatLabError';
}

// ---------------------------------------------------------------------------------------
// nftables rules

const TABLE = 'natkit';
const HAIRPIN_TABLE = '100';
const HPO_MAC = '02:6e:6b:00:00:01';
const HPI_MAC = '02:6e:6b:00:00:02';

export interface RouterRules {
  publicAddress: string;
  mapping: Dependence;
  filtering: Dependence;
  portAllocation: PortAllocation;
  hairpin: boolean;
  timeoutSec: number;
}

/** The dynamic maps and sets of a router's table: what a flush must empty (nftables commands). */
function flushTables(r: RouterRules): string[] {
  return [
    `flush map ip ${TABLE} in`,
    `flush set ip ${TABLE} taken`,
    ...(r.mapping !== 'address-and-port-dependent' ? [`flush map ip ${TABLE} out`] : []),
    ...(r.filtering !== 'endpoint-independent' ? [`flush set ip ${TABLE} permit`] : []),
  ];
}

function checkLoss(percent: number, what: string): void {
  if (!(typeof percent === 'number' && percent >= 0 && percent <= 100 && Math.abs(percent * 100 - Math.round(percent * 100)) < 1e-9)) {
    throw new NatLabError(`${what} must be a percentage from 0 to 100 with at most two decimals, not ${percent}`);
  }
}

/** The router's ruleset (table `ip natkit`); exported so tests and failure reports can show it. */
export function routerRuleset(r: RouterRules): string {
  const PUB = r.publicAddress;
  // Where packets leave through the NAT (and get a mapping), and where they come in.
  const outIfs = r.hairpin ? '{ "wan", "hpo" }' : '"wan"';
  const inIfs = r.hairpin ? '{ "wan", "hpi" }' : '"wan"';
  const dyn = (type: string) => `type ${type}; flags dynamic,timeout; timeout ${r.timeoutSec}s; size 65535;`;
  const tracked = r.mapping !== 'address-and-port-dependent'; // keeps its own mapping table
  const adm = r.mapping === 'address-dependent';
  const outKeyType = adm ? 'ipv4_addr . inet_service . ipv4_addr' : 'ipv4_addr . inet_service';
  const outKeyPkt = adm ? 'ip saddr . udp sport . ip daddr' : 'ip saddr . udp sport';
  // What the conntrack says, for a flow the inside started (original direction, snat) and
  // for one the outside started and the filter let in (reply direction, dnat).
  const orig = { internal: 'ct original ip saddr . ct original proto-src', mapped: 'ct reply proto-dst', raddr: 'ct original ip daddr', rport: 'ct original proto-dst' };
  const repl = { internal: 'ct reply ip saddr . ct reply proto-src', mapped: 'ct original proto-dst', raddr: 'ct original ip saddr', rport: 'ct original proto-src' };
  type Ct = typeof orig;
  const eif = r.filtering === 'endpoint-independent';
  const adf = r.filtering === 'address-dependent';
  const permitType = adf ? 'inet_service . ipv4_addr' : 'inet_service . ipv4_addr . inet_service';
  const permitKey = (c: Ct) => (adf ? `${c.mapped} . ${c.raddr}` : `${c.mapped} . ${c.raddr} . ${c.rport}`);
  const record = (c: Ct) =>
    [
      tracked ? `update @out { ${c.internal}${adm ? ` . ${c.raddr}` : ''} : ${c.mapped} }` : '',
      `update @in { ${c.mapped} : ${c.internal} }`,
      `update @taken { ${c.mapped} }`,
      eif ? '' : `update @permit { ${permitKey(c)} }`,
    ]
      .filter(Boolean)
      .join(' ');
  const fullyRandom = r.portAllocation === 'random' ? ' fully-random' : '';
  const udpAlloc = r.portAllocation === 'sequential' ? ' : numgen inc mod 64512 offset 1024' : fullyRandom;
  // The inbound filter, for a packet that opens a new conntrack towards mapped port `udp dport`.
  const admit = eif ? '' : adf ? 'udp dport . ip saddr @permit ' : 'udp dport . ip saddr . udp sport @permit ';
  const lines = (...ls: (string | false)[]) => ls.filter((l): l is string => typeof l === 'string').join('\n    ');

  return `
table ip ${TABLE} {
  ${tracked ? `map out { ${dyn(`${outKeyType} : inet_service`)} }` : ''}
  map in { ${dyn('inet_service : ipv4_addr . inet_service')} }
  set taken { ${dyn('inet_service')} }
  ${eif ? '' : `set permit { ${dyn(permitType)} }`}

  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname ${inIfs} ip daddr ${PUB} meta l4proto udp ${admit}dnat ip to udp dport map @in
  }

  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ${lines(
      tracked && `oifname ${outIfs} meta l4proto udp ${outKeyPkt} @out snat ip to ${PUB} : ${outKeyPkt} map @out`,
      r.portAllocation === 'preserve' && `oifname ${outIfs} meta l4proto udp udp sport @taken snat ip to ${PUB} fully-random`,
      `oifname ${outIfs} meta l4proto udp snat ip to ${PUB}${udpAlloc}`,
      `oifname ${outIfs} snat ip to ${PUB}${fullyRandom}`,
    )}
  }

  chain record {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname ${outIfs} meta l4proto udp ct direction original ct status snat ${record(orig)}
    oifname ${outIfs} meta l4proto udp ct direction reply ct status dnat ${record(repl)}
  }

  chain refresh {
    type filter hook prerouting priority dstnat + 10; policy accept;
    iifname ${inIfs} meta l4proto udp ct direction reply ct status snat ${record(orig)}
    iifname ${inIfs} meta l4proto udp ct direction original ct status dnat ${record(repl)}
  }

  chain input {
    type filter hook input priority filter; policy accept;
    iifname ${inIfs} ct state new icmp type echo-request accept
    iifname ${inIfs} ct state new drop
    iifname "lan" ip daddr ${PUB} ct state new meta l4proto != icmp drop
  }

  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname ${inIfs} ct status dnat accept
    iifname ${inIfs} drop
  }
}
`;
}

const LOSS_TABLE = 'natkit_loss';
const GATE_TABLE = 'natkit_gate';

/**
 * Loss on a link (table `netdev natkit_loss`): each IPv4 packet that arrives on or leaves
 * `device` is dropped with probability percent/100, independently, and counted. ARP is
 * spared, so the loss is the datagrams' own and not a neighbour that cannot be resolved;
 * and inbound only what is addressed to this host counts (the segment's bridge floods a
 * frame for a host whose port it has not learnt yet to every port: not this link's traffic).
 */
export function lossRuleset(device: string, percent: number): string {
  const n = Math.round(percent * 100); // of 10000
  const drop = `meta protocol ip numgen random mod 10000 < ${n} counter drop`;
  return `
table netdev ${LOSS_TABLE} {
  chain inbound {
    type filter hook ingress device "${device}" priority filter; policy accept;
    meta pkttype host ${drop}
  }
  chain outbound {
    type filter hook egress device "${device}" priority filter; policy accept;
    ${drop}
  }
}
`;
}

/** Holds every IPv4 packet back (dropped before conntrack sees it) while a NAT's state changes. */
const GATE_RULESET = `
table ip ${GATE_TABLE} {
  chain prerouting {
    type filter hook prerouting priority raw - 100; policy drop;
  }
}
`;

/** The host firewall of a 'firewall' client: a symmetric UDP firewall (only replies get in). */
export function firewallRuleset(): string {
  return `
table inet ${TABLE} {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "lo" accept
    ct state established,related accept
    drop
  }
}
`;
}

// ---------------------------------------------------------------------------------------
// Processes

const sys = (program: string) => systemProgram(program) ?? program;
const IP = () => sys('ip');

interface ExecOpts {
  timeoutMs?: number;
  input?: string;
}

function exec(cmd: string, args: readonly string[], opts: ExecOpts = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args as string[], { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new NatLabError(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, timedOut });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

async function must(cmd: string, args: readonly string[], opts: ExecOpts = {}): Promise<string> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 15_000} ms` : `exit ${r.code ?? r.signal}`;
    throw new NatLabError(`\`${[cmd, ...args].join(' ')}\` failed (${why}): ${(r.stderr || r.stdout).trim()}${opts.input ? `\ninput:\n${opts.input}` : ''}`);
  }
  return r.stdout;
}

function startProcess(description: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): LabProcess {
  const child = spawn(cmd, args as string[], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  const poke = () => watchers.forEach((w) => w());
  child.stdout?.setEncoding('utf8').on('data', (d: string) => ((out += d), poke()));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => ((err += d), poke()));
  let done: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((res) => {
    child.on('error', (e) => {
      err += `\n[spawn error] ${e.message}`;
      // 'close' still follows an 'error' for a process that never started.
    });
    child.on('close', (code, signal) => {
      done = { code, signal };
      poke();
      res(done);
    });
  });
  const proc: LabProcess = {
    child,
    pid: child.pid ?? -1,
    description,
    exited,
    stdout: () => out,
    stderr: () => err,
    waitFor(re, o = {}) {
      const timeoutMs = o.timeoutMs ?? 10_000;
      return new Promise((res, rej) => {
        let timer: NodeJS.Timeout | undefined;
        const check = () => {
          const m = (out + err).match(re);
          if (m) return finish(() => res(m));
          if (done) finish(() => rej(new NatLabError(`${description} exited (${done!.code ?? done!.signal}) before printing ${re}; output:\n${out}${err}`)));
        };
        const finish = (f: () => void) => {
          watchers.delete(check);
          if (timer) clearTimeout(timer);
          f();
        };
        watchers.add(check);
        timer = setTimeout(() => finish(() => rej(new NatLabError(`${description} did not print ${re} within ${timeoutMs} ms; output:\n${out}${err}`))), timeoutMs);
        check();
      });
    },
    async stop(graceMs = 2000) {
      if (done) return done;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((res) => {
        timer = setTimeout(() => {
          if (!done) child.kill('SIGKILL');
          res();
        }, graceMs);
      });
      const info = await Promise.race([exited, killed.then(() => exited)]);
      clearTimeout(timer);
      return info;
    },
  };
  return proc;
}

// ---------------------------------------------------------------------------------------
// Names, stale labs, exit hook

const NS_PREFIX = 'nk-';
const META_DIR = '/run/natkit-lab';
let seq = 0;
const live = new Map<string, { namespaces: string[]; procs: Set<LabProcess> }>();
let exitHook = false;

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '?';
  }
}

function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]; // field 22: starttime
  } catch {
    return undefined;
  }
}

/** Is the lab `id` (from a namespace name nk-<pid>-<seq>-<role>) clearly abandoned? */
function isStale(id: string, nsName: string): boolean {
  let meta: { pid: number; start: string; pidns: string } | undefined;
  try {
    meta = JSON.parse(readFileSync(join(META_DIR, `${id}.json`), 'utf8'));
  } catch {
    meta = undefined;
  }
  if (meta && meta.pidns === pidNamespace()) return processStart(meta.pid) !== meta.start;
  // No record, or made from another pid namespace where we cannot see its creator: only
  // when it is old enough that no test can still be using it.
  try {
    return Date.now() - statSync(`/run/netns/${nsName}`).mtimeMs > 24 * 3600_000;
  } catch {
    return false;
  }
}

async function cleanStale(): Promise<string[]> {
  const names = (await must(IP(), ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(NS_PREFIX));
  const removed: string[] = [];
  const ids = new Map<string, string[]>();
  for (const n of names) {
    const m = /^nk-(\d+-[0-9a-z]+)-/.exec(n);
    if (!m) continue;
    const id = m[1]!;
    if (live.has(id)) continue;
    ids.set(id, [...(ids.get(id) ?? []), n]);
  }
  for (const [id, nss] of ids) {
    if (!nss.every((n) => isStale(id, n))) continue;
    for (const n of nss) {
      await killNamespacePids(n);
      await exec(IP(), ['netns', 'delete', n]);
      removed.push(n);
    }
    removeTmpdirs(id);
    rmSync(join(META_DIR, `${id}.json`), { force: true });
  }
  // records whose namespaces are all gone
  try {
    for (const f of readdirSync(META_DIR)) {
      const id = f.replace(/\.json$/, '');
      if (!live.has(id) && !names.some((n) => n.startsWith(`${NS_PREFIX}${id}-`)) && isStale(id, '')) rmSync(join(META_DIR, f), { force: true });
    }
  } catch {
    // no records yet
  }
  return removed;
}

function removeTmpdirs(id: string): void {
  try {
    for (const f of readdirSync(tmpdir_())) if (f.startsWith(`natkit-lab-${id}-`)) rmSync(join(tmpdir_(), f), { recursive: true, force: true });
  } catch {
    // best effort
  }
}

async function killNamespacePids(ns: string): Promise<void> {
  const r = await exec(IP(), ['netns', 'pids', ns]);
  for (const p of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const [id, l] of live) {
      for (const p of l.procs) {
        try {
          p.child.kill('SIGKILL');
        } catch {
          // gone
        }
      }
      for (const ns of l.namespaces) {
        try {
          execFileSync(IP(), ['netns', 'delete', ns], { stdio: 'ignore' });
        } catch {
          // best effort
        }
      }
      rmSync(join(META_DIR, `${id}.json`), { force: true });
    }
  });
}

// ---------------------------------------------------------------------------------------
// Preconditions

/**
 * For a lab test: root, ip, nft, working `ip netns`, and the system programs named (their
 * paths are returned). Missing: skipped with the reason, or failed under CI.
 */
export async function needNatLab(ctx: SkipCtx, ...programs: string[]): Promise<Record<string, string>> {
  needRoot(ctx, 'the NAT lab (network namespaces, nftables)');
  const paths: Record<string, string> = {};
  for (const prog of ['ip', 'nft', ...programs]) {
    const p = systemProgram(prog);
    if (!p) skipOrFail(ctx, `${prog} is not installed (Debian package ${DEBIAN_PACKAGES[prog] ?? '?'})`);
    paths[prog] = p;
  }
  const why = await natLabUnavailable();
  if (why) skipOrFail(ctx, why);
  return paths;
}

/** Why a lab cannot be made here, or undefined if it can. Cheap; call it to skip tests. */
export async function natLabUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the NAT lab needs Linux';
  if (!isRoot()) return 'the NAT lab needs root (network namespaces)';
  for (const p of ['ip', 'nft']) if (!systemProgram(p)) return `the NAT lab needs ${p} (Debian package ${p === 'ip' ? 'iproute2' : 'nftables'})`;
  const r = await exec(IP(), ['netns', 'list']);
  if (r.code !== 0) return `\`ip netns list\` fails here: ${r.stderr.trim()}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------
// The lab

const PUBLIC_NET = '203.0.113';
const SERVER_ADDRESSES: [string, string] = [`${PUBLIC_NET}.1`, `${PUBLIC_NET}.2`];
const RELAY_ADDRESS = `${PUBLIC_NET}.3`;

/**
 * A lab for `fn`, destroyed when it is done; a failure has the lab's state (every
 * namespace's addresses, routes and nft ruleset: lab.describe()) appended to its message,
 * which helps more than the bare assertion.
 */
export async function withNatLab<T>(options: NatLabOptions, fn: (lab: NatLab) => Promise<T>): Promise<T> {
  const lab = await createNatLab(options);
  try {
    return await fn(lab);
  } catch (err) {
    if (err instanceof Error) err.message += `\n\nlab state:\n${await lab.describe().catch((e: Error) => e.message)}`;
    throw err;
  } finally {
    await lab.destroy();
  }
}

export async function createNatLab(options: NatLabOptions = {}): Promise<NatLab> {
  const specs: ClientSpec[] = options.clients ?? [{ nat: options.nat, hairpin: options.hairpin }];
  if (specs.length === 0) throw new NatLabError('a lab needs at least one client');
  if (options.clients && (options.nat !== undefined || options.hairpin !== undefined)) {
    throw new NatLabError('give either nat/hairpin or clients, not both');
  }
  const timeoutSec = options.mappingTimeoutSec ?? 300;
  const checkTimeout = (t: number, what: string) => {
    if (!(Number.isInteger(t) && t > 0 && t <= 86_400)) throw new NatLabError(`${what} must be a whole number of seconds from 1 to 86400, not ${t}`);
  };
  checkTimeout(timeoutSec, 'mappingTimeoutSec');

  const id = `${process.pid}-${(seq++).toString(36)}${randomBytes(2).toString('hex')}`;
  const nsName = (role: string) => `${NS_PREFIX}${id}-${role}`;

  // Plan (and validate) before touching anything: routers, one per client that brings its
  // own NAT, and clients.
  interface RouterPlan { index: number; ns: string; resolved: Resolved; wan: string; lanNet: string; clients: number[]; timeoutSec: number }
  const routers: RouterPlan[] = [];
  const routerOf: (RouterPlan | undefined)[] = [];
  const routerRules = (r: RouterPlan): RouterRules => ({
    publicAddress: r.wan,
    mapping: r.resolved.mapping as Dependence,
    filtering: r.resolved.filtering as Dependence,
    portAllocation: r.resolved.portAllocation,
    hairpin: r.resolved.hairpin,
    timeoutSec: r.timeoutSec,
  });
  const resolvedOf: Resolved[] = [];
  specs.forEach((spec, i) => {
    if (spec.behind !== undefined) {
      if (!Number.isInteger(spec.behind) || spec.behind < 0 || spec.behind >= i) {
        throw new NatLabError(`clients[${i}].behind must be the index of an earlier client`);
      }
      if (spec.nat !== undefined || spec.hairpin !== undefined || spec.mappingTimeoutSec !== undefined || spec.loss !== undefined) {
        throw new NatLabError(`clients[${i}]: behind shares the NAT of client ${spec.behind}; give nat, hairpin, mappingTimeoutSec and loss there`);
      }
      const r = routerOf[spec.behind];
      if (!r) throw new NatLabError(`clients[${i}].behind: client ${spec.behind} has no NAT ('none'/'firewall') to share`);
      routerOf[i] = r;
      resolvedOf[i] = r.resolved;
      r.clients.push(i);
      return;
    }
    const res = resolve(spec.nat, spec.hairpin);
    resolvedOf[i] = res;
    if (spec.mappingTimeoutSec !== undefined) checkTimeout(spec.mappingTimeoutSec, `clients[${i}].mappingTimeoutSec`);
    if (spec.loss !== undefined) checkLoss(spec.loss, `clients[${i}].loss`);
    if (res.routed) {
      const n = routers.length;
      const r: RouterPlan = {
        index: n,
        ns: nsName(`nat${n}`),
        resolved: res,
        wan: `${PUBLIC_NET}.${101 + n}`,
        lanNet: `10.0.${n + 1}`,
        clients: [i],
        timeoutSec: spec.mappingTimeoutSec ?? timeoutSec,
      };
      routers.push(r);
      routerOf[i] = r;
    }
  });
  if (routers.length > 90 || specs.length > 50) throw new NatLabError('too many clients for one lab (at most 50, 90 routers)');
  for (const [i, r] of routerOf.entries()) if (r && r.clients.length > 250) throw new NatLabError(`too many clients behind the NAT of client ${i}`);

  const why = await natLabUnavailable();
  if (why) throw new NatLabError(why);
  await cleanStale();
  installExitHook();

  const namespaces: string[] = [];
  const procs = new Set<LabProcess>();
  live.set(id, { namespaces, procs });
  mkdirSync(META_DIR, { recursive: true });
  writeFileSync(join(META_DIR, `${id}.json`), JSON.stringify({ pid: process.pid, start: processStart(process.pid), pidns: pidNamespace() }));
  const clients: LabClient[] = [];
  // What the NAT operations need of each client's NAT, by client index.
  interface NatRuntime {
    ns: string;
    /** The device whose two directions the loss rules drop on. */
    wanDevice: string;
    /** The router's rules (undefined for 'firewall'/'none': they have no NAT to flush or renumber). */
    rules: RouterRules | undefined;
    /** The LabNat objects of every client behind it (one per client; kept in step). */
    nats: LabNat[];
  }
  const natRuntime = new Map<number, NatRuntime>();
  let renumbered = 0;
  const runtimeOf = (c: LabClient | number, what: string): NatRuntime & { client: LabClient } => {
    const client = typeof c === 'number' ? clients[c] : c;
    if (!client || clients[client.index] !== client) throw new NatLabError(`${what}: no such client ${typeof c === 'number' ? c : JSON.stringify(c.ns)} in lab ${id}`);
    const rt = natRuntime.get(client.index);
    if (!rt) throw new NatLabError(`${what}: client ${client.index} ('${client.nat.type}') has no NAT or firewall of its own`);
    return { ...rt, client };
  };
  const nftIn = (ns: string, rules: string) => must(IP(), ['netns', 'exec', ns, sys('nft'), '-f', '-'], { input: rules });
  /**
   * Runs `change` with the NAT holding every packet back, so no flow sees half of it; then
   * `reopen` (nftables text) and the gate's removal, in one transaction. If `change` fails,
   * only the gate goes (and the error is thrown).
   */
  const gated = async (ns: string, change: () => Promise<void>, reopen: string) => {
    await nftIn(ns, GATE_RULESET);
    try {
      await change();
    } catch (err) {
      await nftIn(ns, `delete table ip ${GATE_TABLE}\n`).catch(() => {});
      throw err;
    }
    await nftIn(ns, `${reopen}\ndelete table ip ${GATE_TABLE}\n`);
  };
  const flushConntrack = async (ns: string, udpOnly: boolean) => {
    const r = await exec(IP(), ['netns', 'exec', ns, sys('conntrack'), ...(udpOnly ? ['-D', '-p', 'udp'] : ['-F'])]);
    // -D with nothing to delete exits 1 ("0 flow entries have been deleted")
    if (r.code !== 0 && !/ 0 flow entries/.test(r.stderr)) throw new NatLabError(`conntrack in ${ns} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
  };
  const flushSets = (rules: RouterRules | undefined) => (rules ? flushTables(rules).join('\n') : '');

  const tmpdir = mkdtempSync(join(tmpdir_(), `natkit-lab-${id}-`));
  const lab: NatLab & { destroyed?: Promise<void> } = {
    id,
    namespaces,
    tmpdir,
    inet: { ns: nsName('inet'), subnet: `${PUBLIC_NET}.0/24` },
    server: { ns: nsName('server'), addresses: [...SERVER_ADDRESSES], relayAddress: RELAY_ADDRESS },
    clients,
    get client() {
      return clients[0]!;
    },
    get nat() {
      return clients[0]!.nat;
    },
    spawn(ns, cmd, args = [], opts = {}) {
      if (!namespaces.includes(ns)) throw new NatLabError(`${ns} is not a namespace of lab ${id}`);
      const p = startProcess(`${cmd} in ${ns}`, IP(), ['netns', 'exec', ns, cmd, ...args], opts);
      procs.add(p);
      void p.exited.then(() => procs.delete(p));
      return p;
    },
    async run(ns, cmd, args = [], opts = {}) {
      if (!namespaces.includes(ns)) throw new NatLabError(`${ns} is not a namespace of lab ${id}`);
      return exec(IP(), ['netns', 'exec', ns, cmd, ...args], opts);
    },
    async setLoss(c, percent) {
      const rt = runtimeOf(c, 'setLoss');
      checkLoss(percent, 'setLoss: percent');
      const rules = `add table netdev ${LOSS_TABLE}\ndelete table netdev ${LOSS_TABLE}\n${percent > 0 ? lossRuleset(rt.wanDevice, percent) : ''}`;
      await nftIn(rt.ns, rules);
      for (const n of rt.nats) n.loss = percent;
    },
    async lossCounters(c) {
      const rt = runtimeOf(c, 'lossCounters');
      const r = await exec(IP(), ['netns', 'exec', rt.ns, sys('nft'), '-j', 'list', 'table', 'netdev', LOSS_TABLE]);
      if (r.code !== 0) return { inbound: 0, outbound: 0 }; // no loss set: nothing dropped
      const counts: Record<string, number> = {};
      for (const item of (JSON.parse(r.stdout) as { nftables: Record<string, { chain?: string; expr?: { counter?: { packets: number } }[] }>[] }).nftables) {
        const rule = item.rule;
        const n = rule?.expr?.find((e) => e.counter)?.counter?.packets;
        if (rule?.chain && n !== undefined) counts[rule.chain] = n;
      }
      return { inbound: counts.inbound ?? 0, outbound: counts.outbound ?? 0 };
    },
    async flushMappings(c, o = {}) {
      const rt = runtimeOf(c, 'flushMappings');
      await gated(rt.ns, () => flushConntrack(rt.ns, o.udpOnly ?? false), flushSets(rt.rules));
    },
    async changePublicAddress(c, address) {
      const rt = runtimeOf(c, 'changePublicAddress');
      const rules = rt.rules;
      if (!rules) throw new NatLabError(`changePublicAddress: client ${rt.client.index} ('${rt.client.nat.type}') has no NAT: its address is its own`);
      const taken = new Set([...SERVER_ADDRESSES, RELAY_ADDRESS, ...clients.map((x) => x.nat.publicAddress)]);
      let next = address;
      if (next === undefined) {
        do next = `${PUBLIC_NET}.${11 + renumbered++}`;
        while (taken.has(next) && renumbered < 90);
      }
      if (!next.startsWith(`${PUBLIC_NET}.`) || !/^\d{1,3}$/.test(next.slice(PUBLIC_NET.length + 1)) || Number(next.slice(PUBLIC_NET.length + 1)) > 254 || Number(next.slice(PUBLIC_NET.length + 1)) < 1) {
        throw new NatLabError(`changePublicAddress: ${JSON.stringify(next)} is not an address of the public segment ${PUBLIC_NET}.0/24`);
      }
      if (taken.has(next)) throw new NatLabError(`changePublicAddress: ${next} is in use in lab ${id}`);
      const old = rules.publicAddress;
      const updated: RouterRules = { ...rules, publicAddress: next };
      await gated(
        rt.ns,
        async () => {
          // (the old one first: deleting a primary address takes its secondaries with it)
          const cmds = [`addr del ${old}/24 dev wan`, `addr add ${next}/24 dev wan`];
          if (rules.hairpin) {
            cmds.push(
              `route del ${old}/32 dev hpo table ${HAIRPIN_TABLE}`,
              `route add ${next}/32 dev hpo table ${HAIRPIN_TABLE}`,
              `neigh del ${old} dev hpo`,
              `neigh replace ${next} lladdr ${HPI_MAC} dev hpo nud permanent`,
              `rule del pref 100`,
              `rule add pref 100 iif lan to ${next}/32 lookup ${HAIRPIN_TABLE}`,
            );
          }
          await must(IP(), ['-n', rt.ns, '-batch', '-'], { input: cmds.join('\n') + '\n' });
          await flushConntrack(rt.ns, false);
        },
        // the NAT's table, made anew for the new address (its mapping tables start empty)
        `delete table ip ${TABLE}\n${routerRuleset(updated)}`,
      );
      const runtime = natRuntime.get(rt.client.index)!;
      runtime.rules = updated;
      for (const n of rt.nats) n.publicAddress = next;
      return next;
    },
    async natState(c) {
      const rt = runtimeOf(c, 'natState');
      const ct = await must(IP(), ['netns', 'exec', rt.ns, sys('conntrack'), '-L']);
      // "udp      17 28 src=... " : protocol name, number, seconds left
      const conntrack = ct
        .split('\n')
        .map((l) => /^(\w+)\s+\d+\s+(\d+)\s/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ proto: m[1]!, timeoutSec: Number(m[2]), entry: m.input.trim() }));
      if (!rt.rules) return { mappings: [], conntrack };
      const out = await must(IP(), ['netns', 'exec', rt.ns, sys('nft'), '-j', 'list', 'map', 'ip', TABLE, 'in']);
      const mappings: LabMapping[] = [];
      type Elem = { elem?: { val: number; expires?: number } } | number;
      for (const item of (JSON.parse(out) as { nftables: { map?: { elem?: [Elem, { concat: [string, number] }][] } }[] }).nftables) {
        for (const [k, v] of item.map?.elem ?? []) {
          const port = typeof k === 'number' ? k : k.elem!.val;
          const expires = typeof k === 'number' ? 0 : (k.elem!.expires ?? 0);
          mappings.push({ external: `${rt.rules.publicAddress}:${port}`, internal: `${v.concat[0]}:${v.concat[1]}`, expiresMs: Math.round(expires * 1000) });
        }
      }
      return { mappings, conntrack };
    },
    async waitForListener(ns, o) {
      const timeoutMs = o.timeoutMs ?? 5000;
      const deadline = Date.now() + timeoutMs;
      const want = `${o.address ?? ''}:${o.port}`;
      for (;;) {
        const r = await exec(IP(), ['netns', 'exec', ns, sys('ss'), '-Hln', o.proto === 'udp' ? '-u' : '-t']);
        const locals = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[3] ?? '');
        if (locals.some((a) => (o.address ? a === want : a.endsWith(want)))) return;
        if (o.abort?.()) throw new NatLabError(`gave up waiting for ${o.proto} ${want} in ${ns}`);
        if (Date.now() > deadline) throw new NatLabError(`nothing listens on ${o.proto} ${want} in ${ns} after ${timeoutMs} ms; sockets:\n${r.stdout}`);
        await new Promise<void>((res) => setTimeout(res, 20));
      }
    },
    async describe() {
      const parts: string[] = [];
      for (const ns of namespaces) {
        const a = await exec(IP(), ['-n', ns, '-br', 'addr']);
        const rt = await exec(IP(), ['-n', ns, 'route']);
        const nft = await exec(IP(), ['netns', 'exec', ns, sys('nft'), 'list', 'ruleset']);
        parts.push(`== ${ns}\n${a.stdout}${rt.stdout}${nft.stdout}`);
      }
      return parts.join('\n');
    },
    destroy() {
      lab.destroyed ??= (async () => {
        await Promise.all([...procs].map((p) => p.stop()));
        for (const ns of [...namespaces].reverse()) {
          await killNamespacePids(ns);
          await exec(IP(), ['netns', 'delete', ns]);
        }
        namespaces.length = 0;
        live.delete(id);
        rmSync(join(META_DIR, `${id}.json`), { force: true });
        rmSync(tmpdir, { recursive: true, force: true });
      })();
      return lab.destroyed;
    },
  };

  // Three steps, each parallel across namespaces: (1) make the namespaces and set their
  // sysctls, (2) make every veth pair straight inside its two namespaces (one batch in the
  // host namespace: no interface name ever exists there), (3) one `ip -batch` per namespace
  // for addresses, bridges, routes and rules, then its nftables ruleset.
  const clientNs = specs.map((_, i) => nsName(`client${i}`));
  const inet = lab.inet.ns;
  const server = lab.server.ns;
  const all = [inet, server, ...routers.map((r) => r.ns), ...clientNs];
  const veths: string[] = [];
  const batch = new Map<string, string[]>(all.map((ns) => [ns, ['link set lo up']]));
  const cmds = (ns: string, ...c: string[]) => batch.get(ns)!.push(...c);
  const sysctls = new Map<string, string[]>(all.map((ns) => [ns, ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']]));
  const lateSysctls = new Map<string, string[]>();
  const rulesets = new Map<string, string>();
  // Every veth pair gets interface indexes that differ between its two ends (inet's ports
  // from 100, a router's private side from 200; the other end is numbered by its namespace
  // from 2). The kernel treats a carrier change as urgent only when a device's index
  // differs from its peer's (linkwatch_urgent_event), and two fresh namespaces both
  // number their first interface 2: such a pair would come up only with the linkwatch's
  // once-a-second batch, which made every lab wait ~1 s.
  let port = 0;
  /** A host on the public segment: `ifname` in `ns` <-> pN on the bridge in inet. */
  const attach = (ns: string, ifname: string) => {
    const n = port++;
    const p = `p${n}`;
    veths.push(`link add ${p} index ${100 + n} netns ${inet} type veth peer name ${ifname} netns ${ns}`);
    cmds(inet, `link set ${p} master br0 up`);
  };

  cmds(inet, 'link add br0 type bridge stp_state 0 forward_delay 0', 'link set br0 up');
  attach(server, 'eth0');
  cmds(server, ...[...SERVER_ADDRESSES, RELAY_ADDRESS].map((a) => `addr add ${a}/24 dev eth0`), 'link set eth0 up');
  // conntrack's UDP timeouts in a namespace that tracks (a NAT, a firewall): both the
  // unreplied and the "stream" (replied) timeout, so a mapping lives exactly so long idle
  const udpTimeouts = (t: number) => [`net.netfilter.nf_conntrack_udp_timeout=${t}`, `net.netfilter.nf_conntrack_udp_timeout_stream=${t}`];

  for (const r of routers) {
    const res = r.resolved;
    attach(r.ns, 'wan');
    cmds(r.ns, `addr add ${r.wan}/24 dev wan`, 'link set wan up');
    sysctls.get(r.ns)!.push('net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', ...udpTimeouts(r.timeoutSec));
    // the private side: a veth "lan" to the only client, or a bridge "lan" with a port per client
    if (r.clients.length === 1) {
      veths.push(`link add lan index 200 netns ${r.ns} type veth peer name eth0 netns ${clientNs[r.clients[0]!]}`);
    } else {
      cmds(r.ns, 'link add lan type bridge stp_state 0 forward_delay 0');
      r.clients.forEach((ci, k) => {
        veths.push(`link add l${k} index ${200 + k} netns ${r.ns} type veth peer name eth0 netns ${clientNs[ci]}`);
        cmds(r.ns, `link set l${k} master lan up`);
      });
    }
    cmds(r.ns, `addr add ${r.lanNet}.1/24 dev lan`, 'link set lan up');
    if (res.hairpin) {
      // The loop: inside -> public address goes out hpo (snat: the sender's mapping) and
      // comes back in hpi (filter, dnat: the target's mapping). The policy rule must come
      // before the `local` table, which would otherwise deliver the packet to the router.
      cmds(
        r.ns,
        `link add hpo address ${HPO_MAC} type veth peer name hpi address ${HPI_MAC}`,
        'link set hpo up',
        'link set hpi up',
        `route add ${r.wan}/32 dev hpo table ${HAIRPIN_TABLE}`,
        `neigh replace ${r.wan} lladdr ${HPI_MAC} dev hpo nud permanent`,
        `rule add pref 100 iif lan to ${r.wan}/32 lookup ${HAIRPIN_TABLE}`,
        'rule add pref 200 lookup local',
        'rule del pref 0 lookup local',
      );
      lateSysctls.set(r.ns, ['net.ipv4.conf.hpi.accept_local=1', 'net.ipv4.conf.hpi.rp_filter=0']);
    }
    rulesets.set(
      r.ns,
      routerRuleset(routerRules(r)),
    );
  }

  const runtimeOfRouter = new Map<RouterPlan, NatRuntime>();
  const losses: [number, number][] = [];
  specs.forEach((spec, i) => {
    const ns = clientNs[i]!;
    const res = resolvedOf[i]!;
    const r = routerOf[i];
    const base = { type: res.type, mapping: res.mapping, filtering: res.filtering, portAllocation: res.portAllocation, hairpin: res.hairpin, loss: 0 };
    if (r) {
      const address = `${r.lanNet}.${2 + r.clients.indexOf(i)}`;
      cmds(ns, `addr add ${address}/24 dev eth0`, 'link set eth0 up', `route add default via ${r.lanNet}.1`);
      const nat: LabNat = { ...base, ns: r.ns, publicAddress: r.wan, privateAddress: `${r.lanNet}.1`, subnet: `${r.lanNet}.0/24`, mappingTimeoutSec: r.timeoutSec };
      clients.push({ index: i, ns, address, gateway: `${r.lanNet}.1`, nat });
      let rt = runtimeOfRouter.get(r);
      if (!rt) {
        rt = { ns: r.ns, wanDevice: 'wan', rules: routerRules(r), nats: [] };
        runtimeOfRouter.set(r, rt);
      }
      rt.nats.push(nat);
      natRuntime.set(i, rt);
    } else {
      const address = `${PUBLIC_NET}.${201 + i}`;
      attach(ns, 'eth0');
      cmds(ns, `addr add ${address}/24 dev eth0`, 'link set eth0 up');
      const firewall = res.type === 'firewall';
      const t = spec.mappingTimeoutSec ?? timeoutSec;
      if (firewall) {
        rulesets.set(ns, firewallRuleset());
        sysctls.get(ns)!.push(...udpTimeouts(t));
      }
      const nat: LabNat = { ...base, ns: firewall ? ns : undefined, publicAddress: address, privateAddress: undefined, subnet: undefined, mappingTimeoutSec: firewall ? t : undefined };
      clients.push({ index: i, ns, address, gateway: undefined, nat });
      // a host without a router: its own interface takes the loss; a firewall's conntrack can be flushed
      natRuntime.set(i, { ns, wanDevice: 'eth0', rules: undefined, nats: [nat] });
    }
    if (spec.loss) losses.push([i, spec.loss]);
  });

  const settle = async (work: Promise<unknown>[]) => {
    const failed = (await Promise.allSettled(work)).find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    await settle(
      all.map(async (ns) => {
        await must(IP(), ['netns', 'add', ns]);
        namespaces.push(ns);
        await must(IP(), ['netns', 'exec', ns, sys('sysctl'), '-q', '-w', ...sysctls.get(ns)!]);
      }),
    );
    await must(IP(), ['-batch', '-'], { input: veths.join('\n') + '\n' });
    await settle(
      all.map(async (ns) => {
        await must(IP(), ['-n', ns, '-batch', '-'], { input: batch.get(ns)!.join('\n') + '\n' });
        const late = lateSysctls.get(ns);
        if (late) await must(IP(), ['netns', 'exec', ns, sys('sysctl'), '-q', '-w', ...late]);
        const rules = rulesets.get(ns);
        if (rules) await must(IP(), ['netns', 'exec', ns, sys('nft'), '-f', '-'], { input: rules });
      }),
    );
    // Links come up (carrier, bridge port forwarding) a moment after `link set up`: a
    // first datagram sent before that is lost, which a test would read as filtering.
    await settle(all.map((ns) => waitLinksUp(ns)));
    for (const [i, percent] of losses) await lab.setLoss(i, percent);
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}

export interface PeerLabOptions {
  /** Idle lifetime of both NATs' UDP mappings, seconds (default 300). */
  mappingTimeoutSec?: number;
  /** Percent of packets both NATs drop on their WAN side, each way (default 0). */
  loss?: number;
}

export interface PeerLab extends NatLab {
  /** The two peers, each behind a NAT of its own (clients[0] and clients[1]). */
  readonly peers: readonly [LabClient, LabClient];
}

/**
 * The two-peer layout of issue 8: two clients, each behind its own NAT of any type (or
 * none), and the public servers' namespace (`lab.server`: two addresses for an RFC 5780 STUN
 * server, a third for a TURN relay; a signalling server can listen on any of them). The NATs
 * do not hairpin: the peers are behind different NATs, so nothing they send is addressed to
 * their own NAT's public address.
 */
export async function createPeerLab(a: NatType | NatBehaviour, b: NatType | NatBehaviour, options: PeerLabOptions = {}): Promise<PeerLab> {
  const spec = (nat: NatType | NatBehaviour): ClientSpec => ({ nat, ...(options.loss ? { loss: options.loss } : {}) });
  const lab = await createNatLab({ clients: [spec(a), spec(b)], mappingTimeoutSec: options.mappingTimeoutSec });
  return Object.assign(lab, { peers: [lab.clients[0]!, lab.clients[1]!] as const });
}

/** Waits until every interface in `ns` but lo reports state UP (at most 5 s). */
async function waitLinksUp(ns: string): Promise<void> {
  const deadline = performance.now() + 5_000;
  for (;;) {
    const out = await must(IP(), ['-n', ns, '-br', 'link']);
    const down = out
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 2 && f[0] !== 'lo' && f[1] !== 'UP' && f[1] !== 'UNKNOWN');
    if (down.length === 0) return;
    if (performance.now() > deadline) throw new NatLabError(`links still not up in ${ns}: ${down.map((f) => `${f[0]} ${f[1]}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------
// Classic STUN servers on the server's two addresses

/** Vovida stund (RFC 3489) on primary:3478/3479 and alternate:3478/3479, ready to answer. */
export async function startStund(lab: NatLab, opts: { program?: string } = {}): Promise<LabProcess> {
  const [a, b] = lab.server.addresses;
  const p = lab.spawn(lab.server.ns, opts.program ?? systemProgram('stund') ?? 'stund', ['-h', a, '-a', b]);
  await untilListening(lab, p, [[a, 3478], [a, 3479], [b, 3478], [b, 3479]]);
  return p;
}

/** Waits until `p` listens on every UDP address:port; stops it and throws if it exits first or never does. */
async function untilListening(lab: NatLab, p: LabProcess, sockets: (readonly [string, number])[], timeoutMs = 5000): Promise<void> {
  let failed: ExitInfo | undefined;
  void p.exited.then((e) => (failed = e));
  try {
    for (const [address, port] of sockets) {
      await lab.waitForListener(lab.server.ns, { proto: 'udp', address, port, timeoutMs, abort: () => failed !== undefined });
    }
  } catch (err) {
    const early = failed;
    await p.stop();
    const why = early ? `${p.description} exited (${early.code ?? early.signal}) before listening` : (err as Error).message;
    throw new NatLabError(`${why}\noutput:\n${p.stdout()}${p.stderr()}`);
  }
}

/**
 * coturn on both server addresses, ports 3478 and 3479: with two listening addresses it does
 * RFC 5780 (CHANGE-REQUEST, OTHER-ADDRESS). `-c /dev/null` keeps Debian's /etc/turnserver.conf
 * (which says no-rfc5780 and syslog) out; its files go to the lab's tmpdir. STUN only unless
 * stunOnly is false (then give the TURN options, e.g. users, in extraArgs).
 */
export async function startTurnserver(lab: NatLab, opts: { program?: string; stunOnly?: boolean; extraArgs?: string[] } = {}): Promise<LabProcess> {
  const [a, b] = lab.server.addresses;
  const args = [
    '-c', '/dev/null', '-L', a, '-L', b, '-p', '3478', '--alt-listening-port', '3479',
    ...(opts.stunOnly === false ? [] : ['--stun-only']),
    '--no-cli', '--no-tls', '--no-dtls', '--log-file', 'stdout', '--simple-log',
    '--pidfile', join(lab.tmpdir, 'turnserver.pid'), '--db', join(lab.tmpdir, 'turndb'),
    ...(opts.extraArgs ?? []),
  ];
  const p = lab.spawn(lab.server.ns, opts.program ?? systemProgram('turnserver') ?? 'turnserver', args);
  await untilListening(lab, p, [[a, 3478], [a, 3479], [b, 3478], [b, 3479]]);
  return p;
}

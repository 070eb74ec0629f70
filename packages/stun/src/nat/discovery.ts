import { type TransportAddress, formatAddress, sameAddress } from '../codec/ip.js';

/**
 * NAT behaviour discovery (RFC 5780 section 4) written against a `NatProber`, so the logic
 * runs the same over real sockets (UdpProber) and over a simulated network in tests.
 */

/** RFC 4787 section 4.1 mapping and section 5 filtering behaviours. */
export type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';

/** The classic RFC 3489 section 5 names. */
export type ClassicNatType =
  | 'Open Internet'
  | 'Full Cone'
  | 'Restricted Cone'
  | 'Port Restricted Cone'
  | 'Symmetric'
  | 'Symmetric UDP Firewall'
  | 'UDP Blocked'
  | 'Unknown';

export interface ProbeRequest {
  /** Which local socket sends: 'primary' for the mapping tests, 'filtering' a fresh one. */
  socket: 'primary' | 'filtering';
  to: TransportAddress;
  changeIp?: boolean;
  changePort?: boolean;
}

export interface ProbeAnswer {
  mapped: TransportAddress;
  /** OTHER-ADDRESS (or CHANGED-ADDRESS from RFC 3489 servers). */
  otherAddress: TransportAddress | undefined;
  responseOrigin: TransportAddress | undefined;
  /** Where the answer actually came from. */
  from: TransportAddress;
}

export interface NatProber {
  /** The local transport address of a socket (a specific IP, not a wildcard). */
  local(socket: 'primary' | 'filtering'): TransportAddress;
  /** One Binding transaction; undefined when no answer came (timeout). */
  probe(req: ProbeRequest): Promise<ProbeAnswer | undefined>;
  /**
   * RFC 5780 section 3.4: sends a request from a second socket to `mapped` (the primary
   * socket's mapped address) and reports whether the primary socket received it.
   */
  hairpin(mapped: TransportAddress): Promise<boolean>;
}

export interface TestRecord {
  name: string;
  to: string;
  change: string;
  result: string;
}

export interface NatReport {
  server: TransportAddress;
  local: TransportAddress;
  /** No answer to the first Binding request. */
  udpBlocked: boolean;
  mapped: TransportAddress | undefined;
  /** The mapped address differs from the local one. */
  natPresent: boolean | undefined;
  /** The server gave OTHER-ADDRESS (or CHANGED-ADDRESS), so behaviour tests ran. */
  serverSupportsDiscovery: boolean;
  otherAddress: TransportAddress | undefined;
  mapping: Behaviour | undefined;
  filtering: Behaviour | undefined;
  hairpinning: boolean | undefined;
  portPreservation: boolean | undefined;
  classic: ClassicNatType;
  tests: TestRecord[];
}

function changeText(r: ProbeRequest): string {
  if (r.changeIp && r.changePort) return 'change IP and port';
  if (r.changeIp) return 'change IP';
  if (r.changePort) return 'change port';
  return '-';
}

/** RFC 3489 section 5 name from RFC 4787 behaviours. */
export function classicName(natPresent: boolean, mapping: Behaviour | undefined, filtering: Behaviour | undefined): ClassicNatType {
  if (!natPresent) {
    if (filtering === undefined) return 'Unknown';
    return filtering === 'endpoint-independent' ? 'Open Internet' : 'Symmetric UDP Firewall';
  }
  if (mapping === undefined) return 'Unknown';
  if (mapping !== 'endpoint-independent') return 'Symmetric';
  if (filtering === 'endpoint-independent') return 'Full Cone';
  if (filtering === 'address-dependent') return 'Restricted Cone';
  if (filtering === 'address-and-port-dependent') return 'Port Restricted Cone';
  return 'Unknown';
}

export interface DiscoverOptions {
  /** Skip the hairpinning test. */
  hairpin?: boolean;
}

/**
 * Runs the RFC 5780 tests against `server` (its primary address):
 *  - section 4.3 mapping: test I to A:P, test II to A2:P, test III to A2:P2, comparing the
 *    mapped addresses;
 *  - section 4.4 filtering, from a socket that has sent nothing to A2 or P2 yet (so no
 *    earlier packet opened the filter): test II asks for change IP and port, test III for
 *    change port only;
 *  - section 3.4 hairpinning, and port preservation (RFC 4787 section 4.1).
 */
export async function discoverNat(prober: NatProber, server: TransportAddress, options: DiscoverOptions = {}): Promise<NatReport> {
  const tests: TestRecord[] = [];
  const run = async (name: string, req: ProbeRequest): Promise<ProbeAnswer | undefined> => {
    const a = await prober.probe(req);
    tests.push({
      name,
      to: formatAddress(req.to),
      change: changeText(req),
      result: a ? `mapped ${formatAddress(a.mapped)} from ${formatAddress(a.from)}` : 'no response',
    });
    return a;
  };
  const local = prober.local('primary');
  const report: NatReport = {
    server,
    local,
    udpBlocked: false,
    mapped: undefined,
    natPresent: undefined,
    serverSupportsDiscovery: false,
    otherAddress: undefined,
    mapping: undefined,
    filtering: undefined,
    hairpinning: undefined,
    portPreservation: undefined,
    classic: 'Unknown',
    tests,
  };

  // Mapping test I (RFC 5780 section 4.3).
  const t1 = await run('mapping I', { socket: 'primary', to: server });
  if (!t1) {
    report.udpBlocked = true;
    report.classic = 'UDP Blocked';
    return report;
  }
  report.mapped = t1.mapped;
  report.natPresent = !sameAddress(t1.mapped, local);
  report.portPreservation = t1.mapped.port === local.port;
  const other = t1.otherAddress;
  report.otherAddress = other;
  report.serverSupportsDiscovery = other !== undefined && !sameAddress(other, server) && other.address !== server.address;

  if (report.serverSupportsDiscovery && other) {
    if (!report.natPresent) {
      report.mapping = 'endpoint-independent';
    } else {
      // Test II: the alternate IP, the primary port.
      const t2 = await run('mapping II', { socket: 'primary', to: { ...other, port: server.port } });
      if (t2 && sameAddress(t2.mapped, t1.mapped)) {
        report.mapping = 'endpoint-independent';
      } else if (t2) {
        // Test III: the alternate IP and port.
        const t3 = await run('mapping III', { socket: 'primary', to: other });
        if (t3) report.mapping = sameAddress(t3.mapped, t2.mapped) ? 'address-dependent' : 'address-and-port-dependent';
      }
    }
    // Filtering (RFC 5780 section 4.4), from the fresh socket.
    const f1 = await run('filtering I', { socket: 'filtering', to: server });
    if (f1) {
      const f2 = await run('filtering II', { socket: 'filtering', to: server, changeIp: true, changePort: true });
      if (f2) {
        report.filtering = 'endpoint-independent';
      } else {
        const f3 = await run('filtering III', { socket: 'filtering', to: server, changePort: true });
        report.filtering = f3 ? 'address-dependent' : 'address-and-port-dependent';
      }
    }
  }
  if (options.hairpin !== false && report.natPresent) {
    report.hairpinning = await prober.hairpin(t1.mapped);
    tests.push({ name: 'hairpinning', to: formatAddress(t1.mapped), change: '-', result: report.hairpinning ? 'received' : 'not received' });
  }
  report.classic = report.serverSupportsDiscovery ? classicName(report.natPresent, report.mapping, report.filtering) : 'Unknown';
  return report;
}

/** A report as the lines `natcheck` prints. */
export function formatReport(r: NatReport): string {
  const yn = (b: boolean | undefined) => (b === undefined ? 'not tested' : b ? 'yes' : 'no');
  const lines: string[] = [];
  lines.push(`STUN server          ${formatAddress(r.server)}${r.otherAddress ? ` (other address ${formatAddress(r.otherAddress)})` : ''}`);
  lines.push(`local address        ${formatAddress(r.local)}`);
  if (r.udpBlocked) {
    lines.push('mapped address       no answer: UDP is blocked (or the server is down)');
  } else {
    lines.push(`mapped address       ${formatAddress(r.mapped!)}`);
    lines.push(`behind a NAT         ${yn(r.natPresent)}`);
    lines.push(`port preservation    ${yn(r.portPreservation)}`);
    if (!r.serverSupportsDiscovery) {
      lines.push('behaviour tests      not run: the server gave no OTHER-ADDRESS (it lacks RFC 5780)');
    } else {
      lines.push(`mapping              ${r.mapping ?? 'unknown (no answer from the alternate address)'}`);
      lines.push(`filtering            ${r.filtering ?? 'unknown'}`);
    }
    lines.push(`hairpinning          ${yn(r.hairpinning)}`);
  }
  lines.push(`NAT type (RFC 3489)  ${r.classic}`);
  return lines.join('\n');
}

import { formatAddress } from '@natkit/stun';
import type { LocalCandidate } from '../candidate.js';
import type { GatherReport, ServerOutcome } from '../gather/gatherer.js';

/**
 * icegather's text output, like the "Trickle ICE" test page: one row per candidate as it
 * arrives, then one line per server (and a clear reason for each that failed).
 */

const COLUMNS: Array<[title: string, width: number]> = [
  ['Time', 7],
  ['Type', 5],
  ['Foundation', 10],
  ['Protocol', 8],
  ['Address', 15],
  ['Port', 5],
  ['Priority', 17],
  ['Related', 21],
  ['Server', 0],
];

function row(cells: string[]): string {
  return cells
    .map((c, i) => (COLUMNS[i]![1] ? c.padEnd(COLUMNS[i]![1]) : c))
    .join('  ')
    .trimEnd();
}

export function tableHeader(): string {
  return row(COLUMNS.map(([t]) => t));
}

/** `126 | 65535 | 255`: type preference, local preference, 256 - component (as the Trickle ICE page shows it). */
export function priorityParts(p: number): string {
  return `${p >>> 24} | ${(p >>> 8) & 0xffff} | ${p & 0xff}`;
}

/** `address:port`, `[v6]:port` for an address that comes without its family (a candidate's). */
function hostPort(address: string, port: number | undefined): string {
  return formatAddress({ family: address.includes(':') ? 'IPv6' : 'IPv4', address, port: port ?? 0 });
}

function related(c: LocalCandidate): string {
  return c.relatedAddress === undefined ? '' : hostPort(c.relatedAddress, c.relatedPort);
}

export function candidateRow(c: LocalCandidate): string {
  return row([((c.elapsedMs ?? 0) / 1000).toFixed(3), c.type, c.foundation, c.transport, c.address, String(c.port), priorityParts(c.priority), related(c), c.server ?? '']);
}

/** One line per server: `ok` or `FAILED`, time, and what it gave or why it failed. */
export function serverLine(o: ServerOutcome): string {
  const ms = `${Math.round(o.elapsedMs)} ms`;
  const at = o.server ? ` (${formatAddress(o.server)})` : '';
  if (o.error?.code === 'SKIPPED') return `skipped  ${o.url}${at}: ${o.error.message}`;
  if (!o.ok) {
    const code = o.error?.errorCode !== undefined ? `${o.error.code} ${o.error.errorCode}` : (o.error?.code ?? 'FAILED');
    return `FAILED   ${o.url}${at} after ${ms}: ${code}: ${o.error?.message ?? 'no answer'}`;
  }
  const what: string[] = o.candidates.map((c) => `${c.type} ${hostPort(c.address, c.port)}`);
  for (const m of o.mapped) {
    const shown = o.candidates.some((c) => c.address === m.mapped.address && c.port === m.mapped.port);
    if (shown) continue;
    const same = m.mapped.address === m.local.address && m.mapped.port === m.local.port;
    const text = formatAddress(m.mapped);
    what.push(o.transport === 'tls' && o.kind === 'stun' ? `mapped ${text} over TLS (no UDP candidate)` : same ? `mapped ${text}, the host address itself (no NAT; redundant)` : `mapped ${text} (redundant)`);
  }
  return `ok       ${o.url}${at} in ${ms}: ${what.join(', ')}`;
}

export function summary(report: GatherReport): string {
  const failed = report.servers.filter((o) => !o.ok && o.error?.code !== 'SKIPPED').length;
  const counts = ['host', 'srflx', 'relay'].map((t) => `${report.candidates.filter((c) => c.type === t).length} ${t}`).join(', ');
  const servers = report.servers.length === 0 ? 'no servers' : `${report.servers.length - failed} of ${report.servers.length} server(s) answered`;
  return `Done in ${(report.elapsedMs / 1000).toFixed(3)} s: ${report.candidates.length} candidate(s) (${counts}); ${servers}`;
}

/** The report as JSON: candidates (without internal base ids) and servers. */
export function reportJson(report: GatherReport): unknown {
  const cand = (c: LocalCandidate) => {
    const { baseId: _b, ...rest } = c;
    return rest;
  };
  return {
    elapsedMs: report.elapsedMs,
    candidates: report.candidates.map(cand),
    servers: report.servers.map((o) => ({ ...o, candidates: o.candidates.map(cand) })),
    hostErrors: report.hostErrors,
  };
}

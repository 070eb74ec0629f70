import type { DemoPath, PathEnd, TimedEvent } from './events.js';

/**
 * p2pdemo's text output: each event as the line(s) a person reads, the seconds since the
 * start in front. (The libjingle tutorial printed "Candidate being sent: ...", "Received new
 * candidate", "Writable from ... to ...", "Sent byte N to remote P2P", "Received byte N from
 * remote P2P"; the same moments are here, with what they mean.)
 */

const TYPE_NAMES: Record<string, string> = { host: 'host', srflx: 'server-reflexive', prflx: 'peer-reflexive', relay: 'relayed' };
const hostPort = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
const end = (e: PathEnd) => `${(TYPE_NAMES[e.type] ?? e.type).padEnd(16)} ${e.protocol} ${hostPort(e.address, e.port)}`;
const yn = (b: boolean | undefined) => (b === undefined ? 'not tested' : b ? 'yes' : 'no');
const secs = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

function pathLines(path: DemoPath, rttMs: number | undefined, meaning?: string): string[] {
  return [
    `  local    ${end(path.local)}`,
    `  remote   ${end(path.remote)}`,
    ...(rttMs !== undefined ? [`  RTT      ${rttMs} ms (the check that found the path)`] : []),
    ...(meaning ? [`  meaning  ${meaning}`] : []),
  ];
}

/** The text of one event (one or more lines, no trailing newline), or undefined for none. */
export function formatEvent(e: TimedEvent): string | undefined {
  const lines = body(e);
  if (!lines || lines.length === 0) return undefined;
  const stamp = `${e.t.toFixed(3).padStart(8)}  `;
  return lines.map((l, i) => (i === 0 ? stamp : ' '.repeat(stamp.length)) + l).join('\n');
}

function body(e: TimedEvent): string[] | undefined {
  switch (e.event) {
    case 'start':
      return [
        `p2pdemo ${e.version}: signalling ${e.signal}${e.plain ? " (the tutorial's plain pipe)" : `, room "${e.room}"`}; ` +
          `STUN ${e.stun.length ? e.stun.join(', ') : 'none'}; TURN ${e.turn.length ? e.turn.join(', ') : 'none'}${e.relayOnly ? ' (relayed candidates only)' : ''}; a random byte every ${e.interval}`,
      ];
    case 'nat':
      if ('skipped' in e) return [`NAT check skipped: ${e.skipped}`, `  meaning  ${e.meaning}`];
      return [
        `NAT check against ${e.server}${e.rfc5780 ? ' (RFC 5780: the server has a second address)' : ' (one address: the mapping only)'}`,
        ...(e.local ? [`  local address        ${e.local}`] : []),
        ...(e.udpBlocked
          ? ['  mapped address       no answer: UDP is blocked (or the server is down)']
          : [
              `  mapped address       ${e.mapped}`,
              `  behind a NAT         ${yn(e.natPresent)}`,
              `  port preservation    ${yn(e.portPreservation)}`,
              ...(e.rfc5780 ? [`  mapping              ${e.mapping ?? 'unknown'}`, `  filtering            ${e.filtering ?? 'unknown'}`] : []),
              `  hairpinning          ${yn(e.hairpinning)}`,
            ]),
        `  NAT type (RFC 3489)  ${e.classic}`,
        `  meaning              ${e.meaning}`,
      ];
    case 'signal':
      switch (e.state) {
        case 'joined':
          return [`Signalling: joined room "${e.room}" at ${e.server} ${e.initiator ? 'first (the controlling ICE agent)' : 'second (the controlled ICE agent)'}${e.peer ? '; the peer is there' : ''}`];
        case 'connected':
          return [`Signalling: connected to ${e.server} (plain pipe: both agents start controlling; RFC 8445's tie-breaker settles it)`];
        case 'rejoined':
          return [`Signalling: back in${e.room ? ` room "${e.room}"` : ''} at ${e.server}`];
        case 'reconnecting':
          return [`Signalling: connection to ${e.server} lost${e.error ? ` (${e.error})` : ''}; trying again in ${secs(e.delayMs ?? 0)} (attempt ${e.attempt})`];
      }
      return undefined;
    case 'waiting':
      return [e.for === 'peer' ? 'Waiting for the peer to join' : "Waiting for the peer's candidates"];
    case 'peer':
      return [e.state === 'joined' ? 'The peer joined' : e.state === 'back' ? 'The peer is back (it reconnected to the signalling server)' : `The peer left (${e.reason})`];
    case 'peer-nat':
      return [`The peer's NAT: ${e.nat.classic}${e.nat.mapping ? ` (mapping ${e.nat.mapping}, filtering ${e.nat.filtering ?? 'unknown'})` : ''}`];
    case 'session':
      return [`ICE session ${e.session}: ufrag ${e.ufrag}, ${e.role}${e.why === 'first' ? '' : ` (${e.why})`}`];
    case 'role':
      return [`Role conflict settled (RFC 8445 7.3.1.1): now ${e.role}`];
    case 'candidate': {
      const what = `${TYPE_NAMES[e.type] ?? e.type} ${e.protocol} ${hostPort(e.address, e.port)} priority ${e.priority}${e.relatedAddress ? ` (from ${hostPort(e.relatedAddress, e.relatedPort ?? 0)})` : ''}`;
      if (e.direction === 'local') return [`Candidate being sent: ${what}${e.wire ? ` as "${e.wire}"` : ''}`];
      return [`Received candidate: ${what}`];
    }
    case 'server':
      // (a STUN server is not asked for relayed candidates only: not a failure)
      return e.ok || e.error?.startsWith('SKIPPED') ? undefined : [`Server ${e.url} failed after ${e.ms} ms: ${e.error}`];
    case 'gathered':
      return [`Gathered ${e.host} host, ${e.srflx} server-reflexive and ${e.relay} relayed candidate(s) in ${secs(e.ms)}`];
    case 'connected':
      return [`Connected in ${secs(e.iceMs)}: ${e.path.kind} path`, ...pathLines(e.path, e.rttMs, e.meaning)];
    case 'path':
      return [`The path changed: ${e.path.kind}`, ...pathLines(e.path, e.rttMs)];
    case 'sent':
      return [`Sent byte ${e.byte} to the peer`];
    case 'data':
      return [`Received byte ${e.byte} from the peer${e.bytes > 1 ? ` (and ${e.bytes - 1} more)` : ''}`];
    case 'disconnected':
      return [`The path broke (session ${e.session}): ${e.detail}`];
    case 'restart':
      return [e.by === 'local' ? `ICE restart, session ${e.session} (${e.why}): exchanging candidates again` : `The peer restarted ICE: following it to session ${e.session}`];
    case 'recovered':
      return [
        `Recovered ${secs(e.recoveryMs)} after noticing the break${e.outageMs !== undefined ? ` (${secs(e.outageMs)} since the old path last answered a consent check)` : ''}: ${e.path.kind} path (session ${e.session})`,
        ...pathLines(e.path, e.rttMs, e.meaning),
      ];
    case 'failed':
      return [`No path: ${e.reason}`, `  verdict  ${e.verdict}`, `  meaning  ${e.meaning}`];
    case 'retry':
      return [`Session ${e.session} found no path (${e.reason}); trying again in ${secs(e.inMs)}`];
    case 'warning':
      return [`Warning: ${e.message}`];
    case 'error':
      return [`Error: ${e.message}`];
    case 'stopped':
      return [`Stopped (${e.reason}): sent ${e.sent} byte(s), received ${e.received}`];
  }
  return undefined;
}

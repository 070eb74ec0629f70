// p2pdemo's text output and the sentences that say what a finding means.
import { describe, expect, it } from 'vitest';
import type { DemoPath, TimedEvent } from '../src/events.js';
import { formatEvent } from '../src/format.js';
import { failureVerdict, natMeaning, pathMeaning } from '../src/meaning.js';

const path = (kind: 'direct' | 'relayed', l = 'srflx', r = 'prflx'): DemoPath => ({
  local: { type: l as 'srflx', address: '203.0.113.101', port: 40000, protocol: 'udp' },
  remote: { type: r as 'prflx', address: '2001:db8::7', port: 5000, protocol: 'udp' },
  kind,
});

describe('text output', () => {
  it('the time in front, continuation lines under the text', () => {
    const e: TimedEvent = { event: 'connected', session: 0, path: path('direct'), rttMs: 3.04, iceMs: 790, meaning: 'direct: ...', t: 8.318 };
    expect(formatEvent(e)).toBe(
      [
        '   8.318  Connected in 0.79 s: direct path',
        '            local    server-reflexive udp 203.0.113.101:40000',
        '            remote   peer-reflexive   udp [2001:db8::7]:5000',
        '            RTT      3.04 ms (the check that found the path)',
        '            meaning  direct: ...',
      ].join('\n'),
    );
  });

  it("the tutorial's moments: candidates sent and received, bytes both ways", () => {
    const t = 1;
    expect(formatEvent({ event: 'candidate', direction: 'local', session: 0, type: 'host', protocol: 'udp', address: '10.0.1.2', port: 5000, priority: 2130706431, wire: '10.0.1.2 5000 udp 1.000000 local 0+abcdefgh p', t })).toBe(
      '   1.000  Candidate being sent: host udp 10.0.1.2:5000 priority 2130706431 as "10.0.1.2 5000 udp 1.000000 local 0+abcdefgh p"',
    );
    expect(formatEvent({ event: 'candidate', direction: 'remote', session: 0, type: 'relay', protocol: 'udp', address: '203.0.113.3', port: 50002, priority: 12517375, relatedAddress: '203.0.113.102', relatedPort: 30637, t })).toBe(
      '   1.000  Received candidate: relayed udp 203.0.113.3:50002 priority 12517375 (from 203.0.113.102:30637)',
    );
    expect(formatEvent({ event: 'sent', byte: 137, sent: 1, t })).toBe('   1.000  Sent byte 137 to the peer');
    expect(formatEvent({ event: 'data', byte: 42, bytes: 1, received: 1, t })).toBe('   1.000  Received byte 42 from the peer');
  });

  it('a break, the restart, the recovery with both figures; the verdict', () => {
    const t = 38.115;
    expect(formatEvent({ event: 'disconnected', session: 0, reason: 'consent', detail: 'no answer to consent checks for 12.5 s (RFC 7675)', silentMs: 12_500, t })).toBe(
      '  38.115  The path broke (session 0): no answer to consent checks for 12.5 s (RFC 7675)',
    );
    expect(formatEvent({ event: 'restart', session: 1, by: 'local', why: 'the path broke', t })).toBe('  38.115  ICE restart, session 1 (the path broke): exchanging candidates again');
    expect(formatEvent({ event: 'restart', session: 1, by: 'peer', why: 'the peer restarted ICE', t })).toBe('  38.115  The peer restarted ICE: following it to session 1');
    expect(formatEvent({ event: 'recovered', session: 1, path: path('relayed', 'relay'), recoveryMs: 710, outageMs: 13_210, meaning: 'm', t })!.split('\n')[0]).toBe(
      '  38.115  Recovered 0.71 s after noticing the break (13.2 s since the old path last answered a consent check): relayed path (session 1)',
    );
    expect(formatEvent({ event: 'failed', session: 0, reason: 'no path within 30 s', verdict: 'impossible without a relay', meaning: 'why', t })).toBe(
      ['  38.115  No path: no path within 30 s', '            verdict  impossible without a relay', '            meaning  why'].join('\n'),
    );
  });

  it('says nothing for a server that answered, or a STUN server not asked (relay only)', () => {
    expect(formatEvent({ event: 'server', session: 0, url: 'stun:x', ok: true, ms: 3, t: 0 })).toBeUndefined();
    expect(formatEvent({ event: 'server', session: 0, url: 'stun:x', ok: false, ms: 0, error: 'SKIPPED: not used', t: 0 })).toBeUndefined();
    expect(formatEvent({ event: 'server', session: 0, url: 'turn:x', ok: false, ms: 12, error: 'AUTH_FAILED: 401', t: 0 })).toBe('   0.000  Server turn:x failed after 12 ms: AUTH_FAILED: 401');
  });
});

describe('what it means', () => {
  it('each NAT type, in words', () => {
    expect(natMeaning('Open Internet')).toMatch(/^no NAT/);
    expect(natMeaning('Port Restricted Cone')).toMatch(/except one behind a symmetric NAT, which needs a relay/);
    expect(natMeaning('Symmetric')).toMatch(/only with peers that have no NAT, a full-cone or a restricted-cone NAT/);
    expect(natMeaning('UDP Blocked')).toMatch(/only a relay over TCP or TLS/);
    expect(natMeaning('Unknown')).toMatch(/RFC 5780 needs two/);
  });

  it('the path: host to host, through the NATs, relayed (and who asked for it)', () => {
    expect(pathMeaning(path('direct', 'host', 'host'))).toMatch(/^direct, host to host/);
    expect(pathMeaning(path('direct'))).toMatch(/^direct: the NATs let the peers reach each other/);
    expect(pathMeaning(path('relayed', 'relay'))).toMatch(/^relayed: no direct path/);
    expect(pathMeaning(path('relayed', 'relay'), 'local')).toMatch(/^relayed, as asked \(--relay-only\)/);
    expect(pathMeaning(path('relayed', 'relay'), 'peer')).toMatch(/^relayed, as the peer asked/);
  });

  it('no path: impossible without a relay (none given, or it refused), or not even through it', () => {
    expect(failureVerdict({ localRelays: 0, remoteRelays: 0, turnServers: 0, turnErrors: [], ownNat: 'Symmetric', peerNat: 'Port Restricted Cone' })).toEqual({
      verdict: 'impossible without a relay',
      meaning: 'no direct path between these two networks (you: Symmetric; the peer: Port Restricted Cone), and no TURN server was given: run both peers with --turn (and --user/--credential)',
    });
    expect(failureVerdict({ localRelays: 0, remoteRelays: 0, turnServers: 1, turnErrors: ['turn:x: AUTH_FAILED 401'] }).meaning).toBe(
      'no direct path between these two networks, and the TURN server gave no relayed address: turn:x: AUTH_FAILED 401',
    );
    const v = failureVerdict({ localRelays: 1, remoteRelays: 0, turnServers: 1, turnErrors: [] });
    expect(v.verdict).toBe('no path, not even through the relay');
    expect(v.meaning).toContain('even with a relayed address on this side');
  });
});

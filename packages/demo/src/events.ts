import type { CandidateType } from '@natkit/ice';

/**
 * What p2pdemo reports, one event at a time: `--json` prints each as one line (the object
 * itself), the text output says the same for people (format.ts). Every event has `event`
 * (its name) and `t`, seconds since the demo started.
 */

export interface PathEnd {
  type: CandidateType;
  address: string;
  port: number;
  protocol: string;
}

export interface DemoPath {
  local: PathEnd;
  remote: PathEnd;
  /** direct: no relay on the path; relayed: one end is a TURN relayed candidate. */
  kind: 'direct' | 'relayed';
}

export interface NatSummary {
  classic: string;
  mapping?: string;
  filtering?: string;
}

export type DemoEvent =
  | { event: 'start'; version: string; signal: string; room?: string; plain: boolean; stun: string[]; turn: string[]; relayOnly: boolean; interval: string }
  | {
      event: 'nat';
      /** The STUN server asked, host:port. */
      server: string;
      /** RFC 3489 name, 'Unknown' when the behaviour tests could not run. */
      classic: string;
      /** The server has a second address (OTHER-ADDRESS), so the RFC 5780 tests ran. */
      rfc5780: boolean;
      udpBlocked: boolean;
      local?: string;
      mapped?: string;
      natPresent?: boolean;
      mapping?: string;
      filtering?: string;
      hairpinning?: boolean;
      portPreservation?: boolean;
      meaning: string;
    }
  | { event: 'nat'; skipped: string; classic: 'Unknown'; meaning: string }
  | { event: 'signal'; state: 'joined' | 'rejoined' | 'connected' | 'reconnecting'; server: string; room?: string; initiator?: boolean; peer?: boolean; attempt?: number; delayMs?: number; error?: string }
  | { event: 'waiting'; for: 'peer' | 'peer-candidates' }
  | { event: 'peer'; state: 'joined' | 'left' | 'back'; reason?: string }
  | { event: 'peer-nat'; nat: NatSummary }
  | { event: 'session'; session: number; ufrag: string; role: 'controlling' | 'controlled'; why: string }
  | { event: 'role'; session: number; role: 'controlling' | 'controlled' }
  | { event: 'candidate'; direction: 'local' | 'remote'; session: number; type: CandidateType; protocol: string; address: string; port: number; priority: number; relatedAddress?: string; relatedPort?: number; wire?: string }
  | { event: 'server'; session: number; url: string; ok: boolean; ms: number; error?: string }
  | { event: 'gathered'; session: number; host: number; srflx: number; relay: number; ms: number }
  | { event: 'connected'; session: number; path: DemoPath; rttMs?: number; iceMs: number; meaning: string }
  | { event: 'path'; session: number; path: DemoPath; rttMs?: number }
  | { event: 'sent'; byte: number; sent: number }
  | { event: 'data'; byte: number; bytes: number; received: number }
  | {
      event: 'disconnected';
      session: number;
      reason: 'consent' | 'consent-expired' | 'peer-restarted' | 'peer-left';
      detail: string;
      /** Consent: how long no answer had come when the break was noticed, ms. */
      silentMs?: number;
    }
  | { event: 'restart'; session: number; by: 'local' | 'peer'; why: string }
  | {
      event: 'recovered';
      session: number;
      path: DemoPath;
      rttMs?: number;
      /** From noticing the break (or the peer's restart) to a working path again, ms. */
      recoveryMs: number;
      /** Noticed by consent: from the old path's last answer to a consent check to the new path, ms (the outage began somewhere after that answer). */
      outageMs?: number;
      meaning: string;
    }
  | { event: 'failed'; session: number; reason: string; verdict: 'impossible without a relay' | 'no path, not even through the relay'; meaning: string }
  | { event: 'retry'; session: number; reason: string; inMs: number }
  | { event: 'warning'; message: string }
  | { event: 'error'; message: string }
  | { event: 'stopped'; reason: string; sent: number; received: number };

/** An event as emitted: with the time. */
export type TimedEvent = DemoEvent & { t: number };

// What natcheck (natkit's RFC 5780 NAT behaviour discovery) must find behind each NAT of the
// lab, in one place for the two places that check it: test/natlab/natcheck.test.ts (the
// `natcheck` binary against the real-kernel NATs of test/helpers/natlab.ts) and
// test/vnet/natcheck.test.ts (discoverNat on the virtual network of test/helpers/vnet). The
// virtual NATs must be classified exactly as the nftables ones are, or a deterministic ICE test
// on the vnet would prove something the kernel does not do; sharing the table and the
// expectations keeps the two from drifting apart.
//
// Why these verdicts (hairpinning in particular): see the header of test/natlab/natcheck.test.ts.
import { expect } from 'vitest';
import type { NatClientSpec } from './nat-behaviour.js';

export type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
export const EIM: Behaviour = 'endpoint-independent';
export const ADM: Behaviour = 'address-dependent';
export const APDM: Behaviour = 'address-and-port-dependent';
export const EIF = EIM;
export const ADF = ADM;
export const APDF = APDM;
/** The port natcheck's server listens on (P), and its alternate (P2). */
export const PORT = 3478;
export const ALT_PORT = 3479;

/** The verdict a test asserts: what natcheck found, in the terms of RFC 4787 and RFC 3489. */
export interface Verdict {
  natPresent: boolean;
  mapping: Behaviour;
  filtering: Behaviour;
  /** undefined: not tested (no NAT). */
  hairpinning: boolean | undefined;
  portPreservation: boolean;
  classic: 'Open Internet' | 'Symmetric UDP Firewall' | 'Full Cone' | 'Restricted Cone' | 'Port Restricted Cone' | 'Symmetric';
}

export interface VerdictCase {
  name: string;
  /** The NAT in front of the client, as both labs take it (natlab's ClientSpec and vnet's VnetClientSpec). */
  spec: NatClientSpec;
  expected: Verdict;
}

/** One client behind each preset (hairpinning on and off) and a few RFC 4787 behaviours without an RFC 3489 name. */
export const NATCHECK_CASES: readonly VerdictCase[] = [
  // No NAT: mapping is endpoint-independent by definition (RFC 5780 4.3: mapped = local), the
  // filtering tests still run, hairpinning is not tested.
  { name: 'none', spec: { nat: 'none' }, expected: { natPresent: false, mapping: EIM, filtering: EIF, hairpinning: undefined, portPreservation: true, classic: 'Open Internet' } },
  { name: 'firewall', spec: { nat: 'firewall' }, expected: { natPresent: false, mapping: EIM, filtering: APDF, hairpinning: undefined, portPreservation: true, classic: 'Symmetric UDP Firewall' } },
  { name: 'full-cone', spec: { nat: 'full-cone' }, expected: { natPresent: true, mapping: EIM, filtering: EIF, hairpinning: false, portPreservation: true, classic: 'Full Cone' } },
  { name: 'full-cone, hairpin', spec: { nat: 'full-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: EIF, hairpinning: true, portPreservation: true, classic: 'Full Cone' } },
  { name: 'restricted-cone', spec: { nat: 'restricted-cone' }, expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Restricted Cone' } },
  // hairpins, but the ADF of the target mapping drops the request from another socket
  { name: 'restricted-cone, hairpin', spec: { nat: 'restricted-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Restricted Cone' } },
  { name: 'port-restricted-cone', spec: { nat: 'port-restricted-cone' }, expected: { natPresent: true, mapping: EIM, filtering: APDF, hairpinning: false, portPreservation: true, classic: 'Port Restricted Cone' } },
  { name: 'port-restricted-cone, hairpin', spec: { nat: 'port-restricted-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: APDF, hairpinning: false, portPreservation: true, classic: 'Port Restricted Cone' } },
  // a random port per 5-tuple: the first mapping keeps the local port only once in ~64k runs
  { name: 'symmetric', spec: { nat: 'symmetric' }, expected: { natPresent: true, mapping: APDM, filtering: APDF, hairpinning: false, portPreservation: false, classic: 'Symmetric' } },
  { name: 'symmetric, hairpin', spec: { nat: 'symmetric', hairpin: true }, expected: { natPresent: true, mapping: APDM, filtering: APDF, hairpinning: false, portPreservation: false, classic: 'Symmetric' } },
  // RFC 4787 behaviours without an RFC 3489 name of their own
  {
    name: 'custom ADM + ADF, preserving',
    spec: { nat: { mapping: ADM, filtering: ADF, portAllocation: 'preserve' } },
    // the first mapping (to A) keeps the local port; the one to A2 cannot (it is taken)
    expected: { natPresent: true, mapping: ADM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Symmetric' },
  },
  {
    name: 'custom EIM + ADF, random port',
    spec: { nat: { mapping: EIM, filtering: ADF, portAllocation: 'random' } },
    expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: false, classic: 'Restricted Cone' },
  },
  {
    name: 'custom APDM + EIF, sequential, hairpin',
    // EIF lets the hairpinned request in although it comes from a mapping the target never
    // addressed: a symmetric NAT on which natcheck must see hairpinning
    spec: { nat: { mapping: APDM, filtering: EIF, portAllocation: 'sequential', hairpin: true } },
    expected: { natPresent: true, mapping: APDM, filtering: EIF, hairpinning: true, portPreservation: false, classic: 'Symmetric' },
  },
];

/** The verdict of the case named `name` in NATCHECK_CASES. */
export function verdictFor(name: string): Verdict {
  const c = NATCHECK_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no natcheck case named ${JSON.stringify(name)}`);
  return c.expected;
}

/** One RFC 5780 test as natcheck reports it (NatReport's TestRecord; the same in its --json). */
export interface TestLine {
  name: string;
  to: string;
  change: string;
  result: string;
}

interface Address {
  family: string;
  address: string;
  port: number;
}

/** What natcheck reports (NatReport, or its --json where undefined keys are gone), as far as a verdict goes. */
export interface VerdictReport {
  local: Address;
  udpBlocked: boolean;
  mapped?: Address | undefined;
  natPresent?: boolean | undefined;
  serverSupportsDiscovery: boolean;
  otherAddress?: Address | undefined;
  mapping?: Behaviour | undefined;
  filtering?: Behaviour | undefined;
  hairpinning?: boolean | undefined;
  portPreservation?: boolean | undefined;
  classic: string;
  tests: TestLine[];
}

export function verdictOf(r: VerdictReport): Partial<Verdict> {
  return { natPresent: r.natPresent, mapping: r.mapping, filtering: r.filtering, hairpinning: r.hairpinning, portPreservation: r.portPreservation, classic: r.classic as Verdict['classic'] };
}

/** natcheck's RFC 5780 tests as a table, to read a failure. */
export function formatTests(tests: readonly TestLine[]): string {
  return tests.map((t) => `  ${t.name.padEnd(14)} to ${t.to.padEnd(20)} ${t.change.padEnd(18)} ${t.result}`).join('\n');
}

const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Where natcheck ran: the server's two addresses (A, A2) and the client with its NAT's public address. */
export interface VerdictPlace {
  server: readonly [string, string];
  clientAddress: string;
  publicAddress: string;
}

/**
 * The RFC 5780 tests natcheck must have run for `v`, in order, with where each answer must
 * have come from: section 4.3 mapping tests I (A:P), II (A2:P) and, unless II showed EIM,
 * III (A2:P2), all from one socket; section 4.4 filtering tests from a fresh socket: I (A:P),
 * II (change IP and port: answered from A2:P2 only through EIF), III only without EIF (change
 * port: answered from A:P2 only through ADF); section 3.4 hairpinning only behind a NAT.
 */
export function expectedTests(v: Verdict, place: VerdictPlace, mapped: Address | undefined): unknown[] {
  const [a, a2] = place.server;
  const answered = (from: string) => expect.stringMatching(new RegExp(`^mapped ${re(place.publicAddress)}:\\d+ from ${re(from)}$`));
  const t = (name: string, to: string, change: string, result: unknown) => ({ name, to, change, result });
  const AP = `${a}:${PORT}`;
  const tests = [t('mapping I', AP, '-', answered(AP))];
  if (v.natPresent) {
    tests.push(t('mapping II', `${a2}:${PORT}`, '-', answered(`${a2}:${PORT}`)));
    if (v.mapping !== EIM) tests.push(t('mapping III', `${a2}:${ALT_PORT}`, '-', answered(`${a2}:${ALT_PORT}`)));
  }
  tests.push(t('filtering I', AP, '-', answered(AP)));
  tests.push(t('filtering II', AP, 'change IP and port', v.filtering === EIF ? answered(`${a2}:${ALT_PORT}`) : 'no response'));
  if (v.filtering !== EIF) tests.push(t('filtering III', AP, 'change port', v.filtering === ADF ? answered(`${a}:${ALT_PORT}`) : 'no response'));
  if (v.hairpinning !== undefined) tests.push(t('hairpinning', mapped ? `${mapped.address}:${mapped.port}` : '?', '-', v.hairpinning ? 'received' : 'not received'));
  return tests;
}

/**
 * Asserts that `report` (UDP not blocked, a server that supports discovery) gives `expected`,
 * with the tests behind it; `otherAddress` is what the server must have named as its
 * alternate (OTHER-ADDRESS or CHANGED-ADDRESS). `why` is shown with every failure.
 */
export function expectVerdict(report: VerdictReport, expected: Verdict, place: VerdictPlace, otherAddress: Address | undefined, why: string): void {
  expect(report.udpBlocked, why).toBe(false);
  expect(report.serverSupportsDiscovery, why).toBe(true);
  if (otherAddress) expect(report.otherAddress, why).toEqual(otherAddress);
  expect(report.local.address, why).toBe(place.clientAddress);
  // the world sees the NAT's public address (the client's own without a NAT)
  expect(report.mapped?.address, why).toBe(place.publicAddress);
  if (expected.portPreservation) expect(report.mapped?.port, why).toBe(report.local.port);
  expect(verdictOf(report), why).toEqual(expected);
  expect(report.tests, why).toEqual(expectedTests(expected, place, report.mapped));
}

/** Runs `fn` once, on first demand; every later call gets the same promise. */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

// Hole punching on the virtual network, without ICE: two peers behind two NATs do what ICE's
// connectivity checks do (RFC 8445 sections 7.2 and 7.3, stripped to the bone) with plain
// datagrams, and the outcome must be what predictPath (test/helpers/vnet/predict.ts, the
// RFC 4787 reasoning the ICE test relies on) says: for all 25 pairs of {none, full cone,
// restricted cone, port-restricted cone, symmetric}, some custom behaviours, and with 20 %
// loss on both NATs. This checks the prediction against the NAT models (and the models
// against the prediction) before any ICE agent is involved.
//
// Each peer: one socket; its server-reflexive address from natkit's STUN server (a Binding
// request through StunClient on that socket); candidates host and srflx (srflx dropped when
// equal to host) given to the other side. Then every 50 ms, for 3 s, a CHECK to every remote
// candidate (signalled, or learned from an incoming CHECK: peer-reflexive); every CHECK is
// answered with an ACK to where it came from, carrying that address (as XOR-MAPPED-ADDRESS
// does); an ACK counts only if it comes from where its CHECK went (RFC 8445 7.2.5.2.1).
import type * as dgram from 'node:dgram';
import { type DatagramSocket, StunClient, type TransportAddress } from '@natkit/stun';
import type { CandidateType } from '@natkit/ice';
import { describe, expect, test } from 'vitest';
import { type PeerNat, type VirtualNetwork, createVnetLab, predictPath, startStunServer } from '../helpers/vnet/index.js';

const NATS = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;

interface Cand {
  type: CandidateType;
  address: string;
  port: number;
}

const key = (a: { address: string; port: number }) => `${a.address}:${a.port}`;

class Peer {
  readonly remotes: Cand[] = [];
  readonly candidates: Cand[] = [];
  /** The first valid pair: where the ACK came from, and the mapped address it reported. */
  valid: { remote: Cand; mapped: string } | undefined;
  private readonly sentTo = new Map<string, string>();
  private seq = 0;

  constructor(
    readonly name: string,
    readonly socket: DatagramSocket,
  ) {
    socket.on('message', (m, r) => {
      if (m.length > 0 && (m[0]! & 0xc0) === 0 && m.length >= 20) return; // STUN: the client's
      const from = `${r.address}:${r.port}`;
      const [kind, id, arg] = m.toString().split(' ');
      if (kind === 'CHECK') {
        // RFC 8445 7.3.1.3: a check from an address not known is a peer-reflexive candidate
        // (at most 12 remotes, as agents cap their checklists: between two NATs that map every
        // destination anew, each answered check makes a new mapping, hence a new one)
        if (!this.remotes.some((c) => key(c) === from) && this.remotes.length < 12) this.remotes.push({ type: 'prflx', address: r.address, port: r.port });
        this.socket.send(Buffer.from(`ACK ${id} ${from}`), r.port, r.address);
      } else if (kind === 'ACK' && this.sentTo.get(id!) === from && !this.valid) {
        this.valid = { remote: this.remotes.find((c) => key(c) === from)!, mapped: arg! };
      }
    });
  }

  async gather(server: TransportAddress, clock: VirtualNetwork['clock']): Promise<void> {
    const a = this.socket.address();
    const host: Cand = { type: 'host', address: a.address, port: a.port };
    this.candidates.push(host);
    const client = new StunClient({ clock, socket: this.socket as unknown as dgram.Socket });
    try {
      const r = await client.binding(server);
      if (key(r.mapped) !== key(host)) this.candidates.push({ type: 'srflx', address: r.mapped.address, port: r.mapped.port });
    } finally {
      await client.close();
    }
  }

  checkAll(): void {
    for (const c of this.remotes) {
      const id = `${this.name}${++this.seq}`;
      this.sentTo.set(id, key(c));
      this.socket.send(Buffer.from(`CHECK ${id}`), c.port, c.address);
    }
  }

  /** The selected pair's candidate types, from this side. */
  types(): { local: CandidateType; remote: CandidateType } | undefined {
    if (!this.valid) return undefined;
    const local = this.candidates.find((c) => key(c) === this.valid!.mapped)?.type ?? 'prflx';
    return { local, remote: this.valid.remote.type };
  }
}

async function punch(a: PeerNat, b: PeerNat, options: { loss?: number; seed?: number } = {}) {
  const lab = createVnetLab({ clients: [{ nat: a }, { nat: b }], seed: options.seed ?? 1, trace: true });
  const { vnet } = lab;
  const server = await startStunServer(lab);
  const stun: TransportAddress = { family: 'IPv4', address: lab.server.addresses[0], port: 3478 };
  // the hosts' own sockets bind the wildcard: a host candidate's address is the interface's
  const peers = await Promise.all(
    lab.clients.map(async (c, i) => {
      const s = await c.network.createUdpSocket({ family: 'IPv4', address: c.address });
      return new Peer(i === 0 ? 'a' : 'b', s);
    }),
  );
  await vnet.runUntil(Promise.all(peers.map((p) => p.gather(stun, vnet.clock))));
  for (const c of lab.clients) c.nat.router?.wanLink.set({ loss: options.loss ?? 0 });
  const [pa, pb] = peers as [Peer, Peer];
  pa.remotes.push(...pb.candidates);
  pb.remotes.push(...pa.candidates);
  for (let round = 0; round < 60 && !(pa.valid && pb.valid); round++) {
    pa.checkAll();
    pb.checkAll();
    await vnet.run(50);
  }
  await vnet.run(500);
  const result = { a: pa.types(), b: pb.types(), describe: () => vnet.describe({ traceLines: 40 }) };
  for (const p of peers) p.socket.close();
  await server.close();
  expect(vnet.openSockets()).toEqual([]);
  return result;
}

function check(a: PeerNat, b: PeerNat, r: Awaited<ReturnType<typeof punch>>): void {
  const p = predictPath(a, b);
  const why = () => `${p.why}\ngot: a ${JSON.stringify(r.a)}, b ${JSON.stringify(r.b)}\n${r.describe()}`;
  if (p.path === 'direct') {
    expect(r.a, why()).toEqual(p.a);
    expect(r.b, why()).toEqual(p.b);
  } else {
    expect(r.a, why()).toBeUndefined();
    expect(r.b, why()).toBeUndefined();
  }
}

describe('hole punching between two NATs goes where predictPath says (RFC 4787)', () => {
  test('the prediction itself: 22 of the 25 ordered pairs direct; symmetric only with no NAT, full cone or restricted cone', () => {
    const relayed = NATS.flatMap((a) => NATS.filter((b) => predictPath(a, b).path === 'relay').map((b) => `${a}/${b}`));
    expect(relayed).toEqual(['port-restricted-cone/symmetric', 'symmetric/port-restricted-cone', 'symmetric/symmetric']);
    expect(predictPath('symmetric', 'restricted-cone')).toMatchObject({ path: 'direct', a: { local: 'prflx', remote: 'srflx' }, b: { local: 'srflx', remote: 'prflx' } });
    expect(predictPath('none', 'none')).toMatchObject({ a: { local: 'host', remote: 'host' } });
    expect(predictPath('symmetric', 'symmetric').why).toMatch(/symmetric's address-and-port-dependent filter drops symmetric's checks \(they arrive on a mapping that has only talked to the STUN server\)/);
  });

  for (const a of NATS) {
    test(`${a} with each of ${NATS.join(', ')}`, async () => {
      for (const b of NATS) check(a, b, await punch(a, b));
    });
  }

  test('behaviours without a name: what opens depends on predictability and filtering, not on the names', async () => {
    const APDM_EIF = { mapping: 'address-and-port-dependent', filtering: 'endpoint-independent' } as const;
    const ADM_ADF = { mapping: 'address-dependent', filtering: 'address-dependent' } as const;
    const APDM_ADF = { mapping: 'address-and-port-dependent', filtering: 'address-dependent' } as const;
    const ADM_EIF = { mapping: 'address-dependent', filtering: 'endpoint-independent' } as const;
    const cases: Array<[PeerNat, PeerNat, 'direct' | 'relay']> = [
      [APDM_EIF, 'restricted-cone', 'direct'],
      [APDM_EIF, 'port-restricted-cone', 'relay'],
      // both answers leave by new mappings: no check is ever answered from where it went
      [APDM_EIF, APDM_EIF, 'relay'],
      // address-dependent mapping answers from the mapping the peer's check came back to
      [ADM_EIF, ADM_EIF, 'direct'],
      [ADM_EIF, APDM_EIF, 'direct'],
      [ADM_ADF, ADM_ADF, 'relay'],
      [APDM_ADF, 'none', 'direct'], // one way only: APDM_ADF's checks get out and in, the other's do not
      ['firewall', 'symmetric', 'relay'],
      ['firewall', 'restricted-cone', 'direct'],
    ];
    for (const [a, b, path] of cases) {
      expect(predictPath(a, b).path, `${JSON.stringify(a)} / ${JSON.stringify(b)}`).toBe(path);
      check(a, b, await punch(a, b));
    }
  });

  test('with 20 % loss on both NATs the same pairs connect, the same way', async () => {
    for (const [i, a] of NATS.entries()) {
      for (const b of NATS.slice(i)) check(a, b, await punch(a, b, { loss: 0.2, seed: 5 }));
    }
  });
});

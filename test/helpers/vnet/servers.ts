import { StunServer, type StunServerOptions } from '@natkit/stun';
import { RelayPorts, TurnServer, type TurnServerOptions, parseUsers } from '@natkit/turn';
import { VnetError } from './core.js';
import { Prng } from './rng.js';
import type { Host } from './host.js';
import type { VnetLab } from './lab.js';
import type { VirtualNetwork } from './network.js';

// natkit's own servers, hosted on the virtual network through their `network` option: the
// STUN server (RFC 5780 full mode on two addresses) and the TURN relay (long-term
// credentials), with the network's clock. UDP only: their TCP and TLS listeners are
// node:net's and would open real sockets, so they are off here.

/** natkit's StunServer on the lab's server host, RFC 5780 full mode on its two addresses (A:3478, A:3479, A2:3478, A2:3479). */
export async function startStunServer(lab: VnetLab, options: Partial<StunServerOptions> = {}): Promise<StunServer> {
  const [a, a2] = lab.server.addresses;
  return StunServer.start({ address: a, alternateAddress: a2, port: 3478, alternatePort: 3479, ...options, tcp: false, network: lab.server.network, clock: lab.vnet.clock });
}

export interface VnetTurn {
  server: TurnServer;
  host: Host;
  /** Where clients reach it. */
  address: string;
  port: number;
  /** The RTCIceServer-style entry for it (turn: URI with ?transport=udp, username, credential). */
  iceServer: { urls: string; username: string; credential: string };
  username: string;
  password: string;
  close(): Promise<void>;
}

export interface VnetTurnOptions extends Partial<TurnServerOptions> {
  /** The relay's public host: made on the internet at `address` unless given. */
  host?: Host;
  /** Default 203.0.113.3 (the lab's server has .1 and .2 for STUN). */
  address?: string;
  username?: string;
  password?: string;
}

/** natkit's TurnServer on a public host of `vnet` (made at 203.0.113.3 by default), UDP, one user with a long-term credential. */
export async function startTurnServer(vnet: VirtualNetwork, options: VnetTurnOptions = {}): Promise<VnetTurn> {
  const address = options.address ?? options.host?.address() ?? '203.0.113.3';
  const host = options.host ?? vnet.hosts.find((h) => h.hasAddress(address)) ?? vnet.host(`turn ${address}`, { address });
  if (!host.hasAddress(address)) throw new VnetError(`${host.name} does not have ${address}`);
  const username = options.username ?? 'natkit';
  const password = options.password ?? 'vnet-secret';
  const { host: _h, address: _a, username: _u, password: _p, ...rest } = options;
  const port = options.port ?? 3478;
  const server = await TurnServer.start({
    listen: [address],
    port,
    realm: 'vnet.natkit.test',
    users: parseUsers(`${username}:${password}`),
    // Relayed ports from the network's seed, not crypto's randomness, so a run repeats itself.
    relayAllocator: seededRelayPorts(vnet, host, address),
    ...rest,
    udp: true,
    tcp: false,
    network: host.network,
    clock: vnet.clock,
  });
  return {
    server,
    host,
    address,
    port,
    iceServer: { urls: `turn:${address}:${port}?transport=udp`, username, credential: password },
    username,
    password,
    close: () => server.close(),
  };
}

function seededRelayPorts(vnet: VirtualNetwork, host: Host, address: string): RelayPorts {
  const prng = Prng.derive(vnet.seed, `turn relay ports ${address}`);
  const family = address.includes(':') ? 'IPv6' : 'IPv4';
  return new RelayPorts({ addresses: { [family]: address }, network: host.network, randomInt: (min, max) => prng.int(min, max - 1) });
}

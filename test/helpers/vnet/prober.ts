import { type Clock, type Family, type RetransmitOptions, type TransportAddress, UdpProber, ipFamily } from '@natkit/stun';
import { VnetError } from './core.js';
import type { Host } from './host.js';

// natkit's NAT discovery (discoverNat) over sockets of the virtual network: natcheck's own
// prober (UdpProber: a primary socket for the mapping tests, a fresh one for the filtering
// tests, and a third that sends the hairpinning request to the primary's mapping), its
// sockets opened on the host's `Network` and its time the network's clock.

export interface VnetProberOptions {
  clock: Clock;
  /** Default natcheck's: requests at 0, 250, 750, 1750 ms, given up at 2750 ms. */
  retransmit?: RetransmitOptions;
  /** The local address to probe from; needed only on a host with several addresses of the server's family. */
  bindAddress?: string;
}

export const VnetProber = {
  /** A UdpProber on `host` towards `server`; close it when done. */
  async open(host: Host, server: TransportAddress, options: VnetProberOptions): Promise<UdpProber> {
    const family = (ipFamily(server.address) ?? 'IPv4') as Family;
    if (!host.route(server.address, family)) throw new VnetError(`${host.name} has no route to ${server.address}`);
    return UdpProber.open(server, { network: host.network, clock: options.clock, retransmit: options.retransmit, bindAddress: options.bindAddress });
  },
};

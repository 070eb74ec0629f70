import type { Network } from '@natkit/stun';
import { type LinkOptions, VnetError } from './core.js';
import type { Host } from './host.js';
import type { LabNatInfo, NatClientSpec } from '../nat-behaviour.js';
import { type NatBehaviour, NatRouter, type NatType, resolveBehaviour } from './nat.js';
import { VirtualNetwork, type VirtualNetworkOptions } from './network.js';

// The topology of the real-kernel NAT lab (test/helpers/natlab.ts), in the virtual network,
// with the same addresses, presets and options, so that a test can run on either and a
// verdict from one can be compared with the other's:
//
//   internet 203.0.113.0/24: server 203.0.113.1 and .2, router n at .101+n, a client without
//   NAT ('none', 'firewall') at .201+i; behind router n, 10.0.(n+1).0/24 with the router at .1
//   and its clients from .2.

export interface VnetClientSpec extends NatClientSpec {
  /** The NAT in front of this client (ignored with `behind`). Default 'port-restricted-cone'. */
  nat?: NatType | NatBehaviour;
  /** The client's own link (over the LAN defaults). */
  link?: LinkOptions;
}

export interface VnetLabOptions extends VirtualNetworkOptions {
  nat?: NatType | NatBehaviour;
  hairpin?: boolean;
  clients?: VnetClientSpec[];
  /** Idle lifetime of mappings and filter entries, seconds. Default 300 (as the lab). */
  mappingTimeoutSec?: number;
}

export interface VnetLabNat extends LabNatInfo {
  /** The router (undefined for 'none' and 'firewall'). */
  router: NatRouter | undefined;
}

export interface VnetLabClient {
  index: number;
  host: Host;
  network: Network;
  address: string;
  gateway: string | undefined;
  nat: VnetLabNat;
}

export interface VnetLab {
  readonly vnet: VirtualNetwork;
  readonly server: { host: Host; network: Network; addresses: [string, string] };
  readonly clients: readonly VnetLabClient[];
  readonly client: VnetLabClient;
  readonly nat: VnetLabNat;
  describe(): string;
}

export const PUBLIC_NET = '203.0.113';
export const SERVER_ADDRESSES: [string, string] = [`${PUBLIC_NET}.1`, `${PUBLIC_NET}.2`];

export function createVnetLab(options: VnetLabOptions = {}): VnetLab {
  const specs: VnetClientSpec[] = options.clients ?? [{ nat: options.nat, hairpin: options.hairpin }];
  if (specs.length === 0) throw new VnetError('a lab needs at least one client');
  if (options.clients && (options.nat !== undefined || options.hairpin !== undefined)) throw new VnetError('give either nat/hairpin or clients, not both');
  const timeoutSec = options.mappingTimeoutSec ?? 300;
  if (!(timeoutSec > 0)) throw new VnetError(`mappingTimeoutSec must be positive, not ${timeoutSec}`);
  const vnet = new VirtualNetwork(options);
  const serverHost = vnet.host('server', { address: [...SERVER_ADDRESSES] });
  const clients: VnetLabClient[] = [];
  const routers: NatRouter[] = [];
  specs.forEach((spec, i) => {
    if (spec.behind !== undefined) {
      if (!Number.isInteger(spec.behind) || spec.behind < 0 || spec.behind >= i) throw new VnetError(`clients[${i}].behind must be the index of an earlier client`);
      if (spec.nat !== undefined || spec.hairpin !== undefined) throw new VnetError(`clients[${i}]: give nat/hairpin or behind, not both`);
      const first = clients[spec.behind]!;
      const router = first.nat.router;
      if (!router) throw new VnetError(`clients[${i}].behind: client ${spec.behind} has no NAT ('none'/'firewall') to share`);
      const host = vnet.host(`client${i}`, { segment: router.lan.segment, link: spec.link });
      clients.push({ index: i, host, network: host.network, address: host.address(), gateway: router.privateAddress, nat: first.nat });
      return;
    }
    const nat = spec.nat ?? 'port-restricted-cone';
    if (nat === 'none' || nat === 'firewall') {
      if (spec.hairpin) throw new VnetError(`hairpin needs a NAT; '${nat}' has none`);
      const address = `${PUBLIC_NET}.${201 + i}`;
      const host = vnet.host(`client${i}`, { address, firewall: nat === 'firewall' ? { unrepliedTimeoutMs: 30_000, repliedTimeoutMs: 120_000 } : undefined, link: spec.link });
      clients.push({
        index: i,
        host,
        network: host.network,
        address,
        gateway: undefined,
        nat: { type: nat, router: undefined, publicAddress: address, privateAddress: undefined, subnet: undefined, mapping: 'none', filtering: nat === 'firewall' ? 'address-and-port-dependent' : 'none', portAllocation: 'preserve', hairpin: false },
      });
      return;
    }
    const n = routers.length;
    const b = resolveBehaviour(nat, spec.hairpin, timeoutSec * 1000);
    const subnet = `10.0.${n + 1}.0/24`;
    const lan = vnet.lan(`lan${n}`, { subnet });
    const router = vnet.nat(`nat${n}`, { nat: { ...b }, publicAddress: `${PUBLIC_NET}.${101 + n}`, lan, privateAddress: `10.0.${n + 1}.1` });
    routers.push(router);
    const host = vnet.host(`client${i}`, { segment: lan, link: spec.link });
    clients.push({
      index: i,
      host,
      network: host.network,
      address: host.address(),
      gateway: router.privateAddress,
      nat: {
        type: typeof nat === 'string' ? nat : 'custom',
        router,
        publicAddress: router.publicAddress,
        privateAddress: router.privateAddress,
        subnet,
        mapping: b.mapping,
        filtering: b.filtering,
        portAllocation: b.portAllocation,
        hairpin: b.hairpin,
      },
    });
  });
  return {
    vnet,
    server: { host: serverHost, network: serverHost.network, addresses: [...SERVER_ADDRESSES] },
    clients,
    get client() {
      return clients[0]!;
    },
    get nat() {
      return clients[0]!.nat;
    },
    describe: () => vnet.describe(),
  };
}

// The NAT behaviours both labs build, in one place: the real-kernel lab (test/helpers/natlab.ts,
// netns + nftables) and the virtual network (test/helpers/vnet). They take the same presets
// and RFC 4787 behaviours under the same names, so that a test can run on either and a verdict
// from one can be compared with the other's (test/helpers/natcheck-verdicts.ts).

export type NatType = 'none' | 'firewall' | 'full-cone' | 'restricted-cone' | 'port-restricted-cone' | 'symmetric';
/** The presets that put a NAT router in front of the client. */
export type RoutedNatType = Exclude<NatType, 'none' | 'firewall'>;
/** RFC 4787 mapping (section 4.1) or filtering (section 5) behaviour. */
export type Dependence = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
/** How a new mapping's port is chosen (RFC 4787 section 4.2.1). */
export type PortAllocation = 'preserve' | 'random' | 'sequential';

export const DEPENDENCES: readonly Dependence[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];

/** An RFC 4787 behaviour, for NATs the presets do not name. */
export interface NatBehaviour {
  mapping: Dependence;
  filtering: Dependence;
  /** How a new mapping's port is chosen. Default: 'preserve' unless mapping is APDM ('random'); see defaultPortAllocation. */
  portAllocation?: PortAllocation;
  hairpin?: boolean;
}

/** The routed presets: EIM + EIF/ADF/APDF port preserving (the cones), APDM + APDF with a random port per 5-tuple (symmetric). */
export const ROUTED_PRESETS: Record<RoutedNatType, { mapping: Dependence; filtering: Dependence; portAllocation: PortAllocation }> = {
  'full-cone': { mapping: 'endpoint-independent', filtering: 'endpoint-independent', portAllocation: 'preserve' },
  'restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-dependent', portAllocation: 'preserve' },
  'port-restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', portAllocation: 'preserve' },
  symmetric: { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', portAllocation: 'random' },
};

/** Every preset; 'none': no translation and no filter; 'firewall': a symmetric UDP firewall on the client (no translation). */
export const PRESETS: Record<NatType, { mapping: Dependence | 'none'; filtering: Dependence | 'none'; portAllocation: PortAllocation }> = {
  none: { mapping: 'none', filtering: 'none', portAllocation: 'preserve' },
  firewall: { mapping: 'none', filtering: 'address-and-port-dependent', portAllocation: 'preserve' },
  ...ROUTED_PRESETS,
};

/** A behaviour's port allocation when it names none: 'random' under APDM (a symmetric NAT), else 'preserve'. */
export function defaultPortAllocation(mapping: Dependence): PortAllocation {
  return mapping === 'address-and-port-dependent' ? 'random' : 'preserve';
}

/** A client of a lab, as both labs take it (each adds options of its own). */
export interface NatClientSpec {
  /** The NAT in front of this client (ignored with `behind`). Default 'port-restricted-cone'. */
  nat?: NatType | NatBehaviour;
  /** Hairpinning on the NAT in front of this client. Default false. */
  hairpin?: boolean;
  /** Put this client behind the same router as clients[behind]. */
  behind?: number;
}

/** A client's NAT as both labs describe it (each adds what it has of its own). */
export interface LabNatInfo {
  type: NatType | 'custom';
  /** The address the world sees (the client's own address for 'none' and 'firewall'). */
  publicAddress: string;
  /** The router's address on the private side (undefined without a router). */
  privateAddress: string | undefined;
  /** The private subnet, e.g. 10.0.1.0/24 (undefined without a router). */
  subnet: string | undefined;
  mapping: Dependence | 'none';
  filtering: Dependence | 'none';
  portAllocation: PortAllocation;
  hairpin: boolean;
}

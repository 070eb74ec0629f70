import {
  Attr,
  BindingService,
  ERROR_REASONS,
  ErrorCode,
  type Family,
  MessageBuilder,
  MessageClass,
  Method,
  RateLimiter,
  type StunMessage,
  type TransportAddress,
  decodeMessage,
  softwareText,
  verifyFingerprint,
} from '@natkit/stun';
import { TRANSPORT_UDP, TurnAttr, turnServerRegistry } from '../codec/attributes.js';
import { MIN_CHANNEL } from '../codec/channeldata.js';
import { Allocation, type ClientPath, type RelaySocket } from './allocation.js';
import type { Authenticator } from './auth.js';
import type { TurnCounters } from './counters.js';
import type { TurnEvent } from './events.js';
import type { ResolvedLimits } from './options.js';
import type { PeerPolicyHandler } from './policy.js';
import { AllocationTable } from './table.js';

/**
 * The relay's request core, sans-I/O: a STUN message and the client path it came by in,
 * actions out (answer the client, make an allocation, an allocation is gone, an event).
 * It authenticates, applies the peer policy and the per-allocation limits, and keeps the
 * allocation table; it opens no socket, sets no timer and reads no clock: time is an
 * argument. Binding relay sockets takes time, so an Allocate comes out as an 'allocate'
 * action whose outcome the adapter hands back with allocated().
 */

type Integrity = 'sha1' | 'sha256';
interface Signer {
  key: Buffer | undefined;
  integrity: Integrity;
}

/** What the adapter must do to make an allocation: bind relayed sockets (and take a quota slot). */
export interface AllocateTicket {
  readonly key: string;
  /** The transaction id, hex (a retransmission is recognised by it). */
  readonly tid: string;
  readonly path: ClientPath;
  readonly request: StunMessage;
  /** Undefined without authentication (no per-user quota). */
  readonly username: string | undefined;
  readonly signer: Signer;
  readonly family: Family;
  /** ADDITIONAL-ADDRESS-FAMILY IPv6: a second relayed address, if one can be had. */
  readonly additionalIPv6: boolean;
  readonly even: boolean;
  /** EVEN-PORT with R: reserve the next port under a token. */
  readonly reserve: boolean;
  readonly token: Buffer | undefined;
  readonly lifetimeMs: number;
}

export type AllocateOutcome =
  | { ok: true; relays: Partial<Record<Family, RelaySocket>>; reservation?: Buffer; v6Error?: number }
  | { ok: false; code: number; reason: string };

export type CoreAction =
  | { type: 'reply'; path: ClientPath; data: Buffer }
  | { type: 'allocate'; ticket: AllocateTicket }
  /** A Send indication to relay (the data path does it). */
  | { type: 'indication'; path: ClientPath; message: StunMessage }
  /** An allocation ended: release its relayed sockets and its quota slot. */
  | { type: 'deleted'; allocation: Allocation; reason: string }
  | { type: 'event'; event: TurnEvent };

export interface RequestCoreOptions {
  authenticator: Authenticator;
  peerPolicy: PeerPolicyHandler;
  limits: ResolvedLimits;
  counters: TurnCounters;
  /** The families relayed addresses can be had in (an Allocate for another gets 440). */
  relayFamilies: () => Partial<Record<Family, string>>;
  /** Addresses advertised in XOR-RELAYED-ADDRESS instead of the relay's own (1:1 NAT). */
  externalAddresses?: Partial<Record<Family, string>>;
  table?: AllocationTable;
}

/** Decodes every known attribute once; false if one is malformed. */
function validated(msg: StunMessage): boolean {
  try {
    msg.validate();
    return true;
  } catch {
    return false;
  }
}

const UNSIGNED: Signer = { key: undefined, integrity: 'sha1' };

export class RequestCore {
  readonly table: AllocationTable;
  readonly counters: TurnCounters;
  authenticator: Authenticator;
  readonly peerPolicy: PeerPolicyHandler;
  private readonly limits: ResolvedLimits;
  private readonly relayFamilies: () => Partial<Record<Family, string>>;
  private readonly external: Partial<Record<Family, string>>;
  private readonly limiter: RateLimiter;
  private readonly binding: BindingService;
  private readonly software: string | undefined;
  private nextId = 1;
  /** New Allocates get 508 (shutting down). */
  draining = false;

  constructor(o: RequestCoreOptions) {
    this.table = o.table ?? new AllocationTable();
    this.counters = o.counters;
    this.authenticator = o.authenticator;
    this.peerPolicy = o.peerPolicy;
    this.limits = o.limits;
    this.relayFamilies = o.relayFamilies;
    this.external = o.externalAddresses ?? {};
    this.limiter = new RateLimiter({ ratePerSecond: o.limits.errorRate, burst: o.limits.errorBurst });
    this.software = o.limits.software === false ? undefined : softwareText(o.limits.software);
    this.binding = new BindingService([undefined], { software: o.limits.software, errorRate: o.limits.errorRate, errorBurst: o.limits.errorBurst });
  }

  /**
   * A STUN message from a client (ChannelData is the data path's): decodes it, drops what
   * is not a well-formed request or Send indication (counted by reason), and handles it.
   */
  message(buf: Buffer, path: ClientPath, now: number): CoreAction[] {
    const drop = this.counters.dropped;
    if (buf.length < 20 || (buf[0]! & 0xc0) !== 0) {
      drop.not_stun++;
      return [];
    }
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf, { registry: turnServerRegistry });
    } catch {
      drop.malformed++;
      return [];
    }
    if (msg.fingerprintAt >= 0 && !verifyFingerprint(msg)) {
      drop.bad_fingerprint++;
      return [];
    }
    if (msg.cls === MessageClass.Indication) {
      // A Binding indication is a client's NAT keepalive (RFC 8489 section 3): nothing to do,
      // and not a drop either.
      if (msg.method === Method.Binding) return [];
      if (msg.method !== Method.Send) drop.unexpected++;
      else if (!validated(msg)) drop.malformed++;
      else return [{ type: 'indication', path, message: msg }];
      return [];
    }
    if (msg.cls !== MessageClass.Request) {
      drop.unexpected++;
      return [];
    }
    return this.request(msg, buf, path, now);
  }

  private request(msg: StunMessage, buf: Buffer, path: ClientPath, now: number): CoreAction[] {
    const out: CoreAction[] = [];
    const req = this.counters.requests;
    if (msg.method === Method.Binding) {
      // The STUN Binding service answers on the TURN ports too (TURN extends STUN; ICE
      // agents send their server-reflexive Binding requests to the TURN server).
      req.binding++;
      const reply = path.stream ? this.binding.handleStream(buf, path.remote, now) : this.binding.handleDatagram(buf, path.remote, 0, now)?.data;
      if (reply) out.push({ type: 'reply', path, data: reply });
      return out;
    }
    const ctx: Ctx = { msg, path, now, fingerprint: msg.fingerprintAt >= 0, out };
    if (msg.unknownRequired.length > 0) {
      // RFC 8489 section 6.3.1 (DONT-FRAGMENT lands here: RFC 8656 section 7.2 step 4).
      this.counters.dropped.unknown_attribute++;
      this.reject(ctx, ErrorCode.UnknownAttribute, undefined, undefined, (b) => b.add(Attr.UnknownAttributes, [...msg.unknownRequired]));
      return out;
    }
    // Every known attribute is decoded once here, so a malformed one is a 400 in one place
    // and the handlers below read values without guarding each read.
    try {
      msg.validate();
    } catch (err) {
      this.reject(ctx, ErrorCode.BadRequest, undefined, (err as Error).message);
      return out;
    }
    switch (msg.method) {
      case Method.Allocate:
        req.allocate++;
        this.onAllocate(ctx);
        break;
      case Method.Refresh:
        req.refresh++;
        this.onRefresh(ctx);
        break;
      case Method.CreatePermission:
        req.create_permission++;
        this.onCreatePermission(ctx);
        break;
      case Method.ChannelBind:
        req.channel_bind++;
        this.onChannelBind(ctx);
        break;
      default:
        req.other++;
        this.reject(ctx, ErrorCode.BadRequest, undefined, 'unknown method');
    }
    return out;
  }

  // ------------------------------------------------------------------------------------
  // Answers

  private answer(ctx: Ctx, cls: number, s: Signer, add?: (b: MessageBuilder) => void): Buffer {
    const b = new MessageBuilder(ctx.msg.method, cls, ctx.msg.transactionId);
    add?.(b);
    if (this.software) b.add(Attr.Software, this.software);
    const data = b.encode({ integrity: s.key ? { key: s.key, algorithm: s.integrity } : undefined, fingerprint: ctx.fingerprint });
    ctx.out.push({ type: 'reply', path: ctx.path, data });
    return data;
  }

  /**
   * An error answer. Signed when the request authenticated (`s` has a key); otherwise
   * rate-limited per source over UDP (unauthenticated error answers must not be a
   * reflector). Over TCP/TLS the handshake proved the source, and a client never
   * retransmits there (RFC 8489 section 6.2.2): a dropped 401 would stall it for the whole
   * transaction timeout, so streams are not limited (connections per IP are).
   */
  private reject(ctx: Ctx, code: number, s: Signer | undefined, reason?: string, add?: (b: MessageBuilder) => void): void {
    const signer = s ?? UNSIGNED;
    if (!signer.key && !ctx.path.stream && !this.limiter.take(ctx.path.remote.address, ctx.now)) {
      this.counters.dropped.rate_limited++;
      return;
    }
    this.counters.error(code);
    // ERROR-CODE reasons must be fewer than 128 characters (RFC 8489 section 14.8).
    const full = reason ? `${ERROR_REASONS[code] ?? 'Error'}: ${reason}` : (ERROR_REASONS[code] ?? 'Error');
    const phrase = full.length > 120 ? `${full.slice(0, 117)}...` : full;
    this.answer(ctx, MessageClass.ErrorResponse, signer, (b) => {
      b.add(Attr.ErrorCode, { code, reason: phrase });
      add?.(b);
    });
  }

  /** Authenticates a request; on failure answers it and returns undefined. */
  private authenticate(ctx: Ctx): Auth | undefined {
    const r = this.authenticator.authenticate(ctx.msg, ctx.path.remote, ctx.now);
    if (r.ok) return { username: r.username, anonymous: r.anonymous === true, signer: { key: r.key, integrity: r.integrity } };
    // A first request without credentials is the normal start, not a failure.
    if ((r.code === ErrorCode.Unauthorized || r.code === ErrorCode.StaleNonce) && (ctx.msg.integrityAt >= 0 || ctx.msg.integritySha256At >= 0)) {
      this.counters.authFailures++;
      ctx.out.push({ type: 'event', event: { type: 'auth-failure', client: ctx.path, username: r.username, code: r.code, reason: r.reason } });
    }
    const challenge = r.challenge ? (b: MessageBuilder) => this.authenticator.challenge(b, ctx.path.remote, ctx.now) : undefined;
    this.reject(ctx, r.code, undefined, r.code === ErrorCode.Unauthorized ? undefined : r.reason, challenge);
    return undefined;
  }

  private lifetimeMs(requested: number | undefined): number {
    // RFC 8656 section 7.2: min(requested, max), but never below the default.
    const def = this.limits.defaultLifetimeMs;
    const want = requested === undefined ? def : Math.min(requested * 1000, this.limits.maxLifetimeMs);
    return Math.max(want, def);
  }

  /**
   * The common start of Refresh, CreatePermission and ChannelBind: authenticate, find the
   * 5-tuple's allocation (437) made by the same user (441).
   */
  private existing(ctx: Ctx): { alloc: Allocation; s: Signer } | undefined {
    const auth = this.authenticate(ctx);
    if (!auth) return undefined;
    const alloc = this.table.get(AllocationTable.key(ctx.path));
    if (!alloc || alloc.expiresAt <= ctx.now) {
      this.reject(ctx, ErrorCode.AllocationMismatch, auth.signer, 'no allocation for this 5-tuple');
      return undefined;
    }
    // RFC 8656 section 5: requests about an allocation must come from the user who made it.
    if (!auth.anonymous && alloc.username !== auth.username) {
      this.counters.authFailures++;
      ctx.out.push({ type: 'event', event: { type: 'auth-failure', client: ctx.path, username: auth.username, code: ErrorCode.WrongCredentials, reason: 'the allocation belongs to another user' } });
      this.reject(ctx, ErrorCode.WrongCredentials, auth.signer, 'the allocation belongs to another user');
      return undefined;
    }
    return { alloc, s: auth.signer };
  }

  // ------------------------------------------------------------------------------------
  // Allocate (RFC 8656 section 7.2)

  private onAllocate(ctx: Ctx): void {
    const auth = this.authenticate(ctx);
    if (!auth) return;
    const s = auth.signer;
    const key = AllocationTable.key(ctx.path);
    const tid = ctx.msg.transactionId.toString('hex');
    let existing = this.table.get(key);
    // An allocation whose lifetime ran out before the sweep got to it is gone already.
    if (existing && existing.expiresAt <= ctx.now) {
      this.delete(existing, 'expired', ctx.out);
      existing = undefined;
    }
    if (existing) {
      // Step 2: a retransmitted Allocate gets the same answer; any other is a mismatch.
      if (existing.createdBy === tid && existing.response) ctx.out.push({ type: 'reply', path: ctx.path, data: existing.response });
      else this.reject(ctx, ErrorCode.AllocationMismatch, s, 'an allocation already exists for this 5-tuple');
      return;
    }
    const inProgress = this.table.pendingFor(key);
    if (inProgress !== undefined) {
      if (inProgress !== tid) this.reject(ctx, ErrorCode.AllocationMismatch, s, 'an allocation is being made for this 5-tuple');
      return;
    }
    if (this.draining) {
      this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'the server is shutting down');
      return;
    }
    const m = ctx.msg;
    const transport = m.get(TurnAttr.RequestedTransport);
    const reqFamily = m.get(TurnAttr.RequestedAddressFamily);
    const addFamily = m.get(TurnAttr.AdditionalAddressFamily);
    const even = m.get(TurnAttr.EvenPort);
    const token = m.get(TurnAttr.ReservationToken);
    // Step 3: REQUESTED-TRANSPORT is required, and only UDP is relayed.
    if (transport === undefined) return this.reject(ctx, ErrorCode.BadRequest, s, 'REQUESTED-TRANSPORT is missing');
    if (transport !== TRANSPORT_UDP) return this.reject(ctx, ErrorCode.UnsupportedTransportProtocol, s, 'only UDP (17) is relayed');
    // Steps 5-7: the token excludes EVEN-PORT and the family attributes; the two family
    // attributes exclude each other; ADDITIONAL-ADDRESS-FAMILY can only ask for IPv6.
    if (token && (even || reqFamily || addFamily)) return this.reject(ctx, ErrorCode.BadRequest, s, 'RESERVATION-TOKEN with EVEN-PORT or an address family');
    if (reqFamily && addFamily) return this.reject(ctx, ErrorCode.BadRequest, s, 'REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY');
    if (addFamily === 'IPv4') return this.reject(ctx, ErrorCode.BadRequest, s, 'ADDITIONAL-ADDRESS-FAMILY must be IPv6');
    const family: Family = reqFamily ?? 'IPv4';
    if (!this.relayFamilies()[family] && !token) return this.reject(ctx, ErrorCode.AddressFamilyNotSupported, s, `no ${family} relay address`);
    this.table.setPending(key, tid);
    ctx.out.push({
      type: 'allocate',
      ticket: {
        key,
        tid,
        path: ctx.path,
        request: m,
        username: auth.anonymous ? undefined : auth.username,
        signer: s,
        family,
        additionalIPv6: addFamily === 'IPv6',
        even: even !== undefined,
        reserve: even?.reserve === true,
        token,
        lifetimeMs: this.lifetimeMs(m.get(TurnAttr.Lifetime)),
      },
    });
  }

  /**
   * The outcome of an 'allocate' action: the allocation is made and answered, or the
   * Allocate is refused. `now` is when the outcome is known.
   */
  allocated(t: AllocateTicket, outcome: AllocateOutcome, now: number): CoreAction[] {
    this.table.clearPending(t.key);
    const out: CoreAction[] = [];
    const ctx: Ctx = { msg: t.request, path: t.path, now, fingerprint: t.request.fingerprintAt >= 0, out };
    if (!outcome.ok) {
      this.reject(ctx, outcome.code, t.signer, outcome.reason);
      return out;
    }
    const relays = outcome.relays;
    const alloc = new Allocation({
      id: this.nextId++,
      key: t.key,
      client: t.path,
      username: t.username ?? '',
      anonymous: t.username === undefined,
      hmacKey: t.signer.key,
      integrity: t.signer.integrity,
      relays,
      now,
      lifetimeMs: t.lifetimeMs,
      createdBy: t.tid,
    });
    this.table.add(alloc);
    this.counters.allocationsCreated++;
    const lifetime = Math.round(t.lifetimeMs / 1000);
    alloc.response = this.answer(ctx, MessageClass.SuccessResponse, t.signer, (b) => {
      for (const r of Object.values(relays)) b.add(TurnAttr.XorRelayedAddress, this.advertised(r!));
      if (outcome.v6Error !== undefined) b.add(TurnAttr.AddressErrorCode, { family: 'IPv6', code: outcome.v6Error, reason: ERROR_REASONS[outcome.v6Error]! });
      b.add(TurnAttr.Lifetime, lifetime);
      if (outcome.reservation) b.add(TurnAttr.ReservationToken, outcome.reservation);
      b.add(Attr.XorMappedAddress, t.path.remote);
    });
    out.push({ type: 'event', event: { type: 'allocation-created', allocation: alloc, lifetime } });
    return out;
  }

  /** The adapter gave up on an 'allocate' action (the server closed, the connection went). */
  abandoned(t: AllocateTicket): void {
    this.table.clearPending(t.key);
  }

  /** The relayed address as advertised (the external address behind 1:1 NAT). */
  advertised(r: RelaySocket): TransportAddress {
    return { family: r.family, address: this.external[r.family] ?? r.address, port: r.port };
  }

  // ------------------------------------------------------------------------------------
  // Refresh (section 7.3), CreatePermission (9.2), ChannelBind (12.2)

  private onRefresh(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, s } = e;
    const lifetime = ctx.msg.get(TurnAttr.Lifetime);
    const fam = ctx.msg.get(TurnAttr.RequestedAddressFamily);
    // RFC 8656 section 7.3: a family the allocation does not have is a mismatch (443).
    if (fam && !alloc.relays[fam]) return this.reject(ctx, ErrorCode.PeerAddressFamilyMismatch, s, `the allocation has no ${fam} address`);
    if (lifetime === 0) {
      this.delete(alloc, 'refreshed with lifetime 0', ctx.out);
      this.answer(ctx, MessageClass.SuccessResponse, s, (b) => b.add(TurnAttr.Lifetime, 0));
      return;
    }
    const ms = this.lifetimeMs(lifetime);
    alloc.expiresAt = ctx.now + ms;
    this.answer(ctx, MessageClass.SuccessResponse, s, (b) => b.add(TurnAttr.Lifetime, Math.round(ms / 1000)));
    ctx.out.push({ type: 'event', event: { type: 'allocation-refreshed', allocation: alloc, lifetime: Math.round(ms / 1000) } });
  }

  /** Checks a peer address for an allocation; answers and returns false if refused. */
  private peerAllowed(ctx: Ctx, alloc: Allocation, peer: TransportAddress, s: Signer): boolean {
    if (!alloc.relays[peer.family]) {
      this.reject(ctx, ErrorCode.PeerAddressFamilyMismatch, s, `no ${peer.family} relayed address for peer ${peer.address}`);
      return false;
    }
    const d = this.peerPolicy.check(peer, { username: alloc.username, client: alloc.client.remote });
    if (!d.allowed) {
      ctx.out.push({ type: 'event', event: { type: 'peer-refused', allocation: alloc, peer, reason: d.reason } });
      this.reject(ctx, ErrorCode.Forbidden, s, `peer ${peer.address} is not allowed`);
      return false;
    }
    return true;
  }

  private onCreatePermission(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, s } = e;
    const peers = ctx.msg.getAll(TurnAttr.XorPeerAddress);
    if (peers.length === 0) return this.reject(ctx, ErrorCode.BadRequest, s, 'XOR-PEER-ADDRESS is missing');
    // RFC 8656 section 9.2: all or none.
    for (const p of peers) if (!this.peerAllowed(ctx, alloc, p, s)) return;
    const fresh = new Set(peers.map((p) => p.address).filter((ip) => !alloc.permitted(ip, ctx.now)));
    const max = this.limits.maxPermissions;
    if (alloc.livePermissions(ctx.now) + fresh.size > max) return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${max} permissions per allocation`);
    for (const p of peers) alloc.permit(p.address, ctx.now);
    this.answer(ctx, MessageClass.SuccessResponse, s);
    ctx.out.push({ type: 'event', event: { type: 'permission', allocation: alloc, peers: [...new Set(peers.map((p) => p.address))] } });
  }

  private onChannelBind(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, s } = e;
    const number = ctx.msg.get(TurnAttr.ChannelNumber);
    const peer = ctx.msg.get(TurnAttr.XorPeerAddress);
    if (number === undefined || peer === undefined) return this.reject(ctx, ErrorCode.BadRequest, s, 'CHANNEL-NUMBER and XOR-PEER-ADDRESS are required');
    // RFC 8656 section 12.2: a number outside 0x4000-0x4FFF is refused with 400 (RFC
    // 5766's 0x7FFF is accepted with legacyChannels). The 400 says how to get past it, for
    // coturn's turnutils_uclient, which still picks numbers up to 0x7FFF.
    const maxChannel = this.limits.maxChannel;
    if (number < MIN_CHANNEL || number > maxChannel) {
      const hint = number <= 0x7fff && maxChannel < 0x7fff ? ' (RFC 5766 numbers: relayserver --legacy-channels)' : '';
      return this.reject(ctx, ErrorCode.BadRequest, s, `channel 0x${number.toString(16)} is outside 0x4000-0x${maxChannel.toString(16).toUpperCase()}${hint}`);
    }
    if (peer.port === 0) return this.reject(ctx, ErrorCode.BadRequest, s, 'peer port 0');
    if (!this.peerAllowed(ctx, alloc, peer, s)) return;
    alloc.sweep(ctx.now);
    // RFC 8656 section 12.2: a number bound to another peer, or a peer bound to another
    // number, is refused.
    const byNumber = alloc.channels.get(number);
    if (byNumber && (byNumber.peer.address !== peer.address || byNumber.peer.port !== peer.port)) {
      return this.reject(ctx, ErrorCode.BadRequest, s, `channel 0x${number.toString(16)} is bound to another peer`);
    }
    const byPeer = alloc.channelForPeer(peer);
    if (byPeer && byPeer.number !== number) return this.reject(ctx, ErrorCode.BadRequest, s, 'the peer is bound to another channel');
    const { maxChannels, maxPermissions } = this.limits;
    if (!byNumber && alloc.channels.size >= maxChannels) return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${maxChannels} channels per allocation`);
    if (!alloc.permitted(peer.address, ctx.now) && alloc.livePermissions(ctx.now) >= maxPermissions) {
      return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${maxPermissions} permissions per allocation`);
    }
    alloc.bind(number, peer, ctx.now);
    this.answer(ctx, MessageClass.SuccessResponse, s);
    ctx.out.push({ type: 'event', event: { type: 'channel', allocation: alloc, channel: number, peer } });
  }

  // ------------------------------------------------------------------------------------
  // Lifetimes

  /** Removes an allocation from the table; the adapter releases what it held. */
  delete(alloc: Allocation, reason: string, out: CoreAction[]): void {
    if (alloc.closed) return;
    alloc.closed = true;
    this.table.remove(alloc);
    out.push({ type: 'deleted', allocation: alloc, reason });
  }

  /** Deletes what has expired at `now`; drops expired permissions and channels. */
  sweep(now: number): CoreAction[] {
    const out: CoreAction[] = [];
    for (const a of [...this.table.values()]) {
      if (a.expiresAt <= now) this.delete(a, 'expired', out);
      else a.sweep(now);
    }
    return out;
  }

  /** Deletes every allocation (the server is closing). */
  deleteAll(reason: string): CoreAction[] {
    const out: CoreAction[] = [];
    for (const a of [...this.table.values()]) this.delete(a, reason, out);
    return out;
  }

  /** Live permissions and channels now, for the metrics. */
  liveCounts(now: number): { permissions: number; channels: number } {
    let permissions = 0;
    let channels = 0;
    for (const a of this.table.values()) {
      permissions += a.livePermissions(now);
      channels += a.channels.size;
    }
    return { permissions, channels };
  }
}

interface Auth {
  username: string;
  anonymous: boolean;
  signer: Signer;
}

interface Ctx {
  msg: StunMessage;
  path: ClientPath;
  now: number;
  fingerprint: boolean;
  out: CoreAction[];
}

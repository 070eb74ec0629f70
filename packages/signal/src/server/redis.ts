import type { Redis as RedisClient } from 'ioredis';
import type { SignalCore } from '../core/core.js';
import type { Driver } from '../core/driver.js';
import type { Directory, JoinRequest, JoinResult, Packet, RoomKey } from '../core/types.js';
import { SignalServerError } from '../errors.js';

/**
 * Several signalserver instances sharing rooms through Redis. Loaded only with --redis.
 *
 * Keys (under `prefix`, default "natkit:signal:"):
 *   instance:<id>      "1", with a TTL (ttl ms) the instance refreshes every ttl/3: it is alive.
 *   room:<name>, plain a hash member -> "<instance> <session>" for each party in the room,
 *                      with a TTL (2 ttl) refreshed by the instances that have a party in it.
 * Channels: bus:<id>   the frames for the parties on instance <id> (pub/sub).
 *
 * Joining is one Lua script, so of concurrent joins exactly one gets a free place; it
 * drops entries of instances whose liveness key is gone (an instance that died loses only
 * its own parties) and finds the party of the same session (a reconnect takes its place).
 * Messages go by pub/sub in the core's links, numbered and acknowledged, so what a Redis
 * restart or a reconnect drops goes again. After Redis comes back, every instance asserts
 * its parties again (the core's directory-up), so a Redis that lost its data (no
 * persistence) learns the rooms again. Commands wait in ioredis's queue while Redis is
 * away; no leave is lost.
 *
 * Not for Redis Cluster: the join script reads liveness keys it is not given as KEYS.
 */

export interface RedisOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  url: string;
  /** Prefix of every key and channel. Default "natkit:signal:". */
  prefix?: string;
  /** Liveness TTL (ms): an instance silent this long is gone. Default 15000. */
  ttl?: number;
}

export interface RedisLink {
  readonly instance: string;
  readonly directory: Directory;
  readonly up: boolean;
  publish(instance: string, packet: Packet): void;
  attach(driver: Driver): void;
  close(): Promise<void>;
}

const JOIN = `
local entries = redis.call('HGETALL', KEYS[1])
local others = {}
local replaced = nil
for i = 1, #entries, 2 do
  local m = entries[i]
  local v = entries[i + 1]
  if m ~= ARGV[2] then
    local sep = string.find(v, ' ', 1, true)
    local inst = sep and string.sub(v, 1, sep - 1) or v
    local sess = sep and string.sub(v, sep + 1) or ''
    if redis.call('EXISTS', ARGV[1] .. inst) == 0 then
      redis.call('HDEL', KEYS[1], m)
    elseif ARGV[4] ~= '' and sess == ARGV[4] then
      if ARGV[6] == '1' then
        -- asserting a place whose session another party has taken over: it is lost
        redis.call('HDEL', KEYS[1], ARGV[2])
        return { 'replaced' }
      end
      replaced = { m, inst }
    else
      table.insert(others, { m, inst })
    end
  end
end
if #others >= 2 then return { 'full' } end
if replaced then redis.call('HDEL', KEYS[1], replaced[1]) end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ' ' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local r = { 'ok', '', '', '', '' }
if others[1] then r[2] = others[1][1]; r[3] = others[1][2] end
if replaced then r[4] = replaced[1]; r[5] = replaced[2] end
return r
`;

type JoinReply = [string, string?, string?, string?, string?];

let counter = 0;
function instanceId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}${(++counter).toString(36)}`;
}

export async function connectRedis(options: RedisOptions, log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void): Promise<RedisLink> {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new SignalServerError('BAD_OPTION', `not a Redis URL: ${JSON.stringify(options.url)} (expected redis://host:port)`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new SignalServerError('BAD_OPTION', `a Redis URL starts with redis:// or rediss://, got ${url.protocol}//`);
  const prefix = options.prefix ?? 'natkit:signal:';
  const ttl = options.ttl ?? 15_000;
  if (!Number.isInteger(ttl) || ttl < 300) throw new SignalServerError('BAD_OPTION', `the Redis liveness TTL must be at least 300 ms, got ${ttl}`);
  const { Redis } = await import('ioredis');
  const instance = instanceId();
  const liveKey = (id: string) => `${prefix}instance:${id}`;
  const channel = (id: string) => `${prefix}bus:${id}`;
  const common = {
    lazyConnect: true,
    // Commands wait while Redis is away instead of failing: no leave or publish is lost.
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 1000),
    connectionName: `signalserver-${instance}`,
  };
  const cmd: RedisClient = new Redis(options.url, common);
  const sub: RedisClient = new Redis(options.url, common);
  for (const c of [cmd, sub]) c.on('error', () => {}); // reported through 'close'/'ready' below
  cmd.defineCommand('signalJoin', { numberOfKeys: 1, lua: JOIN });
  try {
    await Promise.all([connectOnce(cmd), connectOnce(sub)]);
  } catch (err) {
    cmd.disconnect();
    sub.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(options.url)}: ${(err as Error).message}`);
  }
  await cmd.set(liveKey(instance), '1', 'PX', ttl);
  await sub.subscribe(channel(instance));

  let driver: Driver | undefined;
  let up = true;
  let upSince = Date.now();
  let wasDown = false;
  let closing = false;

  const directory: Directory = {
    async join(req: JoinRequest): Promise<JoinResult> {
      const r = (await (cmd as unknown as { signalJoin: (...a: unknown[]) => Promise<JoinReply> }).signalJoin(
        prefix + req.room,
        `${prefix}instance:`,
        req.member,
        req.instance,
        req.session ?? '',
        ttl * 2,
        req.reassert ? '1' : '0',
      )) as JoinReply;
      if (r[0] !== 'ok') return { ok: false, reason: r[0] === 'replaced' ? 'replaced' : 'full' };
      return {
        ok: true,
        ...(r[1] ? { peer: { member: r[1], instance: r[2]! } } : {}),
        ...(r[3] ? { replaced: { member: r[3], instance: r[4]! } } : {}),
      };
    },
    async leave(room: RoomKey, member: string): Promise<void> {
      await cmd.hdel(prefix + room, member);
    },
  };

  sub.on('message', (ch: string, text: string) => {
    if (!driver || ch !== channel(instance)) return;
    let packet: Packet;
    try {
      packet = JSON.parse(text) as Packet;
    } catch {
      log('warn', 'unreadable message on the Redis bus', { channel: ch });
      return;
    }
    driver.feed({ type: 'packet', packet });
  });

  cmd.on('close', () => {
    if (closing || !up) return;
    up = false;
    wasDown = true;
    log('warn', 'Redis connection lost; reconnecting (parties stay; messages to other instances wait)');
  });
  cmd.on('ready', () => {
    if (closing || !wasDown) return;
    up = true;
    wasDown = false;
    upSince = Date.now();
    log('info', 'Redis connection back; asserting this instance and its parties again');
    cmd.set(liveKey(instance), '1', 'PX', ttl).catch(() => {});
    driver?.feed({ type: 'directory-up' });
  });

  // Every ttl/3: this instance is alive; its rooms are kept; other instances its parties
  // talk to are checked (not in the first ttl after Redis came back, while they assert
  // themselves again).
  const tick = async () => {
    if (!up || !driver) return;
    const core: SignalCore = driver.core;
    const p = cmd.pipeline();
    p.set(liveKey(instance), '1', 'PX', ttl);
    for (const room of core.localRooms()) p.pexpire(prefix + room, ttl * 2);
    const remote = Date.now() - upSince >= ttl ? core.remoteInstances() : [];
    for (const id of remote) p.exists(liveKey(id));
    const res = (await p.exec()) ?? [];
    const offset = res.length - remote.length;
    remote.forEach((id, k) => {
      const [err, n] = res[offset + k] ?? [];
      if (!err && n === 0) driver!.feed({ type: 'instance-down', instance: id });
    });
  };
  const timer = setInterval(() => {
    tick().catch((err: Error) => log('warn', 'Redis liveness refresh failed', { error: err.message }));
  }, Math.max(100, Math.floor(ttl / 3)));
  timer.unref();

  return {
    instance,
    directory,
    get up() {
      return up;
    },
    publish(to: string, packet: Packet): void {
      cmd.publish(channel(to), JSON.stringify(packet)).catch(() => {});
    },
    attach(d: Driver): void {
      driver = d;
    },
    async close(): Promise<void> {
      closing = true;
      clearInterval(timer);
      // Leave and publishes go first (one connection, in order), then the liveness key.
      try {
        if (cmd.status === 'ready') await withTimeout(cmd.del(liveKey(instance)), 2000);
        if (cmd.status === 'ready') await withTimeout(cmd.quit(), 2000);
      } catch {
        // Redis away: the keys expire by themselves.
      }
      cmd.disconnect();
      try {
        if (sub.status === 'ready') await withTimeout(sub.quit(), 2000);
      } catch {
        // as above
      }
      sub.disconnect();
    },
  };
}

function connectOnce(c: RedisClient): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      c.off('ready', onReady);
      reject(err);
    };
    const onReady = () => {
      c.off('error', onError);
      resolve();
    };
    c.once('error', onError);
    c.once('ready', onReady);
    c.connect().catch(() => {});
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error('timeout')), ms)))]).finally(() => clearTimeout(t));
}

function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return u;
  }
}

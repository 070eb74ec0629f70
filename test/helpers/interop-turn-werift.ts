// werift 0.24.4's TURN client (TurnProtocol, from `createTurnClient` in werift's main
// export; source node_modules/werift/lib/ice/src/turn/protocol.js) driven in a child
// Node process, so that what it leaves running when closed cannot leak into the test
// process: TurnProtocol.close() does not stop its refresh loop, which sleeps on a
// timers/promises setTimeout of 5/6 of the allocation's lifetime (500 s for 600 s) that
// nothing cancels, so the process would hold a live Timeout for minutes.
//
// The child: allocates (UDP from 127.0.0.1, or TCP), prints one JSON line per event
// ({"event":"allocated","relayed":[ip,port],"mapped":[ip,port]}, {"event":"data",...},
// {"event":"done"} or {"event":"error",...}), sends COUNT payloads to the peer with
// TurnProtocol.sendData (werift binds a channel first and uses ChannelData; if the
// ChannelBind fails it falls back to CreatePermission and a Send indication), waits for
// COUNT datagrams back from the peer, closes and exits.
import { type Proc, start } from './spawn.js';

const SCRIPT = String.raw`
const { createTurnClient } = require('werift');
const [host, port, transport, username, password, peerHost, peerPort, count] = process.argv.slice(1);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const fail = (e) => { out({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); };
process.on('unhandledRejection', fail);
setTimeout(() => fail('timed out'), 20000).unref();
(async () => {
  const turn = await createTurnClient(
    { address: [host, Number(port)], username, password },
    { transport, interfaceAddresses: { udp4: '127.0.0.1' } },
  );
  out({ event: 'allocated', relayed: turn.relayedAddress, mapped: turn.mappedAddress });
  const n = Number(count);
  let got = 0;
  const finished = new Promise((resolve) => {
    turn.onData.subscribe((data, addr) => {
      out({ event: 'data', hex: Buffer.from(data).toString('hex'), from: addr });
      if (++got === n) resolve();
    });
  });
  for (let i = 0; i < n; i++) {
    await turn.sendData(Buffer.from('werift ' + i + ' ' + 'x'.repeat(i)), [peerHost, Number(peerPort)]);
  }
  await finished;
  await turn.close();
  out({ event: 'done' });
  process.exit(0);
})().catch(fail);
`;

export interface WeriftEvent {
  event: 'allocated' | 'data' | 'done' | 'error';
  relayed?: [string, number];
  mapped?: [string, number];
  hex?: string;
  from?: [string, number];
  message?: string;
}

export interface WeriftClient {
  proc: Proc;
  events(): WeriftEvent[];
  /** Waits for the first event of this kind (or an error event, which rejects). */
  waitFor(kind: WeriftEvent['event'], ms?: number): Promise<WeriftEvent>;
}

/** The payloads the child sends, in order: "werift <i> " and i x's. */
export function weriftPayload(i: number): Buffer {
  return Buffer.from(`werift ${i} ${'x'.repeat(i)}`);
}

export function startWeriftClient(opts: {
  server: { address: string; port: number };
  transport: 'udp' | 'tcp';
  username: string;
  password: string;
  peer: { address: string; port: number };
  count: number;
}): WeriftClient {
  const proc = start(process.execPath, [
    '-e',
    SCRIPT,
    opts.server.address,
    String(opts.server.port),
    opts.transport,
    opts.username,
    opts.password,
    opts.peer.address,
    String(opts.peer.port),
    String(opts.count),
  ]);
  const events = () =>
    proc
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as WeriftEvent);
  return {
    proc,
    events,
    async waitFor(kind, ms = 20_000) {
      await proc.waitFor(new RegExp(`^\\{"event":"(${kind}|error)"`, 'm'), ms);
      const e = events().find((x) => x.event === kind || x.event === 'error')!;
      if (e.event === 'error') throw new Error(`werift: ${e.message}\nstderr: ${proc.stderr()}`);
      return e;
    },
  };
}

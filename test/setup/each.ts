// After each test no socket, server or timer that the test opened may still be open.
import { afterEach, beforeEach } from 'vitest';

// Sockets, servers, child processes and timers. File-system requests are left out: the test
// runner's own reporting uses them and they end by themselves.
const WATCHED = new Set(['UDPWrap', 'TCPWrap', 'TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate', 'TLSWrap', 'PipeWrap', 'ProcessWrap']);

function counts(): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of process.getActiveResourcesInfo()) if (WATCHED.has(t)) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

let before = new Map<string, number>();

beforeEach(() => {
  before = counts();
});

/** How long closing handles may take to finish (a loaded machine delays the event loop). */
const DEADLINE_MS = 5_000;

afterEach(async () => {
  // Closing handles finishes on a later turn of the event loop: wait for them with a
  // deadline in seconds, not a count of turns. The poll's own timer has fired (and is no
  // longer active) when the handles are counted.
  let leaked: string[] = [];
  const deadline = Date.now() + DEADLINE_MS;
  for (let wait = 0; ; wait = Math.min(50, wait + 1)) {
    await new Promise<void>((r) => (wait === 0 ? setImmediate(r) : setTimeout(r, wait)));
    const now = counts();
    leaked = [...now].filter(([t, n]) => n > (before.get(t) ?? 0)).map(([t, n]) => `${t} x${n - (before.get(t) ?? 0)}`);
    if (leaked.length === 0) return;
    if (Date.now() > deadline) break;
  }
  throw new Error(`the test left open handles ${DEADLINE_MS / 1000} s after it ended: ${leaked.join(', ')}`);
});

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

afterEach(async () => {
  // Closing handles finishes on a later turn of the event loop; give it a few.
  let leaked: string[] = [];
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((r) => setImmediate(r));
    const now = counts();
    leaked = [...now].filter(([t, n]) => n > (before.get(t) ?? 0)).map(([t, n]) => `${t} x${n - (before.get(t) ?? 0)}`);
    if (leaked.length === 0) return;
  }
  throw new Error(`the test left open handles: ${leaked.join(', ')}`);
});

// Why natkit keeps its own logger (README, Dependencies): the cost of one relay log line
// ("allocation created", JSON) written to a file, by natkit's createLogger and by pino.
// A measurement script, not a test. pino is not a natkit dependency: install it in a
// scratch folder and name that folder:
//
//   (mkdir -p /tmp/pino && cd /tmp/pino && npm i pino@10.4.0)
//   npx -y -p pnpm@10.34.9 pnpm build
//   node packages/stun/scripts/log-bench.mjs natkit
//   PINO_DIR=/tmp/pino node packages/stun/scripts/log-bench.mjs pino
import { createWriteStream } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../dist/cli.js';

const N = 200_000;
const fields = { id: 17, user: 'alice', client: 'udp 198.51.100.7:40000', relayed: ['192.0.2.10:50000'], lifetime: 600 };
const file = join(tmpdir(), `natkit-log-bench-${process.pid}.log`);

async function run(name, log, flush) {
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) log('allocation created', fields);
  await flush();
  const ns = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  console.log(`${name}: ${(ns / N / 1000).toFixed(2)} us/line wall, ${((cpu.user + cpu.system) / N).toFixed(2)} us/line CPU`);
}

if (process.argv[2] === 'pino') {
  const pino = createRequire(join(process.env.PINO_DIR ?? '.', 'x.js'))('pino');
  const dest = pino.destination({ dest: file, sync: false });
  await new Promise((r) => dest.once('ready', r));
  const p = pino({ base: { program: 'relayserver' } }, dest);
  await run('pino (sonic-boom, async)', (m, f) => p.info(f, m), () => new Promise((r) => (dest.end(), dest.on('close', r))));
} else {
  const stream = createWriteStream(file);
  const log = createLogger('relayserver', 'json', 'info', { out: stream, err: stream });
  await run('natkit createLogger (JSON)', (m, f) => log.info(m, f), () => new Promise((r) => stream.end(r)));
}

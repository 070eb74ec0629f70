#!/usr/bin/env node
// The main job (`pnpm start`): natkit's servers on loopback and a client reporting what it
// found. Starts `stunserver` on 127.0.0.1 and 127.0.0.2 (RFC 5780 full mode), runs
// `natcheck` against it, prints the report and stops the server.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (pkg, name) => `${root}packages/${pkg}/bin/${name}.js`;

/** Starts a binary and resolves with the process and its start-up line (first stdout line). */
function startServer(args, name) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 10 s`)), 10_000);
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code} before it was ready`)));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ child, line: out.slice(0, nl) });
      }
    });
  });
}

function run(args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  return once(child, 'exit').then(([code]) => code);
}

async function stop(child, name) {
  if (child.exitCode !== null) return child.exitCode;
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`${name} exited with ${code} on SIGTERM`);
  return code;
}

const failures = [];
console.log('== natkit main job: servers on loopback, clients reporting what they found ==\n');

console.log('-- stunserver on 127.0.0.1 and 127.0.0.2 (RFC 5780 full mode), free ports');
const stun = await startServer([bin('stun', 'stunserver'), '--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0'], 'stunserver');
console.log(stun.line);
const port = /udp 127\.0\.0\.1:(\d+)/.exec(stun.line)?.[1];
try {
  console.log(`\n-- natcheck 127.0.0.1:${port}`);
  const code = await run([bin('stun', 'natcheck'), `127.0.0.1:${port}`]);
  if (code !== 0) failures.push(`natcheck exited with ${code}`);
} finally {
  await stop(stun.child, 'stunserver');
  console.log('\n-- stunserver stopped cleanly');
}

if (failures.length) {
  console.error(`\nmain job FAILED: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('\nmain job OK');

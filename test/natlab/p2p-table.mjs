#!/usr/bin/env node
// Regenerates the README's two-peer table (issue 8) from a run of the two-peer lab test:
//
//   NATKIT_P2P_RESULTS=/tmp/p2p.json CI=true npx vitest run test/natlab/p2p.test.ts
//   node test/natlab/p2p-table.mjs /tmp/p2p.json            # rewrites README.md in place
//   node test/natlab/p2p-table.mjs /tmp/p2p.json --print    # prints the table instead
//
// The table goes between the lines `<!-- natlab:p2p-table -->` and `<!-- /natlab:p2p-table -->`
// of README.md (or of the file given with --readme FILE); everything else is left as it is,
// and running it twice on the same results changes nothing. Plain Node, no dependencies.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BEGIN = '<!-- natlab:p2p-table -->';
export const END = '<!-- /natlab:p2p-table -->';

const TYPES = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];
const LABEL = { none: 'no NAT', 'full-cone': 'full cone', 'restricted-cone': 'restricted cone', 'port-restricted-cone': 'port-restricted cone', symmetric: 'symmetric' };
const label = (t) => LABEL[t] ?? (t.includes('/') ? `${t} NAT` : t);
const secs = (ms) => (ms === undefined ? '?' : `${(ms / 1000).toFixed(1)} s`);
/** Sub-second figures (ICE's own time, a restart) with two decimals. */
const fine = (ms) => (ms === undefined ? '?' : ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : secs(ms));

/** One cell's text: the path both peers found (A's pair), the connect time; a mismatch in bold. */
export function cellText(c) {
  if (!c) return 'not run';
  if (!c.connected) return `**not connected** (expected ${c.predicted.path})`;
  const first = c.peers[0].path;
  const p = c.peers[0].pathChanges?.at(-1) ?? first;
  const pair = p ? `${p.local.type}-${p.remote.type}${p !== first && first ? `; ${first.kind} ${first.local.type}-${first.remote.type} first` : ''}` : '?';
  const slowest = Math.max(...c.peers.map((x) => x.connectMs ?? 0));
  const ice = c.peers.every((x) => x.iceMs !== undefined) ? ` (ICE ${fine(Math.max(...c.peers.map((x) => x.iceMs)))})` : '';
  const text = `${c.path} (${pair}), ${secs(slowest)}${ice}`;
  return c.path === c.predicted.path ? text : `**${text}; expected ${c.predicted.path}**`;
}

function scenarioLine(c) {
  const what =
    c.scenario === 'connect'
      ? `${c.loss} % loss on both NATs`
      : c.scenario === 'idle'
        ? `UDP mappings expire after ${c.mappingTimeoutSec} s idle, no application data for ${c.idleSec ?? 120} s`
        : c.scenario === 'flush'
          ? `A's NAT drops every mapping (conntrack -F)${c.expectBreak === false ? ', ports preserved' : c.expectBreak ? ', new ports' : ''}`
          : "A's NAT gets a new public address";
  let outcome;
  if (c.error && !c.connected) outcome = '**not connected**';
  else if (c.scenario === 'idle') outcome = c.heldIdle && !c.error ? 'still connected' : '**lost the path**';
  else if (c.scenario === 'flush' || c.scenario === 'renumber') {
    if (c.outcome === 'kept' && !c.error) outcome = c.expectBreak ? '**kept the path; a break was expected**' : 'no break: the NAT handed out the same mappings again, and bytes kept flowing';
    else if (c.recovered) {
      const noticed = c.peers.every((p) => p.reportedRecoveryMs !== undefined) ? `; ${fine(Math.max(...c.peers.map((p) => p.reportedRecoveryMs)))} after the demo noticed` : '';
      outcome = `recovered in ${secs(Math.max(...c.peers.map((p) => p.recoveryMs ?? 0)))} (A ${secs(c.peers[0].recoveryMs)}, B ${secs(c.peers[1].recoveryMs)}${noticed})`;
    } else outcome = '**did not recover**';
  } else {
    const asPredicted = c.path === c.predicted.path ? '' : c.predicted.path === 'direct' ? ' (a direct path exists: checks lost, the agent settled for the relay)' : ` **(expected ${c.predicted.path})**`;
    outcome = c.connected && !c.error ? `connected, ${c.path}${asPredicted}, ${secs(Math.max(...c.peers.map((p) => p.connectMs ?? 0)))}` : '**failed**';
  }
  return `- ${label(c.a)} x ${label(c.b)}, ${what}: ${outcome}`;
}

/** The markdown for a results file (see p2p-harness.ts, ResultsFile). */
export function renderTable(results) {
  const cells = results.cells.filter((c) => c.scenario === 'connect' && !c.loss);
  const find = (a, b) => cells.find((c) => c.a === a && c.b === b);
  const rows = [
    `| A \\ B | ${TYPES.map(label).join(' | ')} |`,
    `|---|${TYPES.map(() => '---').join('|')}|`,
    ...TYPES.map((a) => `| **${label(a)}** | ${TYPES.map((b) => cellText(find(a, b))).join(' | ')} |`),
  ];
  const others = results.cells.filter((c) => !(c.scenario === 'connect' && !c.loss));
  const mismatches = cells.filter((c) => !c.connected || c.path !== c.predicted.path).length;
  return [
    BEGIN,
    `Two \`p2pdemo\` peers, each behind its own NAT in the lab, through the servers in the lab's public namespace: the path they selected (direct or relayed, peer A's candidate types) and how long until both said connected, from their start (each first runs its NAT check) and, in brackets, ICE's own part. Predicted by RFC 4787 (test/natlab/p2p-predict.ts); ${mismatches === 0 ? 'every cell as predicted' : `**${mismatches} cell(s) not as predicted**`}.`,
    '',
    ...rows,
    '',
    ...(others.length ? ['Under trouble:', '', ...others.map(scenarioLine), ''] : []),
    `Made by \`${results.command}\` on ${results.made} (Node ${results.node}; ${results.concurrency} cells at a time, ${secs(results.wallMs)} in all); \`node test/natlab/p2p-table.mjs RESULTS\` rewrites this table.`,
    END,
  ].join('\n');
}

/** `text` with the block between the markers replaced by `table`. */
export function replaceTable(text, table) {
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  if (i < 0 || j < i) throw new Error(`no ${BEGIN} ... ${END} block to replace`);
  return text.slice(0, i) + table + text.slice(j + END.length);
}

function main(argv) {
  const args = argv.slice(2);
  const print = args.includes('--print');
  const r = args.indexOf('--readme');
  const readme = r >= 0 ? args[r + 1] : fileURLToPath(new URL('../../README.md', import.meta.url));
  const file = args.find((a, k) => !a.startsWith('--') && args[k - 1] !== '--readme');
  if (!file) {
    process.stderr.write('usage: node test/natlab/p2p-table.mjs RESULTS.json [--print] [--readme FILE]\n');
    return 2;
  }
  const table = renderTable(JSON.parse(readFileSync(file, 'utf8')));
  if (print) {
    process.stdout.write(`${table}\n`);
    return 0;
  }
  writeFileSync(readme, replaceTable(readFileSync(readme, 'utf8'), table));
  process.stdout.write(`${readme}: two-peer table rewritten from ${file}\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    process.exitCode = main(process.argv);
  } catch (err) {
    process.stderr.write(`p2p-table: ${err.message}\n`);
    process.exitCode = 1;
  }
}

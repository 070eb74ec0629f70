// Debian's chromium, headless, driven by playwright-core, as the interop tests start it
// (test/interop/turn-chromium.test.ts; the ice-peers Chromium peer, test/helpers/ice-peers/chromium.ts,
// adds the flags its host candidates need).
import { type Browser, chromium } from 'playwright-core';
import { needProgram } from './programs.js';

/** Headless, without the sandbox (tests run as root), the GPU, QUIC, first-run UI or background traffic. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts Chromium with CHROMIUM_ARGS and `extraArgs`. Without a chromium on the machine the
 * test is skipped (a failure under CI=true: test/helpers/programs.ts).
 */
export async function launchChromium(ctx: { skip: (note?: string) => void }, extraArgs: readonly string[] = []): Promise<Browser> {
  const executablePath = needProgram(ctx, 'chromium');
  return chromium.launch({ executablePath, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

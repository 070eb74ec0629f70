// Runs once before the test run: installs the Debian packages the interop and lab tests
// use when they are missing (needs root and apt-get; NATKIT_NO_APT=1 turns this off).
import { installDebianPackages, isRoot, missingPrograms, which } from '../helpers/programs.js';

export default function setup(): void {
  const missing = missingPrograms();
  if (missing.length === 0) return;
  if (process.env.NATKIT_NO_APT === '1') {
    console.warn(`[natkit tests] missing ${missing.join(', ')}; NATKIT_NO_APT=1, so tests that need them are skipped`);
    return;
  }
  if (!isRoot() || !which('apt-get')) {
    console.warn(`[natkit tests] missing ${missing.join(', ')}; not root with apt-get, so tests that need them are skipped`);
    return;
  }
  console.log(`[natkit tests] the interop and lab tests need ${missing.join(', ')} (a one-time install; NATKIT_NO_APT=1 skips it)`);
  try {
    installDebianPackages(missing);
  } catch (err) {
    console.warn(`[natkit tests] apt-get failed (${(err as Error).message}); tests that need these programs are skipped`);
  }
}

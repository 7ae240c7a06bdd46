// native/sigbus.ts in a child process of its own: a guarded mapping whose file is truncated
// turns into zeroed memory and is reported; a SIGBUS anywhere else still kills the process.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';

const script = (unguardedAccess: boolean) => `
import { installSigbusGuard, guardMapping, unguardMapping, checkLostMappings, lostMappings } from '${join(ROOT, 'dist/native/sigbus.js')}';
import { memfdCreate, mmap, view, ftruncate } from '${join(ROOT, 'dist/native/libc.js')}';
const why = installSigbusGuard();
if (why) { console.log('UNAVAILABLE ' + why); process.exit(0); }
const size = 1 << 20, fd = memfdCreate('sigbus-test', size);
const a = mmap(size, fd), u = new Uint8Array(view(a, size));
u.fill(7);
let lost = 0;
const g = guardMapping(a, size, () => lost++);
ftruncate(fd, 4096);
u[100000] = 5;                       // past the new end: SIGBUS, now survived
console.log('values', u[0], u[8192], u[100000], 'lost', lostMappings());
checkLostMappings();
console.log('reported', lost);
unguardMapping(g);
const b = mmap(size, fd), v = new Uint8Array(view(b, size));
${unguardedAccess ? "console.log('unguarded'); console.log(v[8192]);" : ''}
console.log('done');
`;

function run(unguarded: boolean) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', script(unguarded)], { encoding: 'utf8', timeout: 20_000 });
}

describe('SIGBUS guard', () => {
  it('a truncated guarded mapping reads zeros, is reported once, and the process lives', () => {
    const r = run(false);
    if (r.stdout.startsWith('UNAVAILABLE')) { console.log(`[sigbus] ${r.stdout.trim()}`); return; }
    expect(r.status, r.stderr).toBe(0);
    // the whole mapping was replaced: the page below the new end reads zero too
    expect(r.stdout).toMatch(/values 0 0 5 lost 1\nreported 1\ndone/);
  });

  it('a SIGBUS outside guarded mappings still kills the process (bugs are not swallowed)', () => {
    const r = run(true);
    if (r.stdout.startsWith('UNAVAILABLE')) return;
    expect(r.stdout).toMatch(/unguarded\n$/);
    expect(r.signal).toBe('SIGBUS');
  });
});

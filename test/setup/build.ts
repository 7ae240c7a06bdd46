// vitest globalSetup: compile the project so integration tests run the real dist/ binaries.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

export default function setup(): void {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  execFileSync(process.execPath, [resolve(root, 'node_modules/typescript/bin/tsc'), '-p', root], { cwd: root, stdio: 'inherit' });
}

// vhost-load (../shared/tools/vhost-load) for tests: built once into a cache dir, run with a timeout.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTools } from '../../bench/lib/build.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = [resolve(ROOT, '../shared/tools/vhost-load'), '/work/shared/tools/vhost-load'].find((d) => existsSync(d));

/** Path of the vhost-load binary, or the reason it cannot be had. */
export function vhostLoad(): { bin?: string; why?: string } {
  if (!SRC) return { why: 'vhost-load sources not found beside the repository (../shared/tools/vhost-load)' };
  try { return { bin: buildTools(SRC).vhostLoad }; } catch (e) { return { why: (e as Error).message }; }
}

export interface VlResult { code: number; json: any; stderr: string }

/** Runs vhost-load with --json; resolves with its exit code and parsed output. */
export function runVhostLoad(bin: string, args: string[], timeoutMs = 120_000): Promise<VlResult> {
  return new Promise((res) => {
    execFile(bin, [...args, '--json'], { timeout: timeoutMs }, (err, stdout, stderr) => {
      let json: any = null;
      try { json = JSON.parse(stdout); } catch { /* not JSON: see stderr */ }
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : -1) : 0;
      res({ code, json, stderr });
    });
  });
}

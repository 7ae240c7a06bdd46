// JSON results file (bench/results/ is gitignored).
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export function defaultResultsPath(repoRoot: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/\..*$/, "").replace(/:/g, "-");
  return join(repoRoot, "bench/results", `${stamp}.json`);
}

export function writeResults(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(data, null, 2) + "\n");
}

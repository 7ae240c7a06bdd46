// Build vhost-load and test-target from the read-only source into a cache dir.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const DEFAULT_SRC = "/work/shared/tools/vhost-load";
export const DEFAULT_BUILD = join(homedir(), ".cache/vhostd-bench/vhost-load");

const FILES = ["Makefile", "vhost-load.c", "test-target.c"];

export interface Tools { vhostLoad: string; testTarget: string }

/** Copy changed sources (so make's mtimes stay meaningful) and run make. */
export function buildTools(srcDir = DEFAULT_SRC, buildDir = DEFAULT_BUILD): Tools {
  mkdirSync(buildDir, { recursive: true });
  for (const f of FILES) {
    const src = join(srcDir, f), dst = join(buildDir, f);
    if (!existsSync(dst) || !readFileSync(src).equals(readFileSync(dst))) copyFileSync(src, dst);
  }
  try {
    execFileSync("make", ["-s", "-C", buildDir, "vhost-load", "test-target"], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    throw new Error(`building vhost-load in ${buildDir} failed:\n${(e as { stderr?: Buffer }).stderr?.toString() ?? e}`);
  }
  return { vhostLoad: join(buildDir, "vhost-load"), testTarget: join(buildDir, "test-target") };
}

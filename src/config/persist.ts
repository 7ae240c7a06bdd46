// Keeps the running configuration on disk: rewritten atomically (temp file, fsync,
// rename, fsync of the directory) after every change, loaded again at start-up.
import { openSync, writeSync, fsyncSync, closeSync, renameSync, existsSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import type { Subsystem } from '../framework/app_context.js';
import { saveConfig } from './save.js';
import { logger } from '../log.js';

const log = logger('config');

export class ConfigPersister {
  private last = '';
  private writing = false;
  private again = false;

  constructor(readonly path: string, private readonly subsystems: () => readonly Subsystem[]) {}

  get exists(): boolean { return existsSync(this.path); }

  /** Remembers the state that was just loaded, so an unchanged config is not rewritten. */
  markLoaded(): void { this.last = this.render(); }

  private render(): string { return JSON.stringify(saveConfig(this.subsystems()), null, 2) + '\n'; }

  /** Writes the current configuration if it changed. Never throws: a failure is logged. */
  update(): void {
    if (this.writing) { this.again = true; return; }
    this.writing = true;
    try {
      do {
        this.again = false;
        const text = this.render();
        if (text === this.last) continue;
        writeAtomically(this.path, text);
        this.last = text;
      } while (this.again);
    } catch (e) {
      log.error(`cannot save the configuration to ${this.path}: ${(e as Error).message}; ` +
        'the running state is not persisted until this is fixed');
    } finally {
      this.writing = false;
    }
  }
}

export function writeAtomically(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

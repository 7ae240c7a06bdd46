// Levelled logging with per-component flags (SPDK's log_set_flag idea). Control plane only:
// the data path never logs per I/O.
export const LEVELS = ['error', 'warn', 'notice', 'info', 'debug'] as const;
export type Level = typeof LEVELS[number];

let threshold = LEVELS.indexOf('notice');
const flags = new Set<string>();
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: Level): void {
  const i = LEVELS.indexOf(level);
  if (i < 0) throw new Error(`unknown log level '${level}': use one of ${LEVELS.join(', ')}`);
  threshold = i;
}
export function getLogLevel(): Level { return LEVELS[threshold]; }
export function setLogFlag(flag: string, on = true): void { if (on) flags.add(flag); else flags.delete(flag); }
export function getLogFlags(): string[] { return [...flags]; }
export function setLogSink(fn: (line: string) => void): void { sink = fn; }

export class Logger {
  constructor(readonly component: string) {}
  private emit(level: Level, msg: string): void {
    const i = LEVELS.indexOf(level);
    // debug lines of a component show only when its flag is set
    if (i > threshold && !(level === 'debug' && flags.has(this.component))) return;
    sink(`${new Date().toISOString()} ${level.toUpperCase().padEnd(6)} [${this.component}] ${msg}`);
  }
  error(msg: string): void { this.emit('error', msg); }
  warn(msg: string): void { this.emit('warn', msg); }
  notice(msg: string): void { this.emit('notice', msg); }
  info(msg: string): void { this.emit('info', msg); }
  debug(msg: string): void { if (threshold >= 4 || flags.has(this.component)) this.emit('debug', msg); }
}

export function logger(component: string): Logger { return new Logger(component); }

// The set of bdevs known to the process, by name and alias.
import { Bdev } from './bdev.js';
import { RpcCode } from '../src/rpc/errors.js';

/** SPDK's -errno for each failure (the RPC layer answers with it). */
const RPC_CODES = { exists: RpcCode.EEXIST, not_found: RpcCode.ENODEV, claimed: RpcCode.EBUSY, invalid: RpcCode.EINVAL } as const;

export class BdevError extends Error {
  constructor(readonly code: 'exists' | 'not_found' | 'claimed' | 'invalid', message: string) {
    super(message);
    this.name = 'BdevError';
  }

  get rpcCode(): number { return RPC_CODES[this.code]; }
}

// The bdev layer's part of the app context: every bdev of the process.
declare module '../src/framework/app_context.js' {
  interface AppContext { readonly bdevs: BdevRegistry }
}

/** Looks at a new bdev (e.g. for an lvstore superblock) and may register bdevs on it (SPDK's examine). */
export type Examiner = (bdev: Bdev, registry: BdevRegistry) => Promise<void>;
const examiners: Examiner[] = [];
/** Modules add their examine function once, at load. */
export function addExaminer(e: Examiner): void { if (!examiners.includes(e)) examiners.push(e); }

export class BdevRegistry {
  private readonly byName = new Map<string, Bdev>();
  private readonly removeHooks: ((b: Bdev) => Promise<void> | void)[] = [];
  private readonly examining = new Set<Promise<void>>();

  register(bdev: Bdev): void {
    if (this.byName.has(bdev.name)) {
      throw new BdevError('exists', `bdev '${bdev.name}' already exists: pick another name or delete the existing one first`);
    }
    this.byName.set(bdev.name, bdev);
    for (const e of examiners) {
      const p: Promise<void> = e(bdev, this).catch(() => { /* the examiner logs its own failures */ })
        .finally(() => this.examining.delete(p));
      this.examining.add(p);
    }
  }

  /** Resolves once every examine started so far has finished (bdev_wait_for_examine). */
  async waitForExamine(): Promise<void> {
    while (this.examining.size > 0) await Promise.all([...this.examining]);
  }

  /** Runs `fn` before a bdev is destroyed (after it left the registry). */
  onRemove(fn: (b: Bdev) => Promise<void> | void): void { this.removeHooks.push(fn); }

  /** Looks a bdev up by name, alias or UUID. */
  find(name: string): Bdev | undefined {
    const b = this.byName.get(name);
    if (b) return b;
    for (const x of this.byName.values()) if (x.uuid === name || x.aliases.includes(name)) return x;
    return undefined;
  }

  get(name: string): Bdev {
    const b = this.find(name);
    if (!b) throw new BdevError('not_found', `bdev '${name}' does not exist (see bdev_get_bdevs)`);
    return b;
  }

  list(): Bdev[] { return [...this.byName.values()]; }

  claim(name: string, owner: string): Bdev {
    const b = this.get(name);
    if (b.claimedBy && b.claimedBy !== owner) {
      throw new BdevError('claimed', `bdev '${b.name}' is already claimed by ${b.claimedBy}`);
    }
    b.claimedBy = owner;
    return b;
  }

  release(name: string, owner: string): void {
    const b = this.find(name);
    if (b && b.claimedBy === owner) b.claimedBy = null;
  }

  /** Removes an unclaimed bdev and frees it. */
  async unregister(name: string, module?: string): Promise<void> {
    const b = this.get(name);
    if (module && b.module !== module) {
      throw new BdevError('invalid', `bdev '${b.name}' is a ${b.module} bdev, not a ${module} bdev`);
    }
    if (b.claimedBy) {
      throw new BdevError('claimed', `bdev '${b.name}' is in use by ${b.claimedBy}: remove that first`);
    }
    this.byName.delete(b.name);
    for (const h of this.removeHooks) await h(b);
    await b.destroy();
  }
}

// Survives SIGBUS on guest memory. A front end can make a mapped file shorter (ftruncate of a
// file or unsealed memfd) or unbacked (a full tmpfs or hugetlbfs pool under a punched hole):
// the next load or store there raises SIGBUS, which JS cannot catch and which kills the
// process. This installs a process-wide SIGBUS handler of ~160 bytes of x86-64 machine code
// (JS can never run in a signal handler) that does only async-signal-safe raw syscalls:
//   - the fault address is looked up in a table of registered guest mappings;
//   - found: the whole mapping is replaced (mmap MAP_FIXED) by private anonymous memory and
//     the entry's fault counter is bumped, the faulting access is retried and now succeeds,
//     and an eventfd is signalled so the control plane fails the device that owns it;
//   - not found (a real bug elsewhere): the default action is restored and the fault repeats,
//     killing the process as it would have without the handler.
// Source of the code below (GNU as, Intel syntax; TABLE is patched in at install time):
//   handler: mov r8,[rsi+16]          ; siginfo->si_addr
//            movabs r9,TABLE
//            mov rcx,[r9+72] ; lea r10,[r9+128] ; test rcx,rcx ; jz other
//   scan:    mov rax,r8 ; sub rax,[r10] ; cmp rax,[r10+8] ; jb found   ; addr-base < len
//            add r10,24 ; dec rcx ; jnz scan
//   other:   rt_sigaction(SIGBUS, TABLE+16 (SIG_DFL), NULL, 8) ; ret
//   found:   lock inc qword [r10+16]
//            mmap([r10], [r10+8], RW, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_NORESERVE, -1, 0)
//            movabs r9,TABLE ; cmp rax,-4095 ; jae other
//            lock inc qword [r9+64] ; mov edi,[r9] ; test edi,edi ; js done
//            write(edi, TABLE+8, 8)    ; eventfd += 1
//   done:    ret
import { koffi, libc } from './koffi.js';
import { mmap, view, eventfd, eventfdDrain, PROT_READ } from './libc.js';
import { check } from './errors.js';

const CODE = '4c8b461049b98877665544332211498b49484d8d91800000004885c974154c89c0492b02493b420872224983c21848ffc975eb' +
  'b80d000000bf07000000498d711031d241ba080000000f05c3f049ff4210498b3a498b7208ba0300000041ba3240000049c7c0ffffffff' +
  '4531c9b8090000000f0549b98877665544332211483d01f0ffff73adf049ff4140418b3985ff7810498d7108ba08000000b8010000000f05c3';
const PLACEHOLDER = '8877665544332211';

const sys = {
  sigaction: libc.func('sigaction', 'int', ['int', 'void *', 'void *']),
  mprotect: libc.func('mprotect', 'int', ['intptr_t', 'size_t', 'int']),
};
const PROT_EXEC = 4, SIGBUS = 7, SA_SIGINFO = 4, SA_RESTART = 0x10000000;

// Table layout (u64 words): [0] eventfd, [1] the value 1 (written to it), [2..5] a kernel
// sigaction for SIG_DFL, [8] lost-mapping count, [9] entries in use (high water mark),
// from byte 128: entries of {base, len, faults}.
const TABLE_BYTES = 1 << 16, ENTRY0 = 16, ENTRY_WORDS = 3;
export const MAX_GUARDED = Math.floor((TABLE_BYTES - 128) / 24);

export interface GuardSlot { readonly slot: number }

let table: BigUint64Array | null = null;
let efd = -1;
let unavailable: string | null = null;
const owners = new Map<number, { seen: bigint; onLost: () => void }>();

/** Installs the handler once; returns why it cannot (another architecture), or null. */
export function installSigbusGuard(): string | null {
  if (table || unavailable) return unavailable;
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    unavailable = `no SIGBUS guard for ${process.platform}/${process.arch} (only linux/x64)`;
    return unavailable;
  }
  const base = mmap(TABLE_BYTES);
  const t = new BigUint64Array(view(base, TABLE_BYTES));
  efd = eventfd();
  t[0] = BigInt(efd); t[1] = 1n;
  const hex = CODE.split(PLACEHOLDER).join(Buffer.from(new BigUint64Array([BigInt(base)]).buffer).toString('hex'));
  const code = Buffer.from(hex, 'hex');
  const page = mmap(4096);
  new Uint8Array(view(page, 4096)).set(code);
  check('mprotect', sys.mprotect(page, 4096, PROT_READ | PROT_EXEC));
  // glibc struct sigaction (x86-64): handler, 128-byte mask, int flags, restorer
  const sa = new Uint8Array(152), dv = new DataView(sa.buffer);
  dv.setBigUint64(0, BigInt(page), true);
  dv.setInt32(136, SA_SIGINFO | SA_RESTART, true);
  check('sigaction(SIGBUS)', sys.sigaction(SIGBUS, sa, null));
  table = t;
  return null;
}

/** The eventfd the handler signals; readable after a guarded mapping was lost. */
export function sigbusEventFd(): number { return efd; }

/**
 * Guards [addr, addr+len): a SIGBUS there replaces it with zeroed memory and later calls
 * `onLost` (from checkLostMappings, on the main thread). Returns null when the table is full
 * or the guard is not installed.
 */
export function guardMapping(addr: number, len: number, onLost: () => void): GuardSlot | null {
  const t = table;
  if (!t) return null;
  for (let i = 0; i < MAX_GUARDED; i++) {
    const o = ENTRY0 + i * ENTRY_WORDS;
    if (t[o + 1] !== 0n || owners.has(i)) continue;
    t[o] = BigInt(addr); t[o + 2] = 0n;
    t[o + 1] = BigInt(len);       // len last: the handler never sees a half-written entry
    if (BigInt(i + 1) > t[9]) t[9] = BigInt(i + 1);
    owners.set(i, { seen: 0n, onLost });
    return { slot: i };
  }
  return null;
}

/** Stops guarding (before the mapping is unmapped). */
export function unguardMapping(g: GuardSlot | null): void {
  if (!g || !table) return;
  table[ENTRY0 + g.slot * ENTRY_WORDS + 1] = 0n;
  owners.delete(g.slot);
}

/** Drains the eventfd and calls onLost for every guarded mapping that faulted since. */
export function checkLostMappings(): void {
  const t = table;
  if (!t) return;
  eventfdDrain(efd);
  for (const [slot, o] of owners) {
    const faults = t[ENTRY0 + slot * ENTRY_WORDS + 2];
    if (faults !== o.seen) { o.seen = faults; o.onLost(); }
  }
}

/** Mappings lost to SIGBUS since start (for tests and logs). */
export function lostMappings(): number { return table ? Number(table[8]) : 0; }

// keep koffi referenced for the typings of libc.func above
void koffi;

// framework_enable_cpumask_locks / framework_disable_cpumask_locks (SPDK's names): release the
// reactor CPU locks so another instance may start on them, or take them back.
import { MethodRegistry } from '../rpc/registry.js';
import { RpcCode, RpcError } from '../rpc/errors.js';
import { CpuLockError } from './cpu_locks.js';

export interface CpuLockControl { enableCpuLocks(): void; disableCpuLocks(): void }

export function registerCpuLockMethods(rpc: MethodRegistry, app: CpuLockControl): void {
  rpc.register('framework_enable_cpumask_locks', {}, () => {
    try { app.enableCpuLocks(); } catch (e) {
      if (e instanceof CpuLockError) throw new RpcError(RpcCode.EBUSY, `cannot lock the reactor CPUs: ${e.holder}`);
      throw e;
    }
    return true;
  }, { states: ['waiting_for_rpc', 'running'], help: 'Lock the reactor CPUs (/var/tmp/vhostd_cpu_lock_NNN) against a second vhostd' });
  rpc.register('framework_disable_cpumask_locks', {}, () => { app.disableCpuLocks(); return true; },
    { states: ['waiting_for_rpc', 'running'], help: 'Release the reactor CPU locks: another vhostd may start on these CPUs' });
}

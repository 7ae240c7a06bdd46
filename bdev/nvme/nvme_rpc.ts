// bdev_nvme RPCs with SPDK's names and parameters: attach, detach, get_controllers, reset.
// Parameters rpc.py always sends are accepted at their "off" values; what vhostd cannot
// honour is refused with the reason.
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError, invalidParams } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';
import { attachController, controllerInfo, controllers, detachController, nvmeOptions } from './nvme.js';

const attachSchema = {
  name: { type: 'string', required: true, desc: 'controller name; its bdevs are <name>n<nsid>' },
  trtype: { type: 'string', required: true, desc: 'PCIe or vfiouser' },
  traddr: { type: 'string', required: true, desc: 'PCI address (PCIe) or the directory of the cntrl socket (vfiouser)' },
  adrfam: { type: 'string' },
  trsvcid: { type: 'string' },
  priority: { type: 'int' },
  subnqn: { type: 'string' },
  hostnqn: { type: 'string' },
  hostaddr: { type: 'string' },
  hostsvcid: { type: 'string' },
  prchk_reftag: { type: 'bool' },
  prchk_guard: { type: 'bool' },
  hdgst: { type: 'bool' },
  ddgst: { type: 'bool' },
  fabrics_connect_timeout_us: { type: 'int', min: 0 },
  multipath: { type: 'string', choices: ['disable', 'failover', 'multipath'] },
  num_io_queues: { type: 'int', min: 1, max: 65535 },
  ctrlr_loss_timeout_sec: { type: 'int', min: -1 },
  reconnect_delay_sec: { type: 'int', min: 0 },
  fast_io_fail_timeout_sec: { type: 'int', min: 0 },
  psk: { type: 'string' },
  max_bdevs: { type: 'int', min: 1 },
  dhchap_key: { type: 'string' },
  dhchap_ctrlr_key: { type: 'string' },
  allow_unrecognized_csi: { type: 'bool' },
} as const;

/** Params kept for save_config, as given. */
const KEPT = ['adrfam', 'trsvcid', 'subnqn', 'hostnqn', 'num_io_queues', 'max_bdevs'] as const;

function refuse(p: Params<typeof attachSchema>): void {
  const no = (k: keyof typeof p, why: string) => {
    const v = p[k];
    if (v !== undefined && v !== false && v !== 0 && v !== '') {
      throw new RpcError(RpcCode.EINVAL, `${k}=${JSON.stringify(v)} is not supported by vhostd (${why}): omit it`);
    }
  };
  no('prchk_reftag', 'no protection information');
  no('prchk_guard', 'no protection information');
  no('hdgst', 'TCP only'); no('ddgst', 'TCP only');
  no('hostaddr', 'fabrics only'); no('hostsvcid', 'fabrics only');
  no('psk', 'TCP only'); no('dhchap_key', 'fabrics authentication'); no('dhchap_ctrlr_key', 'fabrics authentication');
  no('allow_unrecognized_csi', 'NVM command set namespaces only');
  no('priority', 'TCP only');
  no('reconnect_delay_sec', 'reconnect is not yet supported; a lost controller fails its I/O until detached');
  no('fast_io_fail_timeout_sec', 'reconnect is not yet supported');
  if (p.ctrlr_loss_timeout_sec !== undefined && p.ctrlr_loss_timeout_sec !== 0) {
    throw new RpcError(RpcCode.EINVAL, `ctrlr_loss_timeout_sec=${p.ctrlr_loss_timeout_sec} is not supported: reconnect is not yet supported (use 0 or omit it)`);
  }
  if (p.multipath === 'multipath') throw new RpcError(RpcCode.EINVAL, 'multipath=multipath is not supported: one path per controller');
  const t = p.trtype.toLowerCase();
  if (t !== 'pcie' && t !== 'vfiouser') {
    throw new RpcError(RpcCode.EINVAL, `trtype '${p.trtype}' is not supported by vhostd: use PCIe or vfiouser`);
  }
  if (p.name.length === 0 || p.name.length > 200) throw invalidParams('name must be 1 to 200 characters long');
  if (p.traddr.length === 0) throw invalidParams('traddr must not be empty');
}

/** bdev_nvme_set_options: what vhostd honours; the other SPDK options are accepted and have no effect here. */
const setOptionsSchema = {
  action_on_timeout: { type: 'string', choices: ['none', 'reset', 'abort'] },
  timeout_us: { type: 'int', min: 0 },
  timeout_admin_us: { type: 'int', min: 0 },
  ...Object.fromEntries(['keep_alive_timeout_ms', 'arbitration_burst', 'low_priority_weight', 'medium_priority_weight',
    'high_priority_weight', 'nvme_adminq_poll_period_us', 'nvme_ioq_poll_period_us', 'io_queue_requests', 'transport_retry_count',
    'bdev_retry_count', 'transport_ack_timeout', 'ctrlr_loss_timeout_sec', 'reconnect_delay_sec', 'fast_io_fail_timeout_sec',
    'transport_tos', 'rdma_srq_size', 'rdma_max_cq_size', 'rdma_cm_event_timeout_ms', 'tcp_connect_timeout_ms']
    .map((k) => [k, { type: 'int' }])),
  ...Object.fromEntries(['delay_cmd_submit', 'disable_auto_failback', 'generate_uuids', 'nvme_error_stat', 'io_path_stat',
    'allow_accel_sequence', 'rdma_umr_per_io'].map((k) => [k, { type: 'bool' }])),
  dhchap_digests: { type: 'array' },
  dhchap_dhgroups: { type: 'array' },
} as const;

export function registerNvmeMethods(reg: MethodRegistry): void {
  reg.register('bdev_nvme_set_options', setOptionsSchema, (p: Record<string, unknown>) => {
    if (p.action_on_timeout === 'abort') {
      throw new RpcError(RpcCode.EINVAL, 'action_on_timeout=abort is not yet supported: use reset (or none)');
    }
    if (p.timeout_us !== undefined) nvmeOptions.timeoutUs = p.timeout_us as number;
    if (p.action_on_timeout !== undefined) nvmeOptions.actionOnTimeout = p.action_on_timeout as 'none' | 'reset';
    return true;
  }, { help: 'Set NVMe bdev options (timeout_us, action_on_timeout) for controllers attached from now on',
    states: ['waiting_for_rpc', 'running'] });


  reg.register('bdev_nvme_attach_controller', attachSchema, async (p: Params<typeof attachSchema>, ctx) => {
    refuse(p);
    const extra: Record<string, unknown> = {};
    for (const k of KEPT) if (p[k] !== undefined) extra[k] = p[k];
    const reactors = ctx.reactors.cpus.length;
    const names = await attachController(ctx.bdevs, {
      name: p.name, trtype: p.trtype.toLowerCase() === 'pcie' ? 'PCIe' : 'vfiouser', traddr: p.traddr, extra,
      numIoQueues: Math.max(1, Math.min(reactors, p.num_io_queues ?? reactors)),
    });
    if (p.max_bdevs !== undefined && names.length > p.max_bdevs) {
      await detachController(ctx.bdevs, p.name);
      throw new RpcError(RpcCode.EINVAL, `controller has ${names.length} namespaces, more than max_bdevs=${p.max_bdevs}`);
    }
    return names;
  }, { help: 'Attach an NVMe controller (PCIe or vfio-user); each active namespace becomes bdev <name>n<nsid>' });

  reg.register('bdev_nvme_detach_controller', {
    name: { type: 'string', required: true },
    trtype: { type: 'string' }, traddr: { type: 'string' }, adrfam: { type: 'string' }, trsvcid: { type: 'string' },
    subnqn: { type: 'string' }, hostaddr: { type: 'string' }, hostsvcid: { type: 'string' },
  }, async (p, ctx) => {
    const e = controllers.get(p.name);
    if (e && p.traddr !== undefined && p.traddr !== e.ctrlr.transport.traddr) {
      throw new RpcError(RpcCode.ENODEV, `controller '${p.name}' has no path ${p.traddr} (its path: ${e.ctrlr.transport.traddr})`);
    }
    await detachController(ctx.bdevs, p.name);
    return true;
  }, { help: 'Detach an NVMe controller and delete its bdevs (none may be in use)' });

  reg.register('bdev_nvme_get_controllers', { name: { type: 'string' } }, async (p) => {
    const out = await controllerInfo(p.name);
    if (p.name !== undefined && out.length === 0) throw new RpcError(RpcCode.ENODEV, `NVMe controller '${p.name}' does not exist`);
    return out;
  }, { help: 'List attached NVMe controllers' });

  reg.register('bdev_nvme_reset_controller', { name: { type: 'string', required: true }, cntlid: { type: 'int' } }, async (p) => {
    const e = controllers.get(p.name);
    if (!e) throw new RpcError(RpcCode.ENODEV, `NVMe controller '${p.name}' does not exist`);
    await e.ctrlr.reset('bdev_nvme_reset_controller');
    return true;
  }, { help: 'Reset an NVMe controller: I/O in flight fails, the queues are recreated' });
}

registerModule({ name: 'bdev_nvme', subsystem: 'bdev', rpc: registerNvmeMethods });

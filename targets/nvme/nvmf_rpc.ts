// nvmf methods (SPDK names and parameters) for emulated NVMe controllers over vfio-user,
// and the "nvmf" save_config subsystem.
import type { AppContext } from '../../src/framework/app_context.js';
import { registerModule, registerSubsystem } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError, invalidParams } from '../../src/rpc/errors.js';
import { NvmfError, NvmfManager } from './nvmf_manager.js';

const codes: Record<NvmfError['code'], number> = {
  exists: RpcCode.EEXIST, not_found: RpcCode.ENODEV, busy: RpcCode.EBUSY, invalid: RpcCode.EINVAL, unsupported: RpcCode.EINVAL,
};

async function wrap<T>(f: () => T | Promise<T>): Promise<T> {
  try { return await f(); } catch (e) {
    if (e instanceof NvmfError) throw new RpcError(codes[e.code], e.message);
    throw e;
  }
}

function str(o: Record<string, unknown>, k: string, where: string, required = true): string | undefined {
  const v = o[k];
  if (v === undefined) { if (required) throw invalidParams(`${where}: missing '${k}'`); return undefined; }
  if (typeof v !== 'string') throw invalidParams(`${where}: '${k}' must be a string`);
  return v;
}

export function registerNvmfMethods(rpc: MethodRegistry): void {
  rpc.register('nvmf_create_transport', {
    trtype: { type: 'string', required: true, desc: 'VFIOUSER' },
    // SPDK's VFIOUSER options (lib/nvmf/vfio_user.c), same names and defaults. The doorbell
    // modes: mappable page (default; shadow doorbells are then not offered, as in SPDK),
    // disable_mappable_bar0 (shadow doorbells), both disable_* (every doorbell write traps).
    disable_mappable_bar0: { type: 'bool', desc: 'trap doorbell writes instead of letting the client map the doorbell page' },
    disable_shadow_doorbells: { type: 'bool', desc: 'do not offer Doorbell Buffer Config (only matters with disable_mappable_bar0)' },
    disable_compare: { type: 'bool', desc: 'do not advertise Compare (ONCS bit 0 clear; the opcode is refused)' },
    disable_adaptive_irq: { type: 'bool', desc: 'accepted, no effect: vhostd signals a CQ once per poll round' },
    enable_intr_mode_sq_spreading: { type: 'bool', desc: 'accepted, no effect: a controller runs on one reactor' },
    // SPDK's generic transport options: rpc.py sends several of them (with their defaults) for
    // every transport; accepted for compatibility, no effect (vhostd's limits are fixed)
    max_queue_depth: { type: 'int', min: 2, max: 1024 },
    max_io_qpairs_per_ctrlr: { type: 'int', min: 1 },
    io_unit_size: { type: 'int', min: 0 },
    max_io_size: { type: 'int', min: 0 },
    tgt_name: { type: 'string' },
    in_capsule_data_size: { type: 'int', min: 0 },
    max_aq_depth: { type: 'int', min: 0 },
    num_shared_buffers: { type: 'int', min: 0 },
    buf_cache_size: { type: 'int', min: 0 },
    zcopy: { type: 'bool' },
    num_cqe: { type: 'int', min: 0 },
    max_srq_depth: { type: 'int', min: 0 },
    no_srq: { type: 'bool' },
    c2h_success: { type: 'bool' },
    dif_insert_or_strip: { type: 'bool' },
    sock_priority: { type: 'int', min: 0 },
    acceptor_backlog: { type: 'int', min: 0 },
    abort_timeout_sec: { type: 'int', min: 0 },
    no_wr_batching: { type: 'bool' },
    control_msg_num: { type: 'int', min: 0 },
    acceptor_poll_rate: { type: 'int', min: 0 },
    ack_timeout: { type: 'int', min: 0 },
    data_wr_pool_size: { type: 'int', min: 0 },
    disable_command_passthru: { type: 'bool' },
    kas: { type: 'int', min: 0 },
    min_kato: { type: 'int', min: 0 },
  }, (p, ctx) => wrap(() => { nvmfOf(ctx).createTransport(p); return true; }), { help: 'Create the VFIOUSER transport' });

  rpc.register('nvmf_create_subsystem', {
    nqn: { type: 'string', required: true },
    serial_number: { type: 'string' },
    model_number: { type: 'string' },
    allow_any_host: { type: 'bool' },
    max_namespaces: { type: 'int', min: 0, max: 32 },
  }, (p, ctx) => wrap(() => { nvmfOf(ctx).createSubsystem(p); return true; }), { help: 'Create an NVMe subsystem' });

  rpc.register('nvmf_subsystem_add_ns', {
    nqn: { type: 'string', required: true },
    namespace: { type: 'object', required: true, desc: '{bdev_name, nsid?}' },
  }, (p, ctx) => {
    const ns = p.namespace;
    for (const k of Object.keys(ns)) {
      if (!['bdev_name', 'nsid', 'uuid', 'nguid', 'eui64', 'ptpl_file', 'anagrpid', 'no_auto_visible', 'hide_metadata'].includes(k)) {
        throw invalidParams(`namespace: unknown field '${k}'`);
      }
    }
    // rpc.py always sends these two (false); vhostd has neither host-based visibility nor metadata
    for (const k of ['no_auto_visible', 'hide_metadata']) {
      if (ns[k] !== undefined && ns[k] !== false) throw invalidParams(`namespace: ${k}=true is not supported by vhostd: omit it`);
    }
    const bdev = str(ns, 'bdev_name', 'namespace')!;
    const nsid = ns.nsid;
    if (nsid !== undefined && (typeof nsid !== 'number' || !Number.isInteger(nsid) || nsid < 0)) throw invalidParams('namespace: nsid must be a non-negative integer');
    return wrap(() => nvmfOf(ctx).addNamespace(p.nqn, { bdev_name: bdev, nsid: nsid as number | undefined }));
  }, { help: 'Add a namespace (a bdev) to a subsystem; returns its nsid' });

  rpc.register('nvmf_subsystem_add_listener', {
    nqn: { type: 'string', required: true },
    listen_address: { type: 'object', required: true, desc: '{trtype: VFIOUSER, traddr: DIR, trsvcid: "0"}' },
    secure_channel: { type: 'bool', desc: 'TLS for TCP: rpc.py always sends it; only false is accepted' },
    tgt_name: { type: 'string' },
  }, (p, ctx) => {
    if (p.secure_channel) throw invalidParams('secure_channel is a TCP (TLS) option: not supported for VFIOUSER listeners');
    const a = p.listen_address;
    const trtype = str(a, 'trtype', 'listen_address')!, traddr = str(a, 'traddr', 'listen_address')!;
    const trsvcid = str(a, 'trsvcid', 'listen_address', false), adrfam = str(a, 'adrfam', 'listen_address', false);
    return wrap(() => { nvmfOf(ctx).addListener(p.nqn, { trtype, traddr, trsvcid, adrfam }); return true; });
  }, { help: 'Add a listener (VFIOUSER: socket DIR/cntrl) to a subsystem' });

  rpc.register('nvmf_get_subsystems', {
    nqn: { type: 'string' },
  }, (p, ctx) => wrap(() => nvmfOf(ctx).list(p.nqn)), { help: 'List NVMe subsystems, with vfio-user controller state and counters' });

  rpc.register('nvmf_delete_subsystem', {
    nqn: { type: 'string', required: true },
  }, (p, ctx) => wrap(async () => { await nvmfOf(ctx).deleteSubsystem(p.nqn); return true; }), { help: 'Delete an NVMe subsystem' });
}

/** The process's NvmfManager (absent in tools that run without reactors). */
function nvmfOf(ctx: AppContext): NvmfManager {
  if (!ctx.nvmf) throw new RpcError(RpcCode.INTERNAL_ERROR, 'nvmf targets need reactors: not available in this process');
  return ctx.nvmf;
}

registerSubsystem({ name: 'nvmf', dependsOn: ['bdev'], configCalls: (ctx) => ctx.nvmf?.configCalls() ?? [] });
registerModule({ name: 'nvmf', subsystem: 'nvmf', rpc: registerNvmfMethods });

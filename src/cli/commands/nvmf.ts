// nvmf subcommands (NVMe over vfio-user), with rpc.py's argument names and flags.
import type { CommandSpec } from './types.js';

export const nvmfCommands: CommandSpec[] = [
  { name: 'nvmf_create_transport', help: 'Create NVMf transport (VFIOUSER)', args: [
    { name: 'trtype', flags: ['-t', '--trtype'], required: true, help: 'transport type (VFIOUSER)' },
    { name: 'disable_mappable_bar0', flags: ['-M', '--disable-mappable-bar0'], type: 'bool', help: 'trap doorbell writes (no mappable doorbell page)' },
    { name: 'disable_adaptive_irq', flags: ['-I', '--disable-adaptive-irq'], type: 'bool', help: 'accepted, no effect' },
    { name: 'disable_shadow_doorbells', flags: ['-S', '--disable-shadow-doorbells'], type: 'bool', help: 'do not offer shadow doorbells' },
    { name: 'disable_compare', flags: ['--disable-compare'], type: 'bool', help: 'do not advertise Compare' },
    { name: 'enable_intr_mode_sq_spreading', flags: ['--enable-intr-mode-sq-spreading'], type: 'bool', help: 'accepted, no effect' },
    { name: 'max_queue_depth', flags: ['-q', '--max-queue-depth'], type: 'int', help: 'accepted, no effect' },
  ] },
  { name: 'nvmf_create_subsystem', help: 'Create an NVMe-oF subsystem', args: [
    { name: 'nqn', required: true, help: 'subsystem NQN (ASCII)' },
    { name: 'serial_number', flags: ['-s', '--serial-number'], help: 'format: alphanumeric, up to 20 characters' },
    { name: 'model_number', flags: ['-d', '--model-number'], help: 'format: up to 40 characters' },
    { name: 'allow_any_host', flags: ['-a', '--allow-any-host'], type: 'bool', help: 'allow any host to connect' },
    { name: 'max_namespaces', flags: ['-m', '--max-namespaces'], type: 'int', help: 'maximum number of namespaces' },
  ] },
  { name: 'nvmf_subsystem_add_ns', help: 'Add a namespace to an NVMe-oF subsystem', args: [
    { name: 'nqn', required: true, help: 'subsystem NQN' },
    { name: 'bdev_name', required: true, help: 'the name of the bdev' },
    { name: 'nsid', flags: ['-n', '--nsid'], type: 'int', help: 'namespace ID (optional)' },
  ], params: (a) => ({ nqn: a.nqn, namespace: { bdev_name: a.bdev_name, ...(a.nsid !== undefined ? { nsid: a.nsid } : {}) } }) },
  { name: 'nvmf_subsystem_add_listener', help: 'Add a listener to an NVMe-oF subsystem', args: [
    { name: 'nqn', required: true, help: 'subsystem NQN' },
    { name: 'trtype', flags: ['-t', '--trtype'], required: true, help: 'transport type (VFIOUSER)' },
    { name: 'traddr', flags: ['-a', '--traddr'], required: true, help: 'transport address (VFIOUSER: the socket directory)' },
    { name: 'trsvcid', flags: ['-s', '--trsvcid'], help: 'transport service id (VFIOUSER: 0)' },
    { name: 'adrfam', flags: ['-f', '--adrfam'], help: 'address family' },
  ], params: (a) => {
    const la: Record<string, unknown> = { trtype: a.trtype, traddr: a.traddr };
    if (a.trsvcid !== undefined) la.trsvcid = a.trsvcid;
    if (a.adrfam !== undefined) la.adrfam = a.adrfam;
    return { nqn: a.nqn, listen_address: la };
  } },
  { name: 'nvmf_get_subsystems', help: 'Display NVMe-oF subsystems (with vfio-user controller state)', args: [
    { name: 'nqn', help: 'subsystem NQN (optional)' },
  ] },
  { name: 'nvmf_delete_subsystem', help: 'Delete an NVMe-oF subsystem', args: [
    { name: 'nqn', required: true, help: 'subsystem NQN' },
  ] },
];

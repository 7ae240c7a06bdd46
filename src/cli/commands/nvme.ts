// NVMe bdev subcommands (bdev_nvme_*), with rpc.py v25.05.1's flags and the params it sends:
// its on/off flags are always sent (false, or delay_cmd_submit true); vhostd refuses the
// transport features it lacks with the reason.
import type { ArgSpec, Args, CommandSpec } from './types.js';
import { defaultParams } from '../command-args.js';

/** Params as defaultParams builds them, over rpc.py's always-sent flag values. */
const withFlags = (name: string, args: ArgSpec[], always: Record<string, boolean>) =>
  (a: Args): Record<string, unknown> => ({ ...always, ...defaultParams({ name, help: '', args }, a) });

/** print_array of rpc.py: the names on one line, shell-quoted when needed. */
function shellWords(names: unknown): string {
  if (!Array.isArray(names)) return JSON.stringify(names);
  return names.map((n) => (/^[\w@%+=:,./-]+$/.test(String(n)) ? String(n) : `'${String(n).replace(/'/g, `'"'"'`)}'`)).join(' ');
}

const trid = (what: string): ArgSpec[] => [
  { name: 'trtype', flags: ['-t', '--trtype'], help: `${what} transport type: PCIe or vfiouser` },
  { name: 'traddr', flags: ['-a', '--traddr'], help: `${what} address: PCI BDF (PCIe) or the directory of the cntrl socket (vfiouser)` },
  { name: 'adrfam', flags: ['-f', '--adrfam'], help: 'NVMe-oF address family (fabrics only)' },
  { name: 'trsvcid', flags: ['-s', '--trsvcid'], help: 'NVMe-oF service id, e.g. a port number (fabrics only)' },
];

const attachArgs: ArgSpec[] = [
  { name: 'name', flags: ['-b', '--name'], required: true, help: 'name of the NVMe controller, prefix for each bdev name (<name>n<nsid>)' },
  ...trid('target').map((s) => (s.name === 'trtype' || s.name === 'traddr' ? { ...s, required: true } : s)),
  { name: 'priority', flags: ['-p', '--priority'], help: 'NVMe-oF connection priority (TCP only: not supported)' },
  { name: 'subnqn', flags: ['-n', '--subnqn'], help: 'NVMe-oF target subnqn' },
  { name: 'hostnqn', flags: ['-q', '--hostnqn'], help: 'NVMe-oF host subnqn' },
  { name: 'hostaddr', flags: ['-i', '--hostaddr'], help: 'NVMe-oF host address (fabrics only: not supported)' },
  { name: 'hostsvcid', flags: ['-c', '--hostsvcid'], help: 'NVMe-oF host svcid (fabrics only: not supported)' },
  { name: 'prchk_reftag', flags: ['-r', '--prchk-reftag'], type: 'bool', help: 'check PI reference tag (not supported)' },
  { name: 'prchk_guard', flags: ['-g', '--prchk-guard'], type: 'bool', help: 'check PI guard (not supported)' },
  { name: 'hdgst', flags: ['-e', '--hdgst'], type: 'bool', help: 'TCP header digest (not supported)' },
  { name: 'ddgst', flags: ['-d', '--ddgst'], type: 'bool', help: 'TCP data digest (not supported)' },
  { name: 'fabrics_connect_timeout_us', flags: ['--fabrics-timeout'], type: 'int', help: 'fabrics connect timeout in microseconds' },
  { name: 'multipath', flags: ['-x', '--multipath'], help: 'multipath behaviour: disable or failover (multipath: not supported)' },
  { name: 'num_io_queues', flags: ['--num-io-queues'], type: 'int', help: 'I/O queues to request (default and maximum: one per reactor)' },
  { name: 'ctrlr_loss_timeout_sec', flags: ['-l', '--ctrlr-loss-timeout-sec'], type: 'int', help: 'reconnect window (0 only: reconnect not yet supported)' },
  { name: 'reconnect_delay_sec', flags: ['-o', '--reconnect-delay-sec'], type: 'int', help: 'delay between reconnects (0 only: not yet supported)' },
  { name: 'fast_io_fail_timeout_sec', flags: ['-u', '--fast-io-fail-timeout-sec'], type: 'int', help: 'fail I/O after (0 only: not yet supported)' },
  { name: 'psk', flags: ['-k', '--psk'], help: 'TLS PSK (TCP only: not supported)' },
  { name: 'max_bdevs', flags: ['-m', '--max-bdevs'], type: 'int', help: 'refuse a controller with more namespaces than this' },
  { name: 'dhchap_key', flags: ['--dhchap-key'], help: 'DH-HMAC-CHAP key name (not supported)' },
  { name: 'dhchap_ctrlr_key', flags: ['--dhchap-ctrlr-key'], help: 'DH-HMAC-CHAP controller key name (not supported)' },
  { name: 'allow_unrecognized_csi', flags: ['-U', '--allow-unrecognized-csi'], type: 'bool', help: 'attach non-NVM namespaces (not supported)' },
];
const attachParams = withFlags('bdev_nvme_attach_controller', attachArgs,
  { prchk_reftag: false, prchk_guard: false, hdgst: false, ddgst: false, allow_unrecognized_csi: false });

const int = (name: string, flags: string[], help: string): ArgSpec => ({ name, flags, type: 'int', help });
const bool = (name: string, flags: string[], help: string, store = true): ArgSpec => ({ name, flags, type: 'bool', help, store });
const NO_EFFECT = '(accepted, no effect in vhostd)';

const setOptionsArgs: ArgSpec[] = [
  { name: 'action_on_timeout', flags: ['-a', '--action-on-timeout'], help: 'action on command timeout: none or reset (abort: not yet)' },
  int('timeout_us', ['-t', '--timeout-us'], 'timeout for each command in microseconds; 0: no timeout'),
  int('timeout_admin_us', ['--timeout-admin-us'], `admin command timeout ${NO_EFFECT}`),
  int('keep_alive_timeout_ms', ['-k', '--keep-alive-timeout-ms'], `keep alive period ${NO_EFFECT}`),
  int('arbitration_burst', ['--arbitration-burst'], NO_EFFECT),
  int('low_priority_weight', ['--low-priority-weight'], NO_EFFECT),
  int('medium_priority_weight', ['--medium-priority-weight'], NO_EFFECT),
  int('high_priority_weight', ['--high-priority-weight'], NO_EFFECT),
  int('nvme_adminq_poll_period_us', ['-p', '--nvme-adminq-poll-period-us'], NO_EFFECT),
  int('nvme_ioq_poll_period_us', ['-i', '--nvme-ioq-poll-period-us'], NO_EFFECT),
  int('io_queue_requests', ['-s', '--io-queue-requests'], NO_EFFECT),
  bool('delay_cmd_submit', ['-d', '--disable-delay-cmd-submit'], `disable batching of command submission ${NO_EFFECT}`, false),
  int('transport_retry_count', ['-c', '--transport-retry-count'], NO_EFFECT),
  int('bdev_retry_count', ['-r', '--bdev-retry-count'], NO_EFFECT),
  int('transport_ack_timeout', ['-e', '--transport-ack-timeout'], NO_EFFECT),
  int('ctrlr_loss_timeout_sec', ['-l', '--ctrlr-loss-timeout-sec'], NO_EFFECT),
  int('reconnect_delay_sec', ['-o', '--reconnect-delay-sec'], NO_EFFECT),
  int('fast_io_fail_timeout_sec', ['-u', '--fast-io-fail-timeout-sec'], NO_EFFECT),
  bool('disable_auto_failback', ['-f', '--disable-auto-failback'], NO_EFFECT),
  bool('generate_uuids', ['--generate-uuids'], NO_EFFECT),
  int('transport_tos', ['--transport-tos'], NO_EFFECT),
  bool('nvme_error_stat', ['-m', '--nvme-error-stat'], NO_EFFECT),
  int('rdma_srq_size', ['-q', '--rdma-srq-size'], NO_EFFECT),
  bool('io_path_stat', ['--io-path-stat'], NO_EFFECT),
  bool('allow_accel_sequence', ['--allow-accel-sequence'], NO_EFFECT),
  int('rdma_max_cq_size', ['--rdma-max-cq-size'], NO_EFFECT),
  int('rdma_cm_event_timeout_ms', ['--rdma-cm-event-timeout-ms'], NO_EFFECT),
  { name: 'dhchap_digests', flags: ['--dhchap-digests'], help: `comma-separated DH-HMAC-CHAP digests ${NO_EFFECT}` },
  { name: 'dhchap_dhgroups', flags: ['--dhchap-dhgroups'], help: `comma-separated DH-HMAC-CHAP DH groups ${NO_EFFECT}` },
  bool('rdma_umr_per_io', ['--enable-rdma-umr-per-io'], NO_EFFECT),
  bool('rdma_umr_per_io', ['--disable-rdma-umr-per-io'], NO_EFFECT, false),
  int('tcp_connect_timeout_ms', ['--tcp-connect-timeout-ms'], NO_EFFECT),
];
const setOptionsFlags = withFlags('bdev_nvme_set_options', setOptionsArgs, { delay_cmd_submit: true, disable_auto_failback: false,
  generate_uuids: false, nvme_error_stat: false, io_path_stat: false, allow_accel_sequence: false, rdma_umr_per_io: false });

export const nvmeCommands: CommandSpec[] = [
  { name: 'bdev_nvme_set_options', help: 'Set options for the bdev nvme type (for controllers attached afterwards)',
    args: setOptionsArgs, params: (a) => {
      const p = setOptionsFlags(a);
      for (const k of ['dhchap_digests', 'dhchap_dhgroups']) if (typeof p[k] === 'string') p[k] = (p[k] as string).split(',');
      return p;
    } },
  { name: 'bdev_nvme_attach_controller', help: 'Add bdevs with nvme backend (PCIe or vfiouser); prints the bdev names',
    args: attachArgs, run: async (c, a) => shellWords(await c.call('bdev_nvme_attach_controller', attachParams(a))) },
  { name: 'bdev_nvme_get_controllers', help: 'Display current NVMe controllers list or required NVMe controller', args: [
    { name: 'name', flags: ['-n', '--name'], help: 'name of the NVMe controller, e.g. Nvme0' },
  ], params: (a) => (a.name ? { name: a.name } : undefined) },
  { name: 'bdev_nvme_detach_controller', help: 'Detach an NVMe controller and delete any associated bdevs', args: [
    { name: 'name', required: true, help: 'name of the controller' },
    ...trid('its path\'s'),
    { name: 'subnqn', flags: ['-n', '--subnqn'], help: 'NVMe-oF target subnqn' },
    { name: 'hostaddr', flags: ['-i', '--hostaddr'], help: 'NVMe-oF host address' },
    { name: 'hostsvcid', flags: ['-c', '--hostsvcid'], help: 'NVMe-oF host svcid' },
  ] },
  { name: 'bdev_nvme_reset_controller', help: 'Reset an NVMe controller (its queues are recreated)', args: [
    { name: 'name', required: true, help: 'name of the NVMe controller' },
    { name: 'cntlid', flags: ['-c', '--cntlid'], type: 'int', help: 'NVMe controller ID' },
  ] },
];

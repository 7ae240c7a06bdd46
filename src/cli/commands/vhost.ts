// vhost subcommands, with rpc.py's argument names and flags.
import type { CommandSpec } from './types.js';

export const vhostCommands: CommandSpec[] = [
  { name: 'vhost_create_blk_controller', help: 'Create a vhost block controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name' },
    { name: 'dev_name', required: true, help: 'device name' },
    { name: 'cpumask', flags: ['--cpumask'], help: 'cpu mask for this controller' },
    { name: 'readonly', flags: ['-r', '--readonly'], type: 'bool', help: 'set controller as read-only' },
    { name: 'packed_ring', flags: ['-p', '--packed_ring'], type: 'bool', help: 'set controller as packed ring supported (not yet)' },
    { name: 'packed_ring_recovery', flags: ['-l', '--packed_ring_recovery'], type: 'bool', help: 'packed ring live recovery' },
    { name: 'transport', flags: ['--transport'], help: 'virtio blk transport name (default: vhost_user_blk)' },
  ] },
  { name: 'vhost_create_scsi_controller', help: 'Add new vhost controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name' },
    { name: 'cpumask', flags: ['--cpumask'], help: 'cpu mask for this controller' },
    { name: 'delay', flags: ['--delay'], type: 'bool', help: 'whether delay starting controller or not' },
  ], params: (a) => ({ ctrlr: a.ctrlr, delay: a.delay === true, ...(a.cpumask !== undefined ? { cpumask: a.cpumask } : {}) }) },
  { name: 'vhost_start_scsi_controller', help: 'Start vhost scsi controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name' },
  ] },
  { name: 'vhost_scsi_controller_add_target', help: 'Add lun to vhost controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name where add lun' },
    { name: 'scsi_target_num', type: 'int', required: true, help: 'scsi_target_num' },
    { name: 'bdev_name', required: true, help: 'bdev name' },
  ] },
  { name: 'vhost_scsi_controller_remove_target', help: 'Remove target from vhost controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name to remove target from' },
    { name: 'scsi_target_num', type: 'int', required: true, help: 'scsi_target_num' },
  ] },
  { name: 'vhost_get_controllers', help: 'List all or specific vhost controller(s)', args: [
    { name: 'name', flags: ['-n', '--name'], help: 'name of vhost controller' },
  ] },
  { name: 'vhost_delete_controller', help: 'Delete a vhost controller', args: [
    { name: 'ctrlr', required: true, help: 'controller name' },
  ] },
  { name: 'vhost_controller_set_coalescing', help: 'Set vhost controller coalescing', args: [
    { name: 'ctrlr', required: true, help: 'controller name' },
    { name: 'delay_base_us', type: 'int', required: true, help: 'base delay time' },
    { name: 'iops_threshold', type: 'int', required: true, help: 'IOPS threshold when coalescing is enabled' },
  ] },
];

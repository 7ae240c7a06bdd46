// The embedded default of `npm start`: a malloc bdev exported as a vhost-user-blk controller.
import { resolve, join } from 'node:path';

export const DEFAULT_CTRLR = 'vhost.0';

export function defaultConfig(): unknown {
  return {
    subsystems: [
      { subsystem: 'bdev', config: [{ method: 'bdev_malloc_create', params: { name: 'Malloc0', num_blocks: 524288, block_size: 512 } }] },
      { subsystem: 'vhost_blk', config: [{ method: 'vhost_create_blk_controller', params: { ctrlr: DEFAULT_CTRLR, dev_name: 'Malloc0' } }] },
    ],
  };
}

export function printAttachHelp(socketDir: string, rpcSocket: string): void {
  const sock = join(resolve(socketDir), DEFAULT_CTRLR);
  process.stdout.write(`
vhostd is serving Malloc0 (256 MiB RAM disk) as vhost-user-blk on ${sock}
Attach it to a QEMU guest (guest memory must be shared):

  qemu-system-x86_64 -machine q35,accel=kvm:tcg,memory-backend=mem -m 1G \\
    -object memory-backend-memfd,id=mem,size=1G,share=on \\
    -chardev socket,id=vhost0,path=${sock},reconnect=1 \\
    -device vhost-user-blk-pci,chardev=vhost0,num-queues=2 \\
    ...your usual disk/kernel/network options...

The guest sees it as /dev/vda (or the next virtio disk). Manage vhostd with:
  vhostctl -s ${rpcSocket} vhost_get_controllers
Stop it with Ctrl-C.
`);
}

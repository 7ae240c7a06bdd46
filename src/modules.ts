// HOOK LIST (control plane): every bdev module and target. Importing a module's `_rpc.ts`
// file registers its save_config subsystem and RPC methods (src/framework/module.ts);
// adding a module is one import line here. A subsystem's file comes before its modules'.
// The reactor side has its own list: src/reactor_modules.ts.
import '../bdev/bdev_rpc.js';
import '../bdev/malloc/malloc_rpc.js';
import '../bdev/null/null_rpc.js';
import '../bdev/file/file_rpc.js';
import '../bdev/delay/delay_rpc.js';
import '../bdev/qos/qos_rpc.js';
import '../bdev/image/import_rpc.js';
import '../bdev/rbd/rbd_rpc.js';
import '../bdev/nvme/nvme_rpc.js';
import './vfio_user/nvme_transport.js';
import '../bdev/nvme/transport_pcie.js';
import '../bdev/lvol/lvol_rpc.js';
import '../targets/vhost/vhost_rpc.js';
import '../targets/nvme/nvmf_rpc.js';

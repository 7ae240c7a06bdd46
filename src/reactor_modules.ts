// HOOK LIST (reactor side): every bdev channel driver (registerChannelFactory) and target
// queue handler (registerOp) a reactor serves; loaded by src/reactor_main.ts. Adding a
// module is one import line here (and one in src/modules.ts for its control-plane side).
import '../bdev/null/null_channel.js';
import '../bdev/malloc/malloc_channel.js';
import '../targets/blk/blk_reactor.js';
import '../bdev/file/file_channel.js';
import '../targets/scsi/scsi_reactor.js';
import '../targets/nvme/nvme_reactor.js';
import '../bdev/delay/delay_channel.js';
import '../bdev/rbd/rbd_channel.js';
import '../bdev/nvme/nvme_channel.js';
import '../bdev/ctrl_io_reactor.js';
import '../bdev/lvol/lvol_channel.js';

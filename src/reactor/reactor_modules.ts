// Everything a reactor thread serves: bdev channel drivers and target queue handlers.
import '../../bdev/null/null_channel.js';
import '../../bdev/malloc/malloc_channel.js';
import '../../targets/blk/blk_reactor.js';
import '../../bdev/file/file_channel.js';
import '../../targets/scsi/scsi_reactor.js';
import '../../targets/nvme/nvme_reactor.js';
import '../../bdev/delay/delay_channel.js';
import '../../bdev/ctrl_io_reactor.js';
import '../../bdev/lvol/lvol_channel.js';

// Reusable SCSI logical-unit layer (SPC-4 / SBC-3 subset) for vhostd's SCSI targets.
//
// API
//   const lun = new ScsiLun(info: LunInfo, channel: BdevChannel | null)
//       One per LUN per reactor. lun.remove() (or lun.removed = true) makes it answer
//       as an absent LUN; lun.wce / lun.rcd hold the caching mode page.
//   const task = new ScsiTask(sink: ScsiTaskSink, tag: number, segs: SegmentTable, blockIoDone)
//       Preallocated by the transport, one per in-flight command, reused. Per command set:
//         task.loadCdb(src, off, len)         copy of the CDB (cdbLen = len)
//         task.setData(mem, segs, segBase, nseg, transferLen, DataDir.X)
//                                             the data buffer: segments (region, offset, length)
//                                             into `mem`, transferLen = sum of their lengths
//         task.targetLuns / targetLunCount    the target's LUN numbers (REPORT LUNS)
//   executeScsi(lun: ScsiLun | null, task)
//       Runs the command; sink.onScsiTaskDone(task) is called exactly once, possibly
//       before executeScsi returns. Then read:
//         task.status (Status.*), task.sense[0..senseLen) (fixed format),
//         task.dataTransferred, task.residual (= transferLen - dataTransferred),
//         task.overrun (buffer too small or in the wrong direction for the CDB's transfer:
//                       virtio-scsi answers VIRTIO_SCSI_S_OVERRUN, as QEMU does).
//       While a command runs the layer may shorten one entry of the task's segment table
//       (a buffer longer than the transfer); it is restored before onScsiTaskDone.
//
// Data buffer rules (the "transfer length disagrees with the buffer" cases):
//   - READ/WRITE/WRITE SAME/UNMAP/MODE SELECT need exactly what the CDB says. A buffer
//     that is shorter, or of the other direction, fails the command before any I/O with
//     CHECK CONDITION, ABORTED COMMAND, 4B/08 DATA-IN BUFFER OVERFLOW - DATA BUFFER SIZE
//     (reads) or 4B/0B DATA-OUT BUFFER OVERFLOW (writes), and task.overrun = true.
//     A longer buffer is fine: only the CDB's length moves, the rest is residual.
//   - Commands with an ALLOCATION LENGTH (INQUIRY, MODE SENSE, REPORT LUNS, READ
//     CAPACITY, REQUEST SENSE) return min(response, allocation length, buffer) bytes,
//     GOOD, with the residual set (as SPDK does).
export { executeScsi } from './execute.js';
export { ScsiTask } from './task.js';
export { blockIoDone } from './block.js';
export type { ScsiTaskSink } from './task.js';
export { ScsiLun, naaFromUuid } from './lun.js';
export type { LunInfo } from './lun.js';
export { Asc, CDB_MAX, DataDir, FIXED_SENSE_LEN, MAX_UNMAP_DESCRIPTORS, MAX_UNMAP_LBA_COUNT,
  MAX_WRITE_SAME_BLOCKS, Op, SAI_READ_CAPACITY_16, SENSE_MAX, SenseKey, Status } from './constants.js';

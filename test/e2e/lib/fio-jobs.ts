// Reusable guest-side (busybox sh) script fragments for block device tests.
// Compose with guestScript(): each step prints "@@STEP <name> rc=N@@";
// the script stops at the first failing step and exits with its rc.
// Device paths are parameters, so blk (/dev/vda), scsi (/dev/sda) and nvme
// (/dev/nvme0n1) tests share these.

export interface Step {
  name: string;
  /** shell snippet; its exit status is the step's result */
  sh: string;
}

/** Common prelude: helpers available to every step. */
export const PRELUDE = String.raw`
step() { # step NAME CMD...
  name="$1"; shift
  echo "@@STEP-BEGIN $name@@"
  "$@"; rc=$?
  echo "@@STEP $name rc=$rc@@"
  [ $rc -eq 0 ] || exit $rc
}
wait_dev() { # wait_dev /dev/X [seconds]
  t=$2; [ -n "$t" ] || t=30
  n=0
  while [ ! -b "$1" ]; do
    n=$((n+1)); [ $n -gt $((t*10)) ] && { echo "no $1 after $t s"; ls /dev; return 1; }
    sleep 0.1
  done
}
kv() { echo "@@KV $1=$2@@"; }
# fio engine: libaio if this fio build has it, else psync
if fio --enghelp 2>/dev/null | grep -qw libaio; then FIO_ENGINE=libaio; else FIO_ENGINE=psync; fi
kv fio_engine $FIO_ENGINE
FIO="fio --eta=never --ioengine=$FIO_ENGINE --direct=1 --verify_fatal=1 --group_reporting"
`;

/** Join a prelude and steps into one /test.sh. */
export function guestScript(steps: Step[], prelude = PRELUDE): string {
  const body = steps
    .map((s) => `${fnName(s.name)}() {\n${s.sh.trim()}\n}\nstep ${s.name} ${fnName(s.name)}`)
    .join("\n\n");
  return `${prelude}\n${body}\necho "@@ALL-STEPS-OK@@"\n`;
}

function fnName(name: string): string {
  return "s_" + name.replace(/[^A-Za-z0-9_]/g, "_");
}

/** Wait for the device node. */
export function waitDevice(dev: string, seconds = 30): Step {
  return { name: "wait-device", sh: `wait_dev ${dev} ${seconds}` };
}

/**
 * Print sysfs queue limits as "@@KV key=value@@" lines (parse with parseKv).
 * Keys: size_sectors, nr_hw_queues, logical_block_size, physical_block_size,
 * minimum_io_size, optimal_io_size, discard_max_bytes, discard_granularity,
 * discard_max_hw_bytes, write_zeroes_max_bytes, max_sectors_kb, rotational,
 * write_cache, ro, virtio_features (virtio devices only).
 */
export function blockInfo(dev: string): Step {
  const b = dev.replace(/^\/dev\//, "");
  return {
    name: "block-info",
    sh: String.raw`
q=/sys/block/${b}/queue
[ -d /sys/block/${b} ] || { echo "no /sys/block/${b}"; return 1; }
kv size_sectors "$(cat /sys/block/${b}/size)"
kv ro "$(cat /sys/block/${b}/ro)"
kv nr_hw_queues "$(ls /sys/block/${b}/mq | wc -l)"
# virtio only: negotiated feature bits, bit N is character N+1 (9 FLUSH, 11 CONFIG_WCE)
[ -e /sys/block/${b}/device/features ] && kv virtio_features "$(cat /sys/block/${b}/device/features)"
for f in logical_block_size physical_block_size minimum_io_size optimal_io_size \
         discard_max_bytes discard_max_hw_bytes discard_granularity \
         write_zeroes_max_bytes max_sectors_kb rotational write_cache; do
  [ -e $q/$f ] && kv $f "$(cat $q/$f | tr ' ' _)"
done
return 0`,
  };
}

export interface RegionOpts {
  /** byte offset of the region used by this job */
  offset: string;
  /** region size per job, fio syntax (e.g. "16m") */
  size: string;
}

/** Random writes, mixed 4k–128k, crc32c verify, 2 jobs x iodepth 16. */
export function fioRandWriteVerify(dev: string, o: RegionOpts & { numjobs?: number } = { offset: "0", size: "16m" }): Step {
  const nj = o.numjobs ?? 2;
  return {
    name: "fio-randwrite-verify",
    sh: `$FIO --name=randw --filename=${dev} --rw=randwrite --bssplit=4k/40:8k/15:16k/15:32k/10:64k/10:128k/10 \\
  --iodepth=16 --numjobs=${nj} --offset=${o.offset} --size=${o.size} --offset_increment=${o.size} \\
  --verify=crc32c --do_verify=1`,
  };
}

/** 1 MiB sequential writes with verify. */
export function fioSeqVerify(dev: string, o: RegionOpts = { offset: "64m", size: "32m" }): Step {
  return {
    name: "fio-seq-1m-verify",
    sh: `$FIO --name=seq1m --filename=${dev} --rw=write --bs=1m --iodepth=4 \\
  --offset=${o.offset} --size=${o.size} --verify=crc32c --do_verify=1`,
  };
}

/** 512-byte granular, non-4k-aligned sizes and offsets, md5 verify. */
export function fioUnalignedVerify(dev: string, o: RegionOpts = { offset: "100m", size: "8m" }): Step {
  // offset gets +1536 so nothing is 4k aligned; needs logical_block_size 512
  return {
    name: "fio-512-unaligned-md5",
    sh: `off=$(( ${toBytesExpr(o.offset)} + 1536 ))
$FIO --name=unal --filename=${dev} --rw=randwrite --bsrange=512-16k --blockalign=512 \\
  --iodepth=8 --offset=$off --size=${o.size} --verify=md5 --do_verify=1`,
  };
}

/** Small writes each followed by fsync (flush), buffered I/O, then verify. */
export function fioFsyncHeavy(dev: string, o: RegionOpts = { offset: "128m", size: "4m" }): Step {
  return {
    name: "fio-fsync-heavy",
    sh: `$FIO --name=fsync --filename=${dev} --direct=0 --ioengine=psync --rw=randwrite --bs=4k \\
  --fsync=1 --end_fsync=1 --offset=${o.offset} --size=${o.size} --verify=crc32c --do_verify=1`,
  };
}

/**
 * Write random data with dd (O_DIRECT), read it back, print both md5s
 * (KV pattern_md5, readback_md5) so the host can compare with the back end's
 * file at the same offset. Offset and length must be multiples of 512.
 */
export function writePattern(dev: string, offsetBytes: number, lenBytes: number): Step {
  const s = offsetBytes / 512;
  const n = lenBytes / 512;
  return {
    name: "write-pattern",
    sh: `dd if=/dev/urandom of=/tmp/pat bs=512 count=${n} 2>/dev/null
dd if=/tmp/pat of=${dev} bs=512 seek=${s} oflag=direct conv=fsync,notrunc 2>/dev/null || return 1
kv pattern_md5 "$(md5sum < /tmp/pat | cut -d' ' -f1)"
kv readback_md5 "$(dd if=${dev} bs=512 skip=${s} count=${n} iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"`,
  };
}

/** Print md5 of a range as KV md5_<tag> (O_DIRECT read). */
export function md5Range(dev: string, offsetBytes: number, lenBytes: number, tag: string): Step {
  return {
    name: `md5-${tag}`,
    sh: `kv md5_${tag} "$(dd if=${dev} bs=512 skip=${offsetBytes / 512} count=${lenBytes / 512} iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"`,
  };
}

/** Discard a range (skipped, rc 0, if the device has no discard). */
export function discardRange(dev: string, offsetBytes: number, lenBytes: number): Step {
  const b = dev.replace(/^\/dev\//, "");
  return {
    name: "discard",
    sh: `if [ "$(cat /sys/block/${b}/queue/discard_max_bytes)" = 0 ]; then kv discard skipped; return 0; fi
blkdiscard -o ${offsetBytes} -l ${lenBytes} ${dev} && kv discard ok`,
  };
}

/** The standard block-device suite. */
export function standardBlockSuite(dev: string): Step[] {
  return [
    waitDevice(dev),
    blockInfo(dev),
    fioRandWriteVerify(dev, { offset: "0", size: "16m" }),
    fioSeqVerify(dev, { offset: "64m", size: "32m" }),
    fioUnalignedVerify(dev, { offset: "100m", size: "8m" }),
    fioFsyncHeavy(dev, { offset: "128m", size: "4m" }),
  ];
}

// ------------------------------------------------------------ output parsing

/** "@@KV k=v@@" lines -> record (last wins). */
export function parseKv(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of output.matchAll(/@@KV ([^=@\s]+)=([^@]*)@@/g)) out[m[1]!] = m[2]!;
  return out;
}

/** "@@STEP name rc=N@@" lines -> record of step name -> rc. */
export function parseSteps(output: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of output.matchAll(/@@STEP (\S+) rc=(\d+)@@/g)) out[m[1]!] = Number(m[2]);
  return out;
}

/** The output of one step (between its begin and end markers). */
export function stepOutput(output: string, name: string): string {
  const b = output.indexOf(`@@STEP-BEGIN ${name}@@`);
  if (b < 0) return "";
  const e = output.indexOf(`@@STEP ${name} rc=`, b);
  return output.slice(b, e < 0 ? undefined : e);
}

function toBytesExpr(v: string): string {
  const m = /^(\d+)([kmg]?)$/i.exec(v);
  if (!m) throw new Error(`bad size ${v}`);
  const mul = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  return String(Number(m[1]) * mul);
}

/**
 * A long-running write+verify job for restart tests: prints @@FIO-STARTED@@, then 2 jobs of
 * mixed sizes, verified as they go (verify_backlog) and at the end, for `runtime` seconds.
 */
export function fioVerifyAcrossRestart(dev: string, runtime = 14): Step {
  return {
    name: "fio-verify-across-restart",
    sh: `echo "@@FIO-STARTED@@"
$FIO --name=w --filename=${dev} --rw=randwrite --bssplit=4k/50:16k/30:64k/20 --iodepth=16 --numjobs=2 \\
  --size=24m --offset_increment=32m --verify=crc32c --do_verify=1 --verify_backlog=64 --time_based --runtime=${runtime}
echo "@@FIO-DONE@@"`,
  };
}

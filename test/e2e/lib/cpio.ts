// Minimal newc ("070701") cpio writer, enough for a per-test initramfs overlay.

export interface CpioEntry {
  name: string; // path inside the archive, no leading slash
  data?: Buffer | string; // absent => directory
  mode?: number; // permission bits; default 0o755 (dirs, files)
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function record(ino: number, name: string, mode: number, data: Buffer): Buffer[] {
  const nameBuf = Buffer.from(name + "\0");
  const fields = [
    ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBuf.length, 0,
  ];
  const header = Buffer.from("070701" + fields.map(hex8).join(""), "ascii");
  return [header, nameBuf, pad4(header.length + nameBuf.length), data, pad4(data.length)];
}

/** Build an uncompressed newc archive (with trailer). Parent dirs must be listed. */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const isDir = e.data === undefined;
    const data = isDir ? Buffer.alloc(0) : Buffer.from(e.data as Buffer | string);
    const mode = (isDir ? S_IFDIR : S_IFREG) | (e.mode ?? 0o755);
    parts.push(...record(ino++, e.name.replace(/^\/+/, ""), mode, data));
  }
  parts.push(...record(0, "TRAILER!!!", 0, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

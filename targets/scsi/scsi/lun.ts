// A SCSI logical unit backed by a bdev channel on one reactor: geometry, identity
// (NAA designator, serial), capabilities and the mode-page state MODE SELECT changes.
import type { BdevChannel } from '../../../bdev/channel.js';
import { DEFAULT_MAX_TRANSFER_BYTES, DEFAULT_NAA_COMPANY_ID, PRODUCT_REVISION, VENDOR_ID } from './constants.js';

export interface LunInfo {
  bdevName: string;
  blockSize: number;
  numBlocks: number;
  /** Bdev UUID (8-4-4-4-12 hex); the NAA designator is derived from it. */
  uuid: string;
  /** INQUIRY product identification (16 bytes used). */
  productName: string;
  supportsUnmap: boolean;
  supportsWriteZeroes: boolean;
  readOnly?: boolean;
  /** Unit serial number (VPD 0x80); defaults to the bdev name. */
  serial?: string;
  /** Volatile write cache reported in the caching mode page (WCE); default true. */
  writeCache?: boolean;
  /** MAXIMUM TRANSFER LENGTH in blocks; default 4 MiB worth, capped by the channel's maxIoBlocks. */
  maxTransferBlocks?: number;
  /** IEEE company id for the NAA type 6 designator (24 bits). */
  naaCompanyId?: number;
}

function ascii(s: string, max: number): Uint8Array {
  const out = new Uint8Array(Math.min(s.length, max));
  for (let i = 0; i < out.length; i++) {
    const c = s.charCodeAt(i);
    out[i] = c >= 0x20 && c < 0x7f ? c : 0x5f; // printable ASCII only, '_' otherwise
  }
  return out;
}

/** The 16 bytes of a UUID, or of a hash of the name if the UUID does not parse. */
function uuidBytes(uuid: string, fallback: string): Uint8Array {
  const hex = uuid.replace(/-/g, '');
  const out = new Uint8Array(16);
  if (/^[0-9a-fA-F]{32}$/.test(hex)) {
    for (let i = 0; i < 16; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }
  // FNV-1a over the name, stretched to 16 bytes: stable, not globally unique.
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < fallback.length; j++) h = Math.imul(h ^ fallback.charCodeAt(j), 0x01000193) >>> 0;
    h = Math.imul(h ^ i, 0x01000193) >>> 0;
    out[i] = h & 0xff;
  }
  return out;
}

/**
 * NAA IEEE Registered Extended designator (NAA 6, SPC-4 7.8.6.6.5), 16 bytes:
 * NAA(4) | IEEE COMPANY_ID(24) | VENDOR SPECIFIC IDENTIFIER(36) | VENDOR SPECIFIC IDENTIFIER EXTENSION(64).
 * The 36-bit identifier is the UUID's first 36 bits, the extension its last 64 bits
 * (bits 36..63, which hold the v4 version nibble, are the ones left out).
 */
export function naaFromUuid(u: Uint8Array, companyId: number): Uint8Array {
  const d = new Uint8Array(16);
  const oui = companyId & 0xffffff;
  d[0] = 0x60 | (oui >>> 20);
  d[1] = (oui >>> 12) & 0xff;
  d[2] = (oui >>> 4) & 0xff;
  d[3] = ((oui & 0xf) << 4) | (u[0] >>> 4);
  for (let i = 0; i < 4; i++) d[4 + i] = ((u[i] & 0xf) << 4) | (u[i + 1] >>> 4);
  for (let i = 0; i < 8; i++) d[8 + i] = u[8 + i];
  return d;
}

export class ScsiLun {
  readonly info: LunInfo;
  /** The reactor's channel to the bdev; null = I/O commands answer NOT READY. */
  channel: BdevChannel | null;
  /** Set by the transport when the LUN is hot-removed: commands then answer as for an absent LUN. */
  removed = false;

  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly supportsUnmap: boolean;
  readonly supportsWriteZeroes: boolean;
  readonly maxTransferBlocks: number;
  /** Caching mode page state, changed by MODE SELECT. With wce=false every write is flushed. */
  wce: boolean;
  rcd = false;
  readonly defaultWce: boolean;

  /** Identity bytes, precomputed once. */
  readonly naa: Uint8Array;
  readonly serial: Uint8Array;
  readonly vendor: Uint8Array;
  readonly product: Uint8Array;
  readonly revision: Uint8Array;

  constructor(info: LunInfo, channel: BdevChannel | null) {
    if (!(info.blockSize >= 512 && (info.blockSize & (info.blockSize - 1)) === 0)) {
      throw new Error(`SCSI LUN: bad block size ${info.blockSize}`);
    }
    if (!(info.numBlocks > 0 && Number.isSafeInteger(info.numBlocks))) {
      throw new Error(`SCSI LUN: bad block count ${info.numBlocks}`);
    }
    this.info = info;
    this.channel = channel;
    this.blockSize = info.blockSize;
    this.readOnly = info.readOnly === true;
    this.supportsUnmap = info.supportsUnmap;
    this.supportsWriteZeroes = info.supportsWriteZeroes;
    let max = info.maxTransferBlocks ?? Math.max(1, Math.floor(DEFAULT_MAX_TRANSFER_BYTES / info.blockSize));
    const chMax = channel?.spec.maxIoBlocks ?? 0;
    if (chMax > 0 && chMax < max) max = chMax;
    this.maxTransferBlocks = Math.min(max, 0xffffffff);
    this.defaultWce = info.writeCache !== false;
    this.wce = this.defaultWce;
    this.naa = naaFromUuid(uuidBytes(info.uuid, info.bdevName), info.naaCompanyId ?? DEFAULT_NAA_COMPANY_ID);
    this.serial = ascii(info.serial ?? info.bdevName, 252);
    this.vendor = ascii(VENDOR_ID, 8);
    this.product = ascii(info.productName, 16);
    this.revision = ascii(PRODUCT_REVISION, 4);
  }

  /** Current size in blocks: follows the bdev when it is resized. */
  get numBlocks(): number { return this.channel !== null ? this.channel.numBlocks : this.info.numBlocks; }

  /** Marks the LUN gone: later commands get LOGICAL UNIT NOT SUPPORTED (in-flight ones finish). */
  remove(): void { this.removed = true; }
}

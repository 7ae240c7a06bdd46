// The Changed Namespace List log page (LID 04h, NVMe 1.4 section 5.14.1.4): the namespaces
// whose Identify Namespace data changed (here: their size) since the host last read it.
// At most 1024 NSIDs in increasing order, the rest zero; once more than 1024 distinct
// namespaces changed, the first entry is FFFFFFFFh and the rest zero. Reading it clears it.

export const CHANGED_NS_LOG_BYTES = 4096;
export const CHANGED_NS_MAX = CHANGED_NS_LOG_BYTES / 4;
export const CHANGED_NS_OVERFLOW = 0xffffffff;

export class ChangedNsList {
  private readonly ids = new Set<number>();
  private overflow = false;

  /** Records a change of namespace `nsid`. */
  add(nsid: number): void {
    if (this.overflow || this.ids.has(nsid)) return;
    if (this.ids.size === CHANGED_NS_MAX) { this.overflow = true; this.ids.clear(); return; }
    this.ids.add(nsid);
  }

  get size(): number { return this.overflow ? CHANGED_NS_MAX + 1 : this.ids.size; }

  /** The NSIDs recorded (for reports); [0xffffffff] after an overflow. */
  list(): number[] { return this.overflow ? [CHANGED_NS_OVERFLOW] : [...this.ids].sort((a, b) => a - b); }

  /** The log page as it stands; does not clear it. */
  page(): Uint8Array {
    const b = new Uint8Array(CHANGED_NS_LOG_BYTES), dv = new DataView(b.buffer);
    this.list().forEach((id, i) => dv.setUint32(4 * i, id, true));
    return b;
  }

  clear(): void { this.ids.clear(); this.overflow = false; }
}

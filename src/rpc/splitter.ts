// Splits a byte stream of back-to-back JSON values (SPDK's unframed wire format) into
// complete top-level texts, tracking brace depth, strings and escapes across reads.
export class FramingError extends Error {
  constructor(readonly kind: 'garbage' | 'too_large', message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

export interface SplitResult {
  /** Complete top-level JSON texts, in order. */
  values: string[];
  /** Set when the stream can no longer be split; the splitter stays broken after it. */
  error?: FramingError;
}

const LBRACE = 0x7b, RBRACE = 0x7d, LBRACK = 0x5b, RBRACK = 0x5d, QUOTE = 0x22, BSLASH = 0x5c;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

export class JsonSplitter {
  private chunks: Buffer[] = [];
  private pending = 0;      // bytes of the current value held in chunks
  private depth = 0;
  private inString = false;
  private escape = false;
  private broken: FramingError | undefined;

  constructor(readonly maxBytes = 1 << 20) {}

  push(data: Buffer): SplitResult {
    if (this.broken) return { values: [], error: this.broken };
    const values: string[] = [];
    let start = 0;            // where the current value begins in data
    for (let i = 0; i < data.length; i++) {
      const c = data[i];
      if (this.depth === 0) {
        if (isSpace(c)) { start = i + 1; continue; }
        if (c !== LBRACE && c !== LBRACK) {
          const ch = JSON.stringify(String.fromCharCode(c));
          return this.fail(values, 'garbage', `expected '{' or '[' to start a JSON-RPC request, got ${ch}`);
        }
        this.depth = 1;
        start = i;
        continue;
      }
      if (this.pending + i - start >= this.maxBytes) {
        return this.fail(values, 'too_large', `request exceeds the ${this.maxBytes}-byte limit: send smaller requests`);
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === BSLASH) this.escape = true;
        else if (c === QUOTE) this.inString = false;
      } else if (c === QUOTE) {
        this.inString = true;
      } else if (c === LBRACE || c === LBRACK) {
        this.depth++;
      } else if ((c === RBRACE || c === RBRACK) && --this.depth === 0) {
        values.push(this.take(data.subarray(start, i + 1)));
        start = i + 1;
      }
    }
    if (this.depth > 0 && start < data.length) {
      this.chunks.push(Buffer.from(data.subarray(start)));
      this.pending += data.length - start;
    }
    return { values };
  }

  /** True while part of a value is buffered (at EOF this means a truncated request). */
  get partial(): boolean { return this.depth > 0; }

  private take(tail: Buffer): string {
    if (this.chunks.length === 0) return tail.toString('utf8');
    this.chunks.push(tail);
    const text = Buffer.concat(this.chunks).toString('utf8');
    this.chunks = [];
    this.pending = 0;
    return text;
  }

  private fail(values: string[], kind: FramingError['kind'], msg: string): SplitResult {
    this.broken = new FramingError(kind, msg);
    this.chunks = [];
    this.pending = 0;
    return { values, error: this.broken };
  }
}

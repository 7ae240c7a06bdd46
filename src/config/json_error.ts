// Finds where a JSON text first breaks the grammar, as line and column, with what was
// expected there. Only run after JSON.parse failed: V8's messages give a position for some
// errors and none for others, and differ between Node versions.

export interface JsonErrorPlace { line: number; column: number; message: string }

class Fail { constructor(readonly pos: number, readonly message: string) {} }

export function locateJsonError(text: string): JsonErrorPlace | null {
  let pos = 0;
  const n = text.length;

  const ws = () => { while (pos < n && ' \t\n\r'.includes(text[pos])) pos++; };
  const here = (): string => {
    if (pos >= n) return 'the end of the file';
    const w = /^[A-Za-z0-9_$.+-]+/.exec(text.slice(pos, pos + 20));
    return w ? `'${w[0]}'` : `'${text[pos]}'`;
  };
  const fail = (expected: string): never => { throw new Fail(pos, `expected ${expected}, found ${here()}`); };

  const value = (): void => {
    ws();
    const c = text[pos];
    if (c === '{') return object();
    if (c === '[') return array();
    if (c === '"') return string();
    if (c === '-' || (c >= '0' && c <= '9')) return number();
    for (const lit of ['true', 'false', 'null']) if (text.startsWith(lit, pos)) { pos += lit.length; return; }
    fail('a value (object, array, string, number, true, false or null)');
  };
  const object = (): void => {
    pos++;
    ws();
    if (text[pos] === '}') { pos++; return; }
    for (;;) {
      ws();
      if (text[pos] !== '"') fail(text[pos] === '}' ? 'a property name in double quotes (no comma before \'}\')' : 'a property name in double quotes');
      string();
      ws();
      if (text[pos] !== ':') fail("':' after the property name");
      pos++;
      value();
      ws();
      if (text[pos] === ',') { pos++; continue; }
      if (text[pos] === '}') { pos++; return; }
      fail("',' or '}' after the property value");
    }
  };
  const array = (): void => {
    pos++;
    ws();
    if (text[pos] === ']') { pos++; return; }
    for (;;) {
      value();
      ws();
      if (text[pos] === ',') {
        pos++;
        ws();
        if (text[pos] === ']') fail("a value (no comma before ']')");
        continue;
      }
      if (text[pos] === ']') { pos++; return; }
      fail("',' or ']' after the array element");
    }
  };
  const string = (): void => {
    pos++;
    while (pos < n) {
      const c = text.charCodeAt(pos);
      if (c === 0x22) { pos++; return; }
      if (c < 0x20) throw new Fail(pos, 'a line break or control character inside a string (write it as \\n, \\t, ...)');
      if (c === 0x5c) {
        const e = text[pos + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) throw new Fail(pos, 'a \\u escape needs 4 hex digits');
          pos += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) throw new Fail(pos, `invalid escape '\\${e ?? ''}' in a string`);
        pos += 2;
        continue;
      }
      pos++;
    }
    throw new Fail(pos, 'the string is not closed (missing \'"\')');
  };
  const number = (): void => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(pos, pos + 400));
    if (!m) fail('a number');
    pos += m![0].length;
  };

  try {
    ws();
    if (pos >= n) throw new Fail(pos, 'the file is empty (expected a JSON object)');
    value();
    ws();
    if (pos < n) throw new Fail(pos, `${here()} after the end of the JSON value`);
    return null;
  } catch (e) {
    if (!(e instanceof Fail)) throw e;
    return { ...lineColumn(text, e.pos), message: e.message };
  }
}

function lineColumn(text: string, pos: number): { line: number; column: number } {
  let line = 1, start = 0;
  for (let i = 0; i < pos && i < text.length; i++) if (text[i] === '\n') { line++; start = i + 1; }
  return { line, column: pos - start + 1 };
}

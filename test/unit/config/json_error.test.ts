// locateJsonError: line, column and what was expected, for the mistakes people make in configs.
import { describe, it, expect } from 'vitest';
import { locateJsonError } from '../../../src/config/json_error.js';

describe('locateJsonError', () => {
  const cases: [string, number, number, RegExp][] = [
    ['{"a": 1,}', 1, 9, /property name in double quotes \(no comma before '\}'\)/],
    ['{"a": 1', 1, 8, /',' or '\}' after the property value, found the end of the file/],
    ['{"a" 1}', 1, 6, /':' after the property name, found '1'/],
    ['{\n  "s": [\n    {"x": tru}\n  ]\n}', 3, 11, /expected a value .* found 'tru'/],
    ['', 1, 1, /the file is empty/],
    ['{"a": "b\n"}', 1, 9, /line break or control character inside a string/],
    ['[1,2]x', 1, 6, /'x' after the end of the JSON value/],
    ['[1,]', 1, 4, /no comma before '\]'/],
    ['{"a": "\\q"}', 1, 8, /invalid escape '\\q'/],
    ['{"a": 01}', 1, 8, /',' or '\}' after the property value, found '1'/],
    ["{'a': 1}", 1, 2, /property name in double quotes, found '''/],
  ];
  for (const [text, line, column, msg] of cases) {
    it(`${JSON.stringify(text)} -> ${line}:${column}`, () => {
      expect(() => JSON.parse(text)).toThrow();
      const r = locateJsonError(text);
      expect(r).toMatchObject({ line, column });
      expect(r!.message).toMatch(msg);
    });
  }

  it('returns null for valid JSON', () => {
    for (const t of ['{}', '[]', '{"a": [1, -2.5e3, "x\\u00e9", true, false, null, {"b": {}}]}', ' 0 ']) {
      expect(locateJsonError(t)).toBeNull();
    }
  });
});

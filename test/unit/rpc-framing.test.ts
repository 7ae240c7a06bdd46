// The RPC stream splitter and the declarative param validator.
import { describe, it, expect } from 'vitest';
import { JsonSplitter } from '../../src/rpc/splitter.js';
import { validateParams } from '../../src/rpc/params.js';
import { RpcError } from '../../src/rpc/errors.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { BdevRegistry } from '../../bdev/registry.js';
import { NullBdev } from '../../bdev/null/null.js';
import '../../src/modules.js';
import { registerModuleMethods } from '../../src/framework/module.js';
import type { AppContext } from '../../src/framework/app_context.js';

const feed = (s: JsonSplitter, ...parts: string[]) => parts.flatMap((p) => {
  const r = s.push(Buffer.from(p));
  if (r.error) throw r.error;
  return r.values;
});

describe('JsonSplitter', () => {
  it('splits back-to-back values with whitespace between them', () => {
    expect(feed(new JsonSplitter(), '{"a":1}\n {"b":[1,{"c":2}]}\r\n\t[1,2]')).toEqual(['{"a":1}', '{"b":[1,{"c":2}]}', '[1,2]']);
  });

  it('ignores braces and quotes inside strings, including escapes', () => {
    const text = '{"s":"}{][\\"\\\\","t":"\\\\"}';
    expect(JSON.parse(text)).toEqual({ s: '}{][\"\\', t: '\\' });
    expect(feed(new JsonSplitter(), text + text)).toEqual([text, text]);
  });

  it('reassembles a value split at every possible byte', () => {
    const text = '{"jsonrpc":"2.0","id":1,"method":"m","params":{"n":"a\\"}\\\\{é"}}';
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new JsonSplitter();
      const buf = Buffer.from(text + text);
      const out = [...s.push(buf.subarray(0, cut)).values, ...s.push(buf.subarray(cut)).values];
      expect(out, `cut at ${cut}`).toEqual([text, text]);
    }
  });

  it('keeps multi-byte UTF-8 intact when a read ends mid-character', () => {
    const buf = Buffer.from('{"x":"日本"}');
    const s = new JsonSplitter();
    expect([...s.push(buf.subarray(0, 8)).values, ...s.push(buf.subarray(8)).values]).toEqual(['{"x":"日本"}']);
  });

  it('reports garbage at top level after the values before it', () => {
    const s = new JsonSplitter();
    const r = s.push(Buffer.from('{"a":1} nope'));
    expect(r.values).toEqual(['{"a":1}']);
    expect(r.error?.kind).toBe('garbage');
    expect(r.error?.message).toMatch(/expected '\{' or '\['.*"n"/);
    expect(s.push(Buffer.from('{}')).error?.kind).toBe('garbage');   // stays broken
  });

  it('enforces the size limit across reads and resets after each value', () => {
    const s = new JsonSplitter(16);
    expect(feed(s, '{"a":"12345678"}')).toHaveLength(1);           // exactly 16 bytes
    expect(s.push(Buffer.from('{"a":"1234')).error).toBeUndefined();
    const r = s.push(Buffer.from('56789"}'));
    expect(r.error?.kind).toBe('too_large');
    expect(r.error?.message).toMatch(/16-byte limit/);
  });

  it('tracks an unfinished value', () => {
    const s = new JsonSplitter();
    s.push(Buffer.from('{"a":'));
    expect(s.partial).toBe(true);
    s.push(Buffer.from('1}'));
    expect(s.partial).toBe(false);
  });
});

describe('validateParams', () => {
  const schema = {
    name: { type: 'string', required: true },
    count: { type: 'int', min: 1, max: 10 },
    ratio: { type: 'number' },
    on: { type: 'bool' },
    mode: { type: 'string', choices: ['a', 'b'] },
    opts: { type: 'object' },
  } as const;
  const bad = (raw: unknown): RpcError => {
    try { validateParams('m', schema, raw); } catch (e) { return e as RpcError; }
    throw new Error(`accepted ${JSON.stringify(raw)}`);
  };

  it('accepts valid params and treats absent/null params as {}', () => {
    expect(validateParams('m', schema, { name: 'x', count: 3, on: false, mode: 'b', opts: {}, ratio: 0.5 }))
      .toEqual({ name: 'x', count: 3, on: false, mode: 'b', opts: {}, ratio: 0.5 });
    expect(validateParams('m', {}, undefined)).toEqual({});
    expect(validateParams('m', {}, null)).toEqual({});
  });

  it('rejects each kind of bad input with -32602 and a message naming the param', () => {
    const cases: [unknown, RegExp][] = [
      [{}, /missing required parameter 'name' \(a string\)/],
      [{ name: 'x', extra: 1 }, /unknown parameter 'extra' \(accepted: name, count/],
      [{ name: 1 }, /'name' must be a string, got number 1/],
      [{ name: 'x', count: 2.5 }, /'count' must be an integer/],
      [{ name: 'x', count: 2 ** 60 }, /'count' must be an integer/],
      [{ name: 'x', count: 0 }, /'count' is 0, below the minimum 1/],
      [{ name: 'x', count: 11 }, /above the maximum 10/],
      [{ name: 'x', ratio: 'NaN' }, /'ratio' must be a number/],
      [{ name: 'x', on: 'true' }, /'on' must be a boolean/],
      [{ name: 'x', mode: 'c' }, /'mode' is "c": use one of a, b/],
      [{ name: 'x', opts: [] }, /'opts' must be an object, got an array/],
      [['x'], /params must be an object of named parameters/],
      ['x', /params must be an object/],
    ];
    for (const [raw, msg] of cases) {
      const e = bad(raw);
      expect(e).toBeInstanceOf(RpcError);
      expect(e.code, JSON.stringify(raw)).toBe(-32602);
      expect(e.message, JSON.stringify(raw)).toMatch(msg);
    }
    expect(bad({ x: 1 }).message).toMatch(/^m: /);
  });

  it('says when a method takes no parameters', () => {
    expect(() => validateParams('spdk_get_version', {}, { a: 1 })).toThrow(/unknown parameter 'a' \(it takes no parameters\)/);
  });
});

describe('MethodRegistry', () => {
  const ctx = (state: AppContext['state']): AppContext => ({
    version: '0', bdevs: new BdevRegistry(), subsystems: [], state,
    reactors: { cpus: [0], describe: () => ({}) }, startInit: async () => {}, shutdown: () => {},
  });

  it('enforces states with SPDK code -1 and validates before calling', async () => {
    const reg = new MethodRegistry();
    let calls = 0;
    reg.register('rt', { n: { type: 'int', required: true } }, (p) => { calls++; return p.n * 2; });
    reg.register('boot', {}, () => 'ok', { states: ['waiting_for_rpc'] });
    expect(await reg.invoke('rt', { n: 2 }, ctx('running'))).toBe(4);
    await expect(reg.invoke('rt', { n: 2 }, ctx('waiting_for_rpc'))).rejects.toMatchObject({ code: -1, message: expect.stringMatching(/framework_start_init/) });
    await expect(reg.invoke('boot', {}, ctx('running'))).rejects.toMatchObject({ code: -1, message: expect.stringMatching(/--wait-for-rpc/) });
    await expect(reg.invoke('rt', {}, ctx('running'))).rejects.toMatchObject({ code: -32602 });
    await expect(reg.invoke('nope', {}, ctx('running'))).rejects.toMatchObject({ code: -32601 });
    await expect(reg.invoke('rt', { n: 1 }, ctx('stopping'))).rejects.toMatchObject({ code: -1, message: expect.stringMatching(/shutting down/) });
    expect(calls).toBe(1);
    expect(() => reg.register('rt', {}, () => 1)).toThrow(/registered twice/);
  });

  it('refuses to delete a claimed bdev with -16 (EBUSY)', async () => {
    const reg = new MethodRegistry();
    registerModuleMethods(reg);
    const c = ctx('running');
    c.bdevs.register(new NullBdev({ name: 'N0', num_blocks: 8, block_size: 512 }));
    c.bdevs.claim('N0', 'vhost.0');
    await expect(reg.invoke('bdev_null_delete', { name: 'N0' }, c)).rejects.toMatchObject({
      code: -16, message: expect.stringMatching(/'N0' is in use by vhost.0/),
    });
    const [info] = await reg.invoke('bdev_get_bdevs', { name: 'N0' }, c) as { claimed: boolean }[];
    expect(info.claimed).toBe(true);
    c.bdevs.release('N0', 'vhost.0');
    expect(await reg.invoke('bdev_null_delete', { name: 'N0' }, c)).toBe(true);
  });
});

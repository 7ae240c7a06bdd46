// Declarative validation of a method's params object: required/optional, types,
// ranges and choices; unknown params are rejected by name.
import { invalidParams } from './errors.js';

export type ParamType = 'string' | 'int' | 'number' | 'bool' | 'object' | 'array';

export interface ParamSpec {
  type: ParamType;
  required?: boolean;
  /** Inclusive bounds for int/number. */
  min?: number;
  max?: number;
  /** Allowed values for a string. */
  choices?: readonly string[];
  /** Shown in error messages, e.g. "size in blocks". */
  desc?: string;
}

export type Schema = Readonly<Record<string, ParamSpec>>;

type TypeOf<P extends ParamSpec> =
  P['type'] extends 'string' ? string :
  P['type'] extends 'int' | 'number' ? number :
  P['type'] extends 'bool' ? boolean :
  P['type'] extends 'array' ? unknown[] : Record<string, unknown>;

/** The validated params object a handler receives for schema S. */
export type Params<S extends Schema> =
  { [K in keyof S as S[K] extends { required: true } ? K : never]: TypeOf<S[K]> } &
  { [K in keyof S as S[K] extends { required: true } ? never : K]?: TypeOf<S[K]> };

const typeNames: Record<ParamType, string> = {
  string: 'a string', int: 'an integer', number: 'a number', bool: 'a boolean (true/false)',
  object: 'an object', array: 'an array',
};

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function checkValue(name: string, spec: ParamSpec, v: unknown): void {
  const want = () => `parameter '${name}' must be ${typeNames[spec.type]}${spec.desc ? ` (${spec.desc})` : ''}, got ${describe(v)}`;
  switch (spec.type) {
    case 'string': if (typeof v !== 'string') throw invalidParams(want()); break;
    case 'bool': if (typeof v !== 'boolean') throw invalidParams(want()); break;
    case 'object': if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidParams(want()); break;
    case 'array': if (!Array.isArray(v)) throw invalidParams(want()); break;
    case 'int': if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidParams(want()); break;
    case 'number': if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidParams(want()); break;
  }
  if (typeof v === 'number') {
    if (spec.min !== undefined && v < spec.min) throw invalidParams(`parameter '${name}' is ${v}, below the minimum ${spec.min}`);
    if (spec.max !== undefined && v > spec.max) throw invalidParams(`parameter '${name}' is ${v}, above the maximum ${spec.max}`);
  }
  if (spec.choices && !spec.choices.includes(v as string)) {
    throw invalidParams(`parameter '${name}' is ${JSON.stringify(v)}: use one of ${spec.choices.join(', ')}`);
  }
}

/** Validates raw JSON-RPC params (absent/null counts as {}) against schema; throws -32602. */
export function validateParams<S extends Schema>(method: string, schema: S, raw: unknown): Params<S> {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalidParams(`${method}: params must be an object of named parameters, not ${describe(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  const known = Object.keys(schema);
  for (const k of Object.keys(obj)) {
    if (!Object.hasOwn(schema, k)) {
      const hint = known.length ? `accepted: ${known.join(', ')}` : 'it takes no parameters';
      throw invalidParams(`${method}: unknown parameter '${k}' (${hint})`);
    }
  }
  for (const k of known) {
    const spec = schema[k];
    if (!Object.hasOwn(obj, k) || obj[k] === undefined) {
      if (spec.required) {
        throw invalidParams(`${method}: missing required parameter '${k}' (${typeNames[spec.type]}${spec.desc ? `: ${spec.desc}` : ''})`);
      }
      continue;
    }
    checkValue(k, spec, obj[k]);
  }
  return obj as Params<S>;
}

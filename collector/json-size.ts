/**
 * `Buffer.byteLength(JSON.stringify(value))` without building the JSON text: the size of a tool call's
 * arguments and result, measured in the call path. Strings with nothing to escape (most text) are
 * measured by their UTF-8 length alone: a 112 KB text result costs ~2.5x less than stringifying it,
 * and is not copied.
 *
 * Exact for JSON data: plain objects and arrays of strings, finite numbers, booleans and null (with
 * undefined, functions and symbols left out as JSON.stringify leaves them out). Anything else (a
 * `toJSON` method, a class instance, a Map, a BigInt, a cycle...) is measured by JSON.stringify itself.
 * Throws whatever JSON.stringify throws.
 */
export function jsonByteLength(value: unknown): number {
  const size = measure(value, 0);
  if (size >= 0) return size;
  const json = JSON.stringify(value) as string | undefined;
  return json === undefined ? 0 : Buffer.byteLength(json, 'utf8');
}

/** Nesting beyond this (or a cycle) is left to JSON.stringify. */
const MAX_DEPTH = 64;
/** Returned when JSON.stringify must decide. */
const UNSURE = -1;
/** Returned for a value JSON.stringify leaves out (undefined, a function, a symbol). */
const OMITTED = -2;

function measure(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return stringSize(value);
    case 'number':
      return Number.isFinite(value) ? numberSize(value) : 4; // null
    case 'boolean':
      return value ? 4 : 5;
    case 'undefined':
    case 'function':
    case 'symbol':
      return OMITTED;
    case 'bigint':
      return UNSURE;
  }
  if (value === null) return 4;
  if (depth >= MAX_DEPTH) return UNSURE;
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype || typeof (value as { toJSON?: unknown }).toJSON === 'function') return UNSURE;
    let size = 2 + Math.max(0, value.length - 1); // [ ] and commas
    for (let i = 0; i < value.length; i++) {
      const item = measure(value[i], depth + 1);
      if (item === UNSURE) return UNSURE;
      size += item === OMITTED ? 4 : item;
    }
    return size;
  }
  const proto = Object.getPrototypeOf(value);
  if ((proto !== Object.prototype && proto !== null) || typeof (value as { toJSON?: unknown }).toJSON === 'function') return UNSURE;
  let size = 2; // { }
  let members = 0;
  const record = value as Record<string, unknown>;
  // for-in over own keys: Object.keys would allocate an array per object measured.
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    const item = measure(record[key], depth + 1);
    if (item === UNSURE) return UNSURE;
    if (item === OMITTED) continue;
    size += stringSize(key) + 1 + item; // "key":value
    members++;
  }
  return size + Math.max(0, members - 1);
}

function numberSize(value: number): number {
  // Small integers, the common case, without making a string.
  if (Number.isInteger(value) && value > -1e9 && value < 1e9) {
    let digits = value < 0 ? 2 : 1;
    for (let rest = Math.abs(value); rest >= 10; rest = Math.floor(rest / 10)) digits++;
    return Object.is(value, -0) ? 1 : digits;
  }
  return String(value).length;
}

/** Characters JSON.stringify may escape: `"`, `\`, control characters, surrogates (when lone). */
const MAYBE_ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * Strings up to this length (most keys and short values) are measured char by char: for them the
 * regular expression and the native byte count cost more than the loop.
 */
const SHORT_STRING = 64;

/** A string's JSON size: its UTF-8 bytes and quotes; a string with something to escape, from its JSON. */
function stringSize(text: string): number {
  if (text.length <= SHORT_STRING) {
    let bytes = 2;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80) {
        if (c < 0x20 || c === 0x22 || c === 0x5c) return escapedSize(text);
        bytes += 1;
      } else if (c < 0x800) {
        bytes += 2;
      } else if (c >= 0xd800 && c <= 0xdfff) {
        return escapedSize(text); // a pair is 4 bytes, a lone one is escaped: JSON.stringify decides
      } else {
        bytes += 3;
      }
    }
    return bytes;
  }
  if (!MAYBE_ESCAPED.test(text)) return Buffer.byteLength(text, 'utf8') + 2;
  return escapedSize(text);
}

function escapedSize(text: string): number {
  return Buffer.byteLength(JSON.stringify(text), 'utf8');
}

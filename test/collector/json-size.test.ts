import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonByteLength } from '../../collector/json-size.ts';

const expected = (value: unknown) => {
  const json = JSON.stringify(value) as string | undefined;
  return json === undefined ? 0 : Buffer.byteLength(json, 'utf8');
};

const STRINGS = [
  '', 'plain', 'quote " and \\ backslash', 'line\nbreak\ttab\r\b\f', '\u0000\u0001\u001f\u007f', 'é ü ß', '日本語', '😀 emoji',
  '\ud83d', '\ude00', 'a\ud83d', '\ude00b', '\ud83d\ud83d\ude00', '\u2028\u2029', '</script>', 'x'.repeat(10_000),
];
const NUMBERS = [0, -0, 1, -1, 9, 10, 99, 100, 123456789, 999999999, 1e9, -999999999, 1.5, -0.001, 1e21, 1e-7, 2 ** 53, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE];

describe('jsonByteLength', () => {
  it('is the byte length of JSON.stringify for scalars', () => {
    for (const value of [...STRINGS, ...NUMBERS, true, false, null, undefined]) {
      assert.equal(jsonByteLength(value), expected(value), JSON.stringify(value));
    }
  });

  it('is exact for strings at the short-string border, with each kind of char at the start, middle and end', () => {
    // Strings of up to 64 chars are measured char by char, longer ones by a regular expression.
    const chars = ['a', '~', '\u007f', '\u0080', 'é', '\u07ff', '\u0800', '日', '\uffff', '\u001f', ' ', '"', '\\', '\n', '\ud83d\ude00', '\ud83d', '\ude00', '\ud7ff', '\ud800', '\udfff', '\ue000'];
    for (const length of [0, 1, 2, 63, 64, 65, 66, 128]) {
      for (const char of chars) {
        for (const at of [0, Math.floor(length / 2), length - 1]) {
          if (at < 0) continue;
          const text = 'x'.repeat(at) + char + 'x'.repeat(Math.max(0, length - at - 1));
          assert.equal(jsonByteLength(text), expected(text), `${JSON.stringify(char)} at ${at} of ${text.length}`);
          assert.equal(jsonByteLength({ [text]: text }), expected({ [text]: text }), `key ${JSON.stringify(char)} at ${at} of ${text.length}`);
        }
      }
    }
  });

  it('is exact for MCP results and arguments', () => {
    const values = [
      { content: [{ type: 'text', text: 'user 42: Ada Lovelace' }] },
      { content: [{ type: 'text', text: STRINGS.join('|') }], isError: true, structuredContent: { n: 1, list: [1, 'two', null, { x: -0.5 }] } },
      { id: 'user-1', filters: { active: true, tags: ['a', 'b'] }, limit: 10 },
      { skipped: undefined, fn: () => 1, sym: Symbol('s'), kept: 1 },
      [undefined, () => 1, Symbol('s'), 1],
      [, 1, , 2], // eslint-disable-line no-sparse-arrays
      Object.assign(Object.create(null), { a: 1, 'k"ey\n': 'v' }),
      {},
      [],
      [[[[]]]],
      { '': '', '😀': '\ud83d' },
    ];
    for (const value of values) assert.equal(jsonByteLength(value), expected(value), JSON.stringify(value));
  });

  it('leaves toJSON, class instances and other objects to JSON.stringify', () => {
    class Point {
      constructor(readonly x: number, readonly y: number) {}
    }
    const values = [new Date(0), { when: new Date(0) }, new Point(1, 2), { toJSON: () => 'custom' }, new Map([[1, 2]]), new Uint8Array([1, 2]), [new Boolean(false)], { nested: { toJSON: () => [1, 2, 3] } }];
    for (const value of values) assert.equal(jsonByteLength(value), expected(value));
    assert.throws(() => jsonByteLength({ big: 1n }), TypeError);
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    assert.throws(() => jsonByteLength(cycle), TypeError);
  });

  it('is exact on random JSON values', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    const make = (depth: number): unknown => {
      const roll = random();
      if (depth > 4 || roll < 0.4) return pick<unknown>([...STRINGS.slice(0, -1), ...NUMBERS, true, false, null, undefined]);
      if (roll < 0.7) return Array.from({ length: Math.floor(random() * 5) }, () => make(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, () => [pick(STRINGS.slice(0, -1)) + pick(['', 'k', '1']), make(depth + 1)]));
    };
    for (let n = 0; n < 3_000; n++) {
      const value = make(0);
      assert.equal(jsonByteLength(value), expected(value), JSON.stringify(value));
    }
  });
});

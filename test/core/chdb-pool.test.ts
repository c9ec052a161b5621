import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inlineParameters } from '../../core/chdb-pool.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';

describe('query parameters written into the statement', () => {
  it('replaces placeholders with typed literals, and only outside quotes and comments', () => {
    const sql = `SELECT {a:String}, '{a:String}', "{a:String}", \`x{a:String}\` -- {a:String}
      /* {a:String} */ FROM t WHERE n IN {ids:Array(UInt32)} AND t < {to:DateTime64(9, 'UTC')} LIMIT {n:UInt32}`;
    assert.equal(
      inlineParameters(sql, { a: "it's", ids: [1, 2], to: '2026-12-04 17:00:00.000000000', n: 10 }),
      `SELECT _CAST('it\\'s', 'String'), '{a:String}', "{a:String}", \`x{a:String}\` -- {a:String}
      /* {a:String} */ FROM t WHERE n IN _CAST([1, 2], 'Array(UInt32)') AND t < _CAST('2026-12-04 17:00:00.000000000', 'DateTime64(9, \\'UTC\\')') LIMIT _CAST(10, 'UInt32')`,
    );
  });

  it('refuses a placeholder without a value, and values it cannot write exactly', () => {
    assert.throws(() => inlineParameters('SELECT {tenant:String}', {}), /Substitution `tenant` is not set/);
    assert.throws(() => inlineParameters('SELECT {n:UInt64}', { n: 2 ** 60 }), /beyond ±2\^53/);
    assert.throws(() => inlineParameters('SELECT {n:Float64}', { n: Number.NaN }), /finite/);
    assert.throws(() => inlineParameters('SELECT {d:DateTime}', { d: new Date() }), /cannot be written as a literal/);
  });

  it('leaves braces that are not placeholders alone', () => {
    assert.equal(inlineParameters("SELECT map('a', 1), {x:UInt8} FORMAT JSON", { x: 1 }), "SELECT map('a', 1), _CAST(1, 'UInt8') FORMAT JSON");
    assert.equal(inlineParameters('SELECT {1}', {}), 'SELECT {1}');
  });
});

describe('the embedded engine with several connections', () => {
  let one: ClickHouseClient;
  let two: ClickHouseClient;
  before(async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chdb-pool-'));
    one = await openClickHouse({ database: 'pool_test', dataDir });
    two = await openClickHouse({ database: 'pool_test', dataDir, connections: 2 });
  });
  after(async () => {
    await two.close();
    await one.close();
  });

  it('reads back exactly the values it was given, whatever their characters', async () => {
    const tricky = ["it's", 'back\\slash', 'tab\there', 'line\nbreak', 'nul\0byte', "'; DROP TABLE x; --", '{x:String}', 'ünïcødé ✓', ''];
    for (const client of [one, two]) {
      for (const s of tricky) {
        const rs = await client.query({ query: 'SELECT {s:String} AS s, toUInt32(length({s:String})) AS n', query_params: { s }, format: 'JSONEachRow' });
        assert.deepEqual(await rs.json(), [{ s, n: Buffer.byteLength(s) }]);
      }
      const rs = await client.query({
        query: "SELECT {ids:Array(String)} AS ids, toString({big:UInt64}) AS big, {t:DateTime64(9, 'UTC')} AS t, {b:Bool} AS b, {none:Nullable(String)} AS none",
        query_params: { ids: ["a'b", 'c'], big: 18446744073709551615n, t: '2026-12-04 17:00:00.123456789', b: true, none: null },
        format: 'JSONEachRow',
      });
      assert.deepEqual(await rs.json(), [{ ids: ["a'b", 'c'], big: '18446744073709551615', t: '2026-12-04 17:00:00.123456789', b: true, none: null }]);
    }
  });

  it('every connection uses the database and holds the settings a call sets', async () => {
    for (let i = 0; i < 4; i++) {
      const rs = await two.query({ query: 'SELECT currentDatabase() AS db, getSetting({name:String}) AS v', query_params: { name: 'max_execution_time' }, clickhouse_settings: { max_execution_time: 7 }, format: 'JSONEachRow' });
      const [row] = await rs.json<{ db: string; v: string }>();
      assert.equal(row?.db, 'pool_test');
      assert.equal(Number(row?.v), 7);
    }
  });

  it('with two connections, a short statement does not wait for a long one; with one, it does', async () => {
    const order = async (client: ClickHouseClient) => {
      const done: string[] = [];
      const long = client.command({ query: 'SELECT sleep({s:Float64})', query_params: { s: 1.5 } }).then(() => done.push('long'));
      // Sent once the long statement is on its connection.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const short = client.query({ query: 'SELECT {n:UInt8}', query_params: { n: 1 } }).then(() => done.push('short'));
      await Promise.all([long, short]);
      return done;
    };
    assert.deepEqual(await order(two), ['short', 'long']);
    assert.deepEqual(await order(one), ['long', 'short']);
  });
});

'use strict';
// Smaller edges of issue 18: every Content-Encoding request header is checked and none is
// forwarded; the admin API looks up tenant ids holding '/' or '+' as they are and refuses a
// period it cannot read instead of falling back to this month; the dashboard cannot be framed.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const TOKEN = 'test-admin-token';

async function adminGet(tg, p) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// One raw request (exact headers, repeated ones included); resolves the parsed response.
async function raw(tg, headers, body) {
  const conn = await new h.Conn(tg.port).open();
  try {
    conn.send(h.buildRequest('POST', '/v1/chat/completions', [
      ['Host', '127.0.0.1'], ['Content-Type', 'application/json'], ['Authorization', 'Bearer sk-test'],
      ...headers, ['Content-Length', Buffer.byteLength(body)],
    ], body));
    const [res] = await conn.responses(1);
    return res;
  } finally {
    conn.close();
  }
}

describe('edges', () => {
  const env = h.useStack();

  test('Content-Encoding: each header is checked (identity then gzip is 415) and none is forwarded', async () => {
    const nonce = h.uniq('ce');
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${nonce} mock:tokens=3,2` }] });
    const two = await raw(env.tg, [['X-Tenant-Id', 'ce1'], ['Content-Encoding', 'identity'], ['Content-Encoding', 'gzip']], body);
    assert.equal(two.status, 415);
    assert.equal(env.mock.requestsWith(nonce).length, 0, 'not forwarded');
    const one = await raw(env.tg, [['X-Tenant-Id', 'ce1'], ['Content-Encoding', 'identity']], body);
    assert.equal(one.status, 200);
    const [up] = env.mock.requestsWith(nonce);
    assert.ok(up, 'forwarded');
    assert.equal(up.headers['content-encoding'], undefined, 'Content-Encoding is not forwarded');
  });

  test('admin API: tenant ids with / and + are looked up as they are; an unreadable period is 400', async () => {
    for (const tenant of ['team/one', 'a+b']) {
      const c = h.openaiClient(env.tg, tenant);
      await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi mock:tokens=3,2' }] });
    }
    await h.sleep(300); // settlement reaches Redis
    for (const p of ['/admin/api/tenants/team%2Fone', '/admin/api/tenants/team/one']) {
      const r = await adminGet(env.tg, p);
      assert.equal(r.status, 200, `${p}: ${r.text}`);
      assert.equal(r.json.tenant, 'team/one');
    }
    const plus = await adminGet(env.tg, '/admin/api/tenants/a+b');
    assert.equal(plus.status, 200, plus.text);
    assert.equal(plus.json.tenant, 'a+b', '+ in the path is not a space');
    const spaced = await adminGet(env.tg, '/admin/api/tenants/a%20b');
    assert.equal(spaced.status, 404);
    const long = await adminGet(env.tg, `/admin/api/tenants?period=2026-11${'1'.repeat(40)}`);
    assert.equal(long.status, 400, 'a long period is refused, not ignored');
    const empty = await adminGet(env.tg, '/admin/api/tenants?period');
    assert.equal(empty.status, 400);
    const spacedQuery = await adminGet(env.tg, '/admin/api/tenants/a+b?period=2026+11');
    assert.equal(spacedQuery.status, 400, '+ in a query value is a space: "2026 11" is not a period');
  });

  test('the dashboard cannot be framed: CSP frame-ancestors and X-Frame-Options as headers', async () => {
    const res = await fetch(`http://127.0.0.1:${env.tg.adminPort}/dashboard`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-security-policy'), "frame-ancestors 'none'");
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    await res.text();
  });

  h.cleanRunTest(env);
});

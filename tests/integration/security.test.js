'use strict';
// Catalogue §5 F: what must not cross tollgate (attribution headers, hop-by-hop headers)
// and what must never be written down (prompt text).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

describe('security', () => {
  const env = h.useStack({ overrides: { server: { log_level: 'debug' } } });

  test('F71/F78 tenant, user, feature, plan and hop-by-hop headers absent upstream; Authorization passed through', async () => {
    const tenant = h.uniq('hdrs');
    const nonce = h.uniq('n');
    const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: `${nonce} mock:tokens=5,1` }] });
    const conn = await new h.Conn(env.tg.port).open();
    let res;
    try {
      conn.send(h.buildRequest('POST', '/v1/chat/completions', [
        ['Host', '127.0.0.1'], ['Content-Type', 'application/json'], ['Authorization', 'Bearer sk-client-key-123'],
        ['X-Tenant-Id', tenant], ['X-User-Id', 'u_42'], ['X-Feature', 'summary'], ['X-Tenant-Plan', 'free'],
        ['Connection', 'keep-alive, X-Hop-Test'], ['X-Hop-Test', 'hop'], ['Keep-Alive', 'timeout=5'],
        ['X-Passthrough', 'kept'], ['Content-Length', Buffer.byteLength(body)],
      ], body));
      [res] = await conn.responses(1);
    } finally {
      conn.close();
    }
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-tollgate-tenant'], tenant);
    const [up] = env.mock.requestsWith(nonce);
    assert.ok(up, 'forwarded');
    const names = Object.keys(up.headers);
    for (const hdr of ['x-tenant-id', 'x-user-id', 'x-feature', 'x-tenant-plan', 'x-hop-test', 'keep-alive']) {
      assert.ok(!names.includes(hdr), `${hdr} must not reach the upstream (got ${names.join(', ')})`);
    }
    assert.equal(up.headers.authorization, 'Bearer sk-client-key-123', 'client key passes through when no api_key is set');
    assert.equal(up.headers['x-passthrough'], 'kept', 'ordinary headers pass through');
    assert.ok(!/x-hop-test/i.test(up.headers.connection || ''), 'Connection-listed names are not forwarded');
    const rec = await env.tg.record(res.headers['x-tollgate-request-id']);
    assert.equal(rec.tenant, tenant);
    assert.equal(rec.user, 'u_42');
    assert.equal(rec.feature, 'summary');
    assert.equal(rec.plan, 'free');
  });

  test('F72 a secret marker in prompts never appears in stderr (log_level debug) or the records file', async () => {
    const marker = `SECRET-${h.uniq('m')}-MARKER`;
    const tenant = h.uniq('secret');
    const c = env.openai(tenant);
    await c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `${marker} mock:tokens=5,1` }] });
    const s = await c.chat.completions.create({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: `${marker} mock:chunks=3` }] });
    for await (const ch of s) void ch;
    await assert.rejects(c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `${marker} mock:status=500` }] }));
    await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: marker }] }); // no tenant: 400
    await h.post(env.tg, '/v1/chat/completions', `{"model":"gpt-4o","messages":[{"role":"user","content":"${marker}"}`, { 'X-Tenant-Id': tenant }); // invalid JSON
    await h.post(env.tg, `/v1beta/models/gemini-2.5-flash:generateContent?key=${marker}`, { contents: [{ parts: [{ text: 'mock:tokens=3,1' }] }], marker }, { 'X-Tenant-Id': tenant });
    await env.tg.records({ tenant }, 3);
    await h.sleep(h.ms(300));
    assert.ok(env.mock.requestsWith(marker).length >= 3, 'the marker did reach the upstream (the test is live)');
    assert.ok(!env.tg.stderr.includes(marker), 'marker found in tollgate stderr');
    assert.ok(!fs.readFileSync(env.tg.recordsFile, 'utf8').includes(marker), 'marker found in the records file');
    assert.ok(!env.tg.stderr.includes('sk-test-key'), 'API key found in tollgate stderr');
  });

  h.cleanRunTest(env);
});

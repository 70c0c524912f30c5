'use strict';
// The Anthropic and Gemini SDKs work unmodified through tollgate (plain and streamed), and
// each call gets a record with its provider. Exact token metering: providers.test.js.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

describe('anthropic and gemini SDKs pass through', () => {
  const env = h.useStack();

  test('anthropic messages.create: 200, upstream got the key and anthropic-version, record provider anthropic', async () => {
    const tenant = h.uniq('ant');
    const nonce = h.uniq('n');
    const c = env.anthropic(tenant);
    const { data, response } = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64,
      messages: [{ role: 'user', content: `${nonce} mock:tokens=40,8` }] }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.content[0].text, 'tok0 tok1 tok2 ');
    const [up] = env.mock.requestsWith(nonce);
    assert.equal(up.path, '/v1/messages');
    // @anthropic-ai/sdk 1.12.0 sends its key as Authorization: Bearer (older ones: X-Api-Key).
    assert.ok(up.headers['x-api-key'] === 'sk-ant-test-key' || up.headers.authorization === 'Bearer sk-ant-test-key',
      `the SDK's key reached the upstream: ${JSON.stringify(up.headers)}`);
    assert.ok(up.headers['anthropic-version'], 'anthropic-version forwarded untouched');
    assert.equal(up.headers['x-tenant-id'], undefined);
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.status, 200);
    assert.equal(rec.stream, false);
    assert.equal(rec.tenant, tenant);
  });

  test('anthropic messages.stream: events reach the SDK, record provider anthropic stream true', async () => {
    const tenant = h.uniq('ants');
    const c = env.anthropic(tenant);
    const s = c.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'mock:tokens=40,8 mock:chunks=4' }] });
    const msg = await s.finalMessage();
    assert.equal(msg.content[0].text, 'tok0 tok1 tok2 tok3 ');
    assert.equal(msg.usage.output_tokens, 8);
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.status, 200);
    assert.equal(rec.stream, true);
    assert.equal(rec.endpoint, '/v1/messages');
  });

  test('anthropic upstream 529 passes through; SDK raises with the provider body', async () => {
    const c = env.anthropic(h.uniq('ant529'));
    await assert.rejects(c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'mock:status=529' }] }),
      (e) => e.status === 529 && /overloaded_error/.test(JSON.stringify(e.error)));
  });

  test('gemini generateContent: 200, upstream got x-goog-api-key, record provider gemini', async () => {
    const tenant = h.uniq('gem');
    const nonce = h.uniq('n');
    const c = env.gemini(tenant);
    const r = await c.models.generateContent({ model: 'gemini-2.5-flash', contents: `${nonce} mock:tokens=30,6` });
    assert.equal(r.text, 'tok0 tok1 tok2 ');
    const [up] = env.mock.requestsWith(nonce);
    assert.equal(up.path, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(up.headers['x-goog-api-key'], 'g-test-key');
    assert.equal(up.headers['x-tenant-id'], undefined);
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.provider, 'gemini');
    assert.equal(rec.status, 200);
    assert.equal(rec.stream, false);
  });

  test('gemini generateContentStream (alt=sse, CRLF events): chunks reach the SDK, record provider gemini stream true', async () => {
    const tenant = h.uniq('gems');
    const nonce = h.uniq('n');
    const c = env.gemini(tenant);
    let text = '';
    for await (const ch of await c.models.generateContentStream({ model: 'gemini-2.5-flash', contents: `${nonce} mock:tokens=30,6 mock:chunks=4` })) text += ch.text || '';
    assert.equal(text, 'tok0 tok1 tok2 tok3 ');
    const [up] = env.mock.requestsWith(nonce);
    assert.equal(up.query, '?alt=sse');
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.provider, 'gemini');
    assert.equal(rec.status, 200);
    assert.equal(rec.stream, true);
  });

  h.cleanRunTest(env);
});

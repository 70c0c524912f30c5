'use strict';
// OpenAI routes through tollgate with the official openai SDK: the client's view, what the
// upstream received, the record and the Redis counters.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

// Sends a chat completion with the SDK's raw-response API so the tollgate headers are seen.
async function chat(env, tenant, content, extra = {}) {
  const c = env.openai(tenant);
  const { data, response } = await c.chat.completions
    .create({ model: extra.model || 'gpt-4o', messages: [{ role: 'user', content }], ...extra.params })
    .withResponse();
  return { data, response, id: response.headers.get('x-tollgate-request-id') };
}

describe('openai', () => {
  const env = h.useStack();

  test('chat plain: exact cost gpt-4o 1000 in / 200 cached / 500 out = $0.00725 (7250000 nano in Redis)', async () => {
    const tenant = h.uniq('plain');
    const nonce = h.uniq('n');
    const { data, response, id } = await chat(env, tenant, `${nonce} mock:tokens=1000,500 mock:cached=200`);
    assert.equal(response.status, 200);
    assert.equal(data.usage.prompt_tokens, 1000, 'client sees the upstream usage unchanged');
    assert.equal(data.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.ok(id, 'X-Tollgate-Request-Id on the response');
    assert.equal(response.headers.get('x-tollgate-tenant'), tenant);

    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1, 'upstream got exactly one request');
    assert.equal(up[0].path, '/v1/chat/completions');
    assert.equal(up[0].json.model, 'gpt-4o');

    const rec = await env.tg.record(id);
    h.assertRecordShape(rec);
    assert.equal(rec.tenant, tenant);
    assert.equal(rec.provider, 'openai');
    assert.equal(rec.endpoint, '/v1/chat/completions');
    assert.equal(rec.model_requested, 'gpt-4o');
    assert.equal(rec.stream, false);
    assert.equal(rec.status, 200);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.priced, true);
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 1000, cached: 200, output: 500 });
    const nano = h.expectedNano('gpt-4o', { input: 1000, cached: 200, output: 500 });
    assert.equal(nano, 7250000);
    assert.equal(rec.cost_usd, 0.00725);
    assert.equal(h.recordNano(rec), nano);

    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.requests, 1);
    assert.equal(m.cost, 7250000);
    assert.equal(m.input_tokens, 1000);
    assert.equal(m.cached_tokens, 200);
    assert.equal(m.output_tokens, 500);
    const d = await env.redis.counters(tenant, 'd');
    assert.equal(d.cost, 7250000, 'daily counter settled too');
    assert.equal(d.requests, 1);
  });

  test('chat streamed with include_usage: client sees the usage chunk, record exact', async () => {
    const tenant = h.uniq('swu');
    const nonce = h.uniq('n');
    const c = env.openai(tenant);
    const { data: stream, response } = await c.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: `${nonce} mock:tokens=300,40 mock:chunks=5` }],
    }).withResponse();
    const chunks = [];
    for await (const ch of stream) chunks.push(ch);
    const usage = chunks.filter((ch) => ch.usage);
    assert.equal(usage.length, 1, 'exactly one chunk with usage');
    assert.deepEqual(usage[0].choices, []);
    assert.equal(usage[0].usage.prompt_tokens, 300);
    assert.equal(usage[0].usage.completion_tokens, 40);
    assert.equal(chunks.map((ch) => (ch.choices[0] && ch.choices[0].delta.content) || '').join(''), 'tok0 tok1 tok2 tok3 tok4 ');
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].json.stream_options.include_usage, true);
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.stream, true);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 300, output: 40 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o-mini', { input: 300, output: 40 }));
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, h.recordNano(rec));
  });

  test('chat streamed without include_usage: upstream asked for usage, client never sees the usage chunk, record exact', async () => {
    const tenant = h.uniq('swo');
    const nonce = h.uniq('n');
    const messages = [{ role: 'system', content: 'be brief' }, { role: 'user', content: `${nonce} mock:tokens=250,60 mock:chunks=6` }];
    const c = env.openai(tenant);
    const { data: stream, response } = await c.chat.completions.create({ model: 'gpt-4o', stream: true, messages }).withResponse();
    const chunks = [];
    for await (const ch of stream) chunks.push(ch);
    assert.equal(chunks.filter((ch) => ch.usage).length, 0, `no chunk with usage reached the client: ${JSON.stringify(chunks.filter((ch) => ch.usage))}`);
    assert.equal(chunks.filter((ch) => ch.choices.length === 0).length, 0, 'no choices:[] chunk reached the client');
    assert.equal(chunks.map((ch) => (ch.choices[0] && ch.choices[0].delta.content) || '').join(''), 'tok0 tok1 tok2 tok3 tok4 tok5 ');
    assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, 'stop');

    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].json.stream_options && up[0].json.stream_options.include_usage, true, 'tollgate added include_usage upstream');
    assert.deepEqual(up[0].json.messages, messages, 'messages forwarded unchanged');
    assert.equal(up[0].json.stream, true);

    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.stream, true);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 250, output: 60 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o', { input: 250, output: 60 }));
  });

  test('chat streamed without include_usage, raw bytes: stream ends with data: [DONE] and no usage member is populated', async () => {
    const tenant = h.uniq('sworaw');
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', stream: true,
      messages: [{ role: 'user', content: 'mock:tokens=20,3 mock:chunks=3' }] }, { 'X-Tenant-Id': tenant });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const events = h.parseSSE(r.text);
    assert.equal(events[events.length - 1].data, '[DONE]');
    for (const ev of events.slice(0, -1)) {
      const j = JSON.parse(ev.data);
      assert.ok(j.usage === undefined || j.usage === null, `usage leaked to the client: ${ev.data}`);
      assert.ok(j.choices.length > 0, `choices:[] chunk leaked: ${ev.data}`);
    }
  });

  test('cached + reasoning tokens: gpt-4o-mini 1000 in / 200 cached / 500 out / 300 reasoning', async () => {
    const tenant = h.uniq('reason');
    const { id } = await chat(env, tenant, 'mock:tokens=1000,500 mock:cached=200 mock:reasoning=300', { model: 'gpt-4o-mini' });
    const rec = await env.tg.record(id);
    h.assertTokens(rec, { input: 1000, cached: 200, output: 500, reasoning: 300 });
    const nano = h.expectedNano('gpt-4o-mini', { input: 1000, cached: 200, output: 500 });
    assert.equal(nano, 435000, 'reasoning tokens are billed as output, not on top');
    assert.equal(h.recordNano(rec), nano);
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, nano);
    assert.equal(m.cached_tokens, 200);
    assert.equal(m.reasoning_tokens, 300);
    assert.equal(m.output_tokens, 500);
  });

  test('unknown model gpt-unknown-1: forwarded, record priced:false with cost 0', async () => {
    const tenant = h.uniq('unknown');
    const nonce = h.uniq('n');
    const { response, id } = await chat(env, tenant, `${nonce} mock:tokens=100,10`, { model: 'gpt-unknown-1' });
    assert.equal(response.status, 200);
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].json.model, 'gpt-unknown-1');
    const rec = await env.tg.record(id);
    assert.equal(rec.priced, false);
    assert.equal(rec.cost_usd, 0);
    assert.equal(rec.outcome, 'ok');
    h.assertTokens(rec, { input: 100, output: 10 });
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost || 0, 0);
  });

  test('C40 upstream 500 passes through unchanged, record upstream_error', async () => {
    const { errorBody } = require('../mock/upstream');
    const tenant = h.uniq('e500');
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:status=500' }] },
      { 'X-Tenant-Id': tenant });
    assert.equal(r.status, 500);
    assert.equal(r.text, errorBody('openai', 500), 'body byte for byte');
    const rec = await env.tg.record(r.headers.get('x-tollgate-request-id'));
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.status, 500);
    assert.equal(rec.cost_usd, 0);
    const c = env.openai(tenant);
    await assert.rejects(c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:status=500' }] }),
      (e) => e.status === 500 && /mock upstream error 500/.test(e.message));
  });

  test('C41 upstream 429 passes through with its Retry-After, not rewritten into a budget error', async () => {
    const { errorBody } = require('../mock/upstream');
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:status=429' }] },
      { 'X-Tenant-Id': h.uniq('e429') });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '7');
    assert.equal(r.text, errorBody('openai', 429));
    const rec = await env.tg.record(r.headers.get('x-tollgate-request-id'));
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.status, 429);
  });

  test('responses API plain and streamed: records with exact tokens', async () => {
    const tenant = h.uniq('resp');
    const c = env.openai(tenant);
    const { response: r1 } = await c.responses.create({ model: 'gpt-4o', input: 'mock:tokens=120,30 mock:cached=20 mock:reasoning=5' }).withResponse();
    const rec1 = await env.tg.record(r1.headers.get('x-tollgate-request-id'));
    assert.equal(rec1.endpoint, '/v1/responses');
    h.assertTokens(rec1, { input: 120, cached: 20, output: 30, reasoning: 5 });
    const { data: s, response: r2 } = await c.responses.create({ model: 'gpt-4o', input: 'mock:tokens=80,12', stream: true }).withResponse();
    let completed = 0;
    for await (const ev of s) if (ev.type === 'response.completed') completed += 1;
    assert.equal(completed, 1);
    const rec2 = await env.tg.record(r2.headers.get('x-tollgate-request-id'));
    assert.equal(rec2.stream, true);
    h.assertTokens(rec2, { input: 80, output: 12 });
    assert.equal(h.recordNano(rec2), h.expectedNano('gpt-4o', { input: 80, output: 12 }));
  });

  test('embeddings: record input tokens, no output', async () => {
    const tenant = h.uniq('emb');
    const c = env.openai(tenant);
    const { data, response } = await c.embeddings.create({ model: 'text-embedding-3-small', input: ['mock:tokens=64,0'] }).withResponse();
    assert.deepEqual(Array.from(data.data[0].embedding), [0.25, -0.5, 0.125, 1]);
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.endpoint, '/v1/embeddings');
    h.assertTokens(rec, { input: 64, output: 0 });
  });

  h.cleanRunTest(env);
});

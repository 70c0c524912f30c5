'use strict';
// Catalogue §5 A21 and C: the upstream (or the client) fails mid-request; what the client
// sees, and that the request is still recorded and settled.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

// Every response carries X-Tollgate-Request-Id, tollgate's own error answers too, and it
// names the request's record.
function assertIdHeader(r, rec) {
  const id = r.headers.get('x-tollgate-request-id');
  assert.ok(id, 'tollgate\'s own error response lacks X-Tollgate-Request-Id (contract: every response carries it)');
  assert.equal(id, rec.id, 'X-Tollgate-Request-Id names the record');
}

describe('upstream faults', () => {
  const env = h.useStack({ overrides: { server: { first_byte_timeout: '1s', idle_timeout: '1s' } } });

  test('A21 client aborts mid-stream: record client_aborted with provider usage or an estimate flagged estimated', async () => {
    const tenant = h.uniq('abort');
    const nonce = h.uniq('n');
    const c = env.openai(tenant);
    const { data: stream, response } = await c.chat.completions.create({
      model: 'gpt-4o', stream: true,
      messages: [{ role: 'user', content: `${nonce} mock:tokens=400,50 mock:chunks=40 mock:slow=50` }],
    }).withResponse();
    let n = 0;
    for await (const ch of stream) { if (ch.choices.length) n += 1; if (n >= 3) break; } // break aborts the request
    const id = response.headers.get('x-tollgate-request-id');
    const rec = await env.tg.record(id, h.ms(8000));
    assert.equal(rec.outcome, 'client_aborted');
    assert.equal(rec.stream, true);
    if (rec.estimated) {
      assert.ok(rec.input_tokens > 0, 'estimated input from the prompt');
      assert.ok(rec.output_tokens > 0, 'estimated output from the streamed text');
      assert.ok(rec.cost_usd > 0);
    } else {
      h.assertTokens(rec, { input: 400, output: 50 }); // the upstream call was finished
    }
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.requests, 1);
    assert.equal(m.cost, h.recordNano(rec), 'Redis settled the recorded cost');
  });

  test('C43 upstream resets mid-stream: client stream errors (no clean end), record estimated', async () => {
    const tenant = h.uniq('reset');
    const c = env.openai(tenant);
    const { data: stream, response } = await c.chat.completions.create({
      model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'mock:reset mock:tokens=300,40 mock:chunks=10' }],
    }).withResponse();
    const got = [];
    await assert.rejects((async () => { for await (const ch of stream) got.push(ch); })(),
      'the SDK sees a broken stream, not a clean end');
    assert.ok(got.length >= 1, 'chunks before the reset reached the client');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.estimated, true);
    assert.ok(rec.output_tokens > 0, 'output estimated from the streamed text');
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, h.recordNano(rec));
  });

  test('C42 upstream resets before response headers: 502 in the OpenAI dialect', async () => {
    const tenant = h.uniq('reset-early');
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:reset-early' }] },
      { 'X-Tenant-Id': tenant });
    assert.equal(r.status, 502);
    assert.equal(typeof r.json.error.message, 'string');
    const [rec] = await env.tg.records({ tenant });
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.status, 502);
    assertIdHeader(r, rec);
  });

  test('C44 upstream says nothing (mock:hang-early): 504 at first_byte_timeout', async () => {
    const tenant = h.uniq('hang-early');
    const t0 = Date.now();
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:hang-early' }] },
      { 'X-Tenant-Id': tenant });
    const took = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.equal(typeof r.json.error.message, 'string');
    assert.ok(took >= 900 && took < h.ms(5000), `answered after ${took} ms (first_byte_timeout 1s)`);
    const [rec] = await env.tg.records({ tenant });
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.status, 504);
    assertIdHeader(r, rec);
  });

  test('C44 upstream silent after headers (mock:hang): stream closed at idle_timeout, record written', async () => {
    const tenant = h.uniq('hang');
    const t0 = Date.now();
    const res = await fetch(`${env.tg.base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'X-Tenant-Id': tenant },
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'mock:hang mock:tokens=50,5' }] }),
      signal: AbortSignal.timeout(h.ms(10000)),
    });
    // Either tollgate answers 504 before sending headers, or it sent 200 and then cuts the body.
    let ended = 'clean';
    try { await res.text(); } catch (e) { ended = e.name === 'TimeoutError' ? 'client-timeout' : 'error'; }
    const took = Date.now() - t0;
    assert.notEqual(ended, 'client-timeout', 'tollgate closed the stream itself');
    assert.ok(took >= 900 && took < h.ms(6000), `closed after ${took} ms (idle_timeout 1s)`);
    if (res.status === 200) assert.equal(ended, 'error', 'a cut 200 stream must not look complete');
    else assert.equal(res.status, 504);
    const [rec] = await env.tg.records({ tenant });
    assert.equal(rec.outcome, 'upstream_error');
    assertIdHeader({ headers: res.headers }, rec);
  });

  test('C35 connect refused: 502 in the OpenAI dialect within a second, record upstream_error, no charge', async () => {
    const dead = await h.freePort(); // nothing listens there
    await env.withTollgate({ 'upstream openai': { url: `https://127.0.0.1:${dead}` } }, async (tg) => {
      const tenant = h.uniq('refused');
      const t0 = Date.now();
      const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello mock:tokens=10,2' }] },
        { 'X-Tenant-Id': tenant });
      assert.equal(r.status, 502);
      assert.ok(Date.now() - t0 < h.ms(1500), 'fast failure');
      assert.ok(r.json && r.json.error && typeof r.json.error.message === 'string' && 'type' in r.json.error,
        `OpenAI error dialect: ${r.text}`);
      const [rec] = await tg.records({ tenant });
      assert.equal(rec.outcome, 'upstream_error');
      assert.equal(rec.status, 502);
      assert.equal(rec.cost_usd, 0);
      const m = await env.redis.counters(tenant);
      assert.equal(m.cost || 0, 0, 'nothing charged');
      assertIdHeader(r, rec);
      // issue 15: the log names the address that refused, not only the section
      await h.waitFor(() => tg.stderr.includes(`upstream openai (127.0.0.1:${dead}): upstream_unreachable`),
        { what: 'the upstream error log line with host:port' });
    });
  });

  h.cleanRunTest(env);
});

'use strict';
// Catalogue §5 E63 (scaled to 200): concurrent streams all complete, one record each, and
// Redis totals equal the records to the nano-dollar.

const assert = require('node:assert/strict');
const http = require('node:http');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

function stream(port, tenant, text) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: text }] });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tenant-id': tenant, authorization: 'Bearer sk-test' },
      timeout: h.ms(30000) }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, id: res.headers['x-tollgate-request-id'], data }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('load', () => {
  const env = h.useStack();

  test('E63 200 concurrent streams: all complete, 200 records, Redis requests == 200 and cost == sum of records', { timeout: h.ms(120000) }, async () => {
    const tenant = h.uniq('load');
    const N = 200;
    const results = await Promise.all(Array.from({ length: N }, (_, i) =>
      stream(env.tg.port, tenant, `load ${i} mock:tokens=${100 + i},${10 + (i % 7)} mock:chunks=5 mock:slow=20`)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200, `stream ${i}`);
      const ev = h.parseSSE(r.data);
      assert.equal(ev[ev.length - 1].data, '[DONE]', `stream ${i} complete`);
      assert.equal(ev.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices.length && JSON.parse(e.data).choices[0].delta.content).length, 5);
    }
    assert.equal(new Set(results.map((r) => r.id)).size, N, 'distinct request ids');
    const recs = await env.tg.records({ tenant }, N, h.ms(15000));
    assert.equal(recs.length, N);
    let nano = 0;
    let input = 0;
    for (const rec of recs) {
      assert.equal(rec.outcome, 'ok');
      assert.equal(rec.estimated, false);
      nano += h.recordNano(rec);
      input += rec.input_tokens;
    }
    let wantInput = 0;
    let wantNano = 0;
    for (let i = 0; i < N; i++) {
      wantInput += 100 + i;
      wantNano += h.expectedNano('gpt-4o-mini', { input: 100 + i, output: 10 + (i % 7) });
    }
    assert.equal(input, wantInput);
    assert.equal(nano, wantNano);
    const m = await env.redis.waitRequests(tenant, N, h.ms(10000));
    assert.equal(m.requests, N);
    assert.equal(m.cost, wantNano);
    assert.equal(m.input_tokens, wantInput);
  });

  h.cleanRunTest(env);
});

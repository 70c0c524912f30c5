'use strict';
// Issue 3 coverage not tested elsewhere: an OpenAI-compatible upstream under a prefix
// ([upstream groq] prefix = /groq), requests that try to reach another host (catalogue A25,
// F75), legacy completions, embeddings and the Responses API priced exactly, and client
// aborts mid-stream on the Anthropic and Gemini routes (A21).
//
// Not covered here because the mock cannot produce it (tests/mock/upstream.js has no
// directive for it): a Responses stream carrying an error event (`response.failed` /
// `error`). Anthropic cache writes (mock:cachewrite, mock:cachewrite1h) are in routes.test.js.

const assert = require('node:assert/strict');
const http = require('node:http');
const { before, describe, test } = require('node:test');
const h = require('../lib/harness');

const GROQ_KEY = 'gsk-upstream-key-from-config';

// A plain HTTP server standing for a host nobody configured; counts what reaches it.
function startEvil() {
  return new Promise((resolve) => {
    const seen = [];
    const srv = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"evil":true}');
    });
    srv.listen(0, '127.0.0.1', () => resolve({ srv, seen, port: srv.address().port }));
  });
}

describe('providers: prefixed upstream, routing safety, more endpoints, aborts', () => {
  const env = h.useStack({ tollgate: false });
  before(async () => {
    env.tg = await env.start({
      'upstream groq': { url: env.mock.url, ca_file: env.mock.certs.ca, kind: 'openai', prefix: '/groq', api_key: GROQ_KEY },
    });
  }, { timeout: h.ms(30000) });

  async function settledEquals(tenant, rec) {
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.requests, 1);
    assert.equal(m.cost, h.recordNano(rec), 'Redis settled the recorded cost');
    return m;
  }

  test('issue 3: [upstream groq] prefix = /groq, kind = openai: SDK at /groq/v1 reaches the upstream at /v1/chat/completions with its key; record openai, exact cost', async () => {
    const tenant = h.uniq('groq');
    const nonce = h.uniq('n');
    const { OpenAI } = require('openai');
    const c = new OpenAI({ baseURL: `${env.tg.base}/groq/v1`, apiKey: 'sk-client-key', maxRetries: 0, timeout: h.ms(20000),
      defaultHeaders: { 'X-Tenant-Id': tenant } });
    const { data, response } = await c.chat.completions.create({ model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `${nonce} mock:tokens=1500,300 mock:cached=500` }] }).withResponse();
    assert.equal(data.choices[0].message.content, 'tok0 tok1 tok2 ');
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].path, '/v1/chat/completions', 'prefix stripped');
    assert.equal(up[0].headers.authorization, `Bearer ${GROQ_KEY}`, 'went through [upstream groq] (its api_key), not the openai upstream');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.provider, 'openai');
    assert.equal(rec.endpoint, '/v1/chat/completions');
    assert.equal(rec.outcome, 'ok');
    h.assertTokens(rec, { input: 1500, cached: 500, output: 300 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o-mini', { input: 1500, cached: 500, output: 300 }));
    await settledEquals(tenant, rec);

    // streamed through the prefix: usage asked upstream, exact
    const s = await c.chat.completions.create({ model: 'gpt-4o-mini', stream: true,
      messages: [{ role: 'user', content: `${nonce}s mock:tokens=90,9 mock:chunks=4` }] }).withResponse();
    let text = '';
    for await (const ch of s.data) text += (ch.choices[0] && ch.choices[0].delta.content) || '';
    assert.equal(text, 'tok0 tok1 tok2 tok3 ');
    const rec2 = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    assert.equal(rec2.estimated, false);
    h.assertTokens(rec2, { input: 90, output: 9 });

    // the client's own key still goes to the built-in openai upstream
    const o = env.openai(h.uniq('groq-o'), { apiKey: 'sk-client-key' });
    await o.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${nonce}o` }] });
    assert.equal(env.mock.requestsWith(`${nonce}o`)[0].headers.authorization, 'Bearer sk-client-key');
  });

  test('A25/F75 absolute-form target, Host, X-Forwarded-Host and an unknown /evil/ prefix never reach an unconfigured host', async () => {
    const evil = await startEvil();
    try {
      const evilHost = `127.0.0.1:${evil.port}`;
      const tenant = h.uniq('evil');
      const body = (tag) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${tag} mock:tokens=5,1` }] });
      const cases = [
        ['absolute-form', `http://${evilHost}/v1/chat/completions`, [['Host', evilHost]]],
        ['absolute-form, other Host', `http://evil.example/v1/chat/completions`, [['Host', '127.0.0.1']]],
        ['Host header', '/v1/chat/completions', [['Host', evilHost]]],
        ['Host evil.example', '/v1/chat/completions', [['Host', 'evil.example']]],
        ['X-Forwarded-Host', '/v1/chat/completions', [['Host', '127.0.0.1'], ['X-Forwarded-Host', evilHost], ['X-Forwarded-Proto', 'http']]],
        ['unknown prefix', '/evil/v1/chat/completions', [['Host', evilHost]]],
        ['prefix lookalike', '/groqx/v1/chat/completions', [['Host', '127.0.0.1']]],
      ];
      for (const [name, target, hdrs] of cases) {
        const tag = h.uniq('evil');
        const b = body(tag);
        const req = h.buildRequest('POST', target, [...hdrs, ['Content-Type', 'application/json'], ['Authorization', 'Bearer sk-test'],
          ['X-Tenant-Id', tenant], ['Content-Length', Buffer.byteLength(b)], ['Connection', 'close']], b);
        const r = await h.rawRequest(env.tg.port, req, { timeout: h.ms(5000) });
        const [res] = h.parseResponses(r.buf);
        assert.ok(res, `${name}: an answer`);
        const up = env.mock.requestsWith(tag);
        if (res.status === 200) {
          assert.equal(up.length, 1, `${name}: served by the configured upstream`);
          assert.equal(up[0].path, '/v1/chat/completions', `${name}: upstream path`);
          assert.ok(!String(up[0].headers.host).includes(String(evil.port)) && !/evil/.test(up[0].headers.host),
            `${name}: upstream Host is the configured one, got ${up[0].headers.host}`);
          assert.ok(!/"evil":true/.test(res.body.toString()), `${name}: body from the evil host`);
        } else {
          assert.ok(res.status >= 400 && res.status < 500, `${name}: refused with a 4xx, got ${res.status}`);
          assert.equal(up.length, 0, `${name}: refused, so nothing upstream`);
        }
      }
      await h.sleep(h.ms(200));
      assert.deepEqual(evil.seen, [], 'the unconfigured host saw nothing');
    } finally {
      await new Promise((r) => evil.srv.close(r));
    }
  });

  test('legacy completions plain and streamed: /v1/completions priced exactly', async () => {
    const tenant = h.uniq('legacy');
    const c = env.openai(tenant);
    const { data, response } = await c.completions.create({ model: 'gpt-4o-mini', prompt: 'mock:tokens=321,45', max_tokens: 50 }).withResponse();
    assert.equal(data.choices[0].text, 'tok0 tok1 tok2 ');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.endpoint, '/v1/completions');
    assert.equal(rec.provider, 'openai');
    assert.equal(rec.priced, true);
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 321, output: 45 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o-mini', { input: 321, output: 45 }));

    // streamed, the client did not ask for usage: exact if tollgate asked upstream for it,
    // else an estimate that says so; the client never sees a usage chunk it did not ask for
    const nonce = h.uniq('n');
    const s = await c.completions.create({ model: 'gpt-4o-mini', prompt: `${nonce} mock:tokens=210,33 mock:chunks=5`, stream: true }).withResponse();
    let text = '';
    const usageChunks = [];
    for await (const ch of s.data) {
      if (ch.usage) usageChunks.push(ch);
      text += (ch.choices[0] && ch.choices[0].text) || '';
    }
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 ');
    assert.equal(usageChunks.length, 0, 'no usage chunk the client did not ask for');
    const rec2 = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    assert.equal(rec2.stream, true);
    assert.equal(rec2.endpoint, '/v1/completions');
    assert.equal(rec2.outcome, 'ok');
    assert.equal(rec2.estimated, false,
      `legacy completions stream without include_usage: tollgate should ask upstream for usage as for chat (upstream got stream_options ${JSON.stringify(env.mock.requestsWith(nonce)[0].json.stream_options)}); record ${JSON.stringify(rec2)}`);
    h.assertTokens(rec2, { input: 210, output: 33 });
    assert.equal(h.recordNano(rec2), h.expectedNano('gpt-4o-mini', { input: 210, output: 33 }));
  });

  test('legacy completions streamed with include_usage: client gets the usage chunk, record exact', async () => {
    const tenant = h.uniq('legacyu');
    const c = env.openai(tenant);
    const s = await c.completions.create({ model: 'gpt-4o-mini', prompt: 'mock:tokens=77,7 mock:chunks=3', stream: true,
      stream_options: { include_usage: true } }).withResponse();
    const usage = [];
    for await (const ch of s.data) if (ch.usage) usage.push(ch.usage);
    assert.equal(usage.length, 1);
    assert.equal(usage[0].prompt_tokens, 77);
    const rec = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 77, output: 7 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o-mini', { input: 77, output: 7 }));
    await settledEquals(tenant, rec);
  });

  test('embeddings: text-embedding-3-small 1234 tokens = 24680 nano-USD, in the record and Redis', async () => {
    const tenant = h.uniq('emb');
    const c = env.openai(tenant);
    const { data, response } = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'mock:tokens=1234,0' }).withResponse();
    assert.equal(data.data.length, 1);
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.endpoint, '/v1/embeddings');
    assert.equal(rec.priced, true);
    h.assertTokens(rec, { input: 1234, output: 0 });
    const nano = h.expectedNano('text-embedding-3-small', { input: 1234, output: 0 });
    assert.equal(nano, 24680);
    assert.equal(h.recordNano(rec), nano);
    await settledEquals(tenant, rec);
  });

  test('Responses API streamed, cached + reasoning: gpt-4o 2000 in / 500 cached / 700 out / 300 reasoning = 11375000 nano-USD', async () => {
    const tenant = h.uniq('respsx');
    const c = env.openai(tenant);
    const { data: s, response } = await c.responses.create({ model: 'gpt-4o', stream: true,
      input: 'mock:tokens=2000,700 mock:cached=500 mock:reasoning=300 mock:chunks=4' }).withResponse();
    let completed = null;
    let text = '';
    for await (const ev of s) {
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.equal(text, 'tok0 tok1 tok2 tok3 ');
    assert.equal(completed.usage.input_tokens, 2000, 'the client sees the usage unchanged');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.endpoint, '/v1/responses');
    assert.equal(rec.stream, true);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.estimated, false);
    h.assertTokens(rec, { input: 2000, cached: 500, output: 700, reasoning: 300 });
    const nano = h.expectedNano('gpt-4o', { input: 2000, cached: 500, output: 700 });
    assert.equal(nano, 11375000);
    assert.equal(h.recordNano(rec), nano);
    const m = await settledEquals(tenant, rec);
    assert.equal(m.reasoning_tokens, 300);
    assert.equal(m.cached_tokens, 500);
  });

  test('Responses stream cut by the upstream (mock:reset): client sees a broken stream, record upstream_error, estimated', async () => {
    const tenant = h.uniq('respreset');
    const c = env.openai(tenant);
    const { data: s, response } = await c.responses.create({ model: 'gpt-4o', stream: true,
      input: 'mock:tokens=400,80 mock:chunks=10 mock:reset' }).withResponse();
    let deltas = 0;
    await assert.rejects((async () => { for await (const ev of s) if (ev.type === 'response.output_text.delta') deltas += 1; })());
    assert.ok(deltas >= 1, 'deltas before the reset reached the client');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.estimated, true);
    assert.ok(rec.output_tokens > 0 && rec.cost_usd > 0, `estimated from the streamed text: ${JSON.stringify(rec)}`);
    await settledEquals(tenant, rec);
  });

  // Shared checks for an aborted stream whose input usage had arrived before the abort.
  async function checkAborted(tenant, id, model, full) {
    const rec = await env.tg.record(id, h.ms(8000));
    assert.equal(rec.outcome, 'client_aborted');
    assert.equal(rec.stream, true);
    assert.equal(rec.model, model);
    if (rec.estimated) {
      assert.equal(rec.input_tokens, full.input, `the provider's input count had arrived before the abort: ${JSON.stringify(rec)}`);
      assert.ok(rec.output_tokens > 0 && rec.output_tokens < full.output, `output estimated from the streamed text: ${JSON.stringify(rec)}`);
    } else {
      h.assertTokens(rec, full); // the upstream call was finished and its usage read
    }
    assert.equal(h.recordNano(rec), h.expectedNano(model, { input: rec.input_tokens, cached: rec.cached_tokens, output: rec.output_tokens }),
      'the recorded tokens are priced at list price');
    await settledEquals(tenant, rec);
  }

  test('A21 Anthropic stream aborted by the client mid-stream: record client_aborted with the provider\'s input usage, output estimated', async () => {
    const tenant = h.uniq('antabort');
    const c = env.anthropic(tenant);
    const { data: stream, response } = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1000, stream: true,
      messages: [{ role: 'user', content: 'mock:tokens=800,600 mock:chunks=40 mock:slow=50' }] }).withResponse();
    let deltas = 0;
    for await (const ev of stream) {
      if (ev.type === 'content_block_delta') deltas += 1;
      if (deltas >= 3) break; // break aborts the request
    }
    await checkAborted(tenant, response.headers.get('x-tollgate-request-id'), 'claude-haiku-4-5', { input: 800, output: 600 });
  });

  test('A21 Gemini stream aborted by the client mid-stream: record client_aborted with the provider\'s prompt count, output estimated', async () => {
    const tenant = h.uniq('gemabort');
    const ac = new AbortController();
    const nonce = h.uniq('n');
    const g = env.gemini(tenant);
    const it = await g.models.generateContentStream({ model: 'gemini-2.5-flash',
      contents: `${nonce} mock:tokens=900,700 mock:chunks=40 mock:slow=50`, config: { abortSignal: ac.signal } });
    let n = 0;
    try {
      for await (const ch of it) {
        void ch;
        n += 1;
        if (n >= 3) { ac.abort(); break; }
      }
    } catch (e) {
      if (e.name !== 'AbortError' && !/abort/i.test(e.message)) throw e;
    }
    assert.equal(n, 3);
    const [rec] = await env.tg.records({ tenant }, 1, h.ms(8000));
    await checkAborted(tenant, rec.id, 'gemini-2.5-flash', { input: 900, output: 700 });
  });

  h.cleanRunTest(env);
});

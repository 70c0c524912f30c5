'use strict';
// Catalogue §5 A and B: bad or hostile client input, checked with exact bytes on raw
// sockets. Every case: the right status, the connection state, and the mock saw nothing.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

// Answered requests in a raw reply.
const responsesOf = (r) => h.parseResponses(r.buf);

// A valid request smuggled after the bad one; it must never be answered nor forwarded.
const SMUGGLED = 'GET /v1/models?smuggled=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: smuggler\r\n\r\n';

function framed(headers, body) {
  const json = '{"model":"gpt-4o","messages":[{"role":"user","content":"smuggle"}]}';
  const b = body === undefined ? json : body.replace('JSON', json).replace('LEN', json.length.toString(16));
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: smuggle-test\r\n` +
    `Content-Type: application/json\r\n${headers.map((x) => `${x}\r\n`).join('')}\r\n${b}`;
}

const JSON_LEN = '{"model":"gpt-4o","messages":[{"role":"user","content":"smuggle"}]}'.length;

// Catalogue B27-B30: each → 400, connection closed, upstream sees nothing, the bytes after
// the error never answered.
const SMUGGLING = [
  ['B27 Transfer-Encoding chunked + Content-Length', framed(['Transfer-Encoding: chunked', `Content-Length: ${JSON_LEN + 9}`], 'LEN\r\nJSON\r\n0\r\n\r\n')],
  ['B28 two different Content-Length headers', framed([`Content-Length: ${JSON_LEN}`, `Content-Length: ${JSON_LEN + 5}`])],
  ['B28 Content-Length: +N', framed([`Content-Length: +${JSON_LEN}`])],
  ['B28 Content-Length: Nx', framed([`Content-Length: ${JSON_LEN}x`])],
  ['B28 Content-Length: -1', framed(['Content-Length: -1'])],
  ['B29 Transfer-Encoding: gzip, chunked', framed(['Transfer-Encoding: gzip, chunked'], 'LEN\r\nJSON\r\n0\r\n\r\n')],
  ['B29 Transfer-Encoding: chunked, chunked', framed(['Transfer-Encoding: chunked, chunked'], 'LEN\r\nJSON\r\n0\r\n\r\n')],
  ['B30 bad chunk size (zz)', framed(['Transfer-Encoding: chunked'], 'zz\r\nJSON\r\n0\r\n\r\n')],
  ['B30 chunk size overflow (FFFFFFFFFFFFFFFFF)', framed(['Transfer-Encoding: chunked'], 'FFFFFFFFFFFFFFFFF\r\nJSON\r\n0\r\n\r\n')],
  ['B30 chunk size 0x prefix', framed(['Transfer-Encoding: chunked'], '0xLEN\r\nJSON\r\n0\r\n\r\n')],
];

describe('client input and framing', () => {
  const env = h.useStack({ overrides: { server: { header_timeout: '1s', max_body: '1m', max_header_size: '32k' } } });

  test('A1 missing tenant: 400 naming X-Tenant-Id, nothing upstream, record bad_request', async () => {
    const nonce = h.uniq('n');
    const t0 = Date.now();
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: nonce }] });
    assert.equal(r.status, 400);
    assert.ok(r.json && r.json.error, `OpenAI dialect: ${r.text}`);
    assert.match(r.json.error.message, /X-Tenant-Id/);
    assert.equal(typeof r.json.error.type, 'string');
    await h.sleep(h.ms(200));
    assert.equal(env.mock.requestsWith(nonce).length, 0, 'nothing forwarded');
    const id = r.headers.get('x-tollgate-request-id');
    const [rec] = id ? await env.tg.records({ id })
      : await env.tg.records((x) => x.outcome === 'bad_request' && Date.parse(x.ts) >= t0 - 1000);
    assert.equal(rec.outcome, 'bad_request');
    assert.equal(rec.status, 400);
    assert.equal(rec.cost_usd, 0);
    assert.ok(id, 'the 400 lacks X-Tollgate-Request-Id (contract: every response carries it)');
    const c = env.openai(null);
    await assert.rejects(c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 400 && /X-Tenant-Id/.test(e.message), 'the SDK raises BadRequestError naming the header');
  });

  test('ANTHROPIC_BASE_URL ending in /v1 (a common mistake): 404 naming the setting, nothing upstream', async () => {
    const { Anthropic } = require('@anthropic-ai/sdk');
    const nonce = h.uniq('n');
    const c = new Anthropic({ baseURL: `${env.tg.base}/v1`, apiKey: 'sk-ant-test', maxRetries: 0,
      defaultHeaders: { 'X-Tenant-Id': 'base-url-mistake' } });
    await assert.rejects(
      c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: nonce }] }),
      (e) => e.status === 404 && /set ANTHROPIC_BASE_URL to tollgate's address without \/v1/.test(e.message),
      'the SDK raises NotFoundError naming ANTHROPIC_BASE_URL');
    const r = await h.post(env.tg, '/v1/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: nonce }] },
      { 'X-Tenant-Id': 'base-url-mistake' });
    assert.equal(r.status, 404);
    assert.match(r.json.error.message, /OPENAI_BASE_URL ends in \/v1 once/);
    await h.sleep(h.ms(100));
    assert.equal(env.mock.requestsWith(nonce).length, 0, 'nothing forwarded');
  });

  test('A3 body over max_body (Content-Length): 413 before the body is sent, nothing upstream', async () => {
    const before = env.mock.count();
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: big\r\n' +
      `Content-Type: application/json\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n{"model":"gpt-4o","messages":[`;
    const r = await h.rawRequest(env.tg.port, head, { timeout: h.ms(3000) });
    assert.ok(!r.timedOut || r.buf.length > 0, 'answered without waiting for the body');
    const [res] = responsesOf(r);
    assert.ok(res, `a response: ${r.text.slice(0, 200)}`);
    assert.equal(res.status, 413);
    const body = JSON.parse(res.body.toString());
    assert.equal(typeof body.error.message, 'string');
    assert.equal((await h.newRequests(env.mock, before)).length, 0, 'nothing upstream');
  });

  test('A14 one 64 KB header: 431, connection closed, nothing upstream', async () => {
    const before = env.mock.count();
    const req = `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: hdr\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
    const r = await h.rawRequest(env.tg.port, req, { timeout: h.ms(3000) });
    const [res] = responsesOf(r);
    assert.ok(res, `a response (error ${r.error}): ${r.text.slice(0, 200)}`);
    assert.equal(res.status, 431);
    assert.ok(r.closed, 'connection closed');
    assert.equal((await h.newRequests(env.mock, before)).length, 0);
  });

  test('A17 slowloris (1 byte / 200 ms): closed at header_timeout though bytes keep coming', async () => {
    const before = env.mock.count();
    const req = 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: slow\r\nX-Pad: ' + 'p'.repeat(200);
    const r = await h.rawRequest(env.tg.port, req, { trickle: true, gapMs: 200, timeout: h.ms(8000) });
    assert.ok(r.closed, 'tollgate closed the connection');
    assert.ok(r.closedAfterMs >= 800 && r.closedAfterMs < h.ms(3500), `closed after ${r.closedAfterMs} ms (header_timeout 1s)`);
    const res = responsesOf(r);
    assert.ok(res.length === 0 || res[0].status === 408 || res[0].status === 400, `answer if any is 408: ${r.text.slice(0, 100)}`);
    assert.equal((await h.newRequests(env.mock, before)).length, 0);
  });

  test('A22 keep-alive: 100 sequential requests on one connection all answered', async () => {
    const tenant = h.uniq('ka');
    const conn = await new h.Conn(env.tg.port).open();
    try {
      for (let i = 0; i < 100; i++) {
        conn.send(h.chatRequest({ tenant, text: `ka ${i} mock:tokens=${10 + i},1` }));
        const [res] = await conn.responses(1);
        assert.equal(res.status, 200, `request ${i}: ${res.body.toString().slice(0, 200)}`);
        assert.equal(JSON.parse(res.body.toString()).usage.prompt_tokens, 10 + i, `response ${i} is the answer to request ${i}`);
        assert.ok(!/close/i.test(res.headers.connection || ''), `request ${i}: connection kept`);
      }
      assert.equal(conn.closed, false);
    } finally {
      conn.close();
    }
    const recs = await env.tg.records({ tenant }, 100);
    assert.equal(recs.length, 100);
    const m = await env.redis.waitRequests(tenant, 100);
    assert.equal(m.requests, 100);
  });

  test('A23 two pipelined requests in one write: two responses in order', async () => {
    const tenant = h.uniq('pipe');
    const conn = await new h.Conn(env.tg.port).open();
    try {
      // The first is slower upstream, so answering out of order would show.
      conn.send(Buffer.concat([
        h.chatRequest({ tenant, text: 'first mock:tokens=11,1 mock:delay=300' }),
        h.chatRequest({ tenant, text: 'second mock:tokens=22,2' }),
      ]));
      const [a, b] = await conn.responses(2, h.ms(5000));
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.equal(JSON.parse(a.body.toString()).usage.prompt_tokens, 11);
      assert.equal(JSON.parse(b.body.toString()).usage.prompt_tokens, 22);
      assert.notEqual(a.headers['x-tollgate-request-id'], b.headers['x-tollgate-request-id']);
    } finally {
      conn.close();
    }
  });

  for (const [name, bytes] of SMUGGLING) {
    test(`${name}: 400, connection closed, upstream sees nothing, trailing request never answered`, async () => {
      const before = env.mock.count();
      const r = await h.rawRequest(env.tg.port, bytes + SMUGGLED, { timeout: h.ms(3000) });
      let res = [];
      try { res = responsesOf(r); } catch (e) { assert.fail(`unparseable reply: ${e.message}`); }
      assert.ok(res.length >= 1, `an answer (error ${r.error}): ${JSON.stringify(r.text.slice(0, 200))}`);
      assert.equal(res[0].status, 400, `status: ${r.text.slice(0, 200)}`);
      assert.equal(res.length, 1, 'the bytes after the error were not answered');
      assert.ok(r.closed, 'connection closed after the error');
      const seen = await h.newRequests(env.mock, before);
      assert.equal(seen.length, 0, `upstream received: ${JSON.stringify(seen).slice(0, 300)}`);
    });
  }

  h.cleanRunTest(env);
});

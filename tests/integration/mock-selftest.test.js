'use strict';
// The mock upstream speaks each provider's wire format well enough for the official SDKs,
// and obeys its steering words. Runs the SDKs straight against the mock (no tollgate), so
// a failure here is the mock's, not the daemon's.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

describe('mock upstream self-test (SDKs straight to the mock)', () => {
  const env = h.useStack({ tollgate: false });
  const direct = () => ({ base: `http://127.0.0.1:${env.mock.httpPort}` });

  test('openai chat JSON reports the steered usage', async () => {
    const c = h.openaiClient(direct(), null);
    const r = await c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x mock:tokens=1000,500 mock:cached=200 mock:reasoning=30' }] });
    assert.equal(r.usage.prompt_tokens, 1000);
    assert.equal(r.usage.completion_tokens, 500);
    assert.equal(r.usage.prompt_tokens_details.cached_tokens, 200);
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 30);
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
  });

  test('openai chat stream: usage-only final chunk only with include_usage', async () => {
    const c = h.openaiClient(direct(), null);
    const run = async (include) => {
      const s = await c.chat.completions.create({ model: 'gpt-4o', stream: true,
        ...(include ? { stream_options: { include_usage: true } } : {}),
        messages: [{ role: 'user', content: 'x mock:tokens=7,4 mock:chunks=4' }] });
      const chunks = [];
      for await (const ch of s) chunks.push(ch);
      return chunks;
    };
    const withU = await run(true);
    const last = withU[withU.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, 7);
    assert.equal(withU.filter((c) => c.usage).length, 1);
    const without = await run(false);
    assert.equal(without.filter((c) => c.usage).length, 0);
    assert.equal(without.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join(''), 'tok0 tok1 tok2 tok3 ');
  });

  test('openai responses stream ends with response.completed usage', async () => {
    const c = h.openaiClient(direct(), null);
    const s = await c.responses.create({ model: 'gpt-4o', input: 'x mock:tokens=9,3 mock:cached=2', stream: true });
    let final = null;
    for await (const ev of s) if (ev.type === 'response.completed') final = ev.response;
    assert.equal(final.usage.input_tokens, 9);
    assert.equal(final.usage.input_tokens_details.cached_tokens, 2);
    assert.equal(final.usage.output_tokens, 3);
  });

  test('openai embeddings (SDK default base64) decode', async () => {
    const c = h.openaiClient(direct(), null);
    const r = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'x mock:tokens=6,0' });
    assert.deepEqual(Array.from(r.data[0].embedding), [0.25, -0.5, 0.125, 1]);
    assert.equal(r.usage.prompt_tokens, 6);
  });

  test('anthropic messages JSON and stream carry the mapped usage', async () => {
    const c = h.anthropicClient(direct(), null);
    const msg = { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'x mock:tokens=100,20 mock:cached=30' }] };
    const r = await c.messages.create(msg);
    assert.deepEqual([r.usage.input_tokens, r.usage.cache_read_input_tokens, r.usage.output_tokens], [70, 30, 20]);
    const s = c.messages.stream(msg);
    const fin = await s.finalMessage();
    assert.deepEqual([fin.usage.input_tokens, fin.usage.cache_read_input_tokens, fin.usage.output_tokens], [70, 30, 20]);
    assert.equal(fin.content[0].text, 'tok0 tok1 tok2 ');
  });

  test('gemini generateContent and SSE stream carry the mapped usage', async () => {
    const c = h.geminiClient(direct(), null);
    const req = { model: 'gemini-2.5-flash', contents: 'x mock:tokens=50,9 mock:reasoning=4 mock:cached=5' };
    const r = await c.models.generateContent(req);
    assert.equal(r.usageMetadata.promptTokenCount, 50);
    assert.equal(r.usageMetadata.candidatesTokenCount, 5);
    assert.equal(r.usageMetadata.thoughtsTokenCount, 4);
    assert.equal(r.usageMetadata.cachedContentTokenCount, 5);
    let last = null;
    let text = '';
    for await (const ch of await c.models.generateContentStream(req)) { last = ch; text += ch.text || ''; }
    assert.equal(text, 'tok0 tok1 tok2 ');
    assert.equal(last.usageMetadata.candidatesTokenCount, 5);
    const reqs = env.mock.requests().filter((x) => x.path === '/v1beta/models/gemini-2.5-flash:streamGenerateContent');
    assert.ok(reqs.length >= 1 && reqs[reqs.length - 1].query === '?alt=sse');
  });

  test('mock:status answers in each dialect; mock:reset cuts; mock:hang-early says nothing', async () => {
    const base = direct().base;
    const r1 = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'mock:status=503' }] }) });
    assert.equal(r1.status, 503);
    assert.equal((await r1.json()).error.type, 'server_error');
    const r2 = await fetch(`${base}/v1/messages`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'mock:status=429' }] }) });
    assert.equal(r2.status, 429);
    assert.equal(r2.headers.get('retry-after'), '7');
    assert.equal((await r2.json()).type, 'error');
    const r3 = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'mock:reset mock:chunks=10' }] }) });
    await assert.rejects(r3.text());
    const ctl = AbortSignal.timeout(300);
    await assert.rejects(fetch(`${base}/v1/chat/completions`, { method: 'POST', signal: ctl, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'mock:hang-early' }] }) }));
  });

  test('mock logs what it received (headers, body) one JSON line per request', async () => {
    const nonce = h.uniq('nonce');
    await fetch(`http://127.0.0.1:${env.mock.httpPort}/v1/chat/completions`, { method: 'POST', headers: { 'x-probe': nonce },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: nonce }] }) });
    const [r] = env.mock.requestsWith(nonce);
    assert.equal(r.method, 'POST');
    assert.equal(r.headers['x-probe'], nonce);
    assert.equal(r.json.messages[0].content, nonce);
  });
});

'use strict';
// What the response cache never gives twice (README "Response cache", issue 13), through the
// official SDKs against the mock: a provider's refusal that arrives as a whole 200 (OpenAI
// chat and Responses refusals, Anthropic stop_reason "refusal", Gemini finishReason SAFETY and
// a blocked prompt) is never stored, streamed or not, whatever the operator allows; answers
// carrying a provider-run tool's results (web search citations, a web_search_call item,
// server_tool_use blocks, grounding metadata) are not stored; requests that ask for
// provider-run tools, images or audio (at any depth: Gemini's generationConfig) or n > 1 at a
// temperature bypass the cache; [cache] allow lets the operator cache them, live after SIGHUP,
// and never a refusal. A hit is a request: it counts toward a request allowance (refused past
// one that blocks, overage past one that bills it).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const prom = require('../lib/prom');

const TOKEN = 'test-admin-token';
const CACHE = { enabled: 'yes', ttl: '1h', max_entry: '64k', wait: '2s' };
const OVERRIDES = {
  cache: CACHE,
  'plan cached': { price: '10', cache: 'on' },
  'tenant r-a': { plan: 'cached' },
  'tenant r-b': { plan: 'cached' },
  'plan counted': { price: '10', cache: 'on', included_requests: 3, on_allowance: 'block' },
  'plan metered': { price: '10', cache: 'on', included_requests: 1, on_allowance: 'overage', overage: '0.01' },
  server: { workers: 1 },
};

const calls = (mock, nonce) => mock.requestsWith(nonce).length;
const chat = (content, extra = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });
const claude = (content, extra = {}) => ({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content }], ...extra });

async function refusedCount(tg) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return prom.parse(await res.text()).value('tollgate_cache_refused_total') || 0;
}

// One call of each kind, twice; resolves the X-Tollgate-Cache answers.
async function chatTwice(tg, tenant, body, headers = {}) {
  const c = h.openaiClient(tg, tenant, { headers });
  const out = [];
  for (let i = 0; i < 2; i++) {
    const { data, response } = await c.chat.completions.create(body).withResponse();
    if (body.stream) for await (const ch of data) void ch; // the SDK reads the whole stream
    out.push(response.headers.get('x-tollgate-cache'));
  }
  return out;
}

async function responsesTwice(tg, tenant, body) {
  const c = h.openaiClient(tg, tenant);
  const out = [];
  for (let i = 0; i < 2; i++) {
    const { data, response } = await c.responses.create(body).withResponse();
    if (body.stream) for await (const ev of data) void ev;
    out.push(response.headers.get('x-tollgate-cache'));
  }
  return out;
}

async function claudeTwice(tg, tenant, body) {
  const an = h.anthropicClient(tg, tenant);
  const out = [];
  for (let i = 0; i < 2; i++) {
    if (body.stream) {
      const { data, response } = await an.messages.create(body).withResponse();
      for await (const ev of data) void ev;
      out.push(response.headers.get('x-tollgate-cache'));
    } else {
      const { response } = await an.messages.create(body).withResponse();
      out.push(response.headers.get('x-tollgate-cache'));
    }
  }
  return out;
}

// Gemini through its SDK (which does not show the answer's headers) twice; the verdicts are
// read from the mock's log instead: two upstream calls mean nothing was served from the cache.
async function geminiTwice(tg, tenant, text, config = {}, stream = false) {
  const g = h.geminiClient(tg, tenant);
  for (let i = 0; i < 2; i++) {
    const req = { model: 'gemini-2.5-flash', contents: text, config };
    if (stream) for await (const ch of await g.models.generateContentStream(req)) void ch;
    else await g.models.generateContent(req);
  }
}

// A raw Gemini call, for its X-Tollgate-Cache answer.
const geminiVerdict = async (tg, tenant, body, verb = 'generateContent') =>
  (await h.post(tg, `/v1beta/models/gemini-2.5-flash:${verb}`, body, { 'X-Tenant-Id': tenant, 'x-goog-api-key': 'g-test-key' }))
    .headers.get('x-tollgate-cache');

describe('response cache: what is never given twice', () => {
  const env = h.useStack({ overrides: OVERRIDES });

  test('a refusal that comes as a 200 is never stored: OpenAI chat and Responses, Anthropic, Gemini, streamed or not', { timeout: h.ms(60000) }, async () => {
    const tg = env.tg;
    const n = h.uniq('refuse');
    const refused0 = await refusedCount(tg);
    // a control: the same shapes without the refusal are stored
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`ok ${n} mock:tokens=9,2`)), ['miss', 'hit']);

    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`chat ${n} mock:refusal mock:tokens=9,2`)), ['miss', 'miss']);
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`chats ${n} mock:refusal`, { stream: true, stream_options: { include_usage: true } })),
      ['miss', 'miss'], 'a streamed chat refusal (delta.refusal)');
    const resp = { model: 'gpt-4o-mini', input: `resp ${n} mock:refusal mock:tokens=9,2` };
    assert.deepEqual(await responsesTwice(tg, 'r-a', resp), ['miss', 'miss'], 'a Responses refusal part');
    assert.deepEqual(await responsesTwice(tg, 'r-a', { ...resp, input: `resps ${n} mock:refusal`, stream: true }), ['miss', 'miss'],
      'Responses refusal events');
    assert.deepEqual(await claudeTwice(tg, 'r-a', claude(`an ${n} mock:refusal mock:tokens=50,5`)), ['miss', 'miss'], 'stop_reason refusal');
    assert.deepEqual(await claudeTwice(tg, 'r-a', claude(`ans ${n} mock:refusal mock:tokens=50,5`, { stream: true })), ['miss', 'miss'],
      'a streamed stop_reason refusal (message_delta)');
    await geminiTwice(tg, 'r-a', `gm ${n} mock:refusal mock:tokens=20,4`);
    await geminiTwice(tg, 'r-a', `gms ${n} mock:refusal mock:tokens=20,4`, {}, true);
    await geminiTwice(tg, 'r-a', `gmb ${n} mock:blocked mock:tokens=20,4`);
    for (const tag of ['chat', 'chats', 'resp', 'resps', 'an', 'ans', 'gm', 'gms', 'gmb']) {
      assert.equal(calls(env.mock, `${tag} ${n}`), 2, `${tag}: both calls went upstream`);
    }
    assert.equal(calls(env.mock, `ok ${n}`), 1);
    assert.ok(await refusedCount(tg) - refused0 >= 9, 'tollgate_cache_refused_total counts them');
  });

  test('an answer with a provider-run tool\'s results is not stored (citations, web_search_call, server_tool_use, grounding)', { timeout: h.ms(60000) }, async () => {
    const tg = env.tg;
    const n = h.uniq('srv');
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`chat ${n} mock:servertool`)), ['miss', 'miss'], 'url_citation annotations');
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`chats ${n} mock:servertool`, { stream: true })), ['miss', 'miss']);
    const resp = { model: 'gpt-4o-mini', input: `resp ${n} mock:servertool` };
    assert.deepEqual(await responsesTwice(tg, 'r-a', resp), ['miss', 'miss'], 'a web_search_call output item');
    assert.deepEqual(await responsesTwice(tg, 'r-a', { ...resp, input: `resps ${n} mock:servertool`, stream: true }), ['miss', 'miss']);
    assert.deepEqual(await claudeTwice(tg, 'r-a', claude(`an ${n} mock:servertool`)), ['miss', 'miss'], 'server_tool_use blocks');
    assert.deepEqual(await claudeTwice(tg, 'r-a', claude(`ans ${n} mock:servertool`, { stream: true })), ['miss', 'miss']);
    await geminiTwice(tg, 'r-a', `gm ${n} mock:servertool`);
    await geminiTwice(tg, 'r-a', `gms ${n} mock:servertool`, {}, true);
    for (const tag of ['chat', 'chats', 'resp', 'resps', 'an', 'ans', 'gm', 'gms']) {
      assert.equal(calls(env.mock, `${tag} ${n}`), 2, `${tag}: both calls went upstream`);
    }
  });

  test('requests for provider-run tools, images, audio (at any depth) or n > 1 at a temperature bypass the cache', { timeout: h.ms(60000) }, async () => {
    const tg = env.tg;
    const n = h.uniq('req');
    const bypass = ['bypass', 'bypass'];
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`ws ${n}`, { web_search_options: {} })), bypass, 'chat web_search_options');
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`au ${n}`, { modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } })),
      bypass, 'chat audio output');
    assert.deepEqual(await chatTwice(tg, 'r-a', chat(`smp ${n}`, { n: 2, temperature: 0.8 })), bypass, 'n = 2 at 0.8');
    assert.deepEqual(await responsesTwice(tg, 'r-a', { model: 'gpt-4o-mini', input: `rt ${n}`, tools: [{ type: 'web_search' }] }), bypass,
      'the Responses web_search tool');
    assert.deepEqual(await responsesTwice(tg, 'r-a', { model: 'gpt-4o-mini', input: `fn ${n}`,
      tools: [{ type: 'function', name: 'web_search', parameters: { type: 'object', properties: {} } }] }),
    ['miss', 'hit'], 'a function tool (the client runs it) is cached, whatever its name');
    assert.deepEqual(await claudeTwice(tg, 'r-a', claude(`at ${n}`, { tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }] })),
      bypass, 'Anthropic web search');
    const contents = (t) => [{ role: 'user', parts: [{ text: t }] }];
    for (const [tag, extra] of [
      ['gs', { tools: [{ googleSearch: {} }] }],
      ['gc', { tools: [{ code_execution: {} }] }],
      ['ga', { generationConfig: { responseModalities: ['AUDIO'], speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: 'Kore' } } } } }],
      ['gi', { generationConfig: { responseModalities: ['TEXT', 'IMAGE'] } }],
      ['gn', { generationConfig: { candidateCount: 2, temperature: 1 } }],
    ]) {
      const body = { contents: contents(`${tag} ${n}`), ...extra };
      assert.equal(await geminiVerdict(tg, 'r-a', body), 'bypass', tag);
      assert.equal(await geminiVerdict(tg, 'r-a', body), 'bypass', tag);
    }
    const img = await h.openaiClient(tg, 'r-a').images.generate({ model: 'gpt-image-1', prompt: `img ${n}` }).withResponse();
    assert.equal(img.response.headers.get('x-tollgate-cache'), 'bypass', 'an image');
    for (const tag of ['ws', 'au', 'smp', 'rt', 'at', 'gs', 'gc', 'ga', 'gi', 'gn']) assert.equal(calls(env.mock, `${tag} ${n}`), 2, tag);
    assert.equal(calls(env.mock, `fn ${n}`), 1);
  });

  test('[cache] allow lets the operator cache provider tools, sampling and images, live after SIGHUP; never a refusal', { timeout: h.ms(90000) }, async () => {
    await env.withTollgate({ ...OVERRIDES, cache: { ...CACHE, allow: 'none' } }, async (tg) => {
      let cfg = tg.cfg;
      const reload = async (changes) => {
        const r = h.renderConfig(cfg, changes);
        cfg = r.cfg;
        fs.writeFileSync(tg.configFile, r.text);
        const n0 = (tg.stderr.match(/new requests use the reloaded config/g) || []).length;
        tg.proc.child.kill('SIGHUP');
        await h.waitFor(() => (tg.stderr.match(/new requests use the reloaded config/g) || []).length > n0, { what: 'the reload' });
      };
      const n = h.uniq('allow');
      const ws = chat(`ws ${n}`, { web_search_options: {} });
      const sampled = chat(`s ${n}`, { n: 2, temperature: 0.7 });
      const srv = claude(`an ${n} mock:servertool`);
      assert.deepEqual(await chatTwice(tg, 'r-b', ws), ['bypass', 'bypass']);
      assert.deepEqual(await claudeTwice(tg, 'r-b', srv), ['miss', 'miss']);

      await reload({ cache: { allow: 'provider_tools, sampled, images' } });
      assert.deepEqual(await chatTwice(tg, 'r-b', ws), ['miss', 'hit'], 'allow = provider_tools: a web search request is cached');
      assert.deepEqual(await chatTwice(tg, 'r-b', sampled), ['miss', 'hit'], 'allow = sampled');
      assert.deepEqual(await claudeTwice(tg, 'r-b', srv), ['miss', 'hit'], 'an answer with server tool blocks is stored');
      const img = () => h.openaiClient(tg, 'r-b').images.generate({ model: 'gpt-image-1', prompt: `img ${n}` }).withResponse();
      assert.equal((await img()).response.headers.get('x-tollgate-cache'), 'miss');
      assert.equal((await img()).response.headers.get('x-tollgate-cache'), 'hit', 'allow = images');
      // audio is not listed: still a bypass
      assert.deepEqual(await chatTwice(tg, 'r-b', chat(`au ${n}`, { audio: { voice: 'alloy', format: 'wav' }, modalities: ['audio'] })),
        ['bypass', 'bypass']);
      // a refusal is never stored, whatever is allowed
      await reload({ cache: { allow: 'provider_tools, sampled, images, audio' } });
      assert.deepEqual(await chatTwice(tg, 'r-b', chat(`rf ${n} mock:refusal`)), ['miss', 'miss']);
      assert.deepEqual(await claudeTwice(tg, 'r-b', claude(`rfa ${n} mock:refusal`)), ['miss', 'miss']);

      await reload({ cache: { allow: 'none' } });
      assert.deepEqual(await chatTwice(tg, 'r-b', chat(`ws2 ${n}`, { web_search_options: {} })), ['bypass', 'bypass'], 'none again after SIGHUP');
    });
  });

  test('tollgate -t refuses an [cache] allow it does not know, with file:line', { timeout: h.ms(30000) }, async () => {
    const bad = h.renderConfig(env.tg.cfg, { cache: { allow: 'provider_tools, refusals' } });
    const file = `${env.tg.configFile}.bad`;
    fs.writeFileSync(file, bad.text);
    const { execFile } = require('node:child_process');
    const out = await new Promise((resolve) => execFile(h.BINARY, ['-t', '-c', file], (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
    fs.unlinkSync(file);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /:\d+.*allow.*expected none, or sampled, provider_tools, images, audio/);
  });

  test('a hit counts toward a request allowance: blocked past it, or billed as overage', { timeout: h.ms(30000) }, async () => {
    const tg = env.tg;
    const n = h.uniq('allow');
    const period = new Date().toISOString().slice(0, 7);
    const month = async (tenant) => {
      const out = (await new Promise((resolve, reject) => require('node:child_process').execFile(require('../lib/redis').findBinary('redis-cli'),
        ['-p', new URL(env.redis.url).port, '--raw', 'HGETALL', `tollgate:{${tenant}}:m:${period}`], (e, o) => (e ? reject(e) : resolve(o))))).split('\n');
      const o = {};
      for (let i = 0; i + 1 < out.length; i += 2) o[out[i]] = Number(out[i + 1]);
      return o;
    };
    const blocked = h.uniq('r-count');
    const c = h.openaiClient(tg, blocked, { headers: { 'X-Tenant-Plan': 'counted' } });
    const body = chat(`count ${n} mock:tokens=9,2`);
    const verdicts = [];
    for (let i = 0; i < 3; i++) verdicts.push((await c.chat.completions.create(body).withResponse()).response.headers.get('x-tollgate-cache'));
    assert.deepEqual(verdicts, ['miss', 'hit', 'hit']);
    await h.waitFor(async () => (await month(blocked)).allowance_used === 3, { what: 'three requests of the allowance used' });
    await assert.rejects(c.chat.completions.create(body), (e) => e.status === 429 && e.code === 'allowance_exhausted',
      'the fourth, a hit, is past the 3 included requests');
    assert.equal(calls(env.mock, `count ${n}`), 1);

    const billed = h.uniq('r-over');
    const o = h.openaiClient(tg, billed, { headers: { 'X-Tenant-Plan': 'metered' } });
    const q = chat(`over ${n} mock:tokens=9,2`);
    for (let i = 0; i < 3; i++) await o.chat.completions.create(q);
    let m = {};
    await h.waitFor(async () => (m = await month(billed)).allowance_used === 3, { what: 'three requests counted' });
    assert.equal(m.overage_units, 2, `two hits past the one included request: ${JSON.stringify(m)}`);
    assert.equal(m.overage_usd, 2 * 0.01 * 1e9, '$0.01 per request past the allowance');
    await h.waitFor(async () => (await month(billed)).cache_hits === 2, { what: 'the two hits (flushed each second)' });
  });

  h.cleanRunTest(env);
});

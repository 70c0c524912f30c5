'use strict';
// The response cache (README "Response cache") against a hostile or careless client and
// operator: an answer never crosses tenants (names that could collide in a key, case
// variants), upstreams or Gemini models; a meaningful change (model, temperature, message
// order, tools, nested "user"/"metadata"/"stream" members) misses while order, whitespace,
// number spelling and stream:false hit; cut streams, 500/429, estimated usage, encoded and
// over-max_entry answers are never stored and leave no lock behind; a client that hangs up
// mid-stream never leaves half an answer; a plan with the cache off ignores on and refresh;
// refresh replaces a streamed entry; a stale lock delays at most [cache] wait; hand-written
// corrupt entries of every shape are a miss answered from upstream; a hit's record costs 0,
// saves what the miss cost and counts toward rpm and the month's requests; Redis stopped
// mid-run gives 200 misses with their records; no prompt text in Redis keys, records, logs
// or metrics, and X-Tollgate-Cache is not forwarded upstream.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { before, describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCtl } = require('../lib/redis-ctl');
const { findBinary } = require('../lib/redis');
const prom = require('../lib/prom');

const TOKEN = 'test-admin-token';
const CACHE = { enabled: 'yes', ttl: '1h', max_entry: '8k', wait: '1s' };
const PLANS = {
  cache: CACHE,
  'plan cached': { price: '10', cache: 'on' },
  'plan plain': { price: '10' },
  'plan paced': { price: '1', cache: 'on', rpm: '3' },
};
const PLAN = { 'X-Tenant-Plan': 'cached' };

const chat = (content, extra = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });

async function ask(tg, tenant, body, headers = {}, path = '/v1') {
  const { OpenAI } = require('openai');
  const c = new OpenAI({ baseURL: `${tg.base}${path}`, apiKey: 'sk-test-key', maxRetries: 0, timeout: h.ms(20000),
    defaultHeaders: { 'X-Tenant-Id': tenant, ...headers } });
  const { data, response } = await c.chat.completions.create(body).withResponse();
  return { data, id: response.headers.get('x-tollgate-request-id'), cache: response.headers.get('x-tollgate-cache') };
}

async function askStream(tg, tenant, body, headers = {}) {
  const c = h.openaiClient(tg, tenant, { headers });
  const { data: stream, response } = await c.chat.completions.create({ ...body, stream: true }).withResponse();
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  const text = chunks.map((ch) => (ch.choices[0] && ch.choices[0].delta.content) || '').join('');
  return { chunks, text, cache: response.headers.get('x-tollgate-cache'), id: response.headers.get('x-tollgate-request-id') };
}

// A raw POST: the cache header is read even on an error answer.
const raw = (tg, tenant, body, headers = {}, path = '/v1/chat/completions') =>
  h.post(tg, path, body, { 'X-Tenant-Id': tenant, ...headers });

const calls = (mock, nonce) => mock.requestsWith(nonce).length;

function redisCli(url, ...args) {
  const port = new URL(url).port;
  return new Promise((resolve, reject) => {
    execFile(findBinary('redis-cli'), ['-p', port, '--raw', ...args], { maxBuffer: 64 << 20 },
      (err, out) => (err ? reject(err) : resolve(out)));
  });
}

const scan = async (url, pattern) =>
  (await redisCli(url, '--scan', '--pattern', pattern)).split('\n').filter(Boolean);

// The entries (not locks) of one tenant.
const entries = async (url, tenant) =>
  (await scan(url, `tollgate:{${tenant.replace(/[*?[\]\\]/g, '\\$&')}}:cache:*`)).filter((k) => !k.endsWith(':lock'));

async function metrics(tg) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return prom.parse(await res.text());
}

describe('response cache, adversarial', () => {
  const env = h.useStack({ tollgate: false });
  before(async () => {
    await env.restart({
      ...PLANS,
      'upstream groq': { url: env.mock.url, ca_file: env.mock.certs.ca, kind: 'openai', prefix: '/groq' },
    });
  }, { timeout: h.ms(60000) });

  test('an answer never crosses tenants: names that could collide in a key, and case variants', { timeout: h.ms(60000) }, async () => {
    const nonce = h.uniq('tn');
    const p = `x${Date.now().toString(36)}`;
    const tenants = [`${p}a:b`, `${p}a`, `${p}a:b:cache`, `${p}a:b:c`, `${p}A:B`, `${p}a:B`, `${p}a.b`, `${p}a/b`,
      `cache:${p}`, `${p}a=b`, `${p}a@b`, `${p}a+b`];
    const body = chat(`who ${nonce} mock:tokens=20,2`);
    const first = {};
    for (const t of tenants) {
      const r = await ask(env.tg, t, body, PLAN);
      assert.equal(r.cache, 'miss', `${t}: another tenant's answer must not be served`);
      first[t] = r.data.id;
    }
    assert.equal(calls(env.mock, nonce), tenants.length);
    for (const t of tenants) {
      const r = await ask(env.tg, t, body, PLAN);
      assert.equal(r.cache, 'hit', t);
      assert.equal(r.data.id, first[t], `${t} gets its own answer`);
    }
    assert.equal(calls(env.mock, nonce), tenants.length);
    for (const t of tenants) {
      const keys = await entries(env.redis.url, t);
      assert.equal(keys.length, 1, `${t}: one entry under its own hash tag: ${keys}`);
      assert.ok(keys[0].startsWith(`tollgate:{${t}}:cache:`), keys[0]);
    }
    // a tenant header that would break the hash tag is refused before the cache
    const bad = await raw(env.tg, `${p}a}b`, body, PLAN);
    assert.equal(bad.status, 400);
  });

  test('two upstreams of one kind, and two Gemini models, never share an answer', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('up');
    const body = chat(`where ${nonce} mock:tokens=20,2`);
    const a = await ask(env.tg, 'cx-up', body, PLAN);
    const g = await ask(env.tg, 'cx-up', body, PLAN, '/groq/v1');
    assert.equal(a.cache, 'miss');
    assert.equal(g.cache, 'miss', 'the same body to another upstream is another question');
    assert.equal((await ask(env.tg, 'cx-up', body, PLAN)).data.id, a.data.id);
    assert.equal((await ask(env.tg, 'cx-up', body, PLAN, '/groq/v1')).data.id, g.data.id);
    assert.equal(calls(env.mock, nonce), 2);

    const gbody = { contents: [{ role: 'user', parts: [{ text: `gem ${nonce} mock:tokens=20,2` }] }] };
    const flash = await raw(env.tg, 'cx-up', gbody, PLAN, '/v1beta/models/gemini-2.5-flash:generateContent');
    const pro = await raw(env.tg, 'cx-up', gbody, PLAN, '/v1beta/models/gemini-2.5-pro:generateContent');
    assert.equal(flash.status, 200, flash.text);
    assert.equal(pro.status, 200, pro.text);
    assert.equal(flash.headers.get('x-tollgate-cache'), 'miss');
    assert.equal(pro.headers.get('x-tollgate-cache'), 'miss', 'the model in the path is part of the question');
    const flash2 = await raw(env.tg, 'cx-up', gbody, PLAN, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(flash2.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(flash2.text, flash.text);
    assert.equal(calls(env.mock, `gem ${nonce}`), 2);
  });

  test('a meaningful change misses; order, whitespace, number spelling, user, metadata and stream:false hit', { timeout: h.ms(60000) }, async () => {
    const nonce = h.uniq('mean');
    const tenant = h.uniq('cx-mean');
    const tool = (name, prop) => ({ type: 'function', function: { name, parameters: { type: 'object', properties: { [prop]: { type: 'string' } } } } });
    const base = {
      model: 'gpt-4o-mini', temperature: 0.25, max_tokens: 50,
      messages: [{ role: 'system', content: `sys ${nonce} mock:tokens=30,3` }, { role: 'user', content: 'one' }, { role: 'user', content: `two ${nonce} mock:tokens=30,3` }],
      tools: [tool('lookup', 'q')],
    };
    assert.equal((await raw(env.tg, tenant, base, PLAN)).headers.get('x-tollgate-cache'), 'miss');
    const variants = [
      ['model', { ...base, model: 'gpt-4o' }],
      ['temperature', { ...base, temperature: 0.5 }],
      ['max_tokens', { ...base, max_tokens: 51 }],
      ['messages order', { ...base, messages: [base.messages[0], base.messages[2], base.messages[1]] }],
      ['a message role', { ...base, messages: [base.messages[0], { role: 'assistant', content: 'one' }, base.messages[2]] }],
      ['trailing space in content', { ...base, messages: [base.messages[0], { role: 'user', content: 'one ' }, base.messages[2]] }],
      ['nested name (not the top-level user)', { ...base, messages: [base.messages[0], { role: 'user', content: 'one', name: 'bob' }, base.messages[2]] }],
      ['tool name', { ...base, tools: [tool('search', 'q')] }],
      ['tool parameter', { ...base, tools: [tool('lookup', 'query')] }],
      ['a nested "metadata" member', { ...base, tools: [tool('lookup', 'metadata')] }],
      ['a nested "stream" member', { ...base, tools: [tool('lookup', 'stream')] }],
      ['a nested "user" member', { ...base, tools: [tool('lookup', 'user')] }],
      ['tools added', { ...base, tools: [tool('lookup', 'q'), tool('other', 'q')] }],
      ['tools removed', { ...base, tools: undefined }],
      ['tool_choice', { ...base, tool_choice: 'required' }],
      ['response_format', { ...base, response_format: { type: 'json_object' } }],
      ['query string', base, '/v1/chat/completions?x=1'],
    ];
    let upstream = 1;
    for (const [what, body, path] of variants) {
      const r = await raw(env.tg, tenant, body, PLAN, path);
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(r.headers.get('x-tollgate-cache'), 'miss', `${what} is another question`);
      upstream += 1;
    }
    assert.equal(calls(env.mock, `two ${nonce}`), upstream);
    const m = JSON.stringify(base.messages);
    const t = JSON.stringify(base.tools);
    const same = [
      ['member order and whitespace', `{"tools" :${t},\n\t"messages":${m}, "max_tokens":50 , "temperature":0.25,"model":"gpt-4o-mini"}`],
      ['number spelling', `{"model":"gpt-4o-mini","temperature":2.5e-1,"max_tokens":50,"messages":${m},"tools":${t}}`],
      ['number spelling 0.250', `{"model":"gpt-4o-mini","temperature":0.250,"max_tokens":50,"messages":${m},"tools":${t}}`],
      ['stream: false', { ...base, stream: false }],
      ['user and metadata', { ...base, user: 'u-1', metadata: { x: 'y' } }],
      ['nested member order', { ...base, tools: [{ function: { parameters: { properties: { q: { type: 'string' } }, type: 'object' }, name: 'lookup' }, type: 'function' }] }],
    ];
    for (const [what, body] of same) {
      const r = await raw(env.tg, tenant, body, PLAN);
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(r.headers.get('x-tollgate-cache'), 'hit', `${what} is the same question`);
    }
    assert.equal(calls(env.mock, `two ${nonce}`), upstream, 'the hits made no upstream call');
    // the stream flag: a streamed request is its own entry (README "Streams")
    const s = await raw(env.tg, tenant, { ...base, stream: true }, PLAN);
    assert.equal(s.headers.get('x-tollgate-cache'), 'miss');
    assert.match(s.text, /^data: /m);
  });

  test('never stored: a cut stream, 500, 429, estimated usage, an encoded or over-max_entry answer; no lock is left', { timeout: h.ms(90000) }, async () => {
    const cases = [
      ['a stream cut by the upstream', (n) => ({ ...chat(`${n} mock:chunks=8 mock:reset`), stream: true })],
      ['500', (n) => chat(`${n} mock:status=500`)],
      ['429', (n) => chat(`${n} mock:status=429`)],
      ['503 streamed', (n) => ({ ...chat(`${n} mock:status=503`), stream: true })],
      ['no usage (estimated)', (n) => chat(`${n} mock:nousage mock:tokens=20,2`)],
      ['no usage in a stream (estimated)', (n) => ({ ...chat(`${n} mock:nousage mock:tokens=20,2`), stream: true, stream_options: { include_usage: true } })],
      ['lying usage (estimated)', (n) => chat(`${n} mock:lie=1 mock:tokens=20,2`)],
      ['a gzip-encoded answer', (n) => chat(`${n} mock:gzip mock:tokens=20,2`)],
      ['an answer over max_entry (8k)', (n) => chat(`${n} mock:pad=9000 mock:tokens=20,2`)],
      ['a stream over max_entry (8k)', (n) => ({ ...chat(`${n} mock:chunks=400 mock:tokens=20,2`), stream: true })],
    ];
    for (const [what, make] of cases) {
      const nonce = h.uniq('never');
      const tenant = h.uniq('cx-never');
      const body = make(nonce);
      const statuses = [];
      for (let i = 0; i < 2; i++) {
        let r;
        try {
          r = await raw(env.tg, tenant, body, PLAN);
        } catch (e) { // the cut stream: fetch's body read fails
          r = { status: 'cut', headers: new Headers() };
        }
        statuses.push(r.status);
        const verdict = r.headers.get('x-tollgate-cache');
        assert.ok(verdict === null || verdict === 'miss', `${what}: attempt ${i + 1} said ${verdict}`);
      }
      assert.equal(calls(env.mock, nonce), 2, `${what}: never answered from the cache (${statuses})`);
      await h.sleep(100);
      const left = await scan(env.redis.url, `tollgate:{${tenant}}:cache:*`);
      assert.deepEqual(left, [], `${what}: no entry and no lock left behind`);
    }
  });

  test('a client that hangs up mid-stream never leaves half an answer to be replayed', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('hang');
    const tenant = h.uniq('cx-hang');
    const body = chat(`hangup ${nonce} mock:chunks=6 mock:slow=150 mock:tokens=20,2`);
    const ac = new AbortController();
    const c = h.openaiClient(env.tg, tenant, { headers: PLAN });
    const stream = await c.chat.completions.create({ ...body, stream: true }, { signal: ac.signal });
    let got = 0;
    try {
      for await (const ch of stream) { // eslint-disable-line no-unused-vars
        if (++got === 2) ac.abort();
      }
    } catch { /* the SDK may end the loop or throw on abort */ }
    assert.ok(got >= 2 && got < 6, `hung up after ${got} chunks`);
    await h.sleep(1500); // whatever tollgate does with the rest of the upstream stream, it is done
    const again = await askStream(env.tg, tenant, body, PLAN);
    assert.equal(again.text, 'tok0 tok1 tok2 tok3 tok4 tok5 ', `a whole answer (${again.cache})`);
    // the store is written after the answer ends: wait for it rather than race it
    await h.waitFor(async () => (await entries(env.redis.url, tenant)).length > 0, { what: 'the whole answer stored' });
    const third = await askStream(env.tg, tenant, body, PLAN);
    assert.equal(third.cache, 'hit');
    assert.equal(third.text, again.text);
  });

  test('a plan with the cache off ignores on and refresh: bypass, 200, nothing written', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('off');
    const tenant = h.uniq('cx-off');
    const body = chat(`off ${nonce} mock:tokens=20,2`);
    for (const v of ['on', 'refresh', 'on', 'ON', 'off']) {
      const r = await raw(env.tg, tenant, body, { 'X-Tenant-Plan': 'plain', 'X-Tollgate-Cache': v });
      if (v === 'ON') { // the header's values are on, off, refresh: what does another case do?
        assert.ok(r.status === 400 || r.headers.get('x-tollgate-cache') === 'bypass', `${v}: ${r.status}`);
        continue;
      }
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-tollgate-cache'), 'bypass', v);
    }
    assert.deepEqual(await scan(env.redis.url, `tollgate:{${tenant}}:cache:*`), []);
    assert.ok(calls(env.mock, nonce) >= 4);
  });

  test('refresh refetches a streamed entry and replaces it; X-Tollgate-Cache is not forwarded upstream', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('rfs');
    const tenant = h.uniq('cx-rfs');
    const body = chat(`refresh ${nonce} mock:tokens=20,2 mock:chunks=3`);
    const a = await askStream(env.tg, tenant, body, PLAN);
    assert.equal(a.cache, 'miss');
    const r = await askStream(env.tg, tenant, body, { ...PLAN, 'X-Tollgate-Cache': 'refresh' });
    assert.equal(r.cache, 'miss');
    assert.notEqual(r.chunks[0].id, a.chunks[0].id, 'a fresh answer');
    const b = await askStream(env.tg, tenant, body, PLAN);
    assert.equal(b.cache, 'hit');
    assert.equal(b.chunks[0].id, r.chunks[0].id, 'the refreshed answer replaced the old');
    assert.equal(b.text, 'tok0 tok1 tok2 ');
    // refresh of a question never asked stores it
    const fresh = chat(`refresh-new ${nonce} mock:tokens=20,2`);
    assert.equal((await ask(env.tg, tenant, fresh, { ...PLAN, 'X-Tollgate-Cache': 'refresh' })).cache, 'miss');
    assert.equal((await ask(env.tg, tenant, fresh, PLAN)).cache, 'hit');
    assert.equal(calls(env.mock, nonce), 3);
    for (const req of env.mock.requestsWith(nonce)) {
      const names = Object.keys(req.headers).map((k) => k.toLowerCase());
      assert.ok(!names.includes('x-tollgate-cache'), `forwarded upstream: ${names}`);
      assert.ok(!names.includes('x-tenant-plan'));
    }
  });

  test('a stale single-flight lock (a crashed instance) delays a request at most [cache] wait', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('lock');
    const tenant = h.uniq('cx-lock');
    const body = chat(`lock ${nonce} mock:tokens=20,2`);
    await ask(env.tg, tenant, body, PLAN);
    const [key] = await entries(env.redis.url, tenant);
    await redisCli(env.redis.url, 'DEL', key);
    await redisCli(env.redis.url, 'SET', `${key}:lock`, 'req-of-a-dead-instance', 'PX', '60000');
    const t0 = Date.now();
    const r = await ask(env.tg, tenant, body, PLAN);
    const took = Date.now() - t0;
    assert.equal(r.cache, 'miss');
    assert.equal(r.data.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.ok(took >= 900, `it waited for the lock's owner first (${took} ms)`);
    assert.equal((await ask(env.tg, tenant, body, PLAN)).cache, 'hit', 'the waiter stored the answer');
    assert.equal(calls(env.mock, nonce), 2);
  });

  test('corrupt entries written by hand: a miss answered from upstream, dropped, counted, then stored anew', { timeout: h.ms(90000) }, async () => {
    const forge = {
      garbage: () => ['SET', 'not an entry at all'],
      empty: () => ['SET', ''],
      'header only': (v) => ['SET', v.slice(0, v.indexOf('\n') + 1)],
      'no newline within 128 bytes': () => ['SET', 'TGC1 j '.padEnd(300, '9')],
      'the other kind (s for j)': (v) => ['SET', v.replace(/^TGC1 j /, 'TGC1 s ')],
      'truncated answer': (v) => ['SET', v.slice(0, -5)],
      'an extra byte': (v) => ['SET', `${v} `],
      'a wrong length': (v) => ['SET', v.replace(/^TGC1 j (\d+)/, (_, n) => `TGC1 j ${Number(n) + 1}`)],
      'a huge length': (v) => ['SET', v.replace(/^TGC1 j (\d+)/, 'TGC1 j 99999999999999999999999')],
      'a negative length': (v) => ['SET', v.replace(/^TGC1 j (\d+)/, 'TGC1 j -1')],
      'an upper-case checksum': (v) => ['SET', v.replace(/ ([0-9a-f]{64})\n/, (_, s) => ` ${s.toUpperCase()}\n`)],
      'a short checksum': (v) => ['SET', v.replace(/ ([0-9a-f]{64})\n/, (_, s) => ` ${s.slice(0, 63)}\n`)],
      'another magic': (v) => ['SET', v.replace(/^TGC1/, 'TGC2')],
      'the answer altered': (v) => ['SET', v.replace('tok1', 'TOK1')],
    };
    let counted = 0;
    for (const [what, make] of Object.entries(forge)) {
      const nonce = h.uniq('bad');
      const tenant = h.uniq('cx-bad');
      const body = chat(`corrupt ${nonce} mock:tokens=20,2`);
      const first = await ask(env.tg, tenant, body, PLAN);
      const [key] = await entries(env.redis.url, tenant);
      const v = (await redisCli(env.redis.url, 'GET', key)).replace(/\n$/, '');
      const [cmd, value] = make(v);
      await redisCli(env.redis.url, cmd, key, value);
      const before = (await metrics(env.tg)).value('tollgate_cache_corrupt_total') || 0;
      const b = await ask(env.tg, tenant, body, PLAN);
      assert.equal(b.cache, 'miss', `${what}: not served`);
      assert.equal(b.data.choices[0].message.content, 'tok0 tok1 tok2 ', what);
      assert.notEqual(b.data.id, first.data.id, `${what}: answered from upstream`);
      assert.equal((await metrics(env.tg)).value('tollgate_cache_corrupt_total'), before + 1, `${what}: counted`);
      counted += 1;
      const c = await ask(env.tg, tenant, body, PLAN);
      assert.equal(c.cache, 'hit', `${what}: stored anew`);
      assert.equal(c.data.id, b.data.id);
      assert.equal(calls(env.mock, nonce), 2, what);
    }
    assert.ok(counted > 0);
    // a key of another type (a careless operator's HSET): a miss and a 200, never an error
    const nonce = h.uniq('type');
    const tenant = h.uniq('cx-type');
    const body = chat(`wrongtype ${nonce} mock:tokens=20,2`);
    await ask(env.tg, tenant, body, PLAN);
    const [key] = await entries(env.redis.url, tenant);
    await redisCli(env.redis.url, 'DEL', key);
    await redisCli(env.redis.url, 'HSET', key, 'f', 'v');
    const r = await raw(env.tg, tenant, body, PLAN);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-tollgate-cache'), 'miss');
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 tok2 ');
  });

  // miss, hit, hit under rpm 3 (Anthropic SDK); the month hash and the records after them
  async function threeRequests(nonce, tenant) {
    const an = h.anthropicClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': 'paced' } });
    const body = { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: `acct ${nonce} mock:tokens=400,40` }] };
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const { response } = await an.messages.create(body).withResponse();
      assert.equal(response.headers.get('x-tollgate-cache'), i === 0 ? 'miss' : 'hit');
      ids.push(response.headers.get('x-tollgate-request-id'));
    }
    return { body, ids };
  }
  const monthHash = async (tenant) => {
    const period = new Date().toISOString().slice(0, 7);
    const out = (await redisCli(env.redis.url, 'HGETALL', `tollgate:{${tenant}}:m:${period}`)).split('\n');
    const o = {};
    for (let i = 0; i + 1 < out.length; i += 2) o[out[i]] = out[i + 1];
    return o;
  };

  test('a hit\'s record: cost 0, saved_usd what the miss cost; it counts toward rpm and the month\'s requests', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('acct');
    const tenant = h.uniq('cx-acct');
    const { body, ids } = await threeRequests(nonce, tenant);
    assert.equal(calls(env.mock, nonce), 1);
    const miss = await env.tg.record(ids[0]);
    assert.equal(miss.cache_hit, false);
    assert.ok(h.recordNano(miss) > 0);
    for (const id of ids.slice(1)) {
      const hit = await env.tg.record(id);
      h.assertRecordShape(hit);
      assert.equal(hit.cache_hit, true);
      assert.equal(hit.cost_usd, 0);
      assert.equal(Math.round(hit.saved_usd * 1e9), h.recordNano(miss));
      assert.equal(hit.tenant, tenant);
      assert.equal(hit.provider, 'anthropic');
      assert.equal(hit.model, 'claude-haiku-4-5');
      assert.equal(hit.input_tokens + hit.output_tokens + hit.cached_tokens + hit.reasoning_tokens, 0);
    }
    let month = {};
    await h.waitFor(async () => Number((month = await monthHash(tenant)).requests) === 3,
      { timeout: h.ms(5000), what: 'the month hash counts the three requests' }).catch(() => {});
    assert.equal(Number(month.requests), 3, `hits are requests: ${JSON.stringify(month)}`);
    assert.equal(Number(month.cache_hits), 2);
    assert.equal(Number(month.cost), h.recordNano(miss), 'only the miss cost money');
    assert.equal(Number(month.saved), 2 * h.recordNano(miss));
    // the fourth, a hit, is over rpm 3: refused in the Anthropic dialect, from no upstream call
    const an = h.anthropicClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': 'paced' } });
    await assert.rejects(an.messages.create(body), (e) => e.status === 429 && /requests-per-minute/.test(e.message));
    assert.equal(calls(env.mock, nonce), 1);
  });

  test('a hit refused by rpm is neither a cache hit nor a request (its record, the month hash, the metric)',
    { timeout: h.ms(30000) },
    async () => {
      const nonce = h.uniq('refused');
      const tenant = h.uniq('cx-refused');
      const { body } = await threeRequests(nonce, tenant);
      await h.waitFor(async () => Number((await monthHash(tenant)).requests) === 3,
        { timeout: h.ms(5000), what: 'the three requests in the month hash' });
      const hitsBefore = (await metrics(env.tg)).value('tollgate_cache_requests_total', { result: 'hit' });
      const refused = await raw(env.tg, tenant, body, { 'X-Tenant-Plan': 'paced', 'anthropic-version': '2023-06-01' }, '/v1/messages');
      assert.equal(refused.status, 429, refused.text);
      assert.notEqual(refused.headers.get('x-tollgate-cache'), 'hit', 'a 429 was not answered from the cache');
      const rec = await env.tg.record(refused.headers.get('x-tollgate-request-id'));
      assert.equal(rec.outcome, 'rate_limited');
      assert.equal(rec.cache_hit, false, `the refused request's record: ${JSON.stringify(rec)}`);
      assert.equal((await metrics(env.tg)).value('tollgate_cache_requests_total', { result: 'hit' }), hitsBefore, 'not counted as a hit');
      await h.sleep(1500); // the tally flushes every second
      const month = await monthHash(tenant);
      assert.equal(Number(month.requests), 3, `a refused request is not a request (as for a miss): ${JSON.stringify(month)}`);
      assert.equal(Number(month.cache_hits), 2);
    });

  test('no prompt text in Redis keys or values other than the answer, in records, logs or metrics', { timeout: h.ms(30000) }, async () => {
    const secret = `SECRET${Date.now().toString(36)}PROMPT`;
    const tenant = h.uniq('cx-secret');
    const body = chat(`${secret} mock:tokens=20,2`);
    const ids = [];
    ids.push((await ask(env.tg, tenant, body, PLAN)).id);
    ids.push((await ask(env.tg, tenant, body, PLAN)).id);
    ids.push((await askStream(env.tg, tenant, body, PLAN)).id);
    ids.push((await askStream(env.tg, tenant, body, PLAN)).id);
    for (const id of ids) await env.tg.record(id);
    const keys = await scan(env.redis.url, '*');
    assert.ok(keys.length > 0);
    for (const k of keys) assert.ok(!k.includes(secret), `a Redis key holds the prompt: ${k}`);
    const mine = await scan(env.redis.url, `tollgate:{${tenant}}:*`);
    for (const k of mine) {
      const type = (await redisCli(env.redis.url, 'TYPE', k)).trim();
      const v = type === 'string' ? await redisCli(env.redis.url, 'GET', k)
        : type === 'hash' ? await redisCli(env.redis.url, 'HGETALL', k) : '';
      assert.ok(!v.includes(secret), `${k} (${type}) holds the prompt`);
    }
    const fs = require('node:fs');
    assert.ok(!fs.readFileSync(env.tg.recordsFile, 'utf8').includes(secret), 'the prompt is in the records');
    assert.ok(!env.tg.stderr.includes(secret), 'the prompt is in the log');
    const res = await fetch(`http://127.0.0.1:${env.tg.adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.ok(!(await res.text()).includes(secret), 'the prompt is in /metrics');
  });

  h.cleanRunTest(env);
});

describe('response cache, adversarial: Redis away', () => {
  const env = h.useStack({ tollgate: false });

  test('Redis stopped mid-run: 200 misses through every SDK, never an error, and every record written', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    try {
      await env.withTollgate({ ...PLANS, redis: { url: rc.url, timeout: '200ms' }, server: { workers: 1 } }, async (tg) => {
        const nonce = h.uniq('away');
        const tenant = h.uniq('cx-away');
        const body = chat(`away ${nonce} mock:tokens=20,2`);
        const abody = { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: `away-an ${nonce} mock:tokens=20,2` }] };
        const an = h.anthropicClient(tg, tenant, { headers: PLAN });
        assert.equal((await ask(tg, tenant, body, PLAN)).cache, 'miss');
        assert.equal((await ask(tg, tenant, body, PLAN)).cache, 'hit');
        await an.messages.create(abody);
        await rc.stop();
        const ids = [];
        for (let i = 0; i < 3; i++) {
          const r = await ask(tg, tenant, body, PLAN);
          assert.equal(r.cache, 'miss');
          assert.equal(r.data.choices[0].message.content, 'tok0 tok1 tok2 ');
          ids.push(r.id);
          const s = await askStream(tg, tenant, body, PLAN);
          assert.equal(s.cache, 'miss');
          assert.equal(s.text, 'tok0 tok1 tok2 ');
          ids.push(s.id);
          const { data, response } = await an.messages.create(abody).withResponse();
          assert.equal(response.headers.get('x-tollgate-cache'), 'miss');
          assert.equal(data.content[0].text, 'tok0 tok1 tok2 ');
          ids.push(response.headers.get('x-tollgate-request-id'));
          const refresh = await ask(tg, tenant, body, { ...PLAN, 'X-Tollgate-Cache': 'refresh' });
          assert.equal(refresh.cache, 'miss');
          ids.push(refresh.id);
        }
        for (const id of ids) {
          const rec = await tg.record(id, h.ms(10000));
          assert.equal(rec.status, 200);
          assert.equal(rec.cache_hit, false);
          assert.ok(h.recordNano(rec) > 0, 'a miss costs money');
        }
        assert.equal(calls(env.mock, `away ${nonce}`), 1 + 3 * 3);
        await rc.start(); // the tallies held for Redis go out, so the stop is prompt
      });
    } finally {
      await rc.stop();
    }
  });
});

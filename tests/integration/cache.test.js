'use strict';
// The response cache (issue 13, README "Response cache"), through the official SDKs: a
// repeated question is answered once upstream (the mock's log) and replayed byte for byte,
// recorded with cost 0 and saved_usd; another tenant misses; the same question with its
// members reordered, other whitespace or another `user` is a hit; a streamed repeat is
// replayed as SSE the SDK parses (the usage chunk only when asked); refresh refetches; off and
// a plan without the cache bypass; an answer over max_entry is not kept; a corrupt entry is
// dropped and counted; hits skip the dollar cap but count toward rpm; 10 identical requests
// at once make one upstream call; Redis stopped mid-run gives misses and no errors; [cache]
// enabled, ttl, max_entry, shared and wait, and the plan's and the tenant's cache, are live
// after SIGHUP.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { execFile } = require('node:child_process');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCtl } = require('../lib/redis-ctl');
const { findBinary } = require('../lib/redis');
const prom = require('../lib/prom');

const TOKEN = 'test-admin-token';
const CACHE = { enabled: 'yes', ttl: '1h', max_entry: '16k', wait: '5s' };
const OVERRIDES = {
  cache: CACHE,
  'plan cached': { price: '10', cache: 'on' },
  'plan asked': { price: '10', cache: 'ask' },
  'plan plain': { price: '10' },
  'plan cheap': { price: '1', cache: 'on', budget_monthly: '0.00002', on_exceed: 'block' },
  'plan paced': { price: '1', cache: 'on', rpm: '2' },
  'tenant c-a': { plan: 'cached' },
  'tenant c-b': { plan: 'cached' },
  'tenant c-ask': { plan: 'asked' },
  'tenant c-plain': { plan: 'plain' },
  'tenant c-off': { plan: 'cached', cache: 'off' },
  'tenant c-cheap': { plan: 'cheap' },
  'tenant c-paced': { plan: 'paced' },
};

const chat = (content, extra = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });

// One chat call through the SDK; resolves {data, headers, id, cache}.
async function ask(tg, tenant, body, headers = {}) {
  const c = h.openaiClient(tg, tenant, { headers });
  const { data, response } = await c.chat.completions.create(body).withResponse();
  return { data, headers: response.headers, id: response.headers.get('x-tollgate-request-id'), cache: response.headers.get('x-tollgate-cache') };
}

// A streamed chat call through the SDK; resolves {chunks, text, usage, cache, id}.
async function askStream(tg, tenant, body, headers = {}) {
  const c = h.openaiClient(tg, tenant, { headers });
  const { data: stream, response } = await c.chat.completions.create({ ...body, stream: true }).withResponse();
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  const text = chunks.map((ch) => (ch.choices[0] && ch.choices[0].delta.content) || '').join('');
  const usage = chunks.map((ch) => ch.usage).filter(Boolean);
  return { chunks, text, usage, cache: response.headers.get('x-tollgate-cache'), id: response.headers.get('x-tollgate-request-id') };
}

const upstreamCalls = (mock, nonce) => mock.requestsWith(nonce).length;

async function metricsText(tg) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return prom.parse(await res.text());
}

function redisCli(url, ...args) {
  const port = new URL(url).port;
  return new Promise((resolve, reject) => {
    execFile(findBinary('redis-cli'), ['-p', port, '--raw', ...args], (err, out) => (err ? reject(err) : resolve(out)));
  });
}

describe('response cache', () => {
  const env = h.useStack({ overrides: OVERRIDES });

  test('a repeated question is answered once upstream, byte for byte, recorded as a hit with saved_usd', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('rep');
    const body = chat(`summarise ${nonce} mock:tokens=1200,300`);
    const a = await ask(env.tg, 'c-a', body);
    assert.equal(a.cache, 'miss');
    const b = await ask(env.tg, 'c-a', body);
    assert.equal(b.cache, 'hit');
    assert.deepEqual(b.data, a.data, 'the stored answer, as the provider sent it');
    assert.equal(upstreamCalls(env.mock, nonce), 1, 'one upstream call');
    const first = await env.tg.record(a.id);
    const hit = await env.tg.record(b.id);
    assert.equal(first.cache_hit, false);
    assert.equal(h.recordNano(first), h.expectedNano('gpt-4o-mini', { input: 1200, output: 300 }));
    assert.equal(hit.cache_hit, true, JSON.stringify(hit));
    assert.equal(hit.cost_usd, 0);
    assert.equal(Math.round(hit.saved_usd * 1e9), h.recordNano(first), 'saved what the call cost');
    assert.equal(hit.status, 200);
    assert.equal(hit.outcome, 'ok');
    assert.equal(hit.input_tokens + hit.output_tokens, 0, 'no provider tokens used');
    assert.equal(hit.model, 'gpt-4o-mini');
  });

  test('another tenant asking the same question misses (entries are per tenant)', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('ten');
    const body = chat(`classify ${nonce} mock:tokens=50,5`);
    assert.equal((await ask(env.tg, 'c-a', body)).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-b', body)).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-b', body)).cache, 'hit');
    assert.equal(upstreamCalls(env.mock, nonce), 2);
  });

  test('member order, whitespace, escapes and user/metadata do not change the question; the model does', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('canon');
    const content = `order ${nonce} mock:tokens=40,4`;
    const one = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o-mini', temperature: 0.5, messages: [{ role: 'user', content }] }, { 'X-Tenant-Id': 'c-a' });
    assert.equal(one.status, 200);
    assert.equal(one.headers.get('x-tollgate-cache'), 'miss');
    const escaped = JSON.stringify(content).replace('o', '\\u006f');
    const text = `{ "messages" : [ {"content": ${escaped},\n "role":"user"} ],\t"user": "u-77", "metadata": {"a": "b"}, "temperature": 5e-1, "model":"gpt-4o-mini" }`;
    const two = await h.post(env.tg, '/v1/chat/completions', text, { 'X-Tenant-Id': 'c-a' });
    assert.equal(two.status, 200, two.text);
    assert.equal(two.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(two.text, one.text, 'byte-identical answer');
    const other = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', temperature: 0.5, messages: [{ role: 'user', content }] }, { 'X-Tenant-Id': 'c-a' });
    assert.equal(other.headers.get('x-tollgate-cache'), 'miss', 'another model is another question');
    assert.equal(upstreamCalls(env.mock, nonce), 2);
  });

  test('a streamed repeat is replayed as SSE the SDK parses; the usage chunk only when asked', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('sse');
    const body = chat(`stream ${nonce} mock:tokens=300,40 mock:chunks=4`);
    const a = await askStream(env.tg, 'c-a', body);
    assert.equal(a.cache, 'miss');
    assert.equal(a.usage.length, 0, 'the client did not ask for usage');
    const b = await askStream(env.tg, 'c-a', body);
    assert.equal(b.cache, 'hit');
    assert.equal(b.text, a.text);
    assert.equal(b.text, 'tok0 tok1 tok2 tok3 ');
    assert.equal(b.usage.length, 0, 'no usage chunk the client did not ask for');
    const c = await askStream(env.tg, 'c-a', { ...body, stream_options: { include_usage: true } });
    assert.equal(c.cache, 'hit', 'stream_options does not change the question');
    assert.equal(c.text, a.text);
    assert.equal(c.usage.length, 1, 'the usage chunk, asked for');
    assert.equal(c.usage[0].prompt_tokens, 300);
    assert.equal(upstreamCalls(env.mock, nonce), 1);
    const rec = await env.tg.record(b.id);
    assert.equal(rec.cache_hit, true);
    assert.equal(rec.stream, true);
    assert.equal(Math.round(rec.saved_usd * 1e9), h.expectedNano('gpt-4o-mini', { input: 300, output: 40 }));
    // a non-streaming client does not get the stream's entry: a miss of its own
    assert.equal((await ask(env.tg, 'c-a', body)).cache, 'miss');
    assert.equal(upstreamCalls(env.mock, nonce), 2);
  });

  test('Anthropic: a repeat is a hit, streamed too', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('an');
    const an = env.anthropic('c-a');
    const body = { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: `hi ${nonce} mock:tokens=200,20` }] };
    const a = await an.messages.create(body).withResponse();
    const b = await an.messages.create(body).withResponse();
    assert.equal(a.response.headers.get('x-tollgate-cache'), 'miss');
    assert.equal(b.response.headers.get('x-tollgate-cache'), 'hit');
    assert.deepEqual(b.data, a.data);
    const s1 = await an.messages.stream(body).finalMessage();
    const s2 = await an.messages.stream(body).finalMessage();
    assert.deepEqual(s2.content, s1.content);
    assert.equal(upstreamCalls(env.mock, nonce), 2, 'one plain and one streamed call upstream');
  });

  test('refresh refetches and replaces the entry; off and a plan without the cache bypass', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('ref');
    const body = chat(`refresh ${nonce} mock:tokens=30,3`);
    const a = await ask(env.tg, 'c-a', body);
    const r = await ask(env.tg, 'c-a', body, { 'X-Tollgate-Cache': 'refresh' });
    assert.equal(r.cache, 'miss');
    assert.notEqual(r.data.id, a.data.id, 'a fresh answer');
    const b = await ask(env.tg, 'c-a', body);
    assert.equal(b.cache, 'hit');
    assert.equal(b.data.id, r.data.id, 'the refreshed answer replaced the old one');
    assert.equal((await ask(env.tg, 'c-a', body, { 'X-Tollgate-Cache': 'off' })).cache, 'bypass');
    assert.equal(upstreamCalls(env.mock, nonce), 3);
    // a plan without the cache ignores the header and says so
    for (const tenant of ['c-plain', 'c-off']) {
      assert.equal((await ask(env.tg, tenant, body, { 'X-Tollgate-Cache': 'on' })).cache, 'bypass');
      assert.equal((await ask(env.tg, tenant, body, { 'X-Tollgate-Cache': 'on' })).cache, 'bypass');
    }
    assert.equal(upstreamCalls(env.mock, nonce), 7);
    // cache = ask: only requests that ask
    assert.equal((await ask(env.tg, 'c-ask', body)).cache, 'bypass');
    assert.equal((await ask(env.tg, 'c-ask', body, { 'X-Tollgate-Cache': 'on' })).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-ask', body, { 'X-Tollgate-Cache': 'on' })).cache, 'hit');
    // a bad value is refused in the dialect
    const bad = await h.post(env.tg, '/v1/chat/completions', body, { 'X-Tenant-Id': 'c-a', 'X-Tollgate-Cache': 'maybe' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /X-Tollgate-Cache must be on, off or refresh/);
  });

  test('not cached: n > 1 at a temperature, an answer over max_entry, an upstream error', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('no');
    const sampled = chat(`n ${nonce} mock:tokens=10,2`, { n: 2 });
    assert.equal((await ask(env.tg, 'c-a', sampled)).cache, 'bypass');
    const greedy = chat(`n0 ${nonce} mock:tokens=10,2`, { n: 2, temperature: 0 });
    assert.equal((await ask(env.tg, 'c-a', greedy)).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-a', greedy)).cache, 'hit', 'n > 1 at temperature 0 is one answer');
    const big = chat(`big ${nonce} mock:tokens=10,2 mock:pad=20000`);
    assert.equal((await ask(env.tg, 'c-a', big)).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-a', big)).cache, 'miss', 'over max_entry (16k): not kept');
    const failing = chat(`err ${nonce} mock:status=500`);
    const c = h.openaiClient(env.tg, 'c-a');
    await assert.rejects(c.chat.completions.create(failing), (e) => e.status === 500);
    await assert.rejects(c.chat.completions.create(failing), (e) => e.status === 500);
    assert.equal(upstreamCalls(env.mock, `err ${nonce}`), 2, 'errors are never stored');
  });

  test('a corrupt entry is checked, dropped and counted, then stored anew', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('bad');
    const tenant = h.uniq('c-corrupt'); // a tenant of its own: its one entry is this answer
    const plan = { 'X-Tenant-Plan': 'cached' };
    const body = chat(`corrupt ${nonce} mock:tokens=20,2`);
    await ask(env.tg, tenant, body, plan);
    const keys = (await redisCli(env.redis.url, '--scan', '--pattern', `tollgate:{${tenant}}:cache:*`)).split('\n').filter(Boolean);
    assert.equal(keys.length, 1, `one entry, under the tenant's hash tag, its lock released: ${keys}`);
    const target = keys[0];
    assert.match(target, /^tollgate:\{[^}]+\}:cache:[0-9a-f]{64}$/);
    const ttl = Number(await redisCli(env.redis.url, 'PTTL', target));
    assert.ok(ttl > 3500000 && ttl <= 3600000, `ttl 1h: ${ttl}`);
    const before = (await metricsText(env.tg)).value('tollgate_cache_corrupt_total') || 0;
    const v = (await redisCli(env.redis.url, 'GET', target)).replace(/\n$/, '');
    assert.match(v, /^TGC1 j \d+ [0-9a-f]{64}\n\{/, 'a checked header, then the answer');
    await redisCli(env.redis.url, 'SET', target, v.replace('tok0', 'TOK0'));
    const b = await ask(env.tg, tenant, body, plan);
    assert.equal(b.cache, 'miss', 'an altered entry is not served');
    assert.equal(b.data.choices[0].message.content.startsWith('tok0'), true);
    assert.equal((await metricsText(env.tg)).value('tollgate_cache_corrupt_total'), before + 1);
    assert.equal((await ask(env.tg, tenant, body, plan)).cache, 'hit', 'stored again');
    assert.equal(upstreamCalls(env.mock, nonce), 2);
  });

  test('a hit skips the dollar cap but counts toward rpm', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('cap');
    const body = chat(`cap ${nonce} mock:tokens=100,5`, { max_tokens: 5 });
    assert.equal((await ask(env.tg, 'c-cheap', body)).cache, 'miss');
    const c = h.openaiClient(env.tg, 'c-cheap');
    let i = 0;
    await h.waitFor(async () => {
      try { // another question each time (a repeat would be a hit)
        await c.chat.completions.create(chat(`other ${nonce} ${i++} mock:tokens=100,5`, { max_tokens: 5 }));
        return false;
      } catch (e) {
        return e.status === 429;
      }
    }, { what: 'the cheap tenant is over its cap' });
    assert.equal((await ask(env.tg, 'c-cheap', body)).cache, 'hit', 'a hit costs nothing: served over the cap');

    const paced = chat(`rpm ${nonce} mock:tokens=10,1`);
    assert.equal((await ask(env.tg, 'c-paced', paced)).cache, 'miss');
    assert.equal((await ask(env.tg, 'c-paced', paced)).cache, 'hit');
    const p = h.openaiClient(env.tg, 'c-paced');
    await assert.rejects(p.chat.completions.create(paced), (e) => e.status === 429 && /requests-per-minute/.test(e.message));
  });

  test('single flight: 10 identical requests at once make one upstream call', { timeout: h.ms(30000) }, async () => {
    const nonce = h.uniq('sf');
    const body = chat(`flight ${nonce} mock:tokens=60,6 mock:delay=400`);
    const all = await Promise.all(Array.from({ length: 10 }, () => ask(env.tg, 'c-a', body)));
    assert.equal(upstreamCalls(env.mock, nonce), 1);
    const results = all.map((r) => r.cache).sort();
    assert.deepEqual(results, ['hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'miss']);
    for (const r of all) assert.deepEqual(r.data, all[0].data);
  });

  test('the report, its CLI and the admin API show each tenant\'s hits and savings, and the totals', { timeout: h.ms(30000) }, async () => {
    // every hit's record is written (the records file is written in batches)
    const nHits = (await metricsText(env.tg)).value('tollgate_cache_requests_total', { result: 'hit' });
    await env.tg.records((r) => r.cache_hit, nHits);
    const records = env.tg.readRecords();
    const period = new Date().toISOString().slice(0, 7);
    const want = (tenant) => {
      const hits = records.filter((r) => r.tenant === tenant && r.cache_hit);
      return { hits: hits.length, saved: hits.reduce((s, r) => s + Math.round(r.saved_usd * 1e9), 0) };
    };
    const allHits = records.filter((r) => r.cache_hit);
    // the tally reaches Redis within a second
    const rep = await h.waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${env.tg.adminPort}/admin/api/tenants?period=${period}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const j = await res.json();
      return j.totals && j.totals.cache_hits === allHits.length ? j : null;
    }, { timeout: h.ms(5000), what: 'every hit in the report' });
    for (const tenant of ['c-a', 'c-b', 'c-cheap']) {
      const row = rep.tenants.find((t) => t.tenant === tenant);
      const w = want(tenant);
      assert.ok(w.hits > 0, tenant);
      assert.equal(row.cache_hits, w.hits, tenant);
      assert.equal(Math.round(row.saved_usd * 1e9), w.saved, `${tenant} saved`);
      // a hit is a request of the tenant and costs nothing (refused requests are not counted)
      const mine = records.filter((r) => r.tenant === tenant && r.outcome !== 'bad_request' && r.outcome !== 'rate_limited' && r.outcome !== 'blocked');
      assert.equal(row.requests, mine.length, `${tenant} requests`);
      assert.equal(Math.round(row.cost_usd * 1e9), mine.reduce((s, r) => s + h.recordNano(r), 0), `${tenant} cost`);
    }
    assert.equal(Math.round(rep.totals.saved_usd * 1e9), allHits.reduce((s, r) => s + Math.round(r.saved_usd * 1e9), 0));
    // the CLI prints the same, and the table has the SAVED column
    const run = (args) => new Promise((resolve) => execFile(h.BINARY, ['report', '-c', env.tg.configFile, '--period', period, ...args],
      { timeout: h.ms(20000) }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
    const cli = await run(['--format', 'json']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout).totals, rep.totals);
    const table = await run([]);
    assert.match(table.stdout, /TENANT +PLAN +REVENUE +OVERAGE +COST +SAVED /);
    const detail = await (await fetch(`http://127.0.0.1:${env.tg.adminPort}/admin/api/tenants/c-a?period=${period}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    assert.equal(detail.cache_hits, want('c-a').hits);
  });

  test('metrics: tollgate_cache_requests_total by result and the dollars saved', { timeout: h.ms(30000) }, async () => {
    const m = await metricsText(env.tg);
    const want = m.value('tollgate_cache_requests_total', { result: 'hit' });
    assert.ok(want >= 20, `the hits of the tests above: ${want}`);
    // the records file is written in batches: wait for every hit's line
    const hits = await env.tg.records((r) => r.cache_hit, want);
    assert.equal(hits.length, want);
    const saved = hits.reduce((s, r) => s + Math.round(r.saved_usd * 1e9), 0);
    assert.equal(Math.round(m.value('tollgate_cache_saved_usd_total') * 1e9), saved);
    assert.ok(m.value('tollgate_cache_requests_total', { result: 'miss' }) > 0);
    assert.ok(m.value('tollgate_cache_requests_total', { result: 'bypass' }) > 0);
  });

  h.cleanRunTest(env);
});

describe('response cache: Redis away and reload', () => {
  const env = h.useStack({ tollgate: false });

  test('Redis stopped mid-run: misses, no errors; back: hits again', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    try {
      await env.withTollgate({ ...OVERRIDES, redis: { url: rc.url, timeout: '200ms' }, server: { workers: 1 } }, async (tg) => {
        const nonce = h.uniq('away');
        const body = chat(`away ${nonce} mock:tokens=20,2`);
        assert.equal((await ask(tg, 'c-a', body)).cache, 'miss');
        assert.equal((await ask(tg, 'c-a', body)).cache, 'hit');
        await rc.stop();
        for (let i = 0; i < 3; i++) {
          const r = await ask(tg, 'c-a', body);
          assert.equal(r.cache, 'miss', 'Redis away: a miss');
          assert.equal(r.data.choices[0].message.content, 'tok0 tok1 tok2 ');
        }
        const s = await askStream(tg, 'c-a', body);
        assert.equal(s.cache, 'miss');
        assert.equal(upstreamCalls(env.mock, nonce), 5);
        await rc.start();
        await h.waitFor(async () => (await ask(tg, 'c-a', body)).cache === 'hit', { timeout: h.ms(15000), what: 'a hit once Redis is back' });
      });
    } finally {
      await rc.stop();
    }
  });

  test('[cache] enabled is live after SIGHUP', { timeout: h.ms(30000) }, async () => {
    env.redis = env.redis || null;
    await env.withTollgate({ ...OVERRIDES, cache: { ...CACHE, enabled: 'no' }, server: { workers: 1 } }, async (tg) => {
      const body = chat(`reload ${h.uniq('hup')} mock:tokens=5,1`);
      assert.equal((await ask(tg, 'c-a', body)).cache, 'bypass');
      fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, { cache: { enabled: 'yes' } }).text);
      const n0 = (tg.stderr.match(/new requests use the reloaded config/g) || []).length;
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => (tg.stderr.match(/new requests use the reloaded config/g) || []).length > n0, { what: 'the reload' });
      assert.equal((await ask(tg, 'c-a', body)).cache, 'miss');
      assert.equal((await ask(tg, 'c-a', body)).cache, 'hit');
    });
  });

  test('[cache] ttl, max_entry, shared, wait and the plan and tenant cache keys are live after SIGHUP', { timeout: h.ms(90000) }, async () => {
    const base = { ...OVERRIDES, cache: { ...CACHE, ttl: '1h', max_entry: '16k', shared: 'no', wait: '0s' },
      'plan hup': { price: '10', cache: 'on' }, 'tenant hup-a': { plan: 'hup' }, 'tenant hup-b': { plan: 'hup' },
      server: { workers: 1 } };
    await env.withTollgate(base, async (tg) => {
      let cfg = tg.cfg;
      const reload = async (changes) => {
        const r = h.renderConfig(cfg, changes);
        cfg = r.cfg;
        fs.writeFileSync(tg.configFile, r.text);
        const n0 = (tg.stderr.match(/new requests use the reloaded config/g) || []).length;
        tg.proc.child.kill('SIGHUP');
        await h.waitFor(() => (tg.stderr.match(/new requests use the reloaded config/g) || []).length > n0, { what: 'the reload' });
      };
      const q = (tag) => chat(`hup ${tag} ${h.uniq('q')} mock:tokens=5,3 mock:pad=2000`); // a ~2.3 KB answer
      const keys = async (tenant) => (await redisCli(env.redis.url, 'KEYS', `tollgate:{${tenant}}:cache:*`))
        .split('\n').filter((k) => k && !k.endsWith(':lock'));

      // [plan] cache: on, then off
      const b1 = q('plan');
      assert.equal((await ask(tg, 'hup-a', b1)).cache, 'miss');
      assert.equal((await ask(tg, 'hup-a', b1)).cache, 'hit');
      await reload({ 'plan hup': { cache: 'off' } });
      assert.equal((await ask(tg, 'hup-a', b1)).cache, 'bypass', '[plan] cache = off after SIGHUP');
      // [tenant] cache overrides the plan's, both ways
      await reload({ 'tenant hup-a': { cache: 'on' } });
      assert.equal((await ask(tg, 'hup-a', b1)).cache, 'hit', '[tenant] cache = on after SIGHUP');
      assert.equal((await ask(tg, 'hup-b', b1)).cache, 'bypass', 'hup-b still follows its plan');
      await reload({ 'plan hup': { cache: 'on' }, 'tenant hup-a': { cache: 'off' } });
      assert.equal((await ask(tg, 'hup-a', b1)).cache, 'bypass', '[tenant] cache = off after SIGHUP');
      await reload({ 'tenant hup-a': { cache: null } });

      // ttl: the next entry is stored with the new one
      const b2 = q('ttl');
      await ask(tg, 'hup-a', b2);
      const [k2] = await keys('hup-a').then((ks) => ks.filter((k) => k !== ks[0] || ks.length === 1));
      const ttls0 = await Promise.all((await keys('hup-a')).map(async (k) => Number(await redisCli(env.redis.url, 'PTTL', k))));
      assert.ok(ttls0.every((t) => t > 3000 * 1000 - 60000), `ttl 1h before the reload: ${ttls0}`);
      assert.ok(k2);
      await reload({ cache: { ttl: '30s' } });
      const b3 = q('ttl2');
      const before = new Set(await keys('hup-a'));
      await ask(tg, 'hup-a', b3);
      const fresh = (await keys('hup-a')).filter((k) => !before.has(k));
      assert.equal(fresh.length, 1, 'one new entry');
      const pttl = Number(await redisCli(env.redis.url, 'PTTL', fresh[0]));
      assert.ok(pttl > 0 && pttl <= 30000, `[cache] ttl = 30s after SIGHUP: PTTL ${pttl}`);

      // max_entry: an answer over the new bound is not kept
      await reload({ cache: { max_entry: '1k' } });
      const b4 = q('max');
      assert.equal((await ask(tg, 'hup-a', b4)).cache, 'miss');
      assert.equal((await ask(tg, 'hup-a', b4)).cache, 'miss', 'a 2.3 KB answer is over max_entry = 1k');
      await reload({ cache: { max_entry: '16k' } });

      // shared: one entry for every tenant
      await reload({ cache: { shared: 'yes' } });
      const b5 = q('shared');
      assert.equal((await ask(tg, 'hup-a', b5)).cache, 'miss');
      assert.equal((await ask(tg, 'hup-b', b5)).cache, 'hit', 'shared = yes after SIGHUP: another tenant hits');
      await reload({ cache: { shared: 'no' } });
      assert.equal((await ask(tg, 'hup-b', b5)).cache, 'miss', 'shared = no again: per tenant');

      // wait: how long a request waits for another's lock (a crashed instance's, here)
      const b6 = q('wait');
      await ask(tg, 'hup-a', b6);
      const [k6] = (await keys('hup-a')).filter((k) => !before.has(k) && k !== fresh[0]);
      const lockAndAsk = async () => {
        const ks = await keys('hup-a');
        for (const k of ks) await redisCli(env.redis.url, 'DEL', k);
        for (const k of ks) await redisCli(env.redis.url, 'SET', `${k}:lock`, 'req-of-a-dead-instance', 'PX', '60000');
        const t0 = Date.now();
        const r = await ask(tg, 'hup-a', b6);
        return { ms: Date.now() - t0, cache: r.cache };
      };
      assert.ok(k6);
      const w0 = await lockAndAsk();
      assert.ok(w0.ms < 4000, `wait = 0s: no wait for the lock (took ${w0.ms} ms)`);
      await reload({ cache: { wait: '5s' } });
      const w1 = await lockAndAsk();
      assert.ok(w1.ms >= 4500, `wait = 5s after SIGHUP: the request waited for the lock (took ${w1.ms} ms)`);
      assert.equal(w1.cache, 'miss');
    });
  });
});

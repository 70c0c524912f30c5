'use strict';
// The response cache never pushes the budget counters out of Redis (README "Response cache",
// "Redis memory"): a real redis-server with a small maxmemory. Under noeviction the cache
// stops storing below the mark (80% of maxmemory), says so once, and every request's
// counters are written (the month hash equals the records, no OOM, no 503); entries leave by
// their TTL and storing resumes. Under an evicting policy (allkeys-lru), which could evict
// the counters, the cache stores nothing and says why; the counters are all there.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { findBinary } = require('../lib/redis');

const PAD = 100000; // a ~100 KB answer
const OVERRIDES = {
  cache: { enabled: 'yes', ttl: '10s', max_entry: '256k', wait: '1s' },
  'plan cached': { price: '10', cache: 'on' },
  server: { workers: 2 },
};

function redisCli(url, ...args) {
  const port = new URL(url).port;
  return new Promise((resolve, reject) => {
    execFile(findBinary('redis-cli'), ['-p', port, '--raw', ...args], { maxBuffer: 16 << 20 },
      (err, out) => (err ? reject(err) : resolve(out.trim())));
  });
}

const memory = async (url) => {
  const info = await redisCli(url, 'INFO', 'memory');
  const num = (k) => Number((new RegExp(`^${k}:(\\d+)`, 'm').exec(info) || [])[1]);
  return { used: num('used_memory'), max: num('maxmemory') };
};

const monthHash = async (url, tenant) => {
  const period = new Date().toISOString().slice(0, 7);
  const out = (await redisCli(url, 'HGETALL', `tollgate:{${tenant}}:m:${period}`)).split('\n');
  const o = {};
  for (let i = 0; i + 1 < out.length; i += 2) o[out[i]] = out[i + 1];
  return o;
};

const entries = async (url, tenant) =>
  (await redisCli(url, '--scan', '--pattern', `tollgate:{${tenant}}:cache:*`)).split('\n').filter((k) => k && !k.endsWith(':lock'));

async function ask(tg, tenant, content) {
  const c = h.openaiClient(tg, tenant, { headers: { 'X-Tenant-Plan': 'cached' } });
  const { response } = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }).withResponse();
  return response.headers.get('x-tollgate-cache');
}

// The month hash holds every request and the records' cost, to the nano-dollar.
async function countersMatchRecords(env, tg, tenant, n) {
  const recs = await tg.records({ tenant }, n, h.ms(10000));
  assert.equal(recs.length, n, 'every request has its record');
  assert.ok(recs.every((r) => r.status === 200 && r.outcome === 'ok'), 'every request answered 200');
  const cost = recs.reduce((s, r) => s + h.recordNano(r), 0);
  let month = {};
  await h.waitFor(async () => Number((month = await monthHash(env.redis.url, tenant)).requests) === n,
    { timeout: h.ms(10000), what: `the month hash counts ${n} requests` }).catch(() => {});
  assert.equal(Number(month.requests), n, `no counter lost: ${JSON.stringify(month)}`);
  assert.equal(Number(month.cost), cost, 'the month cost equals the records');
}

describe('response cache and Redis maxmemory', () => {
  const env = h.useStack({ tollgate: false });

  test('noeviction and a small maxmemory: the cache stops storing below the mark; every counter is written', { timeout: h.ms(120000) }, async () => {
    const url = env.redis.url;
    await redisCli(url, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    const base = (await memory(url)).used;
    const max = base + 3 * 1024 * 1024;
    await redisCli(url, 'CONFIG', 'SET', 'maxmemory', String(max));
    try {
      await env.withTollgate(OVERRIDES, async (tg) => {
        const tenant = h.uniq('mem');
        const n = h.uniq('fill');
        const N = 60; // 60 answers of 100 KB: twice maxmemory's room
        assert.equal(await ask(tg, tenant, `q0 ${n} mock:pad=${PAD} mock:tokens=20,2`), 'miss');
        assert.equal(await ask(tg, tenant, `q0 ${n} mock:pad=${PAD} mock:tokens=20,2`), 'hit', 'stored while there is room');
        for (let i = 1; i < N; i++) {
          assert.notEqual(await ask(tg, tenant, `q${i} ${n} mock:pad=${PAD} mock:tokens=20,2`), 'hit');
          const m = await memory(url);
          assert.ok(m.used < m.max, `Redis stays under maxmemory (${m.used} of ${m.max}) after ${i + 1} answers`);
        }
        const kept = await entries(url, tenant);
        assert.ok(kept.length >= 5, `entries were stored while there was room: ${kept.length}`);
        assert.ok(kept.length < N, `storing stopped: ${kept.length} of ${N}`);
        const m = await memory(url);
        assert.ok(m.used <= m.max * 0.8 + PAD * 2, `stopped near the mark: ${m.used} of ${m.max}`);
        assert.match(tg.stderr, /response cache stores no entries until it is below 75%, so the budget counters keep room/);
        assert.doesNotMatch(tg.stderr, /OOM/);
        // the counters of all of it are there
        await countersMatchRecords(env, tg, tenant, N + 1);

        // the entries leave by their TTL (10s); Redis has room again and the cache stores
        await h.waitFor(async () => (await entries(url, tenant)).length === 0, { timeout: h.ms(25000), what: 'the entries expire' });
        await h.sleep(1200); // the next INFO memory read (at most once a second)
        await ask(tg, tenant, `again ${n} mock:tokens=20,2`); // a small one, which reads INFO
        await h.sleep(1200);
        assert.equal(await ask(tg, tenant, `again2 ${n} mock:tokens=20,2`), 'miss', 'a new question');
        assert.equal(await ask(tg, tenant, `again2 ${n} mock:tokens=20,2`), 'hit', 'storing resumed');
        await countersMatchRecords(env, tg, tenant, N + 4);
      });
    } finally {
      await redisCli(url, 'CONFIG', 'SET', 'maxmemory', '0');
    }
  });

  test('an evicting policy (allkeys-lru) could evict the counters: the cache stores nothing and says why', { timeout: h.ms(90000) }, async () => {
    const url = env.redis.url;
    await redisCli(url, 'FLUSHALL');
    const base = (await memory(url)).used;
    await redisCli(url, 'CONFIG', 'SET', 'maxmemory', String(base + 2 * 1024 * 1024));
    await redisCli(url, 'CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await env.withTollgate(OVERRIDES, async (tg) => {
        const tenant = h.uniq('lru');
        const n = h.uniq('evict');
        const N = 40; // 4 MB of answers against 2 MB
        for (let i = 0; i < N; i++) await ask(tg, tenant, `q${i} ${n} mock:pad=${PAD} mock:tokens=20,2`);
        assert.deepEqual(await entries(url, tenant), [], 'no entry stored under allkeys-lru');
        assert.equal(await ask(tg, tenant, `q1 ${n} mock:pad=${PAD} mock:tokens=20,2`), 'miss');
        assert.match(tg.stderr, /maxmemory-policy is allkeys-lru: it may evict tollgate's budget counters \(set noeviction\)/);
        assert.equal(Number(await redisCli(url, 'INFO', 'stats').then((s) => /evicted_keys:(\d+)/.exec(s)[1])), 0, 'nothing was evicted');
        await countersMatchRecords(env, tg, tenant, N + 1);
      });
    } finally {
      await redisCli(url, 'CONFIG', 'SET', 'maxmemory', '0');
      await redisCli(url, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    }
  });
});

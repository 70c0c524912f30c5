'use strict';
// Catalogue §5 D54-D59 (reliability-and-test-catalogue.md §2 for the policy): the budget
// store fails in every way a Redis can (down at start, SIGKILL, SIGSTOP, restarted empty,
// error replies) for a capped tenant (admission runs) and an uncapped one (settlement only),
// with on_failure = open and closed. What must hold: the client gets an answer within the
// Redis deadline, open serves, closed answers 503 in the dialect (never 429) and forwards
// nothing, and every served request ends up in the Redis counters exactly once (journal
// replayed idempotently by request id): counters equal the records to the nano-dollar.
//
// D56 decision: the Redis killed with streams in flight runs with appendonly yes +
// appendfsync always, so what it acknowledged before the kill survives the restart; the
// counters must then equal the records exactly, which fails if a settlement that reached
// Redis before the kill is replayed from the journal and counted again.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCtl, readyz, waitReady, metric, sumRecords } = require('../lib/redis-ctl');

const REDIS_TIMEOUT_MS = 250;

// Overrides for a tollgate on `rc` with a capped plan, the given tenants on it, and a
// private journal dir.
function cfg(rc, onFailure, cappedTenants, extra = {}) {
  const o = {
    redis: { url: rc.url, on_failure: onFailure, timeout: `${REDIS_TIMEOUT_MS}ms`, journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j') },
    'plan capped': { price: '9', budget_monthly: '10', on_exceed: 'block' },
    ...extra,
  };
  for (const t of cappedTenants) o[`tenant ${t}`] = { plan: 'capped' };
  return o;
}

// One chat completion through the SDK; resolves {status, id, ms, error} instead of throwing.
async function chat(tg, tenant, content, { model = 'gpt-4o-mini', timeout } = {}) {
  const c = h.openaiClient(tg, tenant);
  const t0 = Date.now();
  try {
    const { response } = await c.chat.completions.create({ model, messages: [{ role: 'user', content }] },
      timeout ? { timeout } : undefined).withResponse();
    return { status: response.status, id: response.headers.get('x-tollgate-request-id'), ms: Date.now() - t0 };
  } catch (e) {
    return { status: e.status, error: e, ms: Date.now() - t0,
      id: e.headers && (e.headers.get ? e.headers.get('x-tollgate-request-id') : e.headers['x-tollgate-request-id']) };
  }
}

// A streamed chat completion with a raw request; resolves {status, id, text, ended}.
function rawStream(tg, tenant, content, model = 'gpt-4o-mini') {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content }] });
    const req = http.request({ host: '127.0.0.1', port: tg.port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tenant-id': tenant, authorization: 'Bearer sk-test' },
      timeout: h.ms(30000) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, id: res.headers['x-tollgate-request-id'], text, ended: true }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// Waits until the tenant's month counters hold `want.requests` and `want.cost`, then checks
// every summed field and that nothing more arrives (a second replay would add).
async function assertCountersMatch(rc, tenant, recs, timeout = h.ms(15000)) {
  const want = sumRecords(recs);
  let last = null;
  try {
    await h.waitFor(async () => {
      last = await rc.counters(tenant);
      return (last.requests || 0) >= want.requests && (last.cost || 0) >= want.cost;
    }, { timeout, interval: 100, what: `Redis counters of ${tenant}` });
  } catch (e) {
    throw new Error(`${e.message}: counters ${JSON.stringify(last)}, records say ${JSON.stringify(want)}`);
  }
  await h.sleep(h.ms(600));
  const c = await rc.counters(tenant);
  const got = {};
  for (const k of Object.keys(want)) got[k] = c[k] || 0;
  assert.deepEqual(got, want, `Redis month counters of ${tenant} equal the sum of its records (no double count)`);
  return c;
}

// Lines in the journal files that name this request id.
function journalLinesFor(journalDir, id) {
  let n = 0;
  let files = [];
  try { files = fs.readdirSync(journalDir); } catch { return 0; }
  for (const f of files) {
    let text = '';
    try { text = fs.readFileSync(path.join(journalDir, f), 'utf8'); } catch { continue; }
    for (const l of text.split('\n')) if (l.includes(id)) n += 1;
  }
  return n;
}

const okRecs = (tg, tenant, n, timeout) => tg.records((r) => r.tenant === tenant && r.outcome === 'ok', n, timeout);

describe('redis faults', () => {
  const env = h.useStack();

  test('D54 Redis down at start, on_failure = open: starts degraded, serves, journals; replayed once Redis is up (counters == records)', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    const capped = h.uniq('d54cap');
    const free = h.uniq('d54free');
    const o = cfg(rc, 'open', [capped]);
    try {
      await env.withTollgate(o, async (tg) => {
        const rz = await readyz(tg);
        assert.equal(rz.status, 200, `/readyz while Redis is down (open): ${rz.body}`);
        assert.deepEqual(rz.json, { status: 'degraded', redis: 'down', records: 'ok' });

        const plan = [[capped, 'mock:tokens=1000,200 mock:cached=100', 'gpt-4o'], [capped, 'mock:tokens=333,77', 'gpt-4o-mini'],
          [capped, 'mock:tokens=50,5', 'gpt-4o'], [free, 'mock:tokens=700,70', 'gpt-4o'], [free, 'mock:tokens=11,3', 'gpt-4o-mini']];
        const ids = [];
        for (const [t, text, model] of plan) {
          const r = await chat(tg, t, text, { model });
          assert.equal(r.status, 200, `${t} served while Redis is down: ${r.error && r.error.message}`);
          ids.push(r.id);
        }
        const s = await rc.counters(capped).catch(() => null);
        assert.equal(s, null, 'Redis really is down');
        const capRecs = await okRecs(tg, capped, 3);
        const freeRecs = await okRecs(tg, free, 2);
        for (const rec of [...capRecs, ...freeRecs]) {
          assert.equal(rec.estimated, false);
          assert.ok(rec.cost_usd > 0, 'priced while Redis is down');
        }
        assert.equal(h.recordNano(capRecs.find((r) => r.id === ids[0])), h.expectedNano('gpt-4o', { input: 1000, cached: 100, output: 200 }));
        for (const id of ids) assert.equal(journalLinesFor(o.redis.journal_dir, id), 1, `settlement of ${id} journaled once`);
        // The gauge is refreshed on the workers' 250 ms tick.
        let pending = null;
        await h.waitFor(async () => (pending = await metric(tg, 'tollgate_journal_pending')) === 5,
          { timeout: h.ms(3000), what: 'tollgate_journal_pending == 5' }).catch((e) => {
          throw new Error(`${e.message}: tollgate_journal_pending = ${pending}`);
        });

        await rc.start();
        const t0 = Date.now();
        await waitReady(tg, 'ready', h.ms(10000));
        await assertCountersMatch(rc, capped, capRecs);
        await assertCountersMatch(rc, free, freeRecs);
        const took = Date.now() - t0;
        assert.ok(took < h.ms(12000), `journal replayed ${took} ms after Redis came up`);
        await h.waitFor(async () => (await metric(tg, 'tollgate_journal_pending')) === 0,
          { timeout: h.ms(3000), what: 'tollgate_journal_pending back to 0 after the replay' });
        const cm = await rc.counters(capped);
        assert.equal(cm.reserved || 0, 0, 'nothing left reserved');

        // After the replay: new spend is settled directly.
        const r = await chat(tg, capped, 'mock:tokens=10,10', { model: 'gpt-4o-mini' });
        assert.equal(r.status, 200);
        await assertCountersMatch(rc, capped, await okRecs(tg, capped, 4));
        assert.equal(journalLinesFor(o.redis.journal_dir, r.id), 0, 'a settlement with Redis up is not journaled');
      });
    } finally {
      await rc.stop();
    }
  });

  test('D55 Redis down at start, on_failure = closed: capped tenant 503 budget_store_unavailable in the dialect (not 429), nothing upstream; uncapped served', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    const capped = h.uniq('d55cap');
    const free = h.uniq('d55free');
    try {
      await env.withTollgate(cfg(rc, 'closed', [capped]), async (tg) => {
        const rz = await readyz(tg);
        assert.notEqual(rz.json && rz.json.status, 'ready', `/readyz must not say ready: ${rz.body}`);

        const nonce = h.uniq('n');
        const since = env.mock.count();
        const r = await chat(tg, capped, `${nonce} mock:tokens=10,10`);
        assert.equal(r.status, 503, `capped tenant with the budget store down (closed): ${r.error && r.error.message}`);
        assert.equal(r.error.code, 'budget_store_unavailable');
        const raw = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: `${nonce} raw` }] },
          { 'X-Tenant-Id': capped });
        assert.equal(raw.status, 503);
        assert.equal(raw.json.error.code, 'budget_store_unavailable');
        assert.equal(typeof raw.json.error.message, 'string');
        assert.ok('type' in raw.json.error && 'param' in raw.json.error, `OpenAI error shape: ${raw.text}`);
        assert.notEqual(raw.headers.get('x-should-retry'), 'false', 'a transient 503 must stay retryable');
        const ant = await h.post(tg, '/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: `${nonce} ant` }] },
          { 'X-Tenant-Id': capped, 'anthropic-version': '2023-06-01' });
        assert.equal(ant.status, 503);
        assert.equal(ant.json.type, 'error', `Anthropic dialect: ${ant.text}`);
        assert.equal(typeof ant.json.error.message, 'string');
        const gem = await h.post(tg, '/v1beta/models/gemini-2.5-flash:generateContent', { contents: [{ parts: [{ text: `${nonce} gem` }] }] },
          { 'X-Tenant-Id': capped });
        assert.equal(gem.status, 503);
        assert.equal(gem.json.error.code, 503, `Gemini dialect: ${gem.text}`);
        assert.equal(gem.json.error.status, 'UNAVAILABLE');
        const up = await h.newRequests(env.mock, since);
        assert.equal(up.filter((q) => q.body && q.body.includes(nonce)).length, 0, 'nothing forwarded for the capped tenant');
        const recs = await tg.records({ tenant: capped }, 4);
        for (const rec of recs) {
          assert.equal(rec.status, 503);
          assert.notEqual(rec.outcome, 'blocked', 'a store failure is not a budget block');
          assert.equal(rec.cost_usd, 0);
        }

        // No caps: admission is skipped, the request is served and its settlement journaled.
        const f = await chat(tg, free, 'mock:tokens=40,4');
        assert.equal(f.status, 200, 'uncapped tenant served with on_failure = closed');
        const freeRecs = await okRecs(tg, free, 1);

        await rc.start();
        await waitReady(tg, 'ready', h.ms(10000));
        await assertCountersMatch(rc, free, freeRecs);
        const c = await rc.counters(capped);
        assert.equal(c.requests || 0, 0, 'refused requests are not counted');
        const again = await chat(tg, capped, 'mock:tokens=10,10');
        assert.equal(again.status, 200, 'capped tenant admitted once Redis is back');
        await assertCountersMatch(rc, capped, await okRecs(tg, capped, 1));
      });
    } finally {
      await rc.stop();
    }
  });

  test('D56 Redis SIGKILLed with 10 streams in flight: streams finish 200; after restart each request counted exactly once', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve({ persist: true });
    await rc.start();
    const capped = h.uniq('d56cap');
    const free = h.uniq('d56free');
    const o = cfg(rc, 'open', [capped]);
    try {
      await env.withTollgate(o, async (tg) => {
        // Settled before the kill (in the AOF): must not be counted again after the restart.
        for (const t of [capped, free]) assert.equal((await chat(tg, t, 'mock:tokens=100,10')).status, 200);
        await rc.cmd('PING');
        await h.waitFor(async () => (await rc.counters(capped)).requests === 1 && (await rc.counters(free)).requests === 1,
          { what: 'pre-kill settlements in Redis' });

        const nonce = h.uniq('n');
        const since = env.mock.count();
        const streams = [];
        for (let i = 0; i < 10; i++) {
          const t = i % 2 ? free : capped;
          streams.push(rawStream(tg, t, `${nonce} s${i} mock:tokens=${200 + i},${20 + i} mock:chunks=8 mock:slow=${120 + 10 * i}`));
        }
        await h.waitFor(() => env.mock.requests().slice(since).filter((q) => q.body && q.body.includes(nonce)).length === 10,
          { timeout: h.ms(5000), what: 'all 10 streams reached the upstream' });
        await h.sleep(h.ms(200));
        await rc.kill();
        const results = await Promise.all(streams);
        for (const [i, r] of results.entries()) {
          assert.equal(r.status, 200, `stream ${i}`);
          const ev = h.parseSSE(r.text);
          assert.equal(ev[ev.length - 1].data, '[DONE]', `stream ${i} complete`);
        }
        const capRecs = await okRecs(tg, capped, 6);
        const freeRecs = await okRecs(tg, free, 6);
        for (const rec of [...capRecs, ...freeRecs]) assert.equal(rec.estimated, false);
        const rz = await readyz(tg);
        assert.deepEqual(rz.json, { status: 'degraded', redis: 'down', records: 'ok' }, 'degraded while Redis is dead');

        await rc.start();
        await waitReady(tg, 'ready', h.ms(10000));
        const cm = await assertCountersMatch(rc, capped, capRecs);
        await assertCountersMatch(rc, free, freeRecs);
        assert.equal(cm.reserved || 0, 0, 'the in-flight reservations were given back by the replayed settlements');
        // exactly once without a key per request: nothing in Redis is named for a request
        for (const rec of [...capRecs, ...freeRecs]) {
          const keys = (await rc.cmd('KEYS', `tollgate:{${rec.tenant}}:*${rec.id}*`)).filter(Boolean);
          assert.deepEqual(keys, [], `no key for request ${rec.id}`);
        }
      });
    } finally {
      await rc.stop();
    }
  });

  test('D57 Redis SIGSTOPped 2 s: every call returns within its deadline and follows on_failure (open serves, closed 503); SIGCONT: normal, counted once', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const t = { oc: h.uniq('d57oc'), of: h.uniq('d57of'), cc: h.uniq('d57cc'), cf: h.uniq('d57cf') };
    const open = await env.start(cfg(rc, 'open', [t.oc]));
    let closed = null;
    try {
      closed = await env.start(cfg(rc, 'closed', [t.cc]));
      for (const [tg, ten] of [[open, t.oc], [open, t.of], [closed, t.cc], [closed, t.cf]]) {
        assert.equal((await chat(tg, ten, 'mock:tokens=20,2')).status, 200, 'warm-up');
      }
      await h.waitFor(async () => (await rc.counters(t.cc)).requests === 1, { what: 'warm-up settled' });

      const UPSTREAM_MS = 100;
      const bound = REDIS_TIMEOUT_MS + UPSTREAM_MS + h.ms(1000);
      rc.pause();
      const t0 = Date.now();
      const calls = [];
      let wave = 0;
      while (Date.now() - t0 < 1600) {
        for (const [tg, ten, mode] of [[open, t.oc, 'open'], [open, t.of, 'open'], [closed, t.cc, 'closed-capped'], [closed, t.cf, 'closed-free']]) {
          calls.push(chat(tg, ten, `w${wave} mock:tokens=30,3 mock:delay=${UPSTREAM_MS}`, { timeout: h.ms(10000) }).then((r) => ({ ...r, mode, ten })));
        }
        wave += 1;
        await h.sleep(300);
      }
      const results = await Promise.all(calls);
      const pausedFor = Date.now() - t0;
      if (pausedFor < 2000) await h.sleep(2000 - pausedFor);
      rc.resume();
      assert.ok(pausedFor < 1900 + bound, `all calls returned while Redis was still stopped (${pausedFor} ms)`);
      for (const r of results) {
        assert.ok(r.ms < bound, `${r.mode} call took ${r.ms} ms (bound ${bound} ms: redis timeout + upstream + 1 s)`);
        if (r.mode === 'closed-capped') {
          assert.equal(r.status, 503, `closed, capped tenant with Redis stopped: ${r.status} ${r.error && r.error.message}`);
          assert.equal(r.error.code, 'budget_store_unavailable');
        } else {
          assert.equal(r.status, 200, `${r.mode}: ${r.status} ${r.error && r.error.message}`);
        }
      }

      await waitReady(open, 'ready', h.ms(10000));
      await waitReady(closed, 'ready', h.ms(10000));
      assert.equal((await chat(closed, t.cc, 'mock:tokens=20,2')).status, 200, 'closed instance admits again after SIGCONT');
      // Settlements sent before the stop may run late when Redis resumes, and are journaled
      // too: the replay must not count them twice.
      for (const [tg, ten] of [[open, t.oc], [open, t.of], [closed, t.cc], [closed, t.cf]]) {
        const recs = tg.readRecords().filter((r) => r.tenant === ten && r.outcome === 'ok');
        await assertCountersMatch(rc, ten, recs, h.ms(20000));
      }
      // open: the requests served while admission timed out end their leases when their
      // (journaled) settlements are replayed.
      await h.waitFor(async () => ((await rc.counters(t.oc)).reserved || 0) === 0,
        { timeout: h.ms(10000), what: `reservations of ${t.oc} released` }).catch(async (e) => {
        throw new Error(`${e.message}: ${JSON.stringify(await rc.counters(t.oc))}`);
      });
      await open.stopAndCheck();
      await closed.stopAndCheck();
    } finally {
      rc.resume();
      await open.stop();
      if (closed) await closed.stop();
      await rc.stop();
    }
  });

  test('D58/D59 Redis restarted empty, and SCRIPT FLUSH: reconnects, scripts reloaded (NOSCRIPT), admission blocks and admits again, new spend counted', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const tiny = h.uniq('d58tiny');
    const free = h.uniq('d58free');
    // $0.001 a month: one gpt-4o call of 1000 output tokens ($0.01) uses it up.
    const o = cfg(rc, 'open', [], { 'plan tiny': { price: '1', budget_monthly: '0.001', on_exceed: 'block' }, [`tenant ${tiny}`]: { plan: 'tiny' } });
    try {
      await env.withTollgate(o, async (tg) => {
        const round = async (label) => {
          const a = await chat(tg, tiny, 'mock:tokens=100,1000', { model: 'gpt-4o' });
          assert.equal(a.status, 200, `${label}: first request admitted`);
          const b = await chat(tg, tiny, 'mock:tokens=100,1000', { model: 'gpt-4o' });
          assert.equal(b.status, 429, `${label}: second request blocked by the admission script: ${b.status} ${b.error && b.error.message}`);
          assert.equal(b.error.code, 'budget_exceeded');
          const f = await chat(tg, free, 'mock:tokens=10,1');
          assert.equal(f.status, 200);
          return a;
        };
        await round('before');
        let m = await h.waitFor(async () => { const c = await rc.counters(tiny); return c.requests === 1 ? c : null; },
          { what: 'first settlement counted' });

        // SCRIPT FLUSH: the next EVALSHA gets NOSCRIPT; the scripts must be reloaded.
        await rc.cmd('SCRIPT', 'FLUSH');
        await rc.cmd('DEL', rc.monthKey(tiny), `tollgate:{${tiny}}:d:${h.periods().day}`);
        await round('after SCRIPT FLUSH');
        m = await h.waitFor(async () => { const c = await rc.counters(tiny); return c.requests === 1 ? c : null; },
          { what: 'the settlement after SCRIPT FLUSH counted' });
        assert.equal(m.cost, h.expectedNano('gpt-4o', { input: 100, output: 1000 }));

        // Restarted empty: detected, reconnected, everything works again on a blank store.
        await rc.stop();
        await waitReady(tg, 'degraded', h.ms(5000));
        await rc.start();
        await waitReady(tg, 'ready', h.ms(10000));
        const before = tg.readRecords().filter((r) => r.tenant === tiny && r.outcome === 'ok').length;
        assert.equal((await rc.cmd('DBSIZE'))[0], '0', 'Redis came back empty');
        const a = await round('after an empty restart');
        m = await h.waitFor(async () => { const c = await rc.counters(tiny); return c.requests === 1 ? c : null; },
          { what: 'new spend counted after the empty restart' });
        const rec = await tg.record(a.id);
        assert.equal(m.cost, h.recordNano(rec));
        assert.equal(tg.readRecords().filter((r) => r.tenant === tiny && r.outcome === 'ok').length, before + 1);
        assert.equal((await rc.counters(free)).requests, 1, 'uncapped tenant counted on the new store');
      });
    } finally {
      await rc.stop();
    }
  });

  test('D59 error replies (OOM: maxmemory 1, noeviction): open serves, closed never 429; spend never recorded as zero, replayed once memory is back', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const t = { oc: h.uniq('d59oc'), of: h.uniq('d59of'), cc: h.uniq('d59cc') };
    await env.withTollgate(cfg(rc, 'open', [t.oc]), async (open) => {
      await env.withTollgate(cfg(rc, 'closed', [t.cc]), async (closed) => {
        assert.equal((await chat(open, t.oc, 'mock:tokens=10,1')).status, 200, 'warm-up');
        assert.equal((await chat(closed, t.cc, 'mock:tokens=10,1')).status, 200, 'warm-up');
        await h.waitFor(async () => (await rc.counters(t.oc)).requests === 1 && (await rc.counters(t.cc)).requests === 1,
          { what: 'warm-up settled' });
        let r3Status = 0;
        try {
          await rc.cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
          await rc.cmd('CONFIG', 'SET', 'maxmemory', '1');
          const r1 = await chat(open, t.oc, 'mock:tokens=500,50', { model: 'gpt-4o' });
          const r2 = await chat(open, t.of, 'mock:tokens=600,60', { model: 'gpt-4o' });
          const r3 = await chat(closed, t.cc, 'mock:tokens=10,1');
          r3Status = r3.status;
          assert.equal(r1.status, 200, `open, capped, OOM: ${r1.error && r1.error.message}`);
          assert.equal(r2.status, 200, `open, uncapped, OOM: ${r2.error && r2.error.message}`);
          // Redis 7 lets a script without flags run past maxmemory once it has done any write
          // (admit.lua's first write, ZREM, is not deny-oom), so the admission itself may
          // succeed under OOM; the settlement (SET NX first) is refused either way. closed
          // must therefore answer 503 or serve; never 429.
          assert.ok(r3.status === 503 || r3.status === 200, `closed, capped, OOM: ${r3.status} ${r3.error && r3.error.message}`);
          if (r3.status === 503) assert.equal(r3.error.code, 'budget_store_unavailable');
          for (const r of [r1, r2]) {
            const rec = await open.record(r.id);
            assert.ok(rec.cost_usd > 0, 'the record keeps the real cost');
          }
          await h.sleep(h.ms(300));
          const during = await rc.counters(t.oc);
          assert.equal(during.requests, 1, 'nothing could be written during OOM');
        } finally {
          await rc.cmd('CONFIG', 'SET', 'maxmemory', '0');
        }
        await assertCountersMatch(rc, t.oc, await okRecs(open, t.oc, 2), h.ms(20000));
        await assertCountersMatch(rc, t.of, await okRecs(open, t.of, 1), h.ms(20000));
        await assertCountersMatch(rc, t.cc, await okRecs(closed, t.cc, r3Status === 200 ? 2 : 1), h.ms(20000));
      });
    });
    await rc.stop();
  });

  test('D59 error replies (READONLY: Redis turned into a replica): open serves, closed 503; journaled and replayed after REPLICAOF NO ONE', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const t = { oc: h.uniq('d59roc'), of: h.uniq('d59rof'), cc: h.uniq('d59rcc'), cf: h.uniq('d59rcf') };
    const dead = await h.freePort();
    await env.withTollgate(cfg(rc, 'open', [t.oc]), async (open) => {
      await env.withTollgate(cfg(rc, 'closed', [t.cc]), async (closed) => {
        try {
          await rc.cmd('REPLICAOF', '127.0.0.1', dead); // a master that never answers: data kept, writes refused
          const nonce = h.uniq('n');
          const since = env.mock.count();
          const r = {
            oc: await chat(open, t.oc, 'mock:tokens=500,50', { model: 'gpt-4o' }),
            of: await chat(open, t.of, 'mock:tokens=600,60', { model: 'gpt-4o' }),
            cc: await chat(closed, t.cc, `${nonce} mock:tokens=10,1`),
            cf: await chat(closed, t.cf, 'mock:tokens=70,7'),
          };
          for (const k of ['oc', 'of', 'cf']) assert.equal(r[k].status, 200, `${k} with READONLY: ${r[k].status} ${r[k].error && r[k].error.message}`);
          assert.equal(r.cc.status, 503, `closed, capped, READONLY: ${r.cc.status} ${r.cc.error && r.cc.error.message}`);
          assert.equal(r.cc.error.code, 'budget_store_unavailable');
          const up = await h.newRequests(env.mock, since);
          assert.equal(up.filter((q) => q.body && q.body.includes(nonce)).length, 0, 'the refused request was not forwarded');
          await h.sleep(h.ms(300));
          for (const k of ['oc', 'of', 'cf']) assert.equal((await rc.counters(t[k])).requests || 0, 0, 'nothing counted while writes fail');
        } finally {
          await rc.cmd('REPLICAOF', 'NO', 'ONE');
        }
        await assertCountersMatch(rc, t.oc, await okRecs(open, t.oc, 1), h.ms(20000));
        await assertCountersMatch(rc, t.of, await okRecs(open, t.of, 1), h.ms(20000));
        await assertCountersMatch(rc, t.cf, await okRecs(closed, t.cf, 1), h.ms(20000));
        assert.equal((await rc.counters(t.cc)).requests || 0, 0, 'the refused request is not counted');
        assert.equal((await chat(closed, t.cc, 'mock:tokens=10,1')).status, 200, 'closed admits again once writes work');
      });
    });
    await rc.stop();
  });

  test('D57 on_failure = closed: a request refused because admission timed out (Redis stopped) leaves no reservation once Redis resumes', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const cc = h.uniq('d57leak');
    try {
      await env.withTollgate(cfg(rc, 'closed', [cc]), async (tg) => {
        assert.equal((await chat(tg, cc, 'mock:tokens=20,2')).status, 200, 'warm-up');
        await h.waitFor(async () => (await rc.counters(cc)).requests === 1, { what: 'warm-up settled' });
        rc.pause();
        let r;
        try {
          r = await chat(tg, cc, 'mock:tokens=20,2');
        } finally {
          rc.resume();
        }
        assert.equal(r.status, 503);
        await waitReady(tg, 'ready', h.ms(10000));
        const rec = await tg.record(r.id);
        assert.equal(rec.status, 503);
        // The admit script sent before the stop runs when Redis resumes; the request it
        // reserved for was refused, so that reservation must be given back (not held for the
        // lease's 600 s, shrinking the tenant's budget and counting toward its rpm).
        let c = null;
        await h.waitFor(async () => ((c = await rc.counters(cc)).reserved || 0) === 0,
          { timeout: h.ms(5000), what: 'no reservation left for the refused request' }).catch(async (e) => {
          const lease = (await rc.cmd('HGET', `tollgate:{${cc}}:lease`, r.id)).join(' ');
          throw new Error(`${e.message}: month ${JSON.stringify(c)}, lease of ${r.id}: ${lease}`);
        });
        assert.equal(c.requests, 1, 'the refused request is not counted');
      });
    } finally {
      await rc.stop();
    }
  });

  test('D59 error replies (WRONGTYPE on the month hash): served (open), journaled, and counted once the key is repaired', { timeout: h.ms(60000) }, async () => {
    const rc = await RedisCtl.reserve();
    await rc.start();
    const capped = h.uniq('d59wcap');
    const free = h.uniq('d59wfree');
    try {
      await env.withTollgate(cfg(rc, 'open', [capped]), async (tg) => {
        for (const ten of [capped, free]) await rc.cmd('SET', rc.monthKey(ten), 'not-a-hash');
        const a = await chat(tg, capped, 'mock:tokens=400,40', { model: 'gpt-4o' });
        const b = await chat(tg, free, 'mock:tokens=300,30', { model: 'gpt-4o' });
        assert.equal(a.status, 200, `capped, WRONGTYPE, open: ${a.error && a.error.message}`);
        assert.equal(b.status, 200, `uncapped, WRONGTYPE, open: ${b.error && b.error.message}`);
        const capRecs = await okRecs(tg, capped, 1);
        const freeRecs = await okRecs(tg, free, 1);
        await h.sleep(h.ms(500));
        await rc.cmd('DEL', rc.monthKey(capped), rc.monthKey(free));
        for (const recs of [capRecs, freeRecs]) {
          const rec = recs[0];
          try {
            await assertCountersMatch(rc, rec.tenant, recs, h.ms(8000));
          } catch (e) {
            const keys = (await rc.cmd('KEYS', `tollgate:{${rec.tenant}}:*`)).filter(Boolean);
            throw new Error(`${e.message}\n(keys: ${keys.join(' ')}; a settle that failed half-way ` +
              'must not leave the stamp that makes its replay a no-op)');
          }
        }
      });
    } finally {
      await rc.stop();
    }
  });

  h.cleanRunTest(env);
});

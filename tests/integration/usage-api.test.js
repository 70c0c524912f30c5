'use strict';
// POST /admin/api/usage: usage that never passed through the proxy (a batch job, a
// self-hosted model, a non-LLM cost) counted like a proxied request: in the tenant's month
// and day spend in Redis (so caps refuse the next proxied call), in the report, in the
// records file, in the CloudEvents export and the soft-limit alerts. Single events, JSON
// arrays and NDJSON; a retried batch counts nothing twice; a bad line refuses the whole
// batch with its index; the same id with other numbers is refused, never merged.

const assert = require('node:assert/strict');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');
const { startReceiver } = require('../lib/ce-receiver');
const { startWebhookSink } = require('../lib/webhook');
const { metric } = require('../lib/redis-ctl');

const TOKEN = 'test-admin-token';
const T = { a: h.uniq('ua'), b: h.uniq('ub'), tight: h.uniq('utight'), batch: h.uniq('ubatch'),
  alert: h.uniq('ualert'), bad: h.uniq('ubad') };
const mKey = (tenant) => `tollgate:{${tenant}}:m:${h.periods().month}`;
const STREAM = 'tollgate:usage-stream';
const dKey = (tenant) => `tollgate:{${tenant}}:d:${h.periods().day}`;

async function usage(tg, body, { token = TOKEN, contentType = 'application/json', method = 'POST' } = {}) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/usage`, {
    method,
    headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: method === 'POST' ? (typeof body === 'string' ? body : JSON.stringify(body)) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

async function hget(redis, key, field) {
  const [v] = await redis.cmd('HGET', key, field);
  return Number(v || 0);
}
const monthCost = (redis, tenant) => hget(redis, mKey(tenant), 'cost');

describe('usage API', () => {
  let redis; let mock; let rx; let sink; let tg;
  before(async () => {
    redis = await h.startRedis();
    mock = await h.startMock();
    rx = await startReceiver();
    sink = await startWebhookSink();
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    tg = await h.startTollgate({ redis, mock, overrides: {
      export: { cloudevents_url: rx.url, source: 'tollgate-usage-test', spool_dir: spool },
      records: { redis_stream: STREAM },
      alerts: { webhook: sink.url, thresholds: '50%' },
      'plan tight': { price: '9', budget_monthly: '0.05', on_exceed: 'block' },
      'plan pro': { price: '49', budget_monthly: '1' },
      [`tenant ${T.a}`]: { plan: 'pro' },
      [`tenant ${T.b}`]: { plan: 'pro' },
      [`tenant ${T.tight}`]: { plan: 'tight' },
      [`tenant ${T.batch}`]: { plan: 'pro' },
      [`tenant ${T.alert}`]: { plan: 'pro' },
      [`tenant ${T.bad}`]: { plan: 'pro' },
    } });
  }, { timeout: h.ms(60000) });
  after(async () => {
    if (tg) await tg.stop();
    if (sink) await sink.close();
    if (rx) await rx.stop();
    if (mock) await mock.stop();
    if (redis) await redis.stop();
  }, { timeout: h.ms(60000) });

  test('one event with tokens and a model: priced from the list, counted, recorded, exported, in the report', { timeout: h.ms(30000) }, async () => {
    const id = h.uniq('job');
    const r = await usage(tg, { id, tenant: T.a, user: 'u_1', feature: 'nightly', model: 'gpt-4o', input_tokens: 1000, cached_tokens: 200, output_tokens: 200 });
    assert.equal(r.status, 200, r.text);
    const nano = h.expectedNano('gpt-4o', { input: 1000, cached: 200, output: 200 });
    assert.equal(r.json.counted, 1);
    assert.equal(r.json.duplicates, 0);
    assert.deepEqual(r.json.events, [{ index: 0, id, status: 'counted', cost_usd: nano / 1e9 }]);

    const rec = await tg.record(id);
    h.assertRecordShape(rec);
    assert.equal(rec.endpoint, '/admin/api/usage', 'the record says where it came from');
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.provider, 'openai');
    assert.equal(rec.tenant, T.a);
    assert.equal(rec.user, 'u_1');
    assert.equal(rec.feature, 'nightly');
    assert.equal(rec.plan, 'pro');
    assert.equal(rec.model, 'gpt-4o');
    h.assertTokens(rec, { input: 1000, cached: 200, output: 200 });
    assert.equal(h.recordNano(rec), nano);
    assert.equal(rec.priced, true);
    assert.equal(rec.estimated, false);

    const got = await rx.waitIds([id]);
    const e = got.get(id);
    assert.equal(e.type, 'tollgate.usage');
    assert.equal(e.subject, T.a);
    assert.deepEqual(e.data, rec, 'the CloudEvent carries the record');
    assert.deepEqual(rx.invalid, []);
    // the Redis stream: the same record
    const entry = await h.waitFor(async () => {
      const lines = await redis.cmd('XRANGE', STREAM, '-', '+');
      const at = lines.findIndex((l) => l.includes(`"id":"${id}"`));
      return at >= 0 ? JSON.parse(lines[at]) : null;
    }, { what: 'the event in the Redis stream' });
    assert.deepEqual(entry, rec);

    await h.waitFor(async () => (await monthCost(redis, T.a)) === nano, { what: 'the month spend caps read' });
    assert.equal(await hget(redis, dKey(T.a), 'cost'), nano, 'the day spend');
    // the report (requests and tokens arrive with the tally's next flush)
    const rep = await h.waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const j = await res.json();
      const row = j.tenants.find((t) => t.tenant === T.a);
      return row && row.requests === 1 ? row : null;
    }, { what: 'the event in the report' });
    assert.equal(Math.round(rep.cost_usd * 1e9), nano);
    assert.equal(rep.input_tokens, 1000);
    assert.equal(rep.output_tokens, 200);
  });

  test('cost_usd instead of tokens; the same event again is a duplicate, counted once', async () => {
    const id = h.uniq('gpu');
    const ev = { id, tenant: T.b, feature: 'self-hosted', cost_usd: 0.123456789 };
    const r = await usage(tg, ev);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.events[0].status, 'counted');
    const again = await usage(tg, ev);
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.json.events, [{ index: 0, id, status: 'duplicate', cost_usd: 0.123456789 }]);
    assert.equal(again.json.counted, 0);
    const rec = await tg.record(id);
    assert.equal(h.recordNano(rec), 123456789);
    assert.equal(rec.provider, '-');
    assert.equal(rec.model, null);
    await h.sleep(300);
    assert.equal(tg.readRecords().filter((x) => x.id === id).length, 1, 'one record');
    await h.waitFor(async () => (await monthCost(redis, T.b)) === 123456789, { what: 'settled' });
    await h.sleep(200);
    assert.equal(await monthCost(redis, T.b), 123456789, 'counted once');
  });

  test('a JSON array and NDJSON; a retried batch counts nothing twice', { timeout: h.ms(30000) }, async () => {
    const ids = Array.from({ length: 5 }, () => h.uniq('b'));
    const evs = ids.map((id, i) => ({ id, tenant: T.batch, model: 'gpt-4o-mini', input_tokens: 100 * (i + 1), output_tokens: 10 }));
    const r = await usage(tg, evs.slice(0, 3));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.counted, 3);
    const nd = evs.slice(3).map((e) => JSON.stringify(e)).join('\n') + '\n';
    const r2 = await usage(tg, nd, { contentType: 'application/x-ndjson' });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json.counted, 2);
    // the whole batch again, as NDJSON: every event a duplicate
    const r3 = await usage(tg, evs.map((e) => JSON.stringify(e)).join('\n'), { contentType: 'application/x-ndjson' });
    assert.equal(r3.status, 200, r3.text);
    assert.equal(r3.json.counted, 0);
    assert.equal(r3.json.duplicates, 5);
    const want = evs.reduce((s, e) => s + h.expectedNano('gpt-4o-mini', { input: e.input_tokens, output: 10 }), 0);
    await tg.records((x) => ids.includes(x.id), 5);
    await h.sleep(300);
    assert.equal(tg.readRecords().filter((x) => ids.includes(x.id)).length, 5, 'five records, not ten');
    await h.waitFor(async () => (await monthCost(redis, T.batch)) === want, { what: 'the batch settled' });
    await h.sleep(200);
    assert.equal(await monthCost(redis, T.batch), want, 'counted once');
    await rx.waitIds(ids);
  });

  test('a bad line refuses the whole batch with its index; the fixed batch is then counted once', async () => {
    const ids = Array.from({ length: 3 }, () => h.uniq('r'));
    const good = (id) => ({ id, tenant: T.bad, model: 'gpt-4o', input_tokens: 10, output_tokens: 10 });
    const cases = [
      [{ ...good(ids[2]), output_tokens: -5 }, /"output_tokens" must not be negative/],
      [{ ...good(ids[2]), input_tokens: 1.5 }, /"input_tokens" must be an integer/],
      [{ id: ids[2], tenant: T.bad, cost_usd: 0.0000000001 }, /more than 9 decimals/],
      [{ id: ids[2], tenant: T.bad, cost_usd: 0.1234567891 }, /more than 9 decimals/],
      [{ id: ids[2], tenant: T.bad, cost_usd: -1 }, /must not be negative/],
      [{ ...good(ids[2]), tenant: h.uniq('nobody') }, /unknown tenant/],
      [{ ...good(ids[2]), model: 'no-such-model' }, /not in the price list/],
      [{ ...good(ids[2]), input_token: 3 }, /unknown member "input_token"/],
      [{ tenant: T.bad, cost_usd: 1 }, /"id" is missing/],
      [{ ...good(ids[2]), tenant: 'a{b}' }, /"tenant"/],
      [{ ...good(ids[2]), cached_tokens: 11 }, /cannot exceed/],
      [{ id: ids[2], tenant: T.bad, model: 'gpt-4o' }, /send "model" with token counts, or "cost_usd"/],
      [{ ...good(ids[0]), output_tokens: 11 }, /appears at index 0 with different numbers/],
    ];
    for (const [bad, re] of cases) {
      const r = await usage(tg, [good(ids[0]), good(ids[1]), bad]);
      assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
      assert.equal(r.json.error.code, 'bad_request');
      assert.equal(r.json.error.index, 2, r.text);
      assert.match(r.json.error.message, re);
    }
    // NDJSON: a line that is not JSON is named by its index too
    const nd = [JSON.stringify(good(ids[0])), '{"id": "x",', JSON.stringify(good(ids[1]))].join('\n');
    const rn = await usage(tg, nd);
    assert.equal(rn.status, 400, rn.text);
    assert.equal(rn.json.error.index, 1);
    assert.match(rn.json.error.message, /not JSON/);
    for (const body of ['', '[]', '"x"', '{"id":"a","id":"b","tenant":"t","cost_usd":1}']) {
      const r = await usage(tg, body);
      assert.equal(r.status, 400, `${body}: ${r.text}`);
    }
    await h.sleep(200);
    assert.equal(await monthCost(redis, T.bad), 0, 'nothing of a refused batch was counted');
    assert.equal(tg.readRecords().filter((x) => ids.includes(x.id)).length, 0, 'nor recorded');

    const fixed = await usage(tg, ids.map(good));
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal(fixed.json.counted, 3);
    const retry = await usage(tg, ids.map(good));
    assert.equal(retry.json.counted, 0);
    const three = 3 * h.expectedNano('gpt-4o', { input: 10, output: 10 });
    await h.waitFor(async () => (await monthCost(redis, T.bad)) === three, { what: 'the fixed batch settled' });
  });

  test('the same id with other numbers is refused (409), not merged; nothing of that batch counts', async () => {
    const id = h.uniq('dup');
    const fresh = h.uniq('fresh');
    const first = await usage(tg, { id, tenant: T.a, cost_usd: 0.5 });
    assert.equal(first.status, 200, first.text);
    const before = await h.waitFor(async () => { const c = await monthCost(redis, T.a); return c >= 5e8 ? c : null; },
      { what: 'the first event settled' });
    const r = await usage(tg, [{ id: fresh, tenant: T.a, cost_usd: 0.25 }, { id, tenant: T.a, cost_usd: 0.75 }]);
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.error.code, 'conflict');
    assert.equal(r.json.error.index, 1);
    assert.match(r.json.error.message, /other numbers/);
    await h.sleep(300);
    assert.equal(await monthCost(redis, T.a), before, 'neither event of the refused batch counted');
    assert.equal(tg.readRecords().filter((x) => x.id === fresh).length, 0);
    // the id keeps the first numbers, with a bounded lifetime
    const ttl = Number((await redis.cmd('TTL', `tollgate:usage:${id}`))[0]);
    assert.ok(ttl > 6 * 86400 && ttl <= 7 * 86400, `id remembered for 7 days (ttl ${ttl})`);
  });

  test('usage counts toward a hard cap: the next proxied request is refused', async () => {
    const c = h.openaiClient(tg, T.tight);
    const ok = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi mock:tokens=10,5' }] });
    assert.ok(ok.choices.length);
    const r = await usage(tg, { id: h.uniq('big'), tenant: T.tight, cost_usd: 0.06 });
    assert.equal(r.status, 200, r.text);
    // settled by a worker right after the answer: the month spend is over the $0.05 cap
    await h.waitFor(async () => (await monthCost(redis, T.tight)) > 5e7, { what: 'the usage settled' });
    await assert.rejects(
      c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] }),
      (e) => e.status === 429);
  });

  test('usage crossing the soft limit fires the alert', { timeout: h.ms(20000) }, async () => {
    const r = await usage(tg, { id: h.uniq('half'), tenant: T.alert, cost_usd: 0.6 });
    assert.equal(r.status, 200, r.text);
    const [post] = await sink.waitFor((p) => p.json && p.json.tenant === T.alert, 1);
    assert.equal(post.json.threshold_pct, 50);
    assert.equal(post.json.plan, 'pro');
    assert.equal(Number(post.json.spend_usd), 0.6);
  });

  test('admin token required; POST only; a body over 1 MiB is 413', async () => {
    assert.equal((await usage(tg, { id: 'x', tenant: T.a, cost_usd: 1 }, { token: null })).status, 401);
    assert.equal((await usage(tg, { id: 'x', tenant: T.a, cost_usd: 1 }, { token: 'wrong' })).status, 401);
    assert.equal((await usage(tg, null, { method: 'GET' })).status, 405);
    const big = JSON.stringify([{ id: 'x', tenant: T.a, feature: 'f'.repeat(100), cost_usd: 1 }]).padEnd(1100000, ' ');
    assert.equal((await usage(tg, big)).status, 413);
    const many = Array.from({ length: 1001 }, (_, i) => ({ id: `m${i}`, tenant: T.a, cost_usd: 0.001 }));
    const r = await usage(tg, many);
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /more than 1000 events/);
  });

  test('metrics count counted, duplicate and refused; refusals are logged', async () => {
    // earlier tests: 1 + 1 + 5 + 3 + 1 + 1 + 1 events counted, 1 + 5 + 3 duplicates
    await h.waitFor(async () => (await metric(tg, 'tollgate_usage_events_counted_total')) === 13, { what: '13 counted' });
    assert.equal(await metric(tg, 'tollgate_usage_events_duplicate_total'), 9);
    assert.ok((await metric(tg, 'tollgate_usage_requests_refused_total')) >= 20);
    assert.match(tg.stderr, /usage API: refused \(400\), event 2: "output_tokens" must not be negative/);
    assert.match(tg.stderr, /usage API: refused \(409\), event 1: id "[^"]+" was reported before with other numbers/);
  });

  test('tollgate exits 0 on SIGTERM without sanitizer or valgrind reports', { timeout: h.ms(60000) }, async () => {
    await tg.stopAndCheck();
    tg = null;
  });
});

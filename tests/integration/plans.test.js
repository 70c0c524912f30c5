'use strict';
// Plans as SaaS sell them, through the official SDKs with a real redis-server: an allowance of
// tokens consumed into overage with the exact overage_usd (a price per 1M tokens and cost + N%),
// a request allowance that blocks with allowance_exhausted in every dialect, one that downgrades,
// the race against a tight allowance, and the report's allowance columns (JSON and CSV).

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { startWebhookSink } = require('../lib/webhook');

const PREFIX = 'tollgate:';
const DOWN_MAP = 'gpt-4o > gpt-4o-mini';
const PLANS = {
  'plan growth': { price: 19, included_tokens: 1000, on_allowance: 'overage', overage: '4.00' },
  'plan markup': { price: 5, included_tokens: 100, on_allowance: 'overage', overage: 'cost + 50%' },
  'plan analyses': { price: 9, included_requests: 2, on_allowance: 'block' },
  'plan lite': { price: 9, included_tokens: 100, on_allowance: 'downgrade', downgrade: DOWN_MAP },
  'plan tight': { price: 9, included_tokens: 500, on_allowance: 'block' },
  'plan capped': { price: 9, budget_monthly: 1, hard_limit: 2 },
  'plan four': { price: 9, included_requests: 4, on_allowance: 'block' },
};

const monthKey = (tenant) => `${PREFIX}{${tenant}}:m:${new Date().toISOString().slice(0, 7)}`;
const chat = (content) => [{ role: 'user', content }];

function toNextMonth(msEpoch) {
  const d = new Date(msEpoch);
  return (Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - msEpoch) / 1000;
}

async function month(redis, tenant) {
  const m = await redis.hgetall(monthKey(tenant));
  const o = {};
  for (const [k, v] of Object.entries(m)) o[k] = Number(v);
  return o;
}

// Waits until the tenant's month hash counts n settled units of its allowance.
async function waitUsed(redis, tenant, n) {
  return h.waitFor(async () => {
    const m = await month(redis, tenant);
    return (m.allowance_used || 0) >= n ? m : null;
  }, { what: `${n} allowance units settled for ${tenant}` });
}

function runReport(configFile, args) {
  return new Promise((resolve) => {
    execFile(h.BINARY, ['report', '-c', configFile, ...args], { timeout: h.ms(20000) },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

describe('plans: allowances and overage', () => {
  const env = h.useStack({ overrides: { ...PLANS } });
  const client = (tenant, plan) => h.openaiClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': plan } });

  test('an allowance of tokens consumed into overage: X-Tollgate-Allowance-Remaining, overage at $4 per 1M tokens to the nano-dollar, never refused', async () => {
    const tenant = h.uniq('growth');
    const c = client(tenant, 'growth');
    const r1 = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chat('mock:tokens=600,100') }).withResponse();
    assert.equal(r1.response.status, 200);
    assert.equal(r1.response.headers.get('x-tollgate-allowance-remaining'), '1000');
    await waitUsed(env.redis, tenant, 700);
    const r2 = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chat('mock:tokens=600,100') }).withResponse();
    assert.equal(r2.response.headers.get('x-tollgate-allowance-remaining'), '300');
    let m = await waitUsed(env.redis, tenant, 1400);
    assert.equal(m.overage_units, 400);
    assert.equal(m.overage_usd, 400 * 4000, '400 tokens past the allowance at $4 per 1M = $0.0016');
    // the second request's cost, 400 of its 700 tokens past the allowance
    const cost2 = h.expectedNano('gpt-4o-mini', { input: 600, output: 100 });
    assert.equal(m.overage_cost, Math.floor(cost2 * 400 / 700));
    // past the allowance it goes on being served, all of it overage
    const r3 = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chat('mock:tokens=50,50') }).withResponse();
    assert.equal(r3.response.status, 200);
    assert.equal(r3.response.headers.get('x-tollgate-allowance-remaining'), '0');
    m = await waitUsed(env.redis, tenant, 1500);
    assert.equal(m.overage_units, 500);
    assert.equal(m.overage_usd, 500 * 4000);
    // the day's share too, for the revenue trend per day
    const day = await env.redis.hgetall(`${PREFIX}{${tenant}}:d:${new Date().toISOString().slice(0, 10)}`);
    assert.deepEqual([Number(day.overage_units), Number(day.overage_usd)], [500, 500 * 4000]);
  });

  test('overage = cost + 50%: the AI cost of the tokens past the allowance, marked up', async () => {
    const tenant = h.uniq('markup');
    const c = client(tenant, 'markup');
    await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 100, messages: chat('mock:tokens=300,100') });
    const m = await waitUsed(env.redis, tenant, 400);
    const cost = h.expectedNano('gpt-4o', { input: 300, output: 100 });
    const share = Math.floor(cost * 300 / 400);
    assert.equal(m.overage_units, 300);
    assert.equal(m.overage_cost, share);
    assert.equal(m.overage_usd, Math.floor(share * 1.5));
  });

  test('on_allowance = block: the third of two included requests is a 429 allowance_exhausted the SDKs do not retry, in each dialect', async () => {
    const tenant = h.uniq('analyses');
    const c = client(tenant, 'analyses');
    for (let i = 0; i < 2; i++) {
      const r = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
      assert.equal(r.response.headers.get('x-tollgate-allowance-remaining'), String(2 - i));
      await waitUsed(env.redis, tenant, i + 1);
    }
    const { OpenAI } = require('openai');
    const retrying = new OpenAI({ baseURL: `${env.tg.base}/v1`, apiKey: 'sk-test', timeout: h.ms(20000),
      defaultHeaders: { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'analyses' } });
    const t0 = Date.now();
    const err = await retrying.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') })
      .then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, `RateLimitError, got ${err && err.message}`);
    assert.ok(Date.now() - t0 < h.ms(1000), 'not retried by the SDK');
    assert.equal(err.code, 'allowance_exhausted');
    assert.equal(err.type, 'insufficient_quota');
    assert.match(err.message, /used the 2 requests included in its plan this billing period/);
    const hd = (n) => (typeof err.headers.get === 'function' ? err.headers.get(n) : err.headers[n]);
    assert.equal(hd('x-should-retry'), 'false');
    assert.ok(Math.abs(Number(hd('retry-after')) - toNextMonth(Date.now())) <= 2, 'Retry-After to the month end');
    const { Anthropic } = require('@anthropic-ai/sdk');
    const ae = await h.anthropicClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': 'analyses' } })
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: chat('mock:tokens=5,5') }).then(() => null, (e) => e);
    assert.ok(ae instanceof Anthropic.RateLimitError, `anthropic RateLimitError, got ${ae && ae.message}`);
    const ge = await h.geminiClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': 'analyses' } })
      .models.generateContent({ model: 'gemini-2.5-flash', contents: 'mock:tokens=5,5' }).then(() => null, (e) => e);
    assert.ok(ge && ge.status === 429 && /RESOURCE_EXHAUSTED/.test(ge.message), `gemini 429, got ${ge && ge.message}`);
    const recs = await env.tg.records({ tenant }, 5);
    assert.equal(recs.filter((r) => r.outcome === 'blocked').length, 3);
    const m = await month(env.redis, tenant);
    assert.equal(m.allowance_used, 2, 'blocked requests use nothing');
    assert.equal(m.allowance_reserved || 0, 0);
  });

  test('on_allowance = downgrade: past the allowance the cheaper model answers', async () => {
    const tenant = h.uniq('lite');
    const c = client(tenant, 'lite');
    const r1 = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chat('mock:tokens=100,20') }).withResponse();
    assert.equal(r1.response.headers.get('x-tollgate-downgraded'), null);
    await waitUsed(env.redis, tenant, 120);
    const r2 = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chat('mock:tokens=10,2') }).withResponse();
    assert.equal(r2.response.headers.get('x-tollgate-downgraded'), 'gpt-4o -> gpt-4o-mini');
    assert.equal(r2.response.headers.get('x-tollgate-allowance-remaining'), '0');
    const recs = await env.tg.records({ tenant }, 2);
    assert.equal(recs[1].model, 'gpt-4o-mini');
    assert.equal(recs[1].downgraded, true);
  });

  test('race: 30 parallel requests against a 500-token allowance overshoot by at most one request', async () => {
    const tenant = h.uniq('tight');
    const c = client(tenant, 'tight');
    // each uses 5 + 50 tokens; its estimate (the body's input, max_tokens) bounds that
    const all = await Promise.all(Array.from({ length: 30 }, () =>
      c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 50, messages: chat('mock:tokens=5,50') })
        .then(() => 'ok', (e) => (e.status === 429 ? e.code : `error ${e.message}`))));
    const ok = all.filter((x) => x === 'ok').length;
    assert.ok(all.every((x) => x === 'ok' || x === 'allowance_exhausted'), JSON.stringify(all));
    const m = await waitUsed(env.redis, tenant, ok * 55);
    assert.equal(m.allowance_used, ok * 55);
    assert.ok(m.allowance_used <= 500 + 55, `used ${m.allowance_used} of 500 (at most one request over)`);
    assert.ok(ok >= 8, `the allowance was used: ${ok} admitted`);
    await h.waitFor(async () => ((await month(env.redis, tenant)).allowance_reserved || 0) === 0 || null,
      { what: 'no allowance reserved after the race' });
  });

  test('report JSON and CSV: included_tokens, used_tokens, overage_tokens, overage_usd; revenue = price + overage', async () => {
    const tenant = h.uniq('rep');
    const c = client(tenant, 'growth');
    await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chat('mock:tokens=1000,500') });
    await waitUsed(env.redis, tenant, 1500);
    await env.redis.waitRequests(tenant, 1);
    const period = new Date().toISOString().slice(0, 7);
    const j = await runReport(env.tg.configFile, ['--period', period, '--tenant', tenant, '--format', 'json']);
    assert.equal(j.code, 0, j.stderr);
    const row = JSON.parse(j.stdout).tenants.find((t) => t.tenant === tenant);
    assert.ok(row, j.stdout);
    assert.equal(row.included_tokens, 1000);
    assert.equal(row.used_tokens, 1500);
    assert.equal(row.overage_tokens, 500);
    assert.equal(row.overage_usd, 0.002);
    assert.equal(row.included_requests, null);
    // the plan's price prorated over the days since the tenant's first traffic, plus overage
    const d = new Date();
    const days = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
    const prorated = Math.round(19e9 * (days - d.getUTCDate() + 1) / days);
    assert.ok(Math.abs(Math.round(row.revenue_usd * 1e9) - (prorated + 2000000)) <= 1, `revenue ${row.revenue_usd}`);
    const csv = await runReport(env.tg.configFile, ['--period', period, '--tenant', tenant, '--format', 'csv']);
    assert.equal(csv.code, 0, csv.stderr);
    const [head, line] = csv.stdout.trim().split('\n');
    const cols = head.split(',');
    const vals = line.split(',');
    const at = (name) => vals[cols.indexOf(name)];
    assert.equal(at('included_tokens'), '1000');
    assert.equal(at('used_tokens'), '1500');
    assert.equal(at('overage_tokens'), '500');
    assert.equal(at('overage_usd'), '0.002');
    assert.equal(at('revenue_usd'), String(row.revenue_usd));
  });

  async function usage(headers, method = 'GET') {
    const res = await fetch(`${env.tg.base}/v1/tollgate/usage`, { method, headers });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, text, headers: res.headers };
  }

  test('GET /v1/tollgate/usage: the tenant\'s period, used and included tokens, percentages, standing, a user; never cost, price or margin', async () => {
    const tenant = h.uniq('use');
    const c = h.openaiClient(env.tg, tenant, { headers: { 'X-Tenant-Plan': 'growth', 'X-User-Id': 'u_1' } });
    await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chat('mock:tokens=600,200') });
    await waitUsed(env.redis, tenant, 800);
    await env.redis.waitRequests(tenant, 1);
    const r = await usage({ 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'growth', 'X-User-Id': 'u_1' });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type'), /application\/json/);
    const now = new Date();
    const period = now.toISOString().slice(0, 7);
    const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString().replace('.000', '');
    assert.deepEqual(r.json, {
      tenant, plan: 'growth', period, period_start: `${period}-01T00:00:00Z`, period_end: end,
      used_tokens: 800, included_tokens: 1000, used_requests: 1, included_requests: null,
      allowance_used_pct: 80, overage: 0, budget_used_pct: null,
      caps: { monthly_pct: null, daily_pct: null, hard_limit_pct: null },
      downgraded: false, blocked: false,
      user: { user: 'u_1', used_tokens: 800, requests: 1, budget_used_pct: null, downgraded: false, blocked: false },
    });
    assert.doesNotMatch(r.text, /cost|price|margin|revenue|usd/i, 'no money in the answer');
    // another user of the same tenant has used nothing
    const other = await usage({ 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'growth', 'X-User-Id': 'u_2' });
    assert.deepEqual(other.json.user, { user: 'u_2', used_tokens: 0, requests: 0, budget_used_pct: null, downgraded: false, blocked: false });
    // a tenant without traffic, on a dollar-capped plan
    const fresh = await usage({ 'X-Tenant-Id': h.uniq('nobody') });
    assert.equal(fresh.status, 200);
    assert.equal(fresh.json.plan, 'free');
    assert.equal(fresh.json.used_tokens, 0);
    assert.equal(fresh.json.included_tokens, null);
    assert.equal(fresh.json.allowance_used_pct, null);
    assert.equal(fresh.json.user, undefined);
    // bad asks: no tenant, a malformed one, not GET; no record is written for any of them
    const none = await usage({});
    assert.equal(none.status, 400);
    assert.equal(none.json.error.code, 'missing_tenant');
    assert.equal((await usage({ 'X-Tenant-Id': 'a b' })).json.error.code, 'invalid_header');
    assert.equal((await usage({ 'X-Tenant-Id': tenant }, 'POST')).status, 405);
    await h.sleep(h.ms(200));
    assert.equal(env.tg.readRecords().filter((x) => x.endpoint === '/v1/tollgate/usage').length, 0);
  });

  test('usage endpoint: blocked at a request allowance that blocks, downgraded at one that downgrades, percent of a dollar cap', async () => {
    const tenant = h.uniq('use-blk');
    await env.redis.cmd('HSET', monthKey(tenant), 'allowance_used', '2');
    const b = await usage({ 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'analyses' });
    assert.equal(b.json.included_requests, 2);
    assert.equal(b.json.used_requests, 2);
    assert.equal(b.json.allowance_used_pct, 100);
    assert.equal(b.json.blocked, true);
    assert.equal(b.json.downgraded, false);
    const l = h.uniq('use-lite');
    await env.redis.cmd('HSET', monthKey(l), 'allowance_used', '150');
    const d = await usage({ 'X-Tenant-Id': l, 'X-Tenant-Plan': 'lite' });
    assert.equal(d.json.downgraded, true);
    assert.equal(d.json.blocked, false);
    assert.equal(d.json.allowance_used_pct, 150);
    const cap = h.uniq('use-cap');
    await env.redis.cmd('HSET', monthKey(cap), 'cost', '250000000'); // $0.25 of the $1 cap
    const p = await usage({ 'X-Tenant-Id': cap, 'X-Tenant-Plan': 'capped' });
    assert.equal(p.json.budget_used_pct, 25);
    assert.deepEqual(p.json.caps, { monthly_pct: 25, daily_pct: null, hard_limit_pct: 12.5 });
    assert.equal(p.json.blocked, false);
  });

  test('alerts: thresholds of the allowance, and one blocked event a month, to the webhook', { timeout: h.ms(60000) }, async () => {
    const sink = await startWebhookSink();
    try {
      await env.withTollgate({ ...PLANS, server: { workers: 1 }, alerts: { webhook: sink.url, thresholds: '50%, 100%' } }, async (tg) => {
        const tenant = h.uniq('alerted');
        const mine = (p) => p.json && p.json.tenant === tenant;
        const c = h.openaiClient(tg, tenant, { headers: { 'X-Tenant-Plan': 'four' } });
        const ask = () => c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') })
          .then(() => 200, (e) => e.status);
        assert.equal(await ask(), 200);
        await waitUsed(env.redis, tenant, 1);
        await h.sleep(h.ms(300));
        assert.equal(sink.matching(mine).length, 0, '1 of 4: under 50%');
        for (let i = 2; i <= 4; i++) {
          assert.equal(await ask(), 200);
          await waitUsed(env.redis, tenant, i);
        }
        const posts = await sink.waitFor(mine, 2);
        assert.deepEqual(posts.map((p) => [p.json.threshold_pct, p.json.used]), [[50, 2], [100, 4]]);
        for (const p of posts) {
          assert.equal(p.json.kind, 'allowance');
          assert.equal(p.json.unit, 'requests');
          assert.equal(p.json.included, 4);
          assert.equal(p.json.plan, 'four');
        }
        for (let i = 0; i < 3; i++) assert.equal(await ask(), 429);
        const all = await sink.waitFor(mine, 3);
        const ev = all.find((p) => p.json.kind === 'standing');
        assert.ok(ev, JSON.stringify(all.map((p) => p.json)));
        assert.equal(ev.json.event, 'blocked');
        assert.equal(ev.json.reason, 'included requests');
        assert.match(ev.json.text, /is blocked \(included requests\)/);
        await h.sleep(h.ms(500));
        assert.equal(sink.matching(mine).length, 3, 'one blocked event, not one per refused request');
      });
    } finally {
      await sink.close();
    }
  });

  h.cleanRunTest(env);
});

'use strict';
// Margin report and admin API end to end: real traffic through tollgate with the openai SDK
// for several tenants and plans, on different days of one month (tollgate restarted with
// TOLLGATE_CLOCK_OFFSET), a plan change mid-month through X-Tenant-Plan; then
// `tollgate report --format json` and GET /admin/api/tenants must agree with each other and
// with the records, to the nano-dollar.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test, before } = require('node:test');
const h = require('../lib/harness');

const TOKEN = 'test-admin-token';
const MONTH = '2031-03'; // 31 days, far from today: nothing else lands there
const acme = h.uniq('acme'); // [tenant] plan pro: $120 a year
const idle = h.uniq('idle'); // [tenant] plan starter, no traffic: no revenue, cost 0
const bob = h.uniq('bob'); // starter (plan header) from day 3, pro from day 20
const carol = h.uniq('carol'); // free: no revenue

// Seconds to add to now so tollgate's clock reads that day of MONTH at 12:00 UTC.
function offsetFor(day) {
  const target = Date.parse(`${MONTH}-${String(day).padStart(2, '0')}T12:00:00Z`);
  return String(Math.floor((target - Date.now()) / 1000));
}

const overrides = {
  'upstream openai': { api_key: 'sk-upstream-secret' },
  alerts: { webhook: 'https://127.0.0.1:1/hook-secret' },
  'plan free': { price: '0' },
  'plan starter': { price: '9' },
  'plan pro': { price: '120', price_period: 'year' },
  [`tenant ${acme}`]: { plan: 'pro' },
  [`tenant ${idle}`]: { plan: 'starter' },
};

// The CLI reads the month as of day 20, like the tollgate that serves the admin API.
function runReport(args, env = {}) {
  return new Promise((resolve) => {
    execFile(h.BINARY, ['report', ...args], { env: { ...process.env, TOLLGATE_CLOCK_OFFSET: offsetFor(20), ...env }, timeout: h.ms(20000) },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

async function adminGet(tg, p, token = TOKEN) {
  const res = await fetch(`http://127.0.0.1:${tg.adminPort}${p}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

const nano = (usd) => Math.round(usd * 1e9);

describe('report and admin API', () => {
  const env = h.useStack({ tollgate: false });
  const records = [];
  let configFile;

  async function day(d, fn) {
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides, env: { TOLLGATE_CLOCK_OFFSET: offsetFor(d) } });
    try {
      await fn(tg);
      await h.waitFor(async () => {
        const got = tg.readRecords();
        return got.length >= tg.expected ? got : null;
      }, { what: 'records of the day' });
    } finally {
      records.push(...tg.readRecords());
      await tg.stopAndCheck();
    }
    return tg;
  }

  async function chat(tg, tenant, model, tokens, headers = {}) {
    tg.expected = (tg.expected || 0) + 1;
    const c = h.openaiClient(tg, tenant, { headers });
    const r = await c.chat.completions.create({ model, messages: [{ role: 'user', content: `${h.uniq('n')} mock:tokens=${tokens}` }] });
    assert.ok(r.usage);
  }

  before(async () => {
    await day(3, async (tg) => {
      await chat(tg, acme, 'gpt-4o', '1000,500', { 'X-Feature': 'summary', 'X-User-Id': 'u1' });
      await chat(tg, acme, 'gpt-4o-mini', '300,40', { 'X-Feature': 'chat', 'X-User-Id': 'u2' });
      await chat(tg, bob, 'gpt-4o', '2000,800', { 'X-Tenant-Plan': 'starter' });
      await chat(tg, carol, 'gpt-4o-mini', '50,5');
    });
    await day(10, async (tg) => {
      await chat(tg, acme, 'gpt-4o', '100,10', { 'X-User-Id': 'u1' });
      await chat(tg, bob, 'gpt-4o', '500,100', { 'X-Tenant-Plan': 'starter' });
    });
    // the last tollgate stays up for the admin API
    env.tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides, env: { TOLLGATE_CLOCK_OFFSET: offsetFor(20) } });
    configFile = env.tg.configFile;
    await chat(env.tg, bob, 'gpt-4o', '700,300', { 'X-Tenant-Plan': 'pro' });
    await chat(env.tg, carol, 'gpt-4o', '10,10');
    const tg = env.tg;
    await h.waitFor(() => (tg.readRecords().length >= tg.expected ? true : null), { what: 'records of day 20' });
    records.push(...tg.readRecords());
    // every settlement counted (the month hash of each tenant)
    for (const t of [acme, bob, carol]) {
      const want = records.filter((r) => r.tenant === t).length;
      await h.waitFor(async () => {
        const m = await env.redis.hgetall(`tollgate:{${t}}:m:${MONTH}`);
        return Number(m.requests || 0) >= want ? true : null;
      }, { what: `settled requests of ${t}` });
    }
  }, { timeout: h.ms(90000) });

  test('report --format json and /admin/api/tenants agree with each other and with the records', async () => {
    const cli = await runReport(['-c', configFile, '--period', MONTH, '--format', 'json']);
    assert.equal(cli.code, 0, cli.stderr);
    const rep = JSON.parse(cli.stdout);
    const api = await adminGet(env.tg, `/admin/api/tenants?period=${MONTH}`);
    assert.equal(api.status, 200, api.text);
    assert.deepEqual(api.json, rep, 'the admin API answers what the CLI prints');
    // default period: the current month by tollgate's clock
    const def = await adminGet(env.tg, '/admin/api/tenants');
    assert.equal(def.json.period, MONTH);
    const cliDef = await runReport(['-c', configFile, '--format', 'json'], { TOLLGATE_CLOCK_OFFSET: offsetFor(20) });
    assert.deepEqual(JSON.parse(cliDef.stdout), rep);

    assert.equal(rep.period, MONTH);
    const by = Object.fromEntries(rep.tenants.map((t) => [t.tenant, t]));
    for (const t of [acme, bob, carol, idle]) assert.ok(by[t], `${t} in the report`);
    for (const t of [acme, bob, carol]) {
      const recs = records.filter((r) => r.tenant === t);
      const cost = recs.reduce((s, r) => s + h.recordNano(r), 0);
      assert.equal(nano(by[t].cost_usd), cost, `cost of ${t} = sum of its records`);
      assert.equal(by[t].requests, recs.length);
      assert.equal(by[t].input_tokens, recs.reduce((s, r) => s + r.input_tokens, 0));
      assert.equal(by[t].output_tokens, recs.reduce((s, r) => s + r.output_tokens, 0));
    }
    assert.equal(by[acme].plan, 'pro');
    // yearly $120 counts $10 a month, accrued from its first day with traffic (the 3rd)
    assert.equal(nano(by[acme].revenue_usd), Math.round(29 * 10e9 / 31));
    assert.equal(by[idle].revenue_usd, 0, 'no traffic in the month: no revenue');
    assert.equal(by[idle].cost_usd, 0);
    assert.equal(by[idle].margin_pct, null);
    assert.equal(by[carol].revenue_usd, 0);
    assert.equal(by[carol].margin_pct, null, 'no revenue: margin_pct null');
    // bob: days 1-2 the config's plan (free), 3-19 starter, 20-31 pro, over 31 days
    const bobRev = (17n * 9n + 12n * 10n) * 1000000000n;
    const want = Number((bobRev + 15n) / 31n); // rounded to the nano-dollar
    assert.equal(nano(by[bob].revenue_usd), want);
    assert.equal(by[bob].plan, 'pro');
    for (const t of rep.tenants) {
      assert.equal(nano(t.margin_usd), nano(t.revenue_usd) - nano(t.cost_usd));
      assert.deepEqual(Object.keys(t), ['tenant', 'plan', 'revenue_usd', 'cost_usd', 'margin_usd', 'margin_pct',
        'requests', 'input_tokens', 'cached_tokens', 'output_tokens', 'cache_hits', 'saved_usd',
        'projected_cost_usd', 'budget_monthly_usd', 'crosses_cap_on', 'status', 'suggested_plan', 'free_plan',
        'included_tokens', 'used_tokens', 'overage_tokens', 'overage_usd', 'included_requests',
        'overage_requests', 'unpriced_usd', 'unpriced_requests', 'estimated_usd', 'estimated_requests',
        'period_start', 'period_end']);
      // no allowance in these plans: used_tokens is input + output, nothing past an allowance
      assert.equal(t.used_tokens, t.input_tokens + t.output_tokens);
      assert.equal(t.included_tokens, null);
      assert.equal(t.overage_usd, 0);
    }
    const margins = rep.tenants.map((t) => nano(t.margin_usd));
    assert.deepEqual(margins, [...margins].sort((a, b) => a - b), 'worst margin first');
    const tot = rep.totals;
    assert.equal(tot.tenants, rep.tenants.length);
    assert.equal(nano(tot.cost_usd), rep.tenants.reduce((s, t) => s + nano(t.cost_usd), 0));
    assert.equal(nano(tot.revenue_usd), rep.tenants.reduce((s, t) => s + nano(t.revenue_usd), 0));
    // a free plan's cost is acquisition spend: under water counts paying tenants only
    assert.equal(tot.tenants_under_water, rep.tenants.filter((t) => t.margin_usd < 0 && !t.free_plan).length);
    assert.equal(by[carol].free_plan, true);
    assert.equal(tot.free_tenants, 1);
    assert.equal(nano(tot.free_plan_cost_usd), nano(by[carol].cost_usd));
    assert.ok('blended_cost_per_tenant_usd' in tot && 'margin_pct' in tot);
    // the company trend: days 1..20 (none in the future), summing to the month
    assert.equal(rep.days_begun, 20);
    assert.equal(rep.daily.length, 20);
    assert.equal(rep.daily.reduce((s, d) => s + nano(d.cost_usd), 0), nano(tot.cost_usd));
    assert.equal(rep.daily[2].day, `${MONTH}-03`);
    // run rate since the first day: acme spent its cost on days 3..20 (18 days), 11 left
    const projected = nano(by[acme].cost_usd) + Math.round(nano(by[acme].cost_usd) * 11 / 18);
    assert.ok(Math.abs(nano(by[acme].projected_cost_usd) - projected) <= 1);
    assert.equal(by[acme].status, 'ok');
  });

  test('report table, csv, a day period and --by', async () => {
    const table = await runReport(['-c', configFile, '--period', MONTH]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^period 2031-03\nTENANT +PLAN +REVENUE +OVERAGE +COST/);
    assert.match(table.stdout, /TOTAL \(4\)/);
    const csv = await runReport(['-c', configFile, '--period', MONTH, '--format', 'csv']);
    const lines = csv.stdout.trim().split('\n');
    assert.equal(lines[0], 'tenant,plan,revenue_usd,cost_usd,margin_usd,margin_pct,requests,input_tokens,cached_tokens,output_tokens,'
      + 'projected_cost_usd,budget_monthly_usd,crosses_cap_on,status,suggested_plan,free_plan,cache_hits,saved_usd,'
      + 'included_tokens,used_tokens,overage_tokens,overage_usd,included_requests,overage_requests,'
      + 'unpriced_usd,unpriced_requests,estimated_usd,estimated_requests,period_start,period_end');
    assert.equal(lines.length, 5);
    assert.ok(lines.some((l) => l.startsWith(`${carol},free,0,`) && l.includes(',n/a,')));

    const d = await runReport(['-c', configFile, '--period', `${MONTH}-10`, '--format', 'json']);
    const dj = JSON.parse(d.stdout);
    const day10 = records.filter((r) => r.ts.startsWith(`${MONTH}-10`));
    for (const t of dj.tenants) {
      assert.equal(nano(t.cost_usd), day10.filter((r) => r.tenant === t.tenant).reduce((s, r) => s + h.recordNano(r), 0));
    }
    assert.equal(nano(dj.tenants.find((t) => t.tenant === acme).revenue_usd), Math.round(10e9 / 31));

    const bm = await runReport(['-c', configFile, '--period', MONTH, '--tenant', acme, '--by', 'model', '--format', 'json']);
    const rows = JSON.parse(bm.stdout).rows;
    assert.deepEqual(rows.map((r) => r.model), ['gpt-4o', 'gpt-4o-mini']);
    const acmeRecs = records.filter((r) => r.tenant === acme);
    assert.equal(nano(rows[0].cost_usd), acmeRecs.filter((r) => r.model === 'gpt-4o').reduce((s, r) => s + h.recordNano(r), 0));
    // user ids are per tenant: --by user needs --tenant
    const mixed = await runReport(['-c', configFile, '--period', MONTH, '--by', 'user']);
    assert.equal(mixed.code, 2);
    assert.match(mixed.stderr, /--by user is per tenant: add --tenant/);
    const bu = JSON.parse((await runReport(['-c', configFile, '--period', MONTH, '--tenant', acme, '--by', 'user', '--format', 'json'])).stdout);
    assert.ok(bu.rows.some((r) => r.user === 'u1' && r.requests === 2));
    const bc = JSON.parse((await runReport(['-c', configFile, '--period', MONTH, '--tenant', carol, '--by', 'user', '--format', 'json'])).stdout);
    assert.ok(bc.rows.some((r) => r.user === '-'), 'requests without a user count under "-"');
    const bd = JSON.parse((await runReport(['-c', configFile, '--period', MONTH, '--tenant', bob, '--by', 'day', '--format', 'json'])).stdout);
    assert.equal(bd.rows.length, 20, 'days 1..20: no future days');
    assert.equal(bd.rows[2].day, `${MONTH}-03`);
    assert.equal(bd.rows[2].requests, 1);
  });

  test('report: Redis unreachable is a clear error and exit 1', async () => {
    const bad = path.join(path.dirname(configFile), 'bad.conf');
    fs.writeFileSync(bad, fs.readFileSync(configFile, 'utf8').replace(/^url = redis:.*$/m, 'url = redis://127.0.0.1:1/0'));
    const r = await runReport(['-c', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach Redis at 127\.0\.0\.1:1/);
    const u = await runReport(['-c', configFile, '--by', 'nope']);
    assert.equal(u.code, 2);
    // an unknown tenant is an error, as the admin API's 404
    const none = await runReport(['-c', configFile, '--period', MONTH, '--tenant', 'nobody']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /tenant 'nobody' has no traffic in 2031-03 and no \[tenant\] section/);
  });

  test('report --forecast: projection, cap crossing, status now', async () => {
    const f = await runReport(['-c', configFile, '--period', MONTH, '--forecast']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /^forecast 2031-03 \(day 20 of 31/);
    assert.match(f.stdout, /TENANT +PLAN +COST +PROJECTED +CAP +CROSSES +NOW +SUGGESTED PLAN/);
    assert.ok(f.stdout.includes(acme));
    const day = await runReport(['-c', configFile, '--period', `${MONTH}-10`, '--forecast']);
    assert.equal(day.code, 2);
  });

  test('/admin/api/tenants/{id}: totals, daily series of the whole month, breakdowns', async () => {
    const r = await adminGet(env.tg, `/admin/api/tenants/${encodeURIComponent(acme)}?period=${MONTH}`);
    assert.equal(r.status, 200, r.text);
    const t = r.json;
    assert.equal(t.tenant, acme);
    assert.equal(t.plan, 'pro');
    assert.equal(t.period, MONTH);
    assert.equal(nano(t.revenue_usd), Math.round(29 * 10e9 / 31));
    assert.equal(t.budget_monthly_usd, null);
    assert.equal(t.daily.length, 20, 'the days begun by tollgate\'s clock, none in the future');
    assert.equal(t.daily[0].day, `${MONTH}-01`);
    assert.equal(t.daily.reduce((s, d) => s + nano(d.cost_usd), 0), nano(t.cost_usd), 'daily sums to the month');
    assert.equal(t.daily.reduce((s, d) => s + d.requests, 0), t.requests);
    assert.equal(t.requests, 3);
    assert.deepEqual(t.by_model.map((m) => m.model), ['gpt-4o', 'gpt-4o-mini']);
    assert.deepEqual(t.by_feature.map((m) => m.feature).sort(), ['-', 'chat', 'summary']);
    assert.equal(t.by_user.find((u) => u.user === 'u1').requests, 2);
    const costs = t.by_model.map((m) => m.cost_usd);
    assert.deepEqual(costs, [...costs].sort((a, b) => b - a), 'by cost, highest first');
    const none = await adminGet(env.tg, `/admin/api/tenants/nobody-${h.uniq('x')}?period=${MONTH}`);
    assert.equal(none.status, 404);
    const badp = await adminGet(env.tg, '/admin/api/tenants?period=2031-3');
    assert.equal(badp.status, 400);
  });

  test('/admin/api/config masks secrets; missing or wrong token is 401; /dashboard needs none', async () => {
    const r = await adminGet(env.tg, '/admin/api/config');
    assert.equal(r.status, 200, r.text);
    const c = r.json;
    assert.equal(c.server.admin_token, '***');
    const up = c.upstreams.find((u) => u.name === 'openai');
    assert.equal(up.api_key, '***');
    assert.equal(up.kind, 'openai');
    assert.equal(c.upstreams.find((u) => u.name === 'anthropic').api_key, null);
    assert.equal(c.alerts.webhook, '***');
    assert.ok(c.pricing.models > 0);
    assert.equal(c.plans.find((p) => p.name === 'pro').price_period, 'year');
    assert.ok(c.tenants.some((t) => t.name === acme && t.plan === 'pro'));
    for (const secret of [TOKEN, 'sk-upstream-secret', 'hook-secret']) assert.ok(!r.text.includes(secret), `${secret} not shown`);

    for (const p of ['/admin/api/tenants', `/admin/api/tenants/${acme}`, '/admin/api/config']) {
      assert.equal((await adminGet(env.tg, p, null)).status, 401, `${p} without a token`);
      assert.equal((await adminGet(env.tg, p, 'wrong-token')).status, 401, `${p} with a wrong token`);
    }
    const d = await adminGet(env.tg, '/dashboard', null);
    assert.equal(d.status, 200);
    assert.equal(d.headers.get('content-type'), 'text/html; charset=utf-8');
  });

  test('Redis frozen: the API answers 503 within its 2 s bound and the admin loop stays responsive', async () => {
    const pid = env.redis.proc.pid;
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const pending = adminGet(env.tg, `/admin/api/tenants?period=${MONTH}`);
      await h.sleep(200);
      const hz = await env.tg.healthz(); // the main loop is not waiting on Redis
      assert.equal(hz.status, 200);
      assert.ok(Date.now() - t0 < 1500, 'healthz answered while the report waits');
      const r = await pending;
      assert.equal(r.status, 503, r.text);
      assert.ok(r.json && r.json.error, 'JSON error body');
      assert.ok(Date.now() - t0 < h.ms(4000), `answered in ${Date.now() - t0} ms`);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await h.waitFor(async () => ((await adminGet(env.tg, `/admin/api/tenants?period=${MONTH}`)).status === 200 ? true : null),
      { timeout: h.ms(10000), what: 'the API answers again' });
  });

  h.cleanRunTest(env);
});

'use strict';
// A tiny fake of tollgate's admin API with fixed data, for developing src/web/dashboard.html
// and for tests/integration/dashboard.test.js (no tollgate, Redis or network needed).
//
//   node tests/web/fake-admin.js [PORT]      serves http://127.0.0.1:PORT/dashboard, token "dev-token"
//
//   const { startFakeAdmin } = require('../web/fake-admin');
//   const fake = await startFakeAdmin({ token: 't', onlyPeriod: '2026-10' });
//   fake.url, fake.port, fake.requests (each {method, path, auth}), fake.setToken(t), await fake.stop()
//
// GET /dashboard serves the page file as it is on disk (re-read per request). GET
// /admin/api/tenants?period= and /admin/api/tenants/{id}?period= answer the shapes of the
// product contract and need "Authorization: Bearer <token>" (401 otherwise). With
// onlyPeriod set, other periods answer an empty report (the period picker is then visible).

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const PAGE = path.resolve(__dirname, '..', '..', 'src', 'report', 'web', 'dashboard.html');

// A tenant id that would run script if the page ever put data in as HTML.
const EVIL = '<img src=x onerror="window.__pwned=1">&amp;';

// The customers: a heavy $9 starter costing $40.50 (downgraded, a bigger plan suggested), a
// free tenant (revenue 0, acquisition spend, crossing its cap), a team plan slightly under
// water with no budget, a profitable pro customer (with a hard limit), and a hostile id.
// The forecast fields are what tollgate's report computes (src/report/forecast.c).
const TENANTS = [
  { tenant: 'alice', plan: 'starter', revenue_usd: 9, cost_usd: 40.5, requests: 1500, budget: 9,
    hits: 300, saved: 8.1, status: 'downgraded', projected: 52.25, suggested: 'scale',
    models: [['gpt-4o', 0.8], ['gpt-4o-mini', 0.2]], features: [['chat', 0.7], ['summary', 0.3]],
    users: [['u_heavy', 0.9], ['u_2', 0.1]] },
  { tenant: 'globex', plan: 'team', revenue_usd: 49, cost_usd: 51, requests: 2200, budget: null,
    projected: 66, unpriced: [6.2, 40], estimated: [0.35, 12],
    models: [['claude-sonnet-4-5', 0.6], ['gemini-2.5-flash', 0.4]], features: [['agent', 1]],
    users: [['ops', 1]] },
  { tenant: 'free-bob', plan: 'free', revenue_usd: 0, cost_usd: 0.42, requests: 60, budget: 0.5,
    free: true, projected: 0.61, crosses: 24, suggested: 'starter',
    models: [['gpt-4o-mini', 1]], features: [['', 1]], users: [] },
  { tenant: EVIL, plan: 'starter', revenue_usd: 9, cost_usd: 1, requests: 12, budget: 9,
    models: [['gpt-4o-mini', 1]], features: [['<b>bold</b>', 1]], users: [['<i>u</i>', 1]] },
  { tenant: 'acme', plan: 'pro', revenue_usd: 99, cost_usd: 12.3, requests: 5400, budget: 50, hard: 20,
    models: [['gpt-4o-mini', 0.5], ['claude-haiku-4-5', 0.3], ['text-embedding-3-small', 0.2]],
    features: [['search', 0.6], ['summary', 0.4]], users: [['u_a', 0.5], ['u_b', 0.5]] },
];

const round = (n, d = 6) => Math.round(n * 10 ** d) / 10 ** d;

function row(t, period) {
  const margin = round(t.revenue_usd - t.cost_usd);
  return {
    tenant: t.tenant, plan: t.plan, revenue_usd: t.revenue_usd, cost_usd: t.cost_usd, margin_usd: margin,
    margin_pct: t.revenue_usd ? round((100 * margin) / t.revenue_usd, 1) : null,
    requests: t.requests, input_tokens: t.requests * 900, cached_tokens: t.requests * 100,
    output_tokens: t.requests * 300, cache_hits: t.hits || 0, saved_usd: t.saved || 0,
    projected_cost_usd: t.projected || t.cost_usd, budget_monthly_usd: t.budget,
    crosses_cap_on: t.crosses ? `${period}-${t.crosses}` : null, status: t.status || 'ok',
    suggested_plan: t.suggested || null, free_plan: !!t.free,
    unpriced_usd: t.unpriced ? t.unpriced[0] : 0, unpriced_requests: t.unpriced ? t.unpriced[1] : 0,
    estimated_usd: t.estimated ? t.estimated[0] : 0, estimated_requests: t.estimated ? t.estimated[1] : 0,
  };
}

// The company's days: the sum of every tenant's daily spend, revenue spread evenly.
function trend(tenants, period) {
  const days = daily(TENANTS[0], period).length;
  const [y, m] = period.split('-').map(Number);
  const inMonth = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const out = [];
  for (let d = 0; d < days; d++) {
    const cost = round(TENANTS.reduce((s, t) => s + daily(t, period)[d].cost_usd, 0));
    const revenue = round(tenants.reduce((s, t) => s + t.revenue_usd, 0) / inMonth);
    out.push({ day: `${period}-${String(d + 1).padStart(2, '0')}`, cost_usd: cost, revenue_usd: revenue,
      margin_usd: round(revenue - cost), requests: TENANTS.reduce((s, t) => s + daily(t, period)[d].requests, 0) });
  }
  return out;
}

function report(period, empty) {
  const tenants = empty ? [] : TENANTS.map((t) => row(t, period)).sort((a, b) => a.margin_usd - b.margin_usd);
  const revenue = round(tenants.reduce((s, t) => s + t.revenue_usd, 0));
  const cost = round(tenants.reduce((s, t) => s + t.cost_usd, 0));
  const margin = round(revenue - cost);
  return {
    period, tenants,
    totals: {
      tenants: tenants.length, revenue_usd: revenue, cost_usd: cost, margin_usd: margin,
      margin_pct: revenue ? round((100 * margin) / revenue, 1) : null,
      blended_cost_per_tenant_usd: tenants.length ? round(cost / tenants.length) : 0,
      tenants_under_water: tenants.filter((t) => t.margin_usd < 0 && !t.free_plan).length,
      free_tenants: tenants.filter((t) => t.free_plan).length,
      free_plan_cost_usd: round(tenants.filter((t) => t.free_plan).reduce((s, t) => s + t.cost_usd, 0)),
      projected_cost_usd: round(tenants.reduce((s, t) => s + t.projected_cost_usd, 0)),
      cache_hits: tenants.reduce((s, t) => s + t.cache_hits, 0),
      saved_usd: round(tenants.reduce((s, t) => s + t.saved_usd, 0)),
      unpriced_usd: round(tenants.reduce((s, t) => s + t.unpriced_usd, 0)),
      unpriced_requests: tenants.reduce((s, t) => s + t.unpriced_requests, 0),
      estimated_usd: round(tenants.reduce((s, t) => s + t.estimated_usd, 0)),
      estimated_requests: tenants.reduce((s, t) => s + t.estimated_requests, 0),
    },
    days_begun: empty ? 0 : daily(TENANTS[0], period).length,
    days_in_period: new Date(Date.UTC(+period.slice(0, 4), +period.slice(5, 7), 0)).getUTCDate(),
    daily: empty ? [] : trend(tenants, period),
  };
}

// Daily spend over the month (a past month: every day; the current one: up to today),
// shaped so the heavy customer crosses its budget early.
function daily(t, period) {
  const [y, m] = period.split('-').map(Number);
  let days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const now = new Date().toISOString();
  if (now.slice(0, 7) === period) days = Number(now.slice(8, 10));
  const weights = [];
  for (let d = 1; d <= days; d++) weights.push(1 + ((d * 7) % 5) + (d % 7 === 0 ? 0 : 2) + d / 10);
  const sum = weights.reduce((s, w) => s + w, 0);
  return weights.map((w, i) => ({
    day: `${period}-${String(i + 1).padStart(2, '0')}`,
    cost_usd: round((t.cost_usd * w) / sum),
    requests: Math.round((t.requests * w) / sum),
  }));
}

function split(t, list, key) {
  return list.map(([name, share]) => ({
    [key]: name, cost_usd: round(t.cost_usd * share), requests: Math.round(t.requests * share),
    input_tokens: Math.round(t.requests * share * 900), output_tokens: Math.round(t.requests * share * 300),
  }));
}

function detail(t, period) {
  return {
    ...row(t, period), period, budget_monthly_usd: t.budget, hard_limit_usd: t.hard || null,
    daily: daily(t, period),
    by_model: split(t, t.models, 'model'), by_feature: split(t, t.features, 'feature'),
    by_user: split(t, t.users, 'user'),
  };
}

function startFakeAdmin({ token = 'dev-token', port = 0, onlyPeriod = null } = {}) {
  const fake = { token, requests: [], server: null, port: 0, url: '' };
  fake.setToken = (t) => { fake.token = t; };
  const send = (res, status, body, type = 'application/json') => {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    res.writeHead(status, { 'content-type': type, 'content-length': buf.length, 'cache-control': 'no-store' });
    res.end(buf);
  };
  fake.server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    fake.requests.push({ method: req.method, path: req.url, auth: req.headers.authorization || null });
    if (req.method !== 'GET') return send(res, 405, { error: { message: 'GET only' } });
    if (u.pathname === '/dashboard') return send(res, 200, fs.readFileSync(PAGE), 'text/html; charset=utf-8');
    if (!u.pathname.startsWith('/admin/api/')) return send(res, 404, { error: { message: 'not found' } });
    if (req.headers.authorization !== `Bearer ${fake.token}`) {
      return send(res, 401, { error: { message: 'send Authorization: Bearer <admin_token>', type: 'unauthorized' } });
    }
    const period = u.searchParams.get('period') || new Date().toISOString().slice(0, 7);
    if (!/^\d{4}-\d{2}$/.test(period)) return send(res, 400, { error: { message: 'period must be YYYY-MM' } });
    const empty = onlyPeriod !== null && period !== onlyPeriod;
    if (u.pathname === '/admin/api/tenants') return send(res, 200, report(period, empty));
    const m = /^\/admin\/api\/tenants\/([^/]+)$/.exec(u.pathname);
    if (m) {
      let id;
      try { id = decodeURIComponent(m[1]); } catch { return send(res, 400, { error: { message: 'bad tenant id' } }); }
      const t = TENANTS.find((x) => x.tenant === id);
      if (!t || empty) return send(res, 404, { error: { message: `no tenant ${id} in ${period}` } });
      return send(res, 200, detail(t, period));
    }
    return send(res, 404, { error: { message: 'no such admin endpoint' } });
  });
  return new Promise((resolve, reject) => {
    fake.server.once('error', reject);
    fake.server.listen(port, '127.0.0.1', () => {
      fake.port = fake.server.address().port;
      fake.url = `http://127.0.0.1:${fake.port}`;
      fake.stop = () => new Promise((r) => { fake.server.closeAllConnections(); fake.server.close(() => r()); });
      resolve(fake);
    });
  });
}

module.exports = { startFakeAdmin, TENANTS, EVIL, PAGE, report, detail };

if (require.main === module) {
  startFakeAdmin({ port: Number(process.argv[2]) || 8099 }).then((f) => {
    console.log(`fake admin API: ${f.url}/dashboard  (token: ${f.token})`);
  });
}

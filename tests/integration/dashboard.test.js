'use strict';
// The dashboard (src/report/web/dashboard.html) in a real headless Chromium (Debian's chromium,
// driven by playwright-core): first against a fake admin API with fixed data (tests/web/
// fake-admin.js), then served by tollgate itself against its real admin API.
// Screenshots go to build/test-artifacts/. CHROMIUM=/path overrides /usr/bin/chromium.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { httpGet } = require('../lib/tollgate');
const { startFakeAdmin, EVIL, PAGE } = require('../web/fake-admin');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(h.ROOT, 'build', 'test-artifacts');
const FAKE_PERIOD = '2026-10';

// Launches Chromium, runs fn({page, requests}) and closes the browser whatever happens.
// requests: every URL the page asked for (page.on('request')).
async function withPage(fn) {
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    assert.fail(`playwright-core is not installed in tests/node_modules (tests/package.json devDependency; ` +
      `tests/setup.sh installs it): ${e.message}`);
  }
  assert.ok(fs.existsSync(CHROMIUM),
    `no Chromium at ${CHROMIUM}: install Debian's chromium (scripts/deps.sh test, or apt-get install -y chromium)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: h.ms(30000),
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: 'UTC' });
    const page = await context.newPage();
    page.setDefaultTimeout(h.ms(10000));
    const requests = [];
    const errors = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => errors.push(String(e)));
    // A refused token logs "Failed to load resource ... 401": expected, not an error of the page.
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text()); });
    const out = await fn({ page, requests, errors });
    return out;
  } finally {
    await browser.close();
  }
}

const rowTenants = (page) => page.$$eval('[data-testid=tenant-row]', (rs) => rs.map((r) => r.getAttribute('data-tenant')));
const lossTenants = (page) => page.$$eval('[data-testid=tenant-row].loss', (rs) => rs.map((r) => r.getAttribute('data-tenant')));
const freeTenants = (page) => page.$$eval('[data-testid=tenant-row].free', (rs) => rs.map((r) => r.getAttribute('data-tenant')));
const attention = (page) => page.$$eval('[data-testid=attention-item]', (ls) => ls.map((l) => `${l.getAttribute('data-kind')}:${l.getAttribute('data-tenant')}`));
function previousMonth() {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}
const text = (page, id) => page.textContent(`[data-testid=${id}]`).then((s) => s.trim());

function assertOnlyLocal(requests, origin) {
  assert.ok(requests.length > 0, 'the page made requests');
  const foreign = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'));
  assert.deepEqual(foreign, [], `requests left the page for other hosts than ${origin}`);
  for (const u of requests) if (!u.startsWith('data:')) assert.equal(new URL(u).hostname, '127.0.0.1');
}

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(fs.statSync(file).size > 10000, `screenshot ${file} written`);
  return file;
}

async function signIn(page, token) {
  await page.waitForSelector('[data-testid=token-prompt]', { state: 'visible' });
  await page.fill('[data-testid=token-input]', token);
  await page.click('[data-testid=token-submit]');
}

// Waits until the selected customer's panel shows `tenant` with its chart drawn.
async function waitDetail(page, tenant) {
  await page.waitForFunction((t) => {
    const n = document.querySelector('[data-testid=detail-tenant]');
    return n && n.textContent === t && document.querySelector('[data-testid=daily-chart] svg');
  }, tenant);
}

describe('dashboard page', () => {
  test('the page is self-contained: no external resource, no HTML built from strings', () => {
    const html = fs.readFileSync(PAGE, 'utf8');
    assert.doesNotMatch(html, /https?:\/\//, 'no absolute URL (the SVG namespace is spelled in two parts)');
    assert.doesNotMatch(html, /<script[^>]+src=|<link(?![^>]*href="data:)[^>]*href=|@import|url\(/i, 'no external script, style or font');
    assert.doesNotMatch(html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'data goes in with textContent only');
    assert.doesNotMatch(html, /\?\?/, 'no "??" (a C trigraph start: the page is embedded as a C string)');
    assert.doesNotMatch(html, /[^\x09\x0a\x0d\x20-\x7e]/, 'ASCII only');
    assert.ok(html.endsWith('\n'), 'ends with a newline (the embedded copy is byte-identical)');
  });

  test('against a fake admin API: token, totals, ranking, loss makers, sorting, chart, breakdowns', { timeout: h.ms(90000) }, async () => {
    const fake = await startFakeAdmin({ token: 'secret-admin-token', onlyPeriod: FAKE_PERIOD });
    try {
      await withPage(async ({ page, requests, errors }) => {
        await page.goto(`${fake.url}/dashboard`);
        assert.equal(await page.title(), 'tollgate - cost and margin per customer');

        // A wrong token: refused, the prompt comes back with a message.
        await signIn(page, 'wrong-token');
        await page.waitForSelector('[data-testid=token-prompt]', { state: 'visible' });
        await page.waitForFunction(() => /401/.test(document.querySelector('[data-testid=token-message]').textContent));
        assert.equal(await page.isVisible('[data-testid=tenants-table]'), false);
        assert.ok(fake.requests.some((r) => r.auth === 'Bearer wrong-token'), 'the wrong token was sent as a Bearer token');

        // The right one; the current month (no data in the fake) first.
        await signIn(page, 'secret-admin-token');
        await page.waitForSelector('[data-testid=tenants-table]', { state: 'visible' });
        const month = new Date().toISOString().slice(0, 7);
        assert.equal(await page.inputValue('[data-testid=period]'), month, 'the period starts at the current UTC month');
        if (month !== FAKE_PERIOD) {
          await page.waitForSelector('[data-testid=tenants-empty]', { state: 'visible' });
          assert.match(await text(page, 'tenants-empty'), /No usage/);
        }
        assert.equal(await page.evaluate(() => sessionStorage.getItem('tollgate.admin_token')), 'secret-admin-token');

        // The period picker.
        await page.fill('[data-testid=period]', FAKE_PERIOD);
        await page.waitForFunction(() => document.querySelectorAll('[data-testid=tenant-row]').length === 5);
        assert.ok(fake.requests.some((r) => r.path === `/admin/api/tenants?period=${FAKE_PERIOD}`), 'asked for the picked period');
        assert.ok(page.url().endsWith(`/dashboard?period=${FAKE_PERIOD}`), `the period is in the address: ${page.url()}`);
        for (const r of fake.requests.filter((x) => x.path.startsWith('/admin/api/') && x.auth !== 'Bearer wrong-token')) {
          assert.equal(r.auth, 'Bearer secret-admin-token', `${r.path} carries the token`);
        }

        // Totals.
        assert.equal(await text(page, 'total-revenue'), '$166.00');
        assert.equal(await text(page, 'total-cost'), '$105.22');
        assert.equal(await text(page, 'total-margin'), '$60.78');
        assert.match(await text(page, 'total-margin-pct'), /^36\.6%/);
        // a free plan's cost is acquisition spend: paying customers under water only, free apart
        assert.equal(await text(page, 'total-under-water'), '2');
        assert.match(await text(page, 'total-under-water-sub'), /of 4 paying .*; 1 on free plans cost \$0\.42/);
        assert.equal(await text(page, 'total-projected'), '$132.16');
        // the response cache's savings, in the totals and per customer
        assert.equal(await text(page, 'total-saved'), '$8.10');
        assert.equal(await text(page, 'total-saved-sub'), '300 answers from the cache');

        // Ranked worst margin first; the loss makers marked; n/a for revenue 0; ids as text.
        const ranked = ['alice', 'globex', 'free-bob', EVIL, 'acme'];
        assert.deepEqual(await rowTenants(page), ranked);
        assert.deepEqual(await lossTenants(page), ['alice', 'globex']);
        assert.deepEqual(await freeTenants(page), ['free-bob']);
        const aliceRow = page.locator('[data-testid=tenant-row][data-tenant="alice"]');
        assert.equal(await aliceRow.locator('[data-testid=row-status]').textContent(), 'downgraded');
        assert.equal(await aliceRow.locator('[data-testid=row-suggested]').textContent(), '\u2192 scale');
        assert.equal(await aliceRow.locator('[data-testid=cell-projected]').textContent(), '$52.25');
        assert.equal(await aliceRow.locator('[data-testid=cell-saved]').textContent(), '$8.10');
        // how much of the cost is unpriced or estimated (margin may be overstated by it)
        assert.equal(await text(page, 'total-uncertain'), '$6.20 unpriced, $0.35 estimated');
        const globexRow = page.locator('[data-testid=tenant-row][data-tenant="globex"]');
        assert.equal(await globexRow.locator('[data-testid=cell-uncertain]').textContent(), '$6.20 unpriced, $0.35 estimated');
        assert.match(await globexRow.locator('[data-testid=cell-uncertain]').getAttribute('title'), /^40 requests without a listed price, 12 with/);
        assert.equal(await aliceRow.locator('[data-testid=cell-uncertain]').textContent(), '-');

        // Needs attention: who is over a cap now, who will cross one, which upgrade would pay.
        assert.deepEqual(await attention(page), ['downgraded:alice', 'crossing:free-bob', 'upgrade:alice', 'upgrade:free-bob']);
        assert.match(await page.textContent('[data-testid=attention-item][data-kind=crossing]'), /on 2026-10-24/);

        // The company trend: cumulative cost and revenue lines over the days, bars per day.
        const fleet = await page.evaluate(() => {
          const f = document.querySelector('[data-testid=fleet-chart] svg');
          const c = f.querySelector('[data-testid=fleet-cost-line]'), r = f.querySelector('[data-testid=fleet-revenue-line]');
          return { cost: c && c.getAttribute('d').split('L').length, revenue: r && r.getAttribute('d').split('L').length,
            bars: f.querySelectorAll('[data-testid=fleet-bar]').length };
        });
        assert.deepEqual(fleet, { cost: 31, revenue: 31, bars: 31 });
        const alice = page.locator('[data-testid=tenant-row][data-tenant="alice"]');
        assert.equal(await alice.locator('[data-testid=cell-margin]').textContent(), '-$31.50');
        assert.equal(await alice.locator('[data-testid=cell-margin-pct]').textContent(), '-350.0%');
        assert.equal(await alice.locator('[data-testid=cell-cost]').textContent(), '$40.50');
        assert.equal(await alice.locator('[data-testid=cell-revenue]').textContent(), '$9.00');
        const marginColor = await alice.locator('[data-testid=cell-margin]').evaluate((n) => getComputedStyle(n).color);
        const [r, g, b] = marginColor.match(/\d+/g).map(Number);
        assert.ok(r > 150 && g < 100 && b < 100, `negative margin drawn in red (got ${marginColor})`);
        const bob = page.locator('[data-testid=tenant-row][data-tenant="free-bob"]');
        assert.equal(await bob.locator('[data-testid=cell-margin-pct]').textContent(), 'n/a');
        assert.equal(await bob.locator('[data-testid=cell-revenue]').textContent(), '$0.00');
        const names = await page.$$eval('[data-testid=tenant-name]', (ns) => ns.map((n) => n.textContent));
        assert.ok(names.includes(EVIL), 'a hostile tenant id is shown as text');
        assert.equal(await page.$$eval('table img, table b', (ns) => ns.length), 0, 'no element made from a tenant id');

        // Sorting by clicking headers.
        await page.click('[data-testid=sort-cost_usd]');
        assert.deepEqual(await rowTenants(page), ['globex', 'alice', 'acme', EVIL, 'free-bob'], 'AI cost, highest first');
        assert.equal(await page.getAttribute('th[data-key=cost_usd]', 'aria-sort'), 'descending');
        await page.click('[data-testid=sort-cost_usd]');
        assert.deepEqual(await rowTenants(page), ['free-bob', EVIL, 'acme', 'alice', 'globex'], 'AI cost, lowest first');
        await page.click('[data-testid=sort-margin_pct]');
        assert.deepEqual(await rowTenants(page), ['alice', 'globex', 'acme', EVIL, 'free-bob'], 'margin %, lowest first, n/a last');
        await page.click('[data-testid=sort-tenant]');
        assert.deepEqual((await rowTenants(page)).slice(1), ['acme', 'alice', 'free-bob', 'globex'], 'by name');
        await page.click('[data-testid=sort-rank]');
        assert.deepEqual(await rowTenants(page), ranked, 'back to the ranking');
        assert.deepEqual(await lossTenants(page), ['alice', 'globex'], 'loss marks survive sorting');

        // The worst customer is selected at once; its chart has the line and the budget line.
        await waitDetail(page, 'alice');
        const chart = async () => page.evaluate(() => {
          const s = document.querySelector('[data-testid=daily-chart] svg');
          const line = s.querySelector('[data-testid=spend-line]');
          const budget = s.querySelector('[data-testid=budget-line]');
          return {
            d: line ? line.getAttribute('d') : null,
            points: s.querySelectorAll('[data-testid=spend-point]').length,
            budgetY: budget ? Number(budget.getAttribute('y1')) : null,
            xLabel: (s.querySelector('[data-testid=x-axis-label]') || {}).textContent,
            yLabel: (s.querySelector('[data-testid=y-axis-label]') || {}).textContent,
            label: s.getAttribute('aria-label'),
          };
        });
        let c = await chart();
        assert.ok(c.d && c.d.startsWith('M') && c.d.split('L').length === 31, `a cumulative line over 31 days: ${c.d}`);
        assert.equal(c.points, 31);
        assert.ok(c.budgetY !== null, 'budget line drawn');
        assert.match(c.xLabel, /Day of 2026-10/);
        assert.match(c.yLabel, /USD/);
        assert.match(c.label, /\$40\.50 of a \$9\.00 monthly budget/);
        // The line ends above the budget line (SVG y grows downwards): $40.50 spent of $9.
        const lastY = Number(c.d.trim().split(/[ ,L]+/).pop());
        assert.ok(lastY < c.budgetY, `the month's spend ends above the budget (${lastY} < ${c.budgetY})`);
        assert.equal(await text(page, 'detail-budget'), '$9.00/mo');

        // Selecting another customer.
        await page.click('[data-testid=tenant-row][data-tenant="acme"]');
        await waitDetail(page, 'acme');
        c = await chart();
        assert.ok(c.d && c.points === 31 && c.budgetY !== null, 'acme: line and budget');
        assert.ok(await page.$('[data-testid=daily-chart] [data-testid=hard-limit-line]'), 'acme: its hard limit drawn');
        assert.equal(await page.getAttribute('[data-testid=tenant-row][data-tenant="acme"]', 'aria-selected'), 'true');
        const list = (id) => page.$$eval(`[data-testid=${id}] li[data-name]`, (ls) => ls.map((l) => l.getAttribute('data-name')));
        assert.deepEqual(await list('by-model'), ['gpt-4o-mini', 'claude-haiku-4-5', 'text-embedding-3-small']);
        assert.deepEqual(await list('by-feature'), ['search', 'summary']);
        const fills = await page.$$eval('[data-testid=by-model] .fill', (fs2) => fs2.map((f) => f.style.width));
        assert.deepEqual(fills, ['100%', '60%', '40%'], 'bars scaled to the largest');

        // No budget: no budget line. Hostile ids and feature names stay text in the detail too.
        await page.click('[data-testid=tenant-row][data-tenant="globex"]');
        await waitDetail(page, 'globex');
        c = await chart();
        assert.ok(c.d && c.budgetY === null, 'no budget line without a budget');
        assert.equal(await text(page, 'detail-budget'), 'none');
        await page.locator('[data-testid=tenant-row]').nth(3).locator('[data-testid=tenant-name]').click();
        await waitDetail(page, EVIL);
        assert.deepEqual(await list('by-feature'), ['<b>bold</b>']);
        c = await chart();
        assert.ok(c.d && c.budgetY === null, 'a budget 9x the spend is not drawn (it would flatten the line)');
        assert.match(await text(page, 'budget-off-scale'), /budget \$9\.00 is above the scale/);
        assert.equal(await text(page, 'detail-budget-used'), '11% used');
        assert.equal(await page.$$eval('[data-testid=detail] img, [data-testid=detail] b:not(.kv b), [data-testid=detail] i:not(.legend i)',
          (ns) => ns.filter((n) => !n.closest('.kv') && !n.closest('.legend')).length), 0);
        assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script ran from data');

        // Reload: still signed in (sessionStorage), and on the period of the address.
        await page.reload();
        await page.waitForSelector('[data-testid=tenants-table]', { state: 'visible' });
        await page.waitForFunction(() => document.querySelectorAll('[data-testid=tenant-row]').length === 5);
        assert.equal(await page.inputValue('[data-testid=period]'), FAKE_PERIOD);
        await waitDetail(page, 'alice');
        await page.evaluate(() => document.activeElement && document.activeElement.blur());
        const file = await screenshot(page, 'dashboard.png');

        // The token is revoked meanwhile: the next refresh brings the prompt back.
        fake.setToken('rotated-token');
        await page.click('[data-testid=refresh]');
        await page.waitForSelector('[data-testid=token-prompt]', { state: 'visible' });
        assert.match(await text(page, 'token-message'), /401/);
        assert.equal(await page.evaluate(() => sessionStorage.getItem('tollgate.admin_token')), null, 'a refused token is forgotten');

        assert.deepEqual(errors, [], 'no script error or failed load in the page');
        assertOnlyLocal(requests, fake.url);
        return file;
      });
    } finally {
      await fake.stop();
    }
  });
});

describe('dashboard opening period', () => {
  test('without ?period= it opens on last month when this month has no traffic yet', { timeout: h.ms(60000) }, async () => {
    const prev = previousMonth();
    const fake = await startFakeAdmin({ token: 'tok', onlyPeriod: prev });
    try {
      await withPage(async ({ page, errors }) => {
        await page.goto(`${fake.url}/dashboard`);
        await signIn(page, 'tok');
        await page.waitForFunction(() => document.querySelectorAll('[data-testid=tenant-row]').length === 5);
        assert.equal(await page.inputValue('[data-testid=period]'), prev);
        assert.match(await text(page, 'status'), new RegExp(`no traffic in \\d{4}-\\d{2} yet: showing ${prev}`));
        assert.ok(page.url().endsWith(`?period=${prev}`));
        // an explicit period is kept even when empty
        await page.goto(`${fake.url}/dashboard?period=2020-01`);
        await page.waitForSelector('[data-testid=tenants-empty]', { state: 'visible' });
        assert.equal(await page.inputValue('[data-testid=period]'), '2020-01');
        assert.deepEqual(errors, []);
      });
    } finally {
      await fake.stop();
    }
  });
});

describe('dashboard served by tollgate', () => {
  const TOKEN = 'test-admin-token'; // tests/lib/tollgate.js baseConfig
  const env = h.useStack({
    overrides: {
      'plan free': { price: 0, budget_monthly: 5, on_exceed: 'block' },
      'plan starter': { price: 9, budget_monthly: 20, on_exceed: 'block' },
      'plan pro': { price: 99, budget_monthly: 100, on_exceed: 'block' },
      'plan growth': { price: 19, included_tokens: 1000, on_allowance: 'overage', overage: '40.00' },
      'tenant dash-heavy': { plan: 'starter' },
      'tenant dash-growth': { plan: 'growth' },
      'tenant dash-pro': { plan: 'pro' },
      'tenant dash-free': { plan: 'free' },
    },
  });

  test('GET /dashboard is the page byte for byte, and it works against the real admin API', { timeout: h.ms(120000) }, async () => {
    const tg = env.tg;
    const page0 = await httpGet(tg.adminPort, '/dashboard');
    assert.equal(page0.status, 200,
      `tollgate does not serve the dashboard: GET /dashboard on the admin listener answered ${page0.status} ` +
      `(want 200 text/html without a token; the admin listener must return the embedded web_dashboard_html)`);
    assert.match(String(page0.headers['content-type']), /^text\/html/, 'Content-Type text/html');
    const served = await new Promise((resolve, reject) => {
      require('node:http').get({ host: '127.0.0.1', port: tg.adminPort, path: '/dashboard', agent: false }, (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      }).on('error', reject);
    });
    const onDisk = fs.readFileSync(PAGE);
    assert.ok(served.equals(onDisk), `GET /dashboard (${served.length} bytes) is not byte-identical to ` +
      `src/report/web/dashboard.html (${onDisk.length} bytes): rebuild tollgate after editing the page (make)`);

    // A little traffic: a heavy $9 customer, a free one, a profitable pro one.
    const send = (tenant, model, tokens, feature) => env.openai(tenant, { headers: { 'X-Feature': feature, 'X-User-Id': `${tenant}-u1` } })
      .chat.completions.create({ model, messages: [{ role: 'user', content: `${h.uniq('n')} mock:tokens=${tokens}` }] });
    await send('dash-heavy', 'gpt-4o', '1000000,1000000', 'chat'); // $2.50 + $10.00
    await send('dash-heavy', 'gpt-4o', '200000,100000', 'summary'); // $0.50 + $1.00
    await send('dash-heavy', 'gpt-4o-mini', '100000,10000', 'chat');
    await send('dash-free', 'gpt-4o-mini', '1000,500', 'chat');
    await send('dash-pro', 'gpt-4o-mini', '10000,1000', 'search');
    // a fine-tune without a price: shown as unpriced (whatever [pricing] unknown_model charged)
    await send('dash-pro', 'ft:gpt-4o-mini:acme::x1', '100,10', 'search');
    // 2,000 tokens against 1,000 included: 1,000 in overage at $40 per 1M = $0.04
    await send('dash-growth', 'gpt-4o-mini', '1500,500', 'chat');
    await tg.records({}, 7);

    const period = new Date().toISOString().slice(0, 7);
    const api = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants?period=${period}`,
      { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(api.status, 200, `GET /admin/api/tenants answered ${api.status}: ${await api.clone().text()}`);
    const rep = await h.waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants?period=${period}`,
        { headers: { authorization: `Bearer ${TOKEN}` } });
      const j = await r.json();
      // requests, tokens and plans reach Redis with the tally's flush, up to a second after the cost
      const requests = (j.tenants || []).reduce((n, t) => n + (t.requests || 0), 0);
      return j.tenants && j.tenants.length >= 4 && requests >= 7 ? j : null;
    }, { what: 'four tenants and their seven requests in the admin API' });
    const pro = rep.tenants.find((t) => t.tenant === 'dash-pro');
    assert.equal(pro.unpriced_requests, 1);
    assert.ok(pro.unpriced_usd <= pro.cost_usd, JSON.stringify(pro));
    // the overage is revenue of the day it was billed, in the company trend
    const growth = rep.tenants.find((t) => t.tenant === 'dash-growth');
    assert.equal(growth.overage_usd, 0.04);
    const today = rep.daily[rep.daily.length - 1];
    assert.equal(today.day, new Date().toISOString().slice(0, 10));
    assert.equal(today.overage_usd, 0.04, `today's overage in the trend: ${JSON.stringify(today)}`);
    const now = new Date(), dim = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
    assert.ok(Math.abs(today.revenue_usd - ((9 + 99 + 0 + 19) / dim + 0.04)) < 1e-5,
      `today's revenue is the plans' day share plus the overage: ${JSON.stringify(today)}`);
    const order = rep.tenants.map((t) => t.tenant);

    await withPage(async ({ page, requests, errors }) => {
      const origin = `http://127.0.0.1:${tg.adminPort}`;
      await page.goto(`${origin}/dashboard`);
      await signIn(page, 'not-the-token');
      await page.waitForFunction(() => /401/.test(document.querySelector('[data-testid=token-message]').textContent));
      await signIn(page, TOKEN);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=tenant-row]').length >= 3);
      assert.deepEqual(await rowTenants(page), order, 'the rows in the API order (worst margin first)');
      assert.equal(order[0], 'dash-heavy', 'the heavy $9 customer ranks first');
      const loss = await lossTenants(page);
      assert.ok(loss.includes('dash-heavy'), `loss makers marked: ${loss}`);
      assert.ok(!loss.includes('dash-pro'), 'the profitable customer is not');
      assert.deepEqual(await freeTenants(page), ['dash-free'], 'the free-plan customer is marked apart');
      // dash-heavy spent ~$14 of its $20 cap today: at that run rate it crosses tomorrow
      const day = new Date(), last = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth() + 1, 0)).getUTCDate();
      if (day.getUTCDate() < last) assert.ok((await attention(page)).includes('crossing:dash-heavy'), `${await attention(page)}`);
      assert.equal(await page.$$eval('[data-testid=fleet-chart] [data-testid=fleet-cost-line]', (n) => n.length), 1);
      const free = page.locator('[data-testid=tenant-row][data-tenant="dash-free"]');
      assert.equal(await free.locator('[data-testid=cell-margin-pct]').textContent(), 'n/a');
      const proRow = page.locator('[data-testid=tenant-row][data-tenant="dash-pro"]');
      assert.match(await proRow.locator('[data-testid=cell-uncertain]').textContent(), /^\$\d+\.\d\d unpriced$/);
      assert.match(await text(page, 'total-uncertain'), /unpriced/);
      assert.equal(await text(page, 'total-under-water'), String(rep.totals.tenants_under_water));
      // allowance use and overage per customer: only for plans with an allowance
      const grow = page.locator('[data-testid=tenant-row][data-tenant="dash-growth"]');
      assert.equal(await grow.locator('[data-testid=cell-allowance]').textContent(), '200%');
      assert.equal(await grow.locator('[data-testid=cell-allowance]').getAttribute('title'),
        '2,000 of 1,000 included tokens; 1,000 past the allowance');
      assert.equal(await grow.locator('[data-testid=cell-overage]').textContent(), '$0.04');
      const heavy = page.locator('[data-testid=tenant-row][data-tenant="dash-heavy"]');
      assert.equal(await heavy.locator('[data-testid=cell-allowance]').textContent(), '');
      assert.equal(await heavy.locator('[data-testid=cell-overage]').textContent(), '');
      assert.match(await page.textContent('#fleet-sub'), /\(overage \$0\.04\)/);

      await waitDetail(page, 'dash-heavy');
      const c = await page.evaluate(() => ({
        line: !!document.querySelector('[data-testid=daily-chart] [data-testid=spend-line]'),
        budget: !!document.querySelector('[data-testid=daily-chart] [data-testid=budget-line]'),
      }));
      assert.deepEqual(c, { line: true, budget: true }, 'chart with the spend line and the budget line');
      const today = Number(new Date().toISOString().slice(8, 10));
      assert.equal(await page.$$eval('[data-testid=spend-point]', (ps) => ps.length), today, 'the line runs to today');
      assert.match(await text(page, 'detail-budget-used'), /^\d+% used$/);
      const list = (id) => page.$$eval(`[data-testid=${id}] li[data-name]`, (ls) => ls.map((l) => l.getAttribute('data-name')));
      assert.deepEqual(await list('by-model'), ['gpt-4o', 'gpt-4o-mini']);
      assert.deepEqual((await list('by-feature')).sort(), ['chat', 'summary']);
      assert.equal(await page.isVisible('[data-testid=detail-allowance]'), false, 'no allowance on its plan');
      await grow.locator('[data-testid=tenant-name]').click();
      await waitDetail(page, 'dash-growth');
      assert.equal(await text(page, 'detail-allowance'), '2,000 / 1,000 tokens');
      assert.equal(await text(page, 'detail-allowance-sub'), '200% used');
      assert.equal(await text(page, 'detail-overage'), '$0.04');
      assert.equal(await text(page, 'detail-overage-sub'), '1,000 tokens past it');
      await screenshot(page, 'dashboard-tollgate.png');
      assert.deepEqual(errors, [], 'no script error in the page');
      assertOnlyLocal(requests, origin);
    });
  });

  h.cleanRunTest(env);
});

'use strict';
// Billing anchors, through the official OpenAI SDK with a real redis-server: a tenant whose
// billing period starts on the 14th, with tollgate's clock shifted (TOLLGATE_CLOCK_OFFSET) to
// the 13th and then across midnight into the 14th: its allowance is used up on the 13th
// (allowance_exhausted, Retry-After to the 14th), counts from zero again on the 14th, in the
// month key named for the period's start; the usage endpoint and the report say the period's
// dates; a reload that moves the anchor logs the period the tenant is now in and applies it.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { execFile } = require('node:child_process');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');

const PREFIX = 'tollgate:';
const DAY = 86400;

// Seconds to add to the real clock so that tollgate's clock reads day `day` of the month
// after the current one, at `sec` seconds after midnight UTC.
function offsetTo(day, sec) {
  const now = new Date();
  const at = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, day) + sec * 1000;
  return Math.round((at - now.getTime()) / 1000);
}
const monthOf = (ms) => new Date(ms).toISOString().slice(0, 7);
const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);
const mKey = (tenant, label) => `${PREFIX}{${tenant}}:m:${label}`;

function runReport(configFile, args, env) {
  return new Promise((resolve) => {
    execFile(h.BINARY, ['report', '-c', configFile, ...args],
      { timeout: h.ms(20000), env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

const count = (tg, re) => (tg.stderr.match(new RegExp(re.source, 'gm')) || []).length;
async function reload(tg, overrides) {
  const workers = Number(tg.cfg.server.workers || 2);
  fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, overrides).text);
  const applied0 = count(tg, /new requests use the reloaded config/);
  tg.proc.child.kill('SIGHUP');
  await h.waitFor(() => count(tg, /new requests use the reloaded config/) >= applied0 + workers,
    { timeout: h.ms(5000), what: `every worker applied the reload:\n${tg.proc.tail(10)}` });
}

describe('billing anchors', () => {
  const env = h.useStack({ tollgate: false });
  const tenant = h.uniq('anch');
  const overrides = {
    'plan two': { price: 10, included_requests: 2, on_allowance: 'block' },
    [`tenant ${tenant}`]: { plan: 'two', billing_anchor: 14 },
  };
  const chat = { model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'mock:tokens=5,5' }] };

  test('anchor on the 14th: used up on the 13th, counted from zero on the 14th, in the key of the period\'s start; usage endpoint and report say the dates', { timeout: h.ms(90000) }, async () => {
    // tollgate's clock: the 13th of next month, 23:59:00 UTC
    const off13 = offsetTo(13, DAY - 60);
    const at13 = Date.now() + off13 * 1000;
    const prevStart = new Date(Date.UTC(new Date(at13).getUTCFullYear(), new Date(at13).getUTCMonth() - 1, 14));
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides, env: { TOLLGATE_CLOCK_OFFSET: String(off13) } });
    try {
      const c = h.openaiClient(tg, tenant);
      for (let i = 0; i < 2; i++) await c.chat.completions.create(chat);
      const err = await c.chat.completions.create(chat).then(() => null, (e) => e);
      assert.ok(err && err.status === 429 && err.code === 'allowance_exhausted', `blocked on the 13th: ${err}`);
      const ra = Number(typeof err.headers.get === 'function' ? err.headers.get('retry-after') : err.headers['retry-after']);
      assert.ok(ra >= 1 && ra <= 65, `Retry-After runs to the 14th, not to the month's end: ${ra}`);
      const m = await h.waitFor(async () => {
        const o = await env.redis.hgetall(mKey(tenant, monthOf(prevStart.getTime())));
        return Number(o.allowance_used) === 2 && Number(o.requests) === 2 ? o : null;
      }, { what: 'the period that started on the 14th of last month counted 2' });
      assert.equal(Number(m.requests), 2);
      const u = await (await fetch(`${tg.base}/v1/tollgate/usage`, { headers: { 'X-Tenant-Id': tenant } })).json();
      assert.equal(u.period, monthOf(prevStart.getTime()));
      assert.equal(u.period_start, `${dayOf(prevStart.getTime())}T00:00:00Z`);
      assert.equal(u.period_end, `${dayOf(at13 + DAY)}T00:00:00Z`);
    } finally {
      await tg.stopAndCheck();
    }

    // Two minutes later on tollgate's clock: the 14th, a new period.
    const off14 = off13 + 120;
    const at14 = Date.now() + off14 * 1000;
    assert.equal(dayOf(at14).slice(8), '14');
    const tg2 = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides, env: { TOLLGATE_CLOCK_OFFSET: String(off14) } });
    try {
      const c = h.openaiClient(tg2, tenant);
      const { response } = await c.chat.completions.create(chat).withResponse();
      assert.equal(response.status, 200, 'admitted again on the 14th');
      assert.equal(response.headers.get('x-tollgate-allowance-remaining'), '2', 'the whole allowance of the new period');
      const m = await h.waitFor(async () => {
        const o = await env.redis.hgetall(mKey(tenant, monthOf(at14)));
        return Number(o.allowance_used) === 1 && Number(o.requests) === 1 ? o : null;
      }, { what: 'the new period (key of the month of the 14th) counted 1' });
      assert.equal(Number(m.requests), 1);
      const old = await env.redis.hgetall(mKey(tenant, monthOf(prevStart.getTime())));
      assert.equal(Number(old.allowance_used), 2, 'the old period is unchanged');
      const u = await (await fetch(`${tg2.base}/v1/tollgate/usage`, { headers: { 'X-Tenant-Id': tenant } })).json();
      assert.equal(u.period_start, `${dayOf(at14)}T00:00:00Z`);
      assert.equal(u.used_requests, 1);

      // The report of a month: each tenant's period that starts in that month, with its dates.
      const j = await runReport(tg2.configFile, ['--period', monthOf(at14), '--tenant', tenant, '--format', 'json'],
        { TOLLGATE_CLOCK_OFFSET: String(off14) });
      assert.equal(j.code, 0, j.stderr);
      const doc = JSON.parse(j.stdout);
      const row = (doc.tenants || [doc]).find((r) => r.tenant === tenant) || doc;
      assert.equal(row.requests, 1, j.stdout);
      assert.equal(row.period_start, `${dayOf(at14)}T00:00:00Z`);
      const next = new Date(at14);
      assert.equal(row.period_end, `${dayOf(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 14))}T00:00:00Z`);
      const prev = await runReport(tg2.configFile, ['--period', monthOf(prevStart.getTime()), '--format', 'csv'],
        { TOLLGATE_CLOCK_OFFSET: String(off14) });
      assert.equal(prev.code, 0, prev.stderr);
      const lines = prev.stdout.trim().split('\n');
      const cols = lines[0].split(',');
      const mine = lines.find((l) => l.startsWith(`${tenant},`));
      assert.ok(mine, prev.stdout);
      const cells = mine.split(',');
      assert.equal(cells[cols.indexOf('requests')], '2');
      assert.equal(cells[cols.indexOf('period_start')], `${dayOf(prevStart.getTime())}T00:00:00Z`);
      assert.equal(cells[cols.indexOf('period_end')], `${dayOf(at14)}T00:00:00Z`);
    } finally {
      await tg2.stopAndCheck();
    }
  });

  test('reload: a changed billing_anchor logs the period the tenant is now in and counts there from the next request', { timeout: h.ms(60000) }, async () => {
    const t = h.uniq('anchr');
    const plan = { 'plan one': { price: 10, included_requests: 1, on_allowance: 'block' } };
    // tollgate's clock: the 10th of next month, noon
    const off = offsetTo(10, DAY / 2);
    const at = Date.now() + off * 1000;
    const d = new Date(at);
    const prev20 = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 20);
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { ...plan, [`tenant ${t}`]: { plan: 'one' } },
      env: { TOLLGATE_CLOCK_OFFSET: String(off) } });
    try {
      const ask = () => h.post(tg, '/v1/chat/completions', chat, { 'X-Tenant-Id': t });
      assert.equal((await ask()).status, 200, 'anchor 1: the period of the 1st has its request left');
      await reload(tg, { ...plan, [`tenant ${t}`]: { plan: 'one', billing_anchor: 20 } });
      const line = `reload: tenant ${t} billing_anchor 1 -> 20: now in the period ${dayOf(prev20)} to ${dayOf(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 19))} (UTC)`;
      await h.waitFor(() => tg.stderr.includes(line), { what: `the log line ${line}:\n${tg.proc.tail(5)}` });
      assert.equal((await ask()).status, 200, 'anchor 20: the period of the 20th of last month has its request');
      await h.waitFor(async () => (Number((await env.redis.hgetall(mKey(t, monthOf(prev20)))).allowance_used) === 1 ? true : null),
        { what: 'counted in the key of the period that started on the 20th of last month' });
      const r = await ask();
      assert.equal(r.status, 429, 'anchor 20: now used up');
      assert.equal(r.json.error.code, 'allowance_exhausted');
      // anchor 1 and anchor 5 both start a period this month: the same period key, used up
      await reload(tg, { ...plan, [`tenant ${t}`]: { plan: 'one', billing_anchor: 5 } });
      await h.waitFor(() => tg.stderr.includes(`reload: tenant ${t} billing_anchor 20 -> 5: now in the period ${dayOf(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 5))}`),
        { what: 'the second log line' });
      assert.equal((await ask()).status, 429, 'anchor 5: the period that started this month is used up by the first request');
    } finally {
      await tg.stopAndCheck();
    }
  });
});

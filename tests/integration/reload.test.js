'use strict';
// Reload is honest: for each class of key, a value changed in the file and sent with SIGHUP is
// the value the running tollgate uses (logging, alerts with a real webhook receiver, Redis
// timeouts and on_failure, plans and tenants, pricing, upstreams, server limits and upstream
// timeouts), and a key marked (restart) is reported as needing one and keeps its running
// value everywhere until then.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { startMock } = require('../lib/mock');
const { startWebhookSink } = require('../lib/webhook');
const { waitReady } = require('../lib/redis-ctl');
const { httpGet } = require('../lib/tollgate');

const count = (tg, re) => (tg.stderr.match(new RegExp(re.source, 'gm')) || []).length;

// Rewrites the config file as the start config plus overrides, sends SIGHUP and waits until
// every worker took the new config.
async function reload(tg, overrides) {
  const workers = Number(tg.cfg.server.workers || 2);
  fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, overrides).text);
  const applied0 = count(tg, /new requests use the reloaded config/);
  tg.proc.child.kill('SIGHUP');
  await h.waitFor(() => count(tg, /new requests use the reloaded config/) >= applied0 + workers,
    { timeout: h.ms(5000), what: `every worker applied the reload:\n${tg.proc.tail(10)}` });
}

const chat = (content, model = 'gpt-4o') => ({ model, max_tokens: 50, messages: [{ role: 'user', content }] });

// A request with the tenant header named `header`; returns {status, json, id}.
async function ask(tg, tenant, content, { model, header = 'X-Tenant-Id', extra = {}, path: p = '/v1/chat/completions' } = {}) {
  const r = await h.post(tg, p, chat(content, model), { ...(tenant ? { [header]: tenant } : {}), ...extra });
  return { status: r.status, json: r.json, text: r.text, id: r.headers.get('x-tollgate-request-id') };
}

async function adminConfig(tg) {
  const http = require('node:http');
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: tg.adminPort, path: '/admin/api/config', agent: false,
      headers: { authorization: 'Bearer test-admin-token' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

describe('reload', () => {
  const env = h.useStack({ tollgate: false });

  test('logging: log_level and log_format are live after SIGHUP', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({ server: { log_level: 'info', log_format: 'plain' } }, async (tg) => {
      const tenant = h.uniq('log');
      const bad = await ask(tg, null, 'mock:tokens=5,5');
      assert.equal(bad.status, 400);
      await h.sleep(h.ms(200));
      assert.ok(!tg.stderr.includes(bad.id), 'info level: the rejection is not logged');
      await reload(tg, { server: { log_level: 'debug', log_format: 'json' } });
      const bad2 = await ask(tg, null, 'mock:tokens=5,5');
      assert.equal(bad2.status, 400);
      const line = await h.waitFor(() => tg.stderr.split('\n').find((l) => l.includes(bad2.id)),
        { what: 'the debug line of the rejection' });
      const j = JSON.parse(line);
      assert.equal(j.level, 'debug', `debug line as JSON: ${line}`);
      const ok = await ask(tg, tenant, 'mock:tokens=5,5');
      assert.equal(ok.status, 200);
      // to warn: the workers' info lines are off now, so wait for the restart warning of a
      // changed restart key instead (it is printed before the new level applies)
      fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, { server: { log_level: 'warn', log_format: 'plain', workers: 3 } }).text);
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => /server\.workers changed: these need a restart/.test(tg.stderr), { what: 'the restart warning' });
      await h.sleep(h.ms(100));
      const bad3 = await ask(tg, null, 'mock:tokens=5,5');
      assert.equal(bad3.status, 400);
      await h.sleep(h.ms(200));
      assert.ok(!tg.stderr.includes(bad3.id), 'warn level: the rejection is not logged');
      const before = tg.stderr.length;
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => /server\.workers changed/.test(tg.stderr.slice(before)), { what: 'a second restart warning' });
      await h.sleep(h.ms(300));
      assert.ok(!/reload: .* loaded/.test(tg.stderr.slice(before)), 'info lines are off at warn');
      assert.ok(!/^\{/m.test(tg.stderr.slice(before)), 'plain lines again');
    });
  });

  test('alerts: a webhook and thresholds added by SIGHUP fire for the next crossing', { timeout: h.ms(60000) }, async () => {
    const sink = await startWebhookSink();
    try {
      const tenant = h.uniq('alert');
      const mine = (p) => p.json && p.json.tenant === tenant;
      const base = {
        server: { workers: 1 },
        'plan alerted': { price: 5, budget_monthly: '0.01', on_exceed: 'block' },
        [`tenant ${tenant}`]: { plan: 'alerted' },
      };
      await env.withTollgate(base, async (tg) => {
        // 800 in + 100 out of gpt-4o = 3M nano = 30% of $0.01
        assert.equal((await ask(tg, tenant, 'mock:tokens=800,100')).status, 200);
        await reload(tg, { alerts: { webhook: sink.url, thresholds: '50%, 90%' } });
        const cfg = await adminConfig(tg);
        assert.deepEqual(cfg.alerts.thresholds, [50, 90]);
        const r2 = await ask(tg, tenant, 'mock:tokens=800,100'); // 60%: crosses 50%
        assert.equal(r2.status, 200);
        const [post] = await sink.waitFor(mine, 1);
        assert.equal(post.json.threshold_pct, 50, JSON.stringify(post.json));
        // thresholds moved again: 90% only (80% of the default would be skipped)
        await reload(tg, { alerts: { webhook: sink.url, thresholds: '95%' } });
        assert.equal((await ask(tg, tenant, 'mock:tokens=800,100')).status, 200); // 90%
        await h.sleep(h.ms(800));
        assert.equal(sink.matching(mine).length, 1, 'no alert at 90% once the threshold is 95%');
        assert.equal((await ask(tg, tenant, 'mock:tokens=200,50')).status, 200); // 100%
        const posts = await sink.waitFor(mine, 2);
        assert.equal(posts[1].json.threshold_pct, 95, JSON.stringify(posts[1].json));
        await sink.settled();
      });
    } finally {
      await sink.close();
    }
  });

  test('redis: timeout and on_failure are live after SIGHUP', { timeout: h.ms(60000) }, async () => {
    const base = {
      server: { workers: 1 },
      redis: { timeout: '200ms', on_failure: 'closed' },
      'plan capped': { price: 1, budget_monthly: '100' },
    };
    const tenant = h.uniq('rto');
    const admitted = async (tg) => ask(tg, tenant, 'mock:tokens=5,5', { extra: { 'X-Tenant-Plan': 'capped' } });
    // Redis holds every client's commands for ms (the pausing connection is redis-cli's).
    const pause = (ms) => env.redis.cmd('CLIENT', 'PAUSE', String(ms), 'ALL');
    await env.withTollgate(base, async (tg) => {
      assert.equal((await admitted(tg)).status, 200);
      await pause(h.ms(1200));
      const r1 = await admitted(tg);
      assert.equal(r1.status, 503, `timeout 200ms, on_failure closed: ${r1.text}`);
      assert.equal(r1.json.error.code, 'budget_store_unavailable');
      await h.sleep(h.ms(1300));
      await waitReady(tg, 'ready');

      await reload(tg, { redis: { timeout: '5s', on_failure: 'closed' } });
      await pause(h.ms(800));
      const r2 = await admitted(tg);
      assert.equal(r2.status, 200, `timeout 5s: the paused Redis is waited for: ${r2.text}`);
      await waitReady(tg, 'ready');

      await reload(tg, { redis: { timeout: '200ms', on_failure: 'open' } });
      await pause(h.ms(1200));
      const r3 = await admitted(tg);
      assert.equal(r3.status, 200, `on_failure open: served without Redis: ${r3.text}`);
      await h.waitFor(() => /budget store unreachable .*on_failure = open/.test(tg.stderr), { what: 'the open-failure warning' });
      await h.sleep(h.ms(1300));
      await waitReady(tg, 'ready');
    });
  });

  test('plans and tenants: tenant sections, default_plan, missing_tenant and the tenant header are live after SIGHUP', { timeout: h.ms(60000) }, async () => {
    const base = { 'plan one': { price: 1, rpm: '1' } };
    const a = h.uniq('pt-a');
    const b = h.uniq('pt-b');
    await env.withTollgate(base, async (tg) => {
      for (let i = 0; i < 2; i++) assert.equal((await ask(tg, a, 'mock:tokens=5,5')).status, 200, 'plan free: no rpm');
      assert.equal((await ask(tg, null, 'mock:tokens=5,5')).status, 400, 'missing_tenant = reject');
      await reload(tg, {
        server: { missing_tenant: 'allow', default_plan: 'one' },
        [`tenant ${a}`]: { plan: 'one' },
      });
      const ra = [await ask(tg, a, 'mock:tokens=5,5'), await ask(tg, a, 'mock:tokens=5,5')];
      const rb = [await ask(tg, b, 'mock:tokens=5,5'), await ask(tg, b, 'mock:tokens=5,5')];
      // rpm = 1 per minute: the second of each pair is limited (unless a minute turned between)
      assert.equal(ra[0].status, 200);
      assert.equal(rb[0].status, 200);
      assert.ok(ra[1].status === 429 || rb[1].status === 429, `[tenant] plan and default_plan applied: ${ra[1].status} ${rb[1].status}`);
      const anon = await ask(tg, null, 'mock:tokens=5,5');
      assert.ok(anon.status === 200 || anon.status === 429, `missing_tenant = allow: ${anon.status} ${anon.text}`);
      const rec = await tg.record(anon.id);
      assert.equal(rec.tenant, 'anonymous');
      assert.equal(rec.plan, 'one');
      await reload(tg, { server: { missing_tenant: 'reject', default_plan: 'free', tenant_header: 'X-Customer' } });
      const c = h.uniq('pt-c');
      const rc = await ask(tg, c, 'mock:tokens=5,5', { header: 'X-Customer' });
      assert.equal(rc.status, 200, rc.text);
      assert.equal((await tg.record(rc.id)).tenant, c, 'the new tenant header names the tenant');
      assert.equal((await ask(tg, c, 'mock:tokens=5,5')).status, 400, 'the old header no longer does');
    });
  });

  test('plans: a target_margin set by SIGHUP caps the plan at its price less that margin', { timeout: h.ms(60000) }, async () => {
    const base = { 'plan tm': { price: '0.001' } };
    const t = h.uniq('tm');
    await env.withTollgate({ ...base, [`tenant ${t}`]: { plan: 'tm' } }, async (tg) => {
      for (let i = 0; i < 2; i++) assert.equal((await ask(tg, t, 'mock:tokens=100,50')).status, 200, 'no cap yet');
      // $0.001 x (1 - 99%) = $0.00001: already spent, so the next request is over the cap
      await reload(tg, { 'plan tm': { price: '0.001', target_margin: '99%' }, [`tenant ${t}`]: { plan: 'tm' } });
      await h.waitFor(async () => ((await ask(tg, t, 'mock:tokens=100,50')).status === 429 ? true : null),
        { what: 'the cap from target_margin applied' });
      const r = await ask(tg, t, 'mock:tokens=100,50');
      assert.equal(r.status, 429);
      assert.equal(r.json.error.code, 'budget_exceeded');
      assert.match(r.json.error.message, /monthly AI budget of \$0\.00001/);
    });
  });

  test('pricing: a new pricing file and unknown_model are live after SIGHUP', { timeout: h.ms(30000) }, async () => {
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'tollgate-prices-'));
    const original = fs.readFileSync(path.join(__dirname, '..', '..', 'conf', 'pricing.conf'), 'utf8');
    const cheap = path.join(dir, 'pricing.conf');
    fs.writeFileSync(cheap, original);
    try {
      await env.withTollgate({ pricing: { file: cheap, unknown_model: 'allow' } }, async (tg) => {
        const t = h.uniq('price');
        const r1 = await ask(tg, t, 'mock:tokens=1000,0');
        assert.equal(r1.status, 200);
        assert.equal(Math.round((await tg.record(r1.id)).cost_usd * 1e9), 2500000, 'gpt-4o at $2.50 per 1M input');
        assert.equal((await ask(tg, t, 'mock:tokens=5,5', { model: 'no-such-model-x' })).status, 200, 'unknown_model = allow');
        const dear = path.join(dir, 'dear.conf');
        fs.writeFileSync(dear, original.replace(/\[gpt-4o\]\n(; .*\n)*provider = openai\ninput = 2\.50/, (m) => m.replace('input = 2.50', 'input = 5.00')));
        assert.notEqual(fs.readFileSync(dear, 'utf8'), original, 'the test edited the gpt-4o price');
        await reload(tg, { pricing: { file: dear, unknown_model: 'block' } });
        const r2 = await ask(tg, t, 'mock:tokens=1000,0');
        assert.equal(r2.status, 200);
        assert.equal(Math.round((await tg.record(r2.id)).cost_usd * 1e9), 5000000, 'gpt-4o at the reloaded $5.00');
        const r3 = await ask(tg, t, 'mock:tokens=5,5', { model: 'no-such-model-x' });
        assert.equal(r3.status, 400, `unknown_model = block: ${r3.text}`);
        assert.equal(r3.json.error.code, 'unknown_model');
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('upstreams: url, api_key, a new prefixed upstream and the upstream timeouts are live after SIGHUP', { timeout: h.ms(60000) }, async () => {
    const mock2 = await startMock();
    try {
      await env.withTollgate({}, async (tg) => {
        const t = h.uniq('ups');
        const n1 = env.mock.count();
        const r1 = await ask(tg, t, 'to-first mock:tokens=5,5');
        assert.equal(r1.status, 200);
        assert.equal(env.mock.requestsWith('to-first').length, 1);
        assert.ok(env.mock.count() > n1);
        await reload(tg, {
          'upstream openai': { url: mock2.url, ca_file: mock2.certs.ca, api_key: 'sk-from-config' },
          'upstream groq': { url: mock2.url, ca_file: mock2.certs.ca, kind: 'openai', prefix: '/groq' },
          server: { first_byte_timeout: '700ms' },
        });
        const r2 = await ask(tg, t, 'to-second mock:tokens=5,5');
        assert.equal(r2.status, 200, r2.text);
        const [got] = mock2.requestsWith('to-second');
        assert.ok(got, 'the reloaded url is used');
        assert.equal(got.headers.authorization, 'Bearer sk-from-config', 'the reloaded api_key replaces the client key');
        assert.equal(env.mock.requestsWith('to-second').length, 0);
        const r3 = await ask(tg, t, 'to-groq mock:tokens=5,5', { path: '/groq/v1/chat/completions' });
        assert.equal(r3.status, 200, r3.text);
        assert.equal(mock2.requestsWith('to-groq')[0].path, '/v1/chat/completions');
        const r4 = await ask(tg, t, 'slow mock:delay=1500 mock:tokens=5,5');
        assert.equal(r4.status, 504, `first_byte_timeout 700ms: ${r4.text}`);
      });
    } finally {
      await mock2.stop();
    }
  });

  test('server limits: max_body and max_header_size are live after SIGHUP', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({}, async (tg) => {
      const t = h.uniq('lim');
      const big = 'x'.repeat(4000);
      assert.equal((await ask(tg, t, `${big} mock:tokens=5,5`)).status, 200);
      assert.equal((await ask(tg, t, 'mock:tokens=5,5', { extra: { 'X-Pad': 'p'.repeat(3000) } })).status, 200);
      await reload(tg, { server: { max_body: '2k', max_header_size: '2k' } });
      assert.equal((await ask(tg, t, `${big} mock:tokens=5,5`)).status, 413);
      assert.equal((await ask(tg, t, 'mock:tokens=5,5', { extra: { 'X-Pad': 'p'.repeat(3000) } })).status, 431);
    });
  });

  test('restart keys: a changed listen, redis url or key_prefix is reported and keeps its running value', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({}, async (tg) => {
      const t = h.uniq('rk');
      const newPort = tg.port + 1;
      await reload(tg, {
        server: { listen: `127.0.0.1:${newPort}`, log_level: 'info' },
        redis: { key_prefix: 'other:' },
      });
      await h.waitFor(() => /reload: server\.listen, redis\.key_prefix changed: these need a restart/.test(tg.stderr),
        { what: `the restart warning:\n${tg.proc.tail(5)}` });
      const r = await ask(tg, t, 'mock:tokens=5,5');
      assert.equal(r.status, 200, 'still serving on the running port');
      const cfg = await adminConfig(tg);
      assert.equal(cfg.server.listen, `127.0.0.1:${tg.port}`, 'the admin API shows the running value');
      assert.equal(cfg.redis.key_prefix, 'tollgate:');
      await env.redis.waitRequests(t, 1);
      const h2 = await httpGet(tg.adminPort, '/healthz');
      assert.equal(h2.status, 200);
    });
  });
});

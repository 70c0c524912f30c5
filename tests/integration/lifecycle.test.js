'use strict';
// Catalogue §5 E67 (SIGHUP under load) and E68 (SIGTERM under load): reloading the config
// drops no connection and fails no request, new caps apply to requests after the reload, a
// broken file keeps the old config and says file:line; SIGTERM stops accepting at once,
// lets streams in flight finish up to drain_timeout, writes every record and exits 0.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

// One non-streamed chat completion over `agent`; resolves {status, json, id} or rejects with
// the socket error.
function request(port, agent, tenant, content, model = 'gpt-4o-mini', extraHeaders = {}) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model, messages: [{ role: 'user', content }] });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tenant-id': tenant, authorization: 'Bearer sk-test', ...extraHeaders },
      timeout: h.ms(10000) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, json, id: res.headers['x-tollgate-request-id'] });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// A streamed chat completion on its own connection. Resolves when the response ends or
// breaks: {status, id, text, complete (saw [DONE]), broken, firstAt, endAt}.
// `started` resolves at the response headers.
function stream(port, tenant, content) {
  let onStart;
  const started = new Promise((r) => { onStart = r; });
  const done = new Promise((resolve) => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content }] });
    const out = { status: 0, id: null, text: '', complete: false, broken: false, firstAt: 0, endAt: 0 };
    const finish = () => {
      if (out.endAt) return;
      out.endAt = Date.now();
      out.complete = /data: \[DONE\]\s*$/.test(out.text);
      resolve(out);
    };
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tenant-id': tenant, authorization: 'Bearer sk-test' },
      timeout: h.ms(30000) }, (res) => {
      out.status = res.statusCode;
      out.id = res.headers['x-tollgate-request-id'];
      out.firstAt = Date.now();
      onStart();
      res.setEncoding('utf8');
      res.on('data', (d) => { out.text += d; });
      res.on('end', finish);
      res.on('aborted', () => { out.broken = true; });
      res.on('error', () => { out.broken = true; finish(); });
      res.on('close', finish);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => { out.broken = true; onStart(); finish(); });
    req.end(body);
  });
  return { started, done };
}

// Resolves 'refused' | 'accepted' for one connect attempt.
function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => { s.destroy(); resolve('accepted'); });
    s.on('error', (e) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : `error ${e.code}`));
  });
}

function waitExit(tg, timeout) {
  return h.waitFor(() => tg.proc.exit, { timeout, interval: 20, what: 'tollgate exit' });
}

// Number of lines in stderr matching re.
const count = (tg, re) => (tg.stderr.match(new RegExp(re.source, 'gm')) || []).length;

describe('lifecycle', () => {
  const env = h.useStack();

  test('E67 SIGHUP under load: no failed request, no dropped connection; new caps apply after the reload; a broken file keeps the old config and logs file:line', { timeout: h.ms(60000) }, async () => {
    const tiny = h.uniq('hup-tiny');
    const load = [h.uniq('hup-l0'), h.uniq('hup-l1'), h.uniq('hup-l2'), h.uniq('hup-l3')];
    const v1 = {
      'plan tiny': { price: '1', budget_monthly: '0.001', on_exceed: 'block' },
      'plan metered': { price: '5', budget_monthly: '50', rpm: '100000' },
      'plan limited': { price: '5', rpm: '1000' },
      [`tenant ${tiny}`]: { plan: 'tiny' },
      [`tenant ${load[0]}`]: { plan: 'metered' },
      [`tenant ${load[1]}`]: { plan: 'metered' },
    };
    const tg = await env.start(v1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    try {
      const a = await request(tg.port, false, tiny, 'mock:tokens=100,1000', 'gpt-4o');
      assert.equal(a.status, 200, 'first request of the $0.001 tenant admitted');
      await h.waitFor(async () => (await env.redis.counters(tiny)).requests === 1, { what: 'settled' });
      const b = await request(tg.port, false, tiny, 'mock:tokens=100,1000', 'gpt-4o');
      assert.equal(b.status, 429, 'blocked before the reload');
      assert.equal(b.json.error.code, 'budget_exceeded');

      // Four clients, each a loop of requests on the keep-alive agent.
      const stats = { ok: 0, bad: [], errors: [], sockets: 0, closed: 0 };
      const orig = agent.createConnection.bind(agent);
      agent.createConnection = (opts, cb) => {
        const s = orig(opts, cb);
        stats.sockets += 1;
        s.on('close', () => { if (!stop) stats.closed += 1; });
        return s;
      };
      const clients = load.map(async (tenant, i) => {
        let n = 0;
        while (!stop) {
          try {
            const r = await request(tg.port, agent, tenant, `c${i} r${n} mock:tokens=50,5 mock:delay=10`);
            if (r.status === 200) stats.ok += 1;
            else stats.bad.push(`${tenant}: ${r.status} ${JSON.stringify(r.json)}`);
          } catch (e) {
            stats.errors.push(`${tenant}: ${e.code || e.message}`);
          }
          n += 1;
        }
      });

      const loaded0 = count(tg, /reload: .* loaded/);
      const applied0 = count(tg, /worker \d+: new requests use the reloaded config/);
      await h.sleep(h.ms(600));
      // v2: the tiny plan's budget raised, rpm of two plans changed.
      const v2 = { ...v1, 'plan tiny': { budget_monthly: '100' }, 'plan metered': { rpm: '50000' }, 'plan limited': { rpm: '2' } };
      fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, v2).text);
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => count(tg, /reload: .* loaded/) > loaded0, { timeout: h.ms(3000), what: 'reload: ... loaded in stderr' });
      // every worker (2) has swapped in the new config
      await h.waitFor(() => count(tg, /worker \d+: new requests use the reloaded config/) >= applied0 + 2, { timeout: h.ms(3000), what: 'both workers applied the reload' });

      const c = await request(tg.port, false, tiny, 'mock:tokens=10,10', 'gpt-4o');
      assert.equal(c.status, 200, `after raising the budget the tenant is admitted: ${c.status} ${JSON.stringify(c.json)}`);
      // rpm lowered to 2: a fresh tenant of that plan gets 2 and then 429 (retried once if the
      // three straddled a minute boundary).
      let limitedOk = false;
      for (let attempt = 0; attempt < 2 && !limitedOk; attempt++) {
        const lt = h.uniq('hup-lim');
        const m0 = new Date().getUTCMinutes();
        const rs = [];
        for (let i = 0; i < 3; i++) rs.push(await request(tg.port, false, lt, 'mock:tokens=5,1', 'gpt-4o-mini', { 'X-Tenant-Plan': 'limited' }));
        if (new Date().getUTCMinutes() !== m0) continue;
        assert.deepEqual(rs.map((r) => r.status), [200, 200, 429], `rpm = 2 applies after the reload; tollgate said: ${tg.stderr.split('\n').filter((l) => /unreachable|timeout|reload|worker/.test(l)).slice(-12).join(' | ')}`);
        assert.equal(rs[2].json.error.code, 'rate_limit_exceeded');
        limitedOk = true;
      }
      assert.ok(limitedOk, 'rpm check ran within one minute');

      await h.sleep(h.ms(400));
      tg.proc.child.kill('SIGHUP'); // the same file again
      await h.waitFor(() => count(tg, /reload: .* loaded/) > loaded0 + 1, { timeout: h.ms(3000), what: 'second reload' });

      await h.sleep(h.ms(400));
      const broken = h.renderConfig(tg.cfg, { ...v2, server: { bogus_key: '1' } }).text;
      const line = broken.split('\n').findIndex((l) => l.startsWith('bogus_key')) + 1;
      fs.writeFileSync(tg.configFile, broken);
      const failed0 = count(tg, /reload failed/);
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => count(tg, /reload failed/) > failed0, { timeout: h.ms(3000), what: 'reload failed in stderr' });
      const errLine = tg.stderr.split('\n').find((l) => /reload: .*bogus_key/.test(l));
      assert.ok(errLine, `stderr names the bad key:\n${tg.proc.tail(10)}`);
      assert.ok(errLine.includes(`${tg.configFile}:${line}`), `reload error carries file:line (${tg.configFile}:${line}): ${errLine}`);
      const d = await request(tg.port, false, tiny, 'mock:tokens=10,10', 'gpt-4o');
      assert.equal(d.status, 200, 'the previous (v2) config is still in force after the broken reload');

      await h.sleep(h.ms(600));
      stop = true;
      await Promise.all(clients);
      assert.deepEqual(stats.errors, [], 'no socket error during the reloads');
      assert.deepEqual(stats.bad.slice(0, 5), [], 'every load request answered 200');
      assert.ok(stats.ok > 40, `load kept flowing (${stats.ok} requests)`);
      assert.equal(stats.closed, 0, 'no keep-alive connection closed by tollgate during the reloads');
      assert.ok(stats.sockets <= 4, `the 4 clients kept their connections (${stats.sockets} opened)`);
      await tg.records((r) => load.includes(r.tenant), stats.ok); // records are written asynchronously
      await h.sleep(h.ms(200));
      const recs = tg.readRecords().filter((r) => load.includes(r.tenant));
      assert.equal(recs.length, stats.ok, 'one record per load request');
      agent.destroy();
      await tg.stopAndCheck();
    } finally {
      stop = true;
      agent.destroy();
      await tg.stop();
    }
  });

  test('E68 SIGTERM drain: new connections refused within 0.5 s, 5 streams in flight finish 200 with their records, exit 0', { timeout: h.ms(60000) }, async () => {
    const tg = await env.start({ server: { drain_timeout: '10s' } });
    try {
      const tenant = h.uniq('drain');
      const ss = Array.from({ length: 5 }, (_, i) => stream(tg.port, tenant, `d${i} mock:tokens=${100 + i},20 mock:chunks=10 mock:slow=200`));
      await Promise.all(ss.map((s) => s.started));
      const t0 = Date.now();
      tg.proc.child.kill('SIGTERM');
      let refusedAt = null;
      while (Date.now() - t0 < h.ms(2000)) {
        if ((await tryConnect(tg.port)) === 'refused') { refusedAt = Date.now() - t0; break; }
        await h.sleep(20);
      }
      assert.ok(refusedAt !== null, 'new connections refused after SIGTERM');
      assert.ok(refusedAt <= h.ms(500), `refused ${refusedAt} ms after SIGTERM (want <= 500)`);
      const results = await Promise.all(ss.map((s) => s.done));
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200, `stream ${i}`);
        assert.ok(r.complete && !r.broken, `stream ${i} complete after SIGTERM: ${r.text.slice(-80)}`);
        assert.ok(r.endAt - t0 > 500, 'the stream really was in flight at SIGTERM');
      }
      await waitExit(tg, h.ms(5000));
      assert.equal(tg.proc.exit.code, 0, `exit code after drain: ${JSON.stringify(tg.proc.exit)}`);
      const recs = tg.readRecords().filter((r) => r.tenant === tenant);
      assert.equal(recs.length, 5, 'all 5 records written before exit');
      for (const rec of recs) {
        assert.equal(rec.outcome, 'ok');
        assert.equal(rec.estimated, false);
        assert.equal(rec.output_tokens, 20);
      }
      await tg.stopAndCheck();
    } finally {
      await tg.stop();
    }
  });

  test('E68 SIGTERM with drain_timeout = 1s and longer streams: streams cut at ~1 s, records still written (estimated), exit 0', { timeout: h.ms(60000) }, async () => {
    const tg = await env.start({ server: { drain_timeout: '1s' } });
    try {
      const tenant = h.uniq('cut');
      const ss = Array.from({ length: 3 }, (_, i) => stream(tg.port, tenant, `c${i} mock:tokens=${200 + i},40 mock:chunks=12 mock:slow=300`));
      await Promise.all(ss.map((s) => s.started));
      await h.sleep(100);
      const t0 = Date.now();
      tg.proc.child.kill('SIGTERM');
      const results = await Promise.all(ss.map((s) => s.done));
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200);
        assert.ok(!r.complete, `stream ${i} was cut, not completed`);
        const at = r.endAt - t0;
        assert.ok(at >= 800 && at <= 1000 + h.ms(1500), `stream ${i} cut ${at} ms after SIGTERM (drain_timeout 1 s)`);
      }
      await waitExit(tg, h.ms(5000));
      assert.equal(tg.proc.exit.code, 0, `exit code: ${JSON.stringify(tg.proc.exit)}`);
      const recs = tg.readRecords().filter((r) => r.tenant === tenant);
      assert.equal(recs.length, 3, 'a record for every cut stream');
      for (const rec of recs) {
        assert.equal(rec.outcome, 'drain_cut', 'cut by the drain, not by the client');
        assert.equal(rec.estimated, true);
        assert.ok(rec.output_tokens > 0 && rec.cost_usd > 0, `estimate from the streamed text: ${JSON.stringify(rec)}`);
      }
      await tg.stopAndCheck();
    } finally {
      await tg.stop();
    }
  });

  h.cleanRunTest(env);
});

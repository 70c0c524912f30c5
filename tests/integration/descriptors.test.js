'use strict';
// Running out of file descriptors (issue 18): under a low `prlimit --nofile`, more idle
// connections than descriptors must not spin a worker or flood the log; max_connections is
// clamped to what the limit allows (and says so at start); the service answers again once
// the idle connections close.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { httpGet } = require('../lib/tollgate');

const NOFILE = 300;
const IDLE = 500;
const WINDOW_MS = 3000;

// utime + stime of pid, seconds.
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks: 100 per second on Linux
}

// Opens n TCP connections that send nothing; resolves with the sockets once every one is
// connected or failed (refused connections are fine: the point is the pressure).
function openIdle(port, n) {
  const socks = [];
  return new Promise((resolve) => {
    let left = n;
    const done = () => { if (--left === 0) resolve(socks); };
    for (let i = 0; i < n; i++) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('connect', done);
      s.on('error', () => { });
      s.once('error', done);
      socks.push(s);
    }
  });
}

describe('descriptor exhaustion', () => {
  const env = h.useStack({ tollgate: false });

  test(`under prlimit --nofile=${NOFILE}, ${IDLE} idle connections: CPU and log bounded, max_connections clamped, service resumes`, { timeout: h.ms(60000) }, async (t) => {
    const tg = await startLimited(env);
    try {
      assert.match(tg.stderr, /descriptors: limit \d+/, 'the effective limit is logged at start');
      assert.match(tg.stderr, /max_connections 10000 lowered to \d+/, 'max_connections clamped to the limit');
      const logBefore = tg.stderr.length;
      const socks = await openIdle(tg.port, IDLE);
      const cpu0 = cpuSeconds(tg.proc.pid);
      await h.sleep(WINDOW_MS);
      const cpu = cpuSeconds(tg.proc.pid) - cpu0;
      const logBytes = Buffer.byteLength(tg.stderr.slice(logBefore));
      t.diagnostic(`cpu ${(100 * cpu / (WINDOW_MS / 1000)).toFixed(1)}% of a core over ${WINDOW_MS} ms, log ${logBytes} bytes`);
      // a spinning accept loop burns a whole core and writes megabytes; bounds far above
      // an idle process, far below that
      assert.ok(cpu < 0.5 * (WINDOW_MS / 1000), `CPU ${cpu}s in ${WINDOW_MS} ms: the process spins`);
      assert.ok(logBytes < 16384, `${logBytes} log bytes in ${WINDOW_MS} ms: the log floods`);
      for (const s of socks) s.destroy();
      // service resumes: a request is answered once the idle connections are gone
      const c = h.openaiClient(tg, 'fd-tenant');
      const r = await h.waitFor(async () => {
        try {
          return await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi mock:tokens=3,2' }] });
        } catch { return null; }
      }, { timeout: h.ms(10000), interval: 200, what: 'a request answered after the idle connections closed' });
      assert.ok(r.choices);
      const m = await httpGet(tg.adminPort, '/healthz');
      assert.equal(m.status, 200);
    } finally {
      await tg.stopAndCheck();
    }
  });

  test('admin connections are counted apart from max_connections and capped on their own', { timeout: h.ms(60000) }, async () => {
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { server: { workers: '1', max_connections: '20', header_timeout: '20s' } } });
    try {
      // 40 idle admin connections: 32 are kept, the rest closed at accept
      const admin = await openIdle(tg.adminPort, 40);
      await h.waitFor(() => admin.filter((s) => s.destroyed || s.readableEnded).length >= 8 || null,
        { timeout: h.ms(5000), what: 'admin connections over the admin cap closed' });
      await h.sleep(200);
      // (a probe of the harness may still hold one admin connection for a moment)
      const kept = admin.filter((s) => !s.destroyed && !s.readableEnded).length;
      assert.ok(kept <= 32 && kept >= 30, `${kept} admin connections kept (cap 32)`);
      // they do not count against the API's 20
      const c = h.openaiClient(tg, 'fd-admin');
      const r = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi mock:tokens=3,2' }] });
      assert.ok(r.choices, 'the API answers while admin connections are open');
      for (const s of admin) s.destroy();
      // 30 idle API connections: 10 over max_connections are closed at once
      const api = await openIdle(tg.port, 30);
      await h.waitFor(() => api.filter((s) => s.destroyed || s.readableEnded).length >= 10 || null,
        { timeout: h.ms(5000), what: 'API connections over max_connections closed' });
      const m = await httpGet(tg.adminPort, '/healthz');
      assert.equal(m.status, 200, 'the admin listener answers while the API is full');
      for (const s of api) s.destroy();
      const metrics = await fetch(`http://127.0.0.1:${tg.adminPort}/metrics`, { headers: { authorization: 'Bearer test-admin-token' } }).then((x) => x.text());
      assert.match(metrics, /^tollgate_connections_refused_total (1\d|[2-9]\d)$/m, 'refused connections counted');
    } finally {
      await tg.stopAndCheck();
    }
  });
});

function startLimited(env) {
  return h.startTollgate({
    redis: env.redis, mock: env.mock, wrap: ['prlimit', `--nofile=${NOFILE}`, '--'],
    overrides: { server: { workers: '2', header_timeout: '20s', upstream_pool_size: '4' } },
  });
}

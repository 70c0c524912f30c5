'use strict';
// Running where users run it (issue 16): the records file rotates (SIGUSR1 and SIGHUP after a
// logrotate-style rename, and by size, done by tollgate) without losing or duplicating a
// record under load; records go to standard output with file = -; a full disk is a metric,
// a rate-limited log line and /readyz degraded, never a crash nor a lost Redis settlement;
// workers = 0 follows the affinity mask and the cgroup CPU quota; as PID 1 tollgate reaps
// the orphans it inherits.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCtl, readyz, metric } = require('../lib/redis-ctl');

// One non-streamed chat completion; resolves {status, id}.
function chat(tg, tenant, content, agent) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });
    const req = http.request({ host: '127.0.0.1', port: tg.port, method: 'POST', path: '/v1/chat/completions', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tenant-id': tenant, authorization: 'Bearer sk-test' },
      timeout: h.ms(10000) }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, id: res.headers['x-tollgate-request-id'] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// Every record line of every file in dir whose name starts with base: {id: count}; a line
// that is not JSON fails.
function idsInFiles(dir, base) {
  const ids = new Map();
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(base)) continue;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line) continue;
      let rec;
      try { rec = JSON.parse(line); } catch { assert.fail(`${f}: a line is not JSON: ${line.slice(0, 120)}`); }
      ids.set(rec.id, (ids.get(rec.id) || 0) + 1);
    }
  }
  return ids;
}

// The "workers: N (why)" start-up line.
async function workersLine(tg) {
  return h.waitFor(() => {
    const m = /workers: (\d+) \(([^)]*\))?[^\n]*/.exec(tg.stderr);
    return m ? { n: Number(m[1]), line: m[0] } : null;
  }, { what: 'the workers line in the log' });
}

function canTaskset() {
  try { execFileSync('taskset', ['-c', '0', 'true']); return true; } catch { return false; }
}

describe('runtime', () => {
  const env = h.useStack({ tollgate: false });

  test('records rotate under load: a rename + SIGUSR1, a rename + SIGHUP and size rotation lose and duplicate no record', { timeout: h.ms(120000) }, async () => {
    await env.withTollgate({ records: { rotate: '64k', keep: '100' } }, async (tg) => {
      const dir = path.dirname(tg.recordsFile);
      const tenant = h.uniq('rot');
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      const N = 600;
      const ids = [];
      let next = 0;
      const signals = [[Math.floor(N / 3), 'SIGUSR1'], [Math.floor((2 * N) / 3), 'SIGHUP']];
      async function lane() {
        while (next < N) {
          const i = next++;
          for (const [at, sig] of signals) {
            if (i === at) { // what logrotate does: rename the file, then signal
              fs.renameSync(tg.recordsFile, path.join(dir, `usage.jsonl.moved-${sig}`));
              tg.proc.child.kill(sig);
            }
          }
          const r = await chat(tg, tenant, `r${i} mock:tokens=${20 + (i % 7)},5`, agent);
          assert.equal(r.status, 200);
          ids.push(r.id);
        }
      }
      await Promise.all(Array.from({ length: 8 }, lane));
      agent.destroy();
      await h.waitFor(async () => (await metric(tg, 'tollgate_records_written_total')) >= N,
        { timeout: h.ms(10000), what: 'every record written' });
      const seen = idsInFiles(dir, 'usage.jsonl');
      const missing = ids.filter((id) => !seen.has(id));
      const dup = [...seen].filter(([, n]) => n > 1);
      assert.equal(missing.length, 0, `records missing: ${missing.slice(0, 5)}`);
      assert.equal(dup.length, 0, `records written twice: ${JSON.stringify(dup.slice(0, 5))}`);
      assert.equal(seen.size, N);
      assert.ok(fs.existsSync(path.join(dir, 'usage.jsonl.moved-SIGUSR1')), 'renamed before SIGUSR1');
      assert.ok(fs.existsSync(path.join(dir, 'usage.jsonl.1')), 'size rotation made usage.jsonl.1');
      for (const f of fs.readdirSync(dir).filter((x) => /^usage\.jsonl(\.\d+)?$/.test(x))) {
        assert.ok(fs.statSync(path.join(dir, f)).size <= 65536, `${f} is within rotate = 64k`);
      }
      assert.ok((await metric(tg, 'tollgate_records_rotations_total')) >= 2, 'rotations counted');
      assert.equal(await metric(tg, 'tollgate_records_failed_total'), 0);
      assert.equal(tg.stderr.match(/records: reopened/g).length, 2, 'one reopen per signal');
      const settled = await env.redis.waitRequests(tenant, N);
      assert.equal(settled.requests, N, 'every request settled once');
    });
  });

  test('file = - writes the records to standard output, the log stays on standard error', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({ records: { file: '-' } }, async (tg) => {
      const tenant = h.uniq('stdout');
      const r = await chat(tg, tenant, 'hello mock:tokens=11,3');
      assert.equal(r.status, 200);
      const rec = await h.waitFor(() => {
        const line = tg.proc.stdout.split('\n').find((l) => l.includes(r.id));
        return line ? JSON.parse(line) : null;
      }, { what: 'the record on stdout' });
      assert.equal(rec.tenant, tenant);
      assert.equal(rec.input_tokens, 11);
      assert.ok(!/level=/.test(tg.proc.stdout), 'no log line on stdout');
      assert.ok(/records to -/.test(tg.stderr));
    });
  });

  test('disk full on the records path (a small tmpfs): a metric, a rate-limited log line, /readyz degraded, Redis still settles; recovers when space is back', { timeout: h.ms(120000) }, async (t) => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tollgate-test', mnt], { stdio: 'pipe' });
    } catch (e) {
      fs.rmdirSync(mnt);
      t.skip(`cannot mount a tmpfs here (needs root and mount rights): ${String(e.stderr || e.message).trim()}`);
      return;
    }
    try {
      // leave ~16 KiB: a few dozen records fit, then ENOSPC
      const filler = path.join(mnt, 'filler');
      fs.writeFileSync(filler, Buffer.alloc(256 * 1024 - 16 * 1024));
      const file = path.join(mnt, 'usage.jsonl');
      await env.withTollgate({ records: { file } }, async (tg) => {
        const tenant = h.uniq('full');
        const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
        const N = 300;
        for (let i = 0; i < N; i += 4) {
          const rs = await Promise.all([0, 1, 2, 3].map((k) => chat(tg, tenant, `f${i + k} mock:tokens=30,5`, agent)));
          for (const r of rs) assert.equal(r.status, 200, 'requests are served while records fail');
        }
        await h.waitFor(async () => {
          const w = await metric(tg, 'tollgate_records_written_total');
          const f = await metric(tg, 'tollgate_records_failed_total');
          return w + f >= N;
        }, { timeout: h.ms(10000), what: 'every record written or counted failed' });
        const failed = await metric(tg, 'tollgate_records_failed_total');
        const written = await metric(tg, 'tollgate_records_written_total');
        assert.ok(failed > 0, 'records failed on the full disk are counted');
        const rz = await readyz(tg);
        assert.equal(rz.status, 200);
        assert.deepEqual(rz.json, { status: 'degraded', redis: 'up', records: 'failing' });
        const errs = tg.stderr.match(/records: writing .* failed/g) || [];
        assert.ok(errs.length >= 1 && errs.length <= 3, `rate-limited error lines, got ${errs.length}`);
        assert.ok(/Redis settlement is not affected/.test(tg.stderr));
        // Redis has every request although records were lost
        const c = await env.redis.waitRequests(tenant, N);
        assert.equal(c.requests, N);
        // the file holds whole lines only, as many as were counted written
        const lines = fs.readFileSync(file, 'utf8').split('\n');
        assert.equal(lines.pop(), '', 'the file ends with a whole line');
        for (const l of lines) JSON.parse(l);
        assert.equal(lines.length, written);

        // space is back: records flow again; /readyz is ready once writes have succeeded
        // for 5 s (a nearly full disk takes one small batch and refuses the next)
        fs.unlinkSync(filler);
        const after = [];
        await h.waitFor(async () => {
          const r = await chat(tg, tenant, `after${after.length} mock:tokens=30,5`, agent);
          assert.equal(r.status, 200);
          after.push(r.id);
          return (await readyz(tg)).json.status === 'ready';
        }, { timeout: h.ms(15000), interval: 250, what: '/readyz ready after space is back' });
        agent.destroy();
        for (const id of after) assert.equal((await tg.record(id)).tenant, tenant);
        assert.ok(/records: writing .* again/.test(tg.stderr));
      });
    } finally {
      try { execFileSync('umount', [mnt], { stdio: 'pipe' }); } catch { execFileSync('umount', ['-l', mnt], { stdio: 'pipe' }); }
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });

  test('a drain that settles: requests cut at drain_timeout (hung upstream, hung before headers, a slow stream) are recorded drain_cut, estimated, and Redis has their spend; exit 0', { timeout: h.ms(60000) }, async () => {
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { server: { drain_timeout: '1s' } } });
    try {
      const tenant = h.uniq('cut');
      const asks = [
        ['hang mock:hang mock:tokens=40,9', false], // headers, then nothing
        ['early mock:hang-early mock:tokens=40,9', false], // nothing at all
        ['slow mock:chunks=20 mock:slow=300 mock:tokens=40,9', true], // a stream still going
      ];
      const pending = asks.map(([content, stream]) => h.post(tg, '/v1/chat/completions',
        { model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content }] }, { 'x-tenant-id': tenant })
        .then((r) => r.status, (e) => `error ${e.message}`));
      await h.waitFor(async () => (await metric(tg, 'tollgate_inflight_requests')) === 3, { what: '3 requests in flight' });
      await h.sleep(200);
      tg.proc.child.kill('SIGTERM');
      await h.waitFor(() => tg.proc.exit, { timeout: h.ms(5000), what: 'tollgate exit' });
      assert.equal(tg.proc.exit.code, 0, `exit after the drain: ${JSON.stringify(tg.proc.exit)}`);
      await Promise.all(pending);
      const recs = tg.readRecords().filter((r) => r.tenant === tenant);
      assert.equal(recs.length, 3, 'a record for every cut request');
      for (const rec of recs) {
        assert.equal(rec.outcome, 'drain_cut', JSON.stringify(rec));
        assert.equal(rec.estimated, true, 'no usage arrived: estimated');
        assert.ok(rec.input_tokens > 0 && rec.cost_usd > 0, `estimate billed: ${JSON.stringify(rec)}`);
      }
      assert.deepEqual(recs.map((r) => r.status).sort(), [200, 200, 503], '503 where no answer had started');
      // settled in Redis, not only into the local journal
      const c = await env.redis.counters(tenant);
      assert.equal(c.requests, 3, `Redis counted the cut requests: ${JSON.stringify(c)}`);
      assert.equal(c.cost, recs.reduce((a, r) => a + h.recordNano(r), 0), 'Redis has their spend');
      assert.ok(!/journaled/.test(tg.stderr), 'nothing journaled while Redis was up');
      await tg.stopAndCheck();
    } finally {
      await tg.stop();
    }
  });

  test('the journal survives the instance: a restart (fewer workers) replays what the previous one left, Redis gets the spend once', { timeout: h.ms(90000) }, async () => {
    const rc = await RedisCtl.reserve(); // not started: the first instance runs without Redis
    const journal = h.tmpDir('tollgate-journal-');
    const overrides = (workers) => ({ server: { workers: String(workers) },
      redis: { url: rc.url, on_failure: 'open', timeout: '200ms', journal_dir: journal } });
    const tenant = h.uniq('pv');
    try {
      const first = await h.startTollgate({ mock: env.mock, overrides: overrides(2) });
      const recs = [];
      try {
        for (let i = 0; i < 6; i++) {
          const r = await chat(first, tenant, `j${i} mock:tokens=${50 + i},7`);
          assert.equal(r.status, 200, 'served with Redis down (on_failure = open)');
          recs.push(await first.record(r.id));
        }
        await first.stopAndCheck();
      } finally {
        await first.stop();
      }
      // as an instance with 8 workers would have left it (a pod restarted with a smaller
      // CPU limit): every line in worker-7.jsonl
      const lines = fs.readdirSync(journal).filter((f) => /^worker-\d+\.jsonl$/.test(f))
        .map((f) => { const t = fs.readFileSync(path.join(journal, f), 'utf8'); fs.unlinkSync(path.join(journal, f)); return t; }).join('');
      assert.equal(lines.split('\n').filter(Boolean).length, 6, 'six settlements journaled');
      fs.writeFileSync(path.join(journal, 'worker-7.jsonl'), lines);

      await rc.start();
      const want = recs.reduce((a, r) => a + h.recordNano(r), 0);
      for (let round = 0; round < 2; round++) { // the second start finds nothing left
        const tg = await h.startTollgate({ mock: env.mock, overrides: overrides(2) });
        try {
          if (round === 0) assert.match(tg.stderr, /worker-7\.jsonl left by a previous instance \(6 settlements\) handed to worker 1/);
          const c = await h.waitFor(async () => {
            const x = await rc.counters(tenant);
            return (x.requests || 0) >= 6 ? x : null;
          }, { timeout: h.ms(10000), what: 'the journal replayed into Redis' });
          await h.sleep(600); // a few ticks: a second replay would show
          assert.equal((await rc.counters(tenant)).requests, 6, 'counted once');
          assert.equal(c.cost, want, 'the spend the records show');
          await h.waitFor(async () => (await metric(tg, 'tollgate_journal_pending')) === 0, { what: 'journal empty' });
          await tg.stopAndCheck();
        } finally {
          await tg.stop();
        }
      }
      assert.deepEqual(fs.readdirSync(journal).filter((f) => !/^worker-[01]\.jsonl$/.test(f)), [], 'no journal of another worker left');
    } finally {
      if (rc.running) await rc.stop();
    }
  });

  test('tollgate health (the image HEALTHCHECK, no curl): 0 on 200 from /healthz, 1 on an error answer, a refused port or a silent one, within its deadline; -H URL and -c FILE', { timeout: h.ms(60000) }, async () => {
    const { spawnSync } = require('node:child_process');
    const net = require('node:net');
    const run = (...args) => new Promise((resolve) => {
      const { execFile } = require('node:child_process');
      const t0 = Date.now();
      execFile(h.BINARY, args, { cwd: h.ROOT, timeout: h.ms(10000) }, (err, stdout, stderr) =>
        resolve({ code: err ? err.code : 0, out: stdout + stderr, ms: Date.now() - t0 }));
    });
    await env.withTollgate({}, async (tg) => {
      const url = `http://127.0.0.1:${tg.adminPort}/healthz`;
      let r = await run('health', url);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /: 200/);
      r = await run('-H', `http://127.0.0.1:${tg.adminPort}`); // the path defaults to /healthz
      assert.equal(r.code, 0, r.out);
      r = await run('health', '-c', tg.configFile); // admin_listen from the config
      assert.equal(r.code, 0, r.out);
      r = await run('health', `http://127.0.0.1:${tg.adminPort}/no-such-page`);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /HTTP 40\d/);
    });
    const [closed] = await h.freePorts(1);
    let r = await run('health', `http://127.0.0.1:${closed}/healthz`);
    assert.equal(r.code, 1);
    assert.match(r.out, /cannot connect/);
    // a listener that accepts and never answers: the probe gives up by its deadline
    const silent = net.createServer(() => {});
    await new Promise((res) => silent.listen(0, '127.0.0.1', res));
    try {
      r = await run('health', `http://127.0.0.1:${silent.address().port}/healthz`);
      assert.equal(r.code, 1);
      assert.match(r.out, /no answer within/);
      assert.ok(r.ms < 5000, `gave up after ${r.ms} ms (HEALTHCHECK --timeout is 5 s)`);
    } finally {
      silent.close();
    }
    r = await run('health', 'https://127.0.0.1:1/');
    assert.equal(r.code, 2, 'https is refused: the admin listener is plain HTTP');
    assert.equal(spawnSync(h.BINARY, ['health', 'bogus']).status, 2);
  });

  test('tollgate -t warns loudly when admin_token is the example placeholder (and still passes)', { timeout: h.ms(30000) }, async () => {
    const { spawnSync } = require('node:child_process');
    const dir = h.tmpDir('tollgate-token-');
    const write = (token) => {
      const { text } = h.renderConfig(require('../lib/tollgate').baseConfig({ ports: { listen: 1, admin: 2 }, dir }),
        { server: { admin_token: token } });
      const f = path.join(dir, 'p.conf');
      fs.writeFileSync(f, text);
      return spawnSync(h.BINARY, ['-t', '-c', f], { cwd: h.ROOT, encoding: 'utf8' });
    };
    let r = write('change-me-to-a-long-random-string');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /WARNING: .*admin_token is the example's placeholder/);
    r = write('3f9c2e7a41b8d6c05e1f2a3b4c5d6e7f');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!/WARNING/.test(r.stderr), r.stderr);
  });

  test('workers = 0 follows the affinity mask (taskset) and the cgroup CPU quota (v2 cpu.max, v1 cfs quota)', { timeout: h.ms(60000) }, async (t) => {
    const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
    const start = (opts) => h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { server: { workers: '0' } }, ...opts });
    const fake = (files) => {
      const d = h.tmpDir('tollgate-cgroup-');
      for (const [rel, text] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(d, rel)), { recursive: true });
        fs.writeFileSync(path.join(d, rel), text);
      }
      return d;
    };
    const cases = [
      { what: 'no quota', env: { TOLLGATE_CGROUP_ROOT: fake({ 'cpu.max': 'max 100000\n' }) }, want: cpus, says: /no cgroup CPU quota/ },
      { what: 'cpu.max half a CPU', env: { TOLLGATE_CGROUP_ROOT: fake({ 'cpu.max': '50000 100000\n' }) }, want: 1, says: /cgroup quota 50000\/100000 us/ },
      { what: 'cpu.max 1.5 CPUs', env: { TOLLGATE_CGROUP_ROOT: fake({ 'cpu.max': '150000 100000\n' }) }, want: Math.min(2, cpus), says: /1\.50 CPUs/ },
      { what: 'v1 cfs quota', env: { TOLLGATE_CGROUP_ROOT: fake({ 'cpu/cpu.cfs_quota_us': '100000\n', 'cpu/cpu.cfs_period_us': '100000\n' }) }, want: 1, says: /cpu\.cfs_quota_us/ },
    ];
    if (canTaskset()) {
      cases.push({ what: 'taskset -c 0', wrap: ['taskset', '-c', '0'], env: { TOLLGATE_CGROUP_ROOT: fake({}) }, want: 1, says: /^workers: 1 \(1 CPUs in the affinity mask/ });
    } else {
      t.diagnostic('taskset not available: the affinity case is covered by the unit test only');
    }
    for (const c of cases) {
      const tg = await start({ env: c.env, wrap: c.wrap || [] });
      try {
        const w = await workersLine(tg);
        assert.equal(w.n, c.want, `${c.what}: ${w.line}`);
        assert.match(w.line, c.says, c.what);
        await tg.stopAndCheck();
      } finally {
        await tg.stop();
      }
    }
  });

  test('as the parent of processes it did not start (PID 1 in a container), tollgate reaps them', { timeout: h.ms(30000) }, async () => {
    const pidFile = path.join(h.tmpDir('tollgate-orphan-'), 'pid');
    // the shell forks a short sleep, then becomes tollgate: the sleep is tollgate's child
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock,
      wrap: ['sh', '-c', `sleep 0.5 & echo $! > ${pidFile}; exec "$@"`, 'sh'] });
    try {
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      assert.ok(pid > 0);
      const state = () => { try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[0]; } catch { return 'gone'; } };
      await h.waitFor(() => state() === 'gone', { timeout: h.ms(5000), what: `the orphan ${pid} reaped (state ${state()})` });
      await tg.stopAndCheck();
    } finally {
      await tg.stop();
    }
  });
});

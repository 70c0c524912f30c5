'use strict';
// Runs the real tollgate binary with a config written per test; reads its records.
//   const tg = await startTollgate({redis, mock, overrides});
//   ... tg.port, tg.adminPort, tg.base (http://127.0.0.1:PORT), await tg.records(...)
//   await tg.stopAndCheck();   // SIGTERM, exit 0, no sanitizer/valgrind report (throws otherwise)
// TOLLGATE_VALGRIND=1 wraps the binary in valgrind.

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { Proc } = require('./procs');
const { BUILD, ROOT, VALGRIND, ms, sleep, waitFor, freePorts, tmpDir } = require('./util');

const BINARY = path.join(BUILD, 'tollgate');

// The base config every test starts from (sections in order; values are strings).
function baseConfig({ redis, mock, ports, dir }) {
  const up = (url) => ({ url, ca_file: mock ? mock.certs.ca : '' });
  const mockUrl = mock ? mock.url : 'https://127.0.0.1:1';
  return {
    server: {
      listen: `127.0.0.1:${ports.listen}`,
      admin_listen: `127.0.0.1:${ports.admin}`,
      admin_token: 'test-admin-token',
      workers: '2',
      tenant_header: 'X-Tenant-Id',
      user_header: 'X-User-Id',
      feature_header: 'X-Feature',
      plan_header: 'X-Tenant-Plan',
      trust_plan_header: 'yes',
      missing_tenant: 'reject',
      default_plan: 'free',
      max_body: '1m',
      max_header_size: '32k',
      header_timeout: '5s',
      body_timeout: '10s',
      keepalive_timeout: '10s',
      send_timeout: '10s',
      connect_timeout: '2s',
      first_byte_timeout: '10s',
      idle_timeout: '10s',
      log_level: 'info',
    },
    redis: { url: redis ? redis.url : 'redis://127.0.0.1:1/0', key_prefix: 'tollgate:', on_failure: 'open' },
    'upstream openai': up(mockUrl),
    'upstream anthropic': up(mockUrl),
    'upstream gemini': up(mockUrl),
    pricing: { file: path.join(ROOT, 'conf', 'pricing.conf'), unknown_model: 'allow' },
    records: { file: path.join(dir, 'usage.jsonl') },
    'plan free': { price: '0' },
  };
}

// overrides: {section: {key: value | null}} (null deletes the key; a section set to null
// deletes the section). Returns the INI text.
function renderConfig(base, overrides = {}) {
  const cfg = JSON.parse(JSON.stringify(base));
  for (const [sec, kv] of Object.entries(overrides)) {
    if (kv === null) { delete cfg[sec]; continue; }
    cfg[sec] = cfg[sec] || {};
    for (const [k, v] of Object.entries(kv)) {
      if (v === null) delete cfg[sec][k];
      else cfg[sec][k] = String(v);
    }
  }
  let out = '; written by tests/lib/tollgate.js\n';
  for (const [sec, kv] of Object.entries(cfg)) {
    out += `\n[${sec}]\n`;
    for (const [k, v] of Object.entries(kv)) if (v !== '') out += `${k} = ${v}\n`;
  }
  return { text: out, cfg };
}

// What makes a run unclean, looked for in tollgate's stderr.
const BAD_OUTPUT = [
  /AddressSanitizer/, /LeakSanitizer/, /runtime error:/, /ThreadSanitizer/,
  /^==\d+== /m, // any valgrind report (valgrind runs with -q, so it prints only errors)
];

function httpGet(port, p, timeout = ms(2000)) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

class Tollgate {
  constructor(proc, ports, dir, configFile, cfg) {
    this.proc = proc;
    this.port = ports.listen;
    this.adminPort = ports.admin;
    this.dir = dir;
    this.configFile = configFile;
    this.cfg = cfg;
    this.recordsFile = cfg.records ? cfg.records.file : null;
    this.base = `http://127.0.0.1:${ports.listen}`;
    this.stopped = null;
  }

  get stderr() { return this.proc.stderr; }

  // All parsed records (lines that are not JSON fail the test: the file must stay JSONL).
  readRecords() {
    let text = '';
    try { text = fs.readFileSync(this.recordsFile, 'utf8'); } catch { return []; }
    // The last element is '' after a final newline, or a line still being written: drop it.
    const complete = text.split('\n').slice(0, -1);
    return complete.filter((l) => l.length).map((l) => {
      try { return JSON.parse(l); } catch (e) { throw new Error(`records file line is not JSON: ${l.slice(0, 200)}`); }
    });
  }

  // Polls (bounded) until at least n records match `filter` (a function, or an object whose
  // entries must all equal the record's), then returns the matching ones.
  async records(filter = {}, n = 1, timeout = ms(5000)) {
    const pred = typeof filter === 'function' ? filter
      : (r) => Object.entries(filter).every(([k, v]) => r[k] === v);
    return waitFor(() => {
      const got = this.readRecords().filter(pred);
      return got.length >= n ? got : null;
    }, { timeout, what: `${n} record(s) matching ${typeof filter === 'function' ? 'filter' : JSON.stringify(filter)}` });
  }

  // The one record with this request id (from X-Tollgate-Request-Id).
  async record(id, timeout = ms(5000)) {
    if (!id) throw new Error('no X-Tollgate-Request-Id on the response');
    const [r] = await this.records({ id }, 1, timeout);
    return r;
  }

  // Stops with SIGTERM and returns a list of problems (empty when clean).
  async stop() {
    if (this.stopped) return this.stopped;
    const r = await this.proc.stop('SIGTERM', ms(10000));
    const problems = [];
    if (r.killed) problems.push('did not exit within the deadline after SIGTERM (killed)');
    else if (r.code !== 0) problems.push(`exit code ${r.code}${r.signal ? ` signal ${r.signal}` : ''} (want 0)`);
    for (const re of BAD_OUTPUT) if (re.test(this.proc.stderr)) problems.push(`stderr matches ${re}`);
    this.stopped = problems;
    return problems;
  }

  // stop() and throw when the run was not clean (message carries the stderr tail).
  async stopAndCheck() {
    const problems = await this.stop();
    if (problems.length) {
      throw new Error(`tollgate run not clean: ${problems.join('; ')}\n--- stderr tail ---\n${this.proc.tail(60)}`);
    }
  }

  healthz() { return httpGet(this.adminPort, '/healthz'); }
}

// Starts tollgate with baseConfig + overrides, waits for GET /healthz == 200 on the admin
// listener. Retries with new ports if it exits during startup (port taken meanwhile).
// wrap: a command line to run the binary under (['prlimit', '--nofile=300', '--']).
async function startTollgate({ redis, mock, overrides = {}, env = {}, wrap = [] } = {}) {
  if (!fs.existsSync(BINARY)) {
    throw new Error(`tollgate binary not found at ${BINARY} (build it: make, or set TOLLGATE_BUILD)`);
  }
  let lastErr = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = tmpDir('tollgate-run-');
    const [listen, admin] = await freePorts(2);
    const ports = { listen, admin };
    const { text, cfg } = renderConfig(baseConfig({ redis, mock, ports, dir }), overrides);
    const configFile = path.join(dir, 'tollgate.conf');
    fs.writeFileSync(configFile, text);
    let cmd = BINARY;
    let args = ['-c', configFile];
    if (VALGRIND) {
      args = ['--error-exitcode=99', '--errors-for-leak-kinds=definite', '--leak-check=full', '-q',
        BINARY, ...args];
      cmd = 'valgrind';
    }
    if (wrap.length) {
      args = [...wrap.slice(1), cmd, ...args];
      cmd = wrap[0];
    }
    const proc = new Proc('tollgate', cmd, args, {
      cwd: ROOT, env: { ...process.env, ...env }, logFile: path.join(dir, 'tollgate.stderr'),
    });
    const tg = new Tollgate(proc, ports, dir, configFile, cfg);
    try {
      await waitFor(async () => {
        if (!proc.running) throw Object.assign(new Error('exited'), { exited: true });
        const r = await tg.healthz();
        return r.status === 200;
      }, { timeout: ms(15000), interval: 50, what: 'tollgate /healthz' });
      return tg;
    } catch (e) {
      await proc.stop('SIGKILL', 2000);
      lastErr = new Error(`tollgate did not become healthy (${e.message}); exit ${JSON.stringify(proc.exit)}\n` +
        `config ${configFile}\n--- stderr tail ---\n${proc.tail(40)}`);
      if (proc.exit && /address already in use|EADDRINUSE|bind/i.test(proc.stderr)) { await sleep(50); continue; }
      throw lastErr;
    }
  }
  throw lastErr;
}

module.exports = { startTollgate, renderConfig, baseConfig, BINARY, httpGet };

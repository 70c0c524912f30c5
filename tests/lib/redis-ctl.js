'use strict';
// A redis-server the test controls on a fixed port: start it late (tollgate started while
// it was down), SIGKILL it, SIGSTOP/SIGCONT it, restart it on the same port (empty, or from
// its append-only file when started with persist: true). Also small helpers the Redis fault,
// lifecycle and provider tests share: reading /readyz and /metrics, summing records.
//
//   const rc = await RedisCtl.reserve({ persist: true });  // a free port, not started
//   await rc.start(); await rc.kill(); await rc.start();   // same port, same dir
//   await rc.pause(); await rc.resume(); await rc.stop();

const { execFile } = require('node:child_process');
const { Proc } = require('./procs');
const { findBinary } = require('./redis');
const { httpGet } = require('./tollgate');
const { ms, waitFor, freePort, tmpDir, periods } = require('./util');

class RedisCtl {
  // extra: more redis-server arguments (a TLS port, ACL users); later ones win.
  constructor(port, { persist = false, extra = [] } = {}) {
    this.port = port;
    this.persist = persist;
    this.extra = extra;
    this.dir = tmpDir('tollgate-redisctl-');
    this.bin = findBinary('redis-server');
    this.cli = findBinary('redis-cli');
    this.url = `redis://127.0.0.1:${port}/0`;
    this.proc = null;
    this.paused = false;
  }

  // A controller for a port that was free a moment ago; nothing listens on it yet.
  static async reserve(opts = {}) {
    return new RedisCtl(await freePort(), opts);
  }

  get running() { return !!(this.proc && this.proc.running); }

  // Starts redis-server on this.port (retrying briefly if the old one's port is still held)
  // and waits for PING. With persist: AOF with fsync on every write, so a SIGKILL loses
  // nothing acknowledged and a restart reloads it.
  async start() {
    if (this.running) throw new Error('redis already running');
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--dir', this.dir,
      '--daemonize', 'no', '--loglevel', 'warning'];
    if (this.persist) args.push('--appendonly', 'yes', '--appendfsync', 'always');
    else args.push('--appendonly', 'no');
    args.push(...this.extra);
    await waitFor(async () => {
      if (!this.running) this.proc = new Proc('redis-server', this.bin, args);
      const out = await this.cmd('PING');
      return out[0] === 'PONG';
    }, { timeout: ms(10000), interval: 50, what: `redis-server on port ${this.port}` });
    this.paused = false;
  }

  // SIGKILL: no shutdown, sockets reset by the kernel.
  async kill() {
    if (!this.proc) return;
    await this.proc.stop('SIGKILL', ms(5000));
    this.paused = false;
  }

  pause() { this.proc.child.kill('SIGSTOP'); this.paused = true; }

  resume() { if (this.proc && this.proc.running) this.proc.child.kill('SIGCONT'); this.paused = false; }

  async stop() {
    if (!this.proc) return null;
    if (this.paused) this.resume();
    const r = await this.proc.stop('SIGTERM', ms(5000));
    this.paused = false;
    return r;
  }

  // One redis-cli command; resolves its stdout lines. Rejects when Redis does not answer.
  cmd(...args) {
    return new Promise((resolve, reject) => {
      execFile(this.cli, ['-h', '127.0.0.1', '-p', String(this.port), '--no-auth-warning', ...args.map(String)],
        { timeout: ms(3000) }, (err, stdout, stderr) => {
          if (err) return reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
          if (/^(Could not connect|Error:)/m.test(stdout)) return reject(new Error(stdout.trim()));
          const lines = stdout.split('\n');
          if (lines.length && lines[lines.length - 1] === '') lines.pop();
          resolve(lines);
        });
    });
  }

  async hgetall(key) {
    const lines = await this.cmd('HGETALL', key);
    const out = {};
    for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = Number(lines[i + 1]);
    return out;
  }

  monthKey(tenant, prefix = 'tollgate:') { return `${prefix}{${tenant}}:m:${periods().month}`; }

  counters(tenant, kind = 'm', prefix = 'tollgate:') {
    const p = periods();
    return this.hgetall(`${prefix}{${tenant}}:${kind}:${kind === 'm' ? p.month : p.day}`);
  }
}

// GET /readyz on the admin port: {status, json}.
async function readyz(tg) {
  const r = await httpGet(tg.adminPort, '/readyz');
  let json = null;
  try { json = JSON.parse(r.body); } catch { /* not JSON */ }
  return { status: r.status, json, body: r.body };
}

// Waits until /readyz reports `status` (ready | degraded | unavailable).
function waitReady(tg, status, timeout = ms(10000)) {
  return waitFor(async () => {
    const r = await readyz(tg);
    return r.json && r.json.status === status ? r : null;
  }, { timeout, interval: 50, what: `/readyz status ${status}` });
}

// One gauge or counter from /metrics (summed over label sets), or null when absent.
async function metric(tg, name) {
  const http = require('node:http');
  const body = await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: tg.adminPort, path: '/metrics', agent: false,
      headers: { authorization: 'Bearer test-admin-token' }, timeout: ms(2000) }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
  let sum = null;
  for (const line of body.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum = (sum || 0) + Number(m[3]);
  }
  return sum;
}

// What a tenant's month counters must hold, from the records of its settled requests
// (the caller leaves out blocked, rate-limited and refused ones): count, nano-USD, tokens.
function sumRecords(settled) {
  const s = { requests: settled.length, cost: 0, input_tokens: 0, cached_tokens: 0, output_tokens: 0, reasoning_tokens: 0 };
  for (const r of settled) {
    s.cost += Math.round(r.cost_usd * 1e9);
    s.input_tokens += r.input_tokens;
    s.cached_tokens += r.cached_tokens;
    s.output_tokens += r.output_tokens;
    s.reasoning_tokens += r.reasoning_tokens;
  }
  return s;
}

module.exports = { RedisCtl, readyz, waitReady, metric, sumRecords };

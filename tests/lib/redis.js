'use strict';
// A private redis-server on a free port (no persistence), and redis-cli helpers.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Proc } = require('./procs');
const { ms, waitFor, freePort, tmpDir, periods } = require('./util');

function findBinary(name) {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/bin', '/usr/sbin', '/usr/local/bin']);
  for (const d of dirs) {
    const p = path.join(d || '.', name);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  throw new Error(`${name} not found in PATH, /usr/bin or /usr/sbin (apt-get install redis-server)`);
}

class Redis {
  constructor(port, proc) {
    this.port = port;
    this.proc = proc;
    this.cli = findBinary('redis-cli');
    this.url = `redis://127.0.0.1:${port}/0`;
  }

  // Runs one command; resolves redis-cli's raw stdout split into lines (no trailing empty).
  cmd(...args) {
    return new Promise((resolve, reject) => {
      execFile(this.cli, ['-h', '127.0.0.1', '-p', String(this.port), '--no-auth-warning', ...args.map(String)],
        { timeout: ms(5000) }, (err, stdout, stderr) => {
          if (err) return reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
          const lines = stdout.split('\n');
          if (lines.length && lines[lines.length - 1] === '') lines.pop();
          resolve(lines);
        });
    });
  }

  async hgetall(key) {
    const lines = await this.cmd('HGETALL', key);
    const out = {};
    for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = lines[i + 1];
    return out;
  }

  // The tenant's counters for this month ('m') or today ('d'), fields as numbers.
  async counters(tenant, kind = 'm', prefix = 'tollgate:') {
    const p = periods();
    const key = `${prefix}{${tenant}}:${kind}:${kind === 'm' ? p.month : p.day}`;
    const h = await this.hgetall(key);
    const out = {};
    for (const [k, v] of Object.entries(h)) out[k] = Number(v);
    return out;
  }

  // Waits until the month counter's `requests` field reaches n (settled once per request).
  async waitRequests(tenant, n, timeout = ms(5000)) {
    return waitFor(async () => {
      const c = await this.counters(tenant);
      return (c.requests || 0) >= n ? c : null;
    }, { timeout, what: `redis requests >= ${n} for tenant ${tenant}` });
  }

  async stop() {
    return this.proc.stop('SIGTERM', ms(5000));
  }
}

async function startRedis() {
  const bin = findBinary('redis-server');
  const dir = tmpDir('tollgate-redis-');
  let lastErr = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = new Proc('redis-server', bin, ['--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning']);
    const r = new Redis(port, proc);
    try {
      await waitFor(async () => {
        if (!proc.running) throw new Error(`redis-server exited: ${proc.tail()}`);
        const out = await r.cmd('PING');
        return out[0] === 'PONG';
      }, { timeout: ms(10000), what: 'redis-server PING' });
      return r;
    } catch (e) {
      lastErr = e;
      await proc.stop('SIGKILL', 2000);
    }
  }
  throw lastErr;
}

module.exports = { startRedis, findBinary };

'use strict';
// Child processes the harness starts: output captured, every one stopped at the end.
// stop() sends a signal, waits (bounded), then SIGKILLs; an exit hook kills leftovers so a
// failing or interrupted test never leaves a redis-server, mock or tollgate behind.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { ms, sleep } = require('./util');


const live = new Set();
const TIMEOUT = Symbol('timeout');

// p or TIMEOUT after `timeout` ms, whichever first; the timer never outlives the race
// (a pending timer would keep the test process alive).
function raceTimeout(p, timeout) {
  let timer;
  const t = new Promise((resolve) => { timer = setTimeout(() => resolve(TIMEOUT), timeout); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function killAll() {
  for (const p of live) {
    try { p.child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  live.clear();
}
process.on('exit', killAll);
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(sig, () => { killAll(); process.exit(128 + num); });
}

class Proc {
  // name: for messages; cmd/args: what to run; opts.logFile: also append output there.
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.stdout = '';
    this.stderr = '';
    this.exit = null; // {code, signal} once exited
    this.logFile = opts.logFile || null;
    this.child = spawn(cmd, args, {
      cwd: opts.cwd, env: opts.env || process.env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
      this.child.on('error', (err) => {
        this.stderr += `\n[spawn error] ${err.message}\n`;
        this.exit = { code: -1, signal: null, error: err };
        live.delete(this);
        resolve(this.exit);
      });
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (d) => { this.stdout += d; this.tee(d); });
    this.child.stderr.on('data', (d) => { this.stderr += d; this.tee(d); });
    live.add(this);
  }

  tee(d) {
    if (this.logFile) {
      try { fs.appendFileSync(this.logFile, d); } catch { /* ignore */ }
    }
  }

  get pid() { return this.child.pid; }
  get running() { return this.exit === null; }

  // Waits until `re` matches stdout (returns the match) or the process exits or time runs out.
  async waitStdout(re, timeout = ms(10000)) {
    const end = Date.now() + timeout;
    for (;;) {
      const m = re.exec(this.stdout);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before ready:\n${this.tail()}`);
      if (Date.now() > end) throw new Error(`${this.name} not ready after ${timeout} ms:\n${this.tail()}`);
      await sleep(20);
    }
  }

  tail(n = 40) {
    return this.stderr.split('\n').slice(-n).join('\n');
  }

  // Sends `signal`, waits up to `timeout` ms, then SIGKILL. Resolves {code, signal, killed}.
  async stop(signal = 'SIGTERM', timeout = ms(10000)) {
    if (!this.running) return { ...this.exit, killed: false };
    try { this.child.kill(signal); } catch { /* gone */ }
    const r = await raceTimeout(this.exited, timeout);
    if (r === TIMEOUT) {
      try { this.child.kill('SIGKILL'); } catch { /* gone */ }
      await raceTimeout(this.exited, 5000);
      return { ...(this.exit || {}), killed: true };
    }
    return { ...r, killed: false };
  }
}

module.exports = { Proc, killAll };

'use strict';
// Small shared helpers: repo paths, the one timeout knob, bounded waits, free ports, temp dirs.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(ROOT, process.env.TOLLGATE_BUILD || 'build/release');
const VALGRIND = process.env.TOLLGATE_VALGRIND === '1';

// One knob for slow machines (HAProxy's HAPROXY_TEST_TIMEOUT idea): every deadline in the
// harness and the tests is multiplied by it. Valgrind and ASan builds get more by default.
const SCALE = Number(process.env.TOLLGATE_TEST_TIMEOUT_SCALE) ||
  (VALGRIND ? 8 : /asan/.test(BUILD) ? 2 : 1);
const ms = (n) => Math.round(n * SCALE);

const sleep = (n) => new Promise((r) => setTimeout(r, n));

// Polls fn() every `interval` ms until it returns a truthy value (returned) or `timeout` ms
// pass (throws with `what`). fn may be async; a throw from fn is retried until the deadline.
async function waitFor(fn, { timeout = ms(5000), interval = 25, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let lastErr = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await sleep(interval);
  }
}

// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function freePorts(n) {
  const out = new Set();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

const tmpDirs = [];
function tmpDir(prefix = 'tollgate-test-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}
function removeTmpDirs() {
  if (process.env.TOLLGATE_KEEP_TMP === '1') return;
  while (tmpDirs.length) {
    try { fs.rmSync(tmpDirs.pop(), { recursive: true, force: true }); } catch { /* best effort */ }
  }
}
process.on('exit', removeTmpDirs);

let counter = 0;
// A name unique in this run: tenant ids, nonces for finding requests in the mock log.
function uniq(prefix = 't') {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

// UTC periods used in Redis keys.
function periods(d = new Date()) {
  const iso = d.toISOString();
  return { month: iso.slice(0, 7), day: iso.slice(0, 10) };
}

// Nano-dollars for a cost in USD, computed the way a test states expectations:
// prices are USD per 1M tokens, so tokens * price * 1000 nano-USD, exact in integers.
function nanoCost(tokensAndPrices) {
  let n = 0;
  for (const [tokens, pricePerM] of tokensAndPrices) n += tokens * Math.round(pricePerM * 1000);
  return n;
}

module.exports = {
  ROOT, BUILD, VALGRIND, SCALE, ms, sleep, waitFor, freePort, freePorts, tmpDir, uniq,
  periods, nanoCost, removeTmpDirs,
};

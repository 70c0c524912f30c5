'use strict';
// Issue 15: "a README test that runs the quick-start commands as written". The commands are
// read from README.md (the ```sh block of "See it in 60 seconds"), run on a terminal as a new
// user would (so `make demo` keeps running until Ctrl-C), and what they print is used as the
// user would use it: the dashboard URL and the admin token open a month of demo data whose
// worst customer is the one the README names. Then Ctrl-C, and nothing the demo started may
// still listen.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { describe, test, after } = require('node:test');
const { ms, waitFor } = require('../lib/util');

const root = path.resolve(__dirname, '../..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

function quickStart() {
  const start = readme.indexOf('## See it in 60 seconds');
  assert.ok(start >= 0, 'README has no "See it in 60 seconds" section');
  const end = readme.indexOf('\n## ', start + 3);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const block = section.match(/```sh\n([\s\S]*?)```/);
  assert.ok(block, 'the quick start has no ```sh block');
  return block[1].split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

const listening = (port) => new Promise((resolve) => {
  const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
});

describe('README quick start', () => {
  let child = null;
  // A failed run must not leave the demo behind: Ctrl-C on its terminal runs the demo's own
  // cleanup (a SIGKILL of script(1) alone would orphan its redis-server, mock and tollgate).
  after(async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try { child.stdin.write('\x03'); } catch { /* already closed */ }
    await Promise.race([exited, new Promise((r) => setTimeout(r, ms(15000)))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  test('make demo, as written, serves the dashboard with demo data until Ctrl-C', { timeout: ms(600000) }, async () => {
    const cmds = quickStart();
    assert.deepEqual(cmds, ['make demo'], 'the quick start changed: update this test with it');
    const env = { ...process.env };
    for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[k];
    // script(1) gives the commands a terminal, as a user's shell has
    child = spawn('script', ['-qfec', cmds.join(' && '), '/dev/null'],
      { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d.toString(); });
    child.stderr.on('data', (d) => { out += d.toString(); });
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));

    const m = await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`make demo exited ${child.exitCode}:\n${out.slice(-3000)}`);
      return out.match(/dashboard: (http:\/\/127\.0\.0\.1:(\d+)\/dashboard) \(admin token: (\S+)\)/);
    }, { timeout: ms(540000), interval: 200, what: 'the dashboard line of make demo' });
    const [, url, adminPort, token] = m;
    const period = out.match(/demo: (\d{4}-\d{2}), days/)[1];
    const proxyPort = Number(out.match(/proxy: +http:\/\/127\.0\.0\.1:(\d+)/)[1]);

    // the report the README promises: brightdesk, on the $9 plan, first (worst margin)
    const lines = out.split(/\r?\n/);
    const head = lines.findIndex((l) => /^TENANT +PLAN +REVENUE/.test(l));
    assert.ok(head >= 0, `no report table in the output:\n${out.slice(-4000)}`);
    const cols = lines[head].trim().split(/ +/);
    const first = lines[head + 1].trim().split(/ +/);
    assert.equal(first[0], 'brightdesk', 'README: brightdesk is the worst customer');
    assert.match(first[cols.indexOf('MARGIN')], /^-\$/, 'brightdesk loses money');
    const [, customers] = readme.match(/traffic for (\d+) customers/) || [];
    assert.ok(customers, 'README says how many customers the demo has');

    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    const api = await fetch(`http://127.0.0.1:${adminPort}/admin/api/tenants?period=${period}`,
      { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(api.status, 200, 'the printed admin token opens the API');
    const data = await api.json();
    assert.equal(data.tenants.length, Number(customers), 'as many customers as README says');
    assert.equal(data.tenants[0].tenant, 'brightdesk', 'README: brightdesk is the worst customer');
    assert.equal(data.tenants[0].plan, 'starter');
    assert.ok(data.tenants[0].cost_usd > 3 * 9,
      `README: brightdesk costs several times its $9 price (got ${data.tenants[0].cost_usd})`);
    assert.ok(data.totals.tenants_under_water >= 1);
    // the growth plan's customers pay overage: one at a margin, one still under water
    const by = Object.fromEntries(data.tenants.map((t) => [t.tenant, t]));
    for (const id of ['quillstack', 'deepdraft']) {
      assert.equal(by[id].included_tokens, 5000000);
      assert.ok(by[id].overage_tokens > 0 && by[id].overage_usd > 0, `${id} pays overage: ${JSON.stringify(by[id])}`);
    }
    assert.ok(by.quillstack.margin_usd > 0, 'quillstack\'s overage is margin');
    assert.ok(by.deepdraft.margin_usd < 0, 'deepdraft\'s overage does not cover its AI cost');

    // Ctrl-C on the terminal
    child.stdin.write('\x03');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), ms(30000)))]);
    assert.notEqual(code, 'timeout', 'make demo did not stop on Ctrl-C');
    assert.match(out, /demo: stopped/);
    assert.equal(await listening(Number(adminPort)), false, 'the demo tollgate still listens');
    assert.equal(await listening(proxyPort), false, 'the demo proxy port still listens');
  });
});

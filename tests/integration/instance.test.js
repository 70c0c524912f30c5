'use strict';
// One tollgate per port: a second instance started by mistake on the same listen or
// admin_listen refuses to start, naming the port and the process that holds it, instead of
// sharing the API port through SO_REUSEPORT and silently taking part of the traffic.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { BINARY } = require('../lib/tollgate');

// Runs tollgate with cfg (an INI text) to its exit; resolves {code, stderr}.
function runOnce(dir, name, text) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return new Promise((resolve) => {
    execFile(BINARY, ['-c', file], { timeout: h.ms(10000) }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? -1) : 0, killed: !!(err && err.killed), stderr });
    });
  });
}

describe('one instance per port', () => {
  const env = h.useStack({ tollgate: false });

  test('a second tollgate on the same listen or admin_listen exits 1 naming the port and the pid holding it; the first keeps all the traffic', { timeout: h.ms(60000) }, async () => {
    await env.withTollgate({}, async (tg) => {
      const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'tollgate-second-'));
      try {
        const pid = tg.proc.child.pid;
        const [freeA, freeB] = await h.freePorts(2);
        const records = { records: { file: path.join(dir, 'usage.jsonl') } };

        // same API port, another admin port
        const same = await runOnce(dir, 'api.conf',
          h.renderConfig(tg.cfg, { server: { admin_listen: `127.0.0.1:${freeA}` }, ...records }).text);
        assert.equal(same.killed, false, 'the second instance exited by itself');
        assert.equal(same.code, 1, `exit 1: ${same.stderr}`);
        const want = new RegExp(`server\\.listen 127\\.0\\.0\\.1:${tg.port}: port ${tg.port} is already in use by pid ${pid} \\(tollgate\\)`);
        assert.match(same.stderr, want);
        assert.ok(!fs.existsSync(path.join(dir, 'usage.jsonl')), 'the refused instance opened no records file');

        // same admin port, another API port
        const admin = await runOnce(dir, 'admin.conf',
          h.renderConfig(tg.cfg, { server: { listen: `127.0.0.1:${freeB}` }, ...records }).text);
        assert.equal(admin.code, 1, `exit 1: ${admin.stderr}`);
        assert.match(admin.stderr, new RegExp(`server\\.admin_listen 127\\.0\\.0\\.1:${tg.adminPort}: port ${tg.adminPort} is already in use by pid ${pid} \\(tollgate\\)`));

        // the first instance answers every request (no second socket shares its port)
        const tenant = h.uniq('one');
        for (let i = 0; i < 6; i++) {
          const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `n${i} mock:tokens=5,5` }] }, { 'X-Tenant-Id': tenant });
          assert.equal(r.status, 200);
        }
        await tg.records({ tenant }, 6);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  test('a port held by another program is named too, with its pid and name', { timeout: h.ms(30000) }, async () => {
    const net = require('node:net');
    const holder = net.createServer();
    await new Promise((r) => holder.listen(0, '127.0.0.1', r));
    const port = holder.address().port;
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'tollgate-held-'));
    try {
      const [admin] = await h.freePorts(1);
      const base = h.renderConfig(require('../lib/tollgate').baseConfig({ redis: env.redis, mock: env.mock, ports: { listen: port, admin }, dir }), {}).text;
      const r = await runOnce(dir, 'held.conf', base);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`server\\.listen 127\\.0\\.0\\.1:${port}: port ${port} is already in use by pid ${process.pid} \\(node\\)`));
    } finally {
      holder.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

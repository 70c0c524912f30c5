'use strict';
// rediss:// (issue 9): tollgate's own connection layer over TLS against a real redis-server
// started with --tls-port, its certificate from a CA made by the test. The server demands a
// client certificate (--tls-auth-clients yes) and has an ACL user, so one tollgate shows the
// whole path: verification against [redis] ca_file, the client certificate from cert_file
// and key_file, AUTH user password, then metering counted once. The faults: a certificate
// for another name, wrong credentials, no client certificate; each a clear log line, the
// Redis error metric and the on_failure policy. And -t refusing TLS keys that would do
// nothing or do not load. `tollgate report` and the admin API read over TLS too. The plain
// port of the same server is the test's window on it.

const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const h = require('../lib/harness');
const { makeCerts } = require('../lib/certs');
const { RedisCtl, waitReady, metric } = require('../lib/redis-ctl');
const { freePort } = require('../lib/util');

// A client certificate signed by the test CA (EC P-256, like the server's).
function makeClientCert(certs) {
  const dir = certs.dir;
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (!fs.existsSync(path.join(dir, 'client.pem'))) {
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=tollgate'],);
    fs.writeFileSync(path.join(dir, 'client.cnf'), 'extendedKeyUsage=clientAuth\n');
    run(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', 'client.pem', '-days', '2', '-extfile', 'client.cnf']);
  }
  return { cert: path.join(dir, 'client.pem'), key: path.join(dir, 'client.key') };
}

describe('Redis over TLS (rediss://)', () => {
  const env = h.useStack({ tollgate: false });
  let rc;
  let tlsPort;
  let certs;
  let client;

  before(async () => {
    certs = makeCerts();
    client = makeClientCert(certs);
    tlsPort = await freePort();
    rc = await RedisCtl.reserve({
      extra: ['--bind', '127.0.0.1', '127.0.0.2', '--tls-port', String(tlsPort),
        '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca,
        '--tls-auth-clients', 'yes', '--user', 'app', 'on', '>s3cret', '~*', '&*', '+@all'],
    });
    await rc.start();
  }, { timeout: h.ms(30000) });
  after(async () => { if (rc) await rc.stop(); });

  const redisCfg = (url, extra = {}) => ({
    redis: { url, timeout: '500ms', ca_file: certs.ca, cert_file: client.cert, key_file: client.key,
      journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j'), ...extra },
  });

  test('client certificate and ACL user: requests metered once, over TLS, as the ACL user', { timeout: h.ms(60000) }, async () => {
    await env.withTollgate(redisCfg(`rediss://app:s3cret@127.0.0.1:${tlsPort}/0`), async (tg) => {
      await waitReady(tg, 'ready');
      const tenant = `tls-${Date.now()}`;
      const oa = h.openaiClient(tg, tenant);
      for (let i = 0; i < 3; i++) {
        const r = await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] });
        assert.ok(r.usage.total_tokens > 0);
      }
      const mine = await tg.records({ tenant }, 3);
      const wantCost = mine.reduce((s, x) => s + Math.round(x.cost_usd * 1e9), 0);
      const c = await h.waitFor(async () => {
        const m = await rc.counters(tenant);
        return m.requests >= 3 ? m : null;
      }, { timeout: h.ms(10000), what: 'month counters over TLS' });
      assert.equal(c.requests, 3);
      assert.equal(c.cost, wantCost);
      // tollgate's connections reached the TLS port as user app (the plain port is ours)
      const list = (await rc.cmd('CLIENT', 'LIST')).join('\n');
      const tls = list.split('\n').filter((l) => l.includes(`laddr=127.0.0.1:${tlsPort}`));
      assert.ok(tls.length >= 1, list);
      assert.ok(tls.every((l) => /\buser=app\b/.test(l)), list);
      // the report and the admin API read through the same layer, over TLS too
      const cli = spawnSync(h.BINARY, ['report', '-c', tg.configFile, '--format', 'json'], { encoding: 'utf8', timeout: h.ms(20000) });
      assert.equal(cli.status, 0, cli.stderr);
      assert.equal(cli.stderr, '', 'the report logs no connection events of its own');
      const row = JSON.parse(cli.stdout).tenants.find((t) => t.tenant === tenant);
      assert.ok(row, cli.stdout);
      assert.equal(row.requests, 3);
      const api = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants`, { headers: { authorization: 'Bearer test-admin-token' } });
      assert.equal(api.status, 200);
      assert.deepEqual(await api.json(), JSON.parse(cli.stdout));
      assert.equal(await metric(tg, 'tollgate_redis_errors_total'), 0);
      assert.equal(await metric(tg, 'tollgate_redis_connect_failures_total'), 0);
    });
  });

  // Each a clear log line, the connection metric, and on_failure = closed answers 503 for a
  // capped tenant (its admission needs Redis).
  const faults = [
    ['a certificate for another name (127.0.0.2 is not in its SAN)', () => `rediss://app:s3cret@127.0.0.2:${tlsPort}/0`, {},
      /connect to 127\.0\.0\.2:\d+ failed: TLS: certificate verify failed \(IP address mismatch\)/],
    ['wrong credentials', () => `rediss://app:wrong@127.0.0.1:${tlsPort}/0`, {},
      /refused the handshake \(AUTH, SELECT or PING\): WRONGPASS/],
    ['no client certificate where the server demands one', () => `rediss://app:s3cret@127.0.0.1:${tlsPort}/0`,
      { cert_file: null, key_file: null }, /redis: (connect to|connection to) 127\.0\.0\.1:\d+ (failed|lost)/],
    ['a server not signed by ca_file (only the system CAs)', () => `rediss://app:s3cret@127.0.0.1:${tlsPort}/0`,
      { ca_file: null }, /certificate verify failed \(self-signed certificate in certificate chain\)/],
  ];
  for (const [name, url, extra, logRe] of faults) {
    test(`refused: ${name}: log line, metric, on_failure = closed answers 503`, { timeout: h.ms(60000) }, async () => {
      const capped = { 'plan capped': { price: '9', budget_monthly: '10', on_exceed: 'block' },
        'tenant tls-refused': { plan: 'capped' } };
      await env.withTollgate({ ...redisCfg(url(), { on_failure: 'closed', ...extra }), ...capped }, async (tg) => {
        await h.waitFor(() => logRe.test(tg.proc.stderr) || null, { timeout: h.ms(10000), what: `log ${logRe}` })
          .catch((e) => { throw new Error(`${e.message}\n${tg.proc.tail(10)}`); });
        await waitReady(tg, 'unavailable');
        await h.waitFor(async () => (await metric(tg, 'tollgate_redis_connect_failures_total')) > 0 || null,
          { timeout: h.ms(5000), what: 'tollgate_redis_connect_failures_total > 0' });
        const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
          { 'x-tenant-id': 'tls-refused' });
        assert.equal(r.status, 503);
        assert.ok(!/s3cret|wrong@/.test(tg.proc.stderr), 'a password in the log');
      });
    });
  }

  test('-t: TLS keys need rediss://, cert_file and key_file go together, and must load', { timeout: h.ms(30000) }, async () => {
    const dir = h.tmpDir('tollgate-tls-t-');
    const check = (redis) => {
      const { text } = h.renderConfig(require('../lib/tollgate').baseConfig({ redis: null, mock: null, ports: { listen: 1, admin: 2 }, dir }),
        { redis });
      const f = path.join(dir, 'p.conf');
      fs.writeFileSync(f, text);
      return spawnSync(h.BINARY, ['-t', '-c', f], { cwd: h.ROOT, encoding: 'utf8' });
    };
    const url = `rediss://127.0.0.1:${tlsPort}/0`;
    let r = check({ url, ca_file: certs.ca, cert_file: client.cert, key_file: client.key });
    assert.equal(r.status, 0, r.stderr);
    r = check({ url: `redis://127.0.0.1:${tlsPort}/0`, ca_file: certs.ca });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /ca_file, cert_file and key_file need a rediss:\/\/ url/);
    r = check({ url, cert_file: client.cert });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cert_file and key_file go together/);
    r = check({ url, cert_file: client.cert, key_file: certs.key }); // the server's key
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot load key_file/);
    r = check({ url, ca_file: client.key }); // not a certificate
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot load ca_file/);
  });
});

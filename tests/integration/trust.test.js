'use strict';
// The trust model (issue 18, README "Trust model"): a non-loopback listen without
// client_token is refused at start; client_token is required (401 in the route's dialect,
// never forwarded); tenant_policy = configured refuses unknown tenants; plan_header is
// believed only as configured; the keys apply on SIGHUP; tollgate's own X-Tollgate-* request
// headers never reach the upstream.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { baseConfig } = require('../lib/tollgate');

const TOKEN = 'app-one-secret-0123456789';
const TOKEN2 = 'app-two-secret-0123456789';

const count = (tg, re) => (tg.stderr.match(new RegExp(re.source, 'g')) || []).length;

function chat(tg, headers, content = 'hi mock:tokens=3,2') {
  return h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }, headers);
}

describe('trust model', () => {
  const env = h.useStack({ tollgate: false });

  test('a non-loopback listen without client_token is refused at start (and by -t); trust_network = yes or a token allows it', { timeout: h.ms(30000) }, () => {
    const dir = h.tmpDir('tollgate-trust-');
    const run = (server, args) => {
      const { text } = h.renderConfig(baseConfig({ redis: env.redis, mock: env.mock, ports: { listen: 1, admin: 2 }, dir }),
        { server: { listen: '0.0.0.0:1', admin_listen: '', ...server } });
      const file = path.join(dir, 'tollgate.conf');
      fs.writeFileSync(file, text);
      return spawnSync(h.BINARY, [...args, '-c', file], { encoding: 'utf8', timeout: h.ms(10000) });
    };
    for (const args of [['-t'], []]) {
      const r = run({}, args);
      assert.equal(r.status, 1, `tollgate ${args.join(' ')} refuses`);
      assert.match(r.stderr, /listen: 0\.0\.0\.0:1 is not a loopback address and no client_token is set/);
    }
    assert.equal(run({ client_token: TOKEN }, ['-t']).status, 0);
    assert.equal(run({ trust_network: 'yes' }, ['-t']).status, 0);
  });

  test('client_token: 401 in the route\'s dialect before anything else; either token passes; the header is not forwarded', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({ server: { client_token: `${TOKEN}, ${TOKEN2}` } }, async (tg) => {
      const before = env.mock.requests().length;
      // no tenant header either: the token is checked first
      const r = await chat(tg, {});
      assert.equal(r.status, 401);
      assert.equal(r.json.error.code, 'invalid_client_token', 'OpenAI error shape');
      const wrong = await chat(tg, { 'x-tenant-id': 't1', 'x-tollgate-client-token': `${TOKEN}x` });
      assert.equal(wrong.status, 401);
      // Anthropic route: Anthropic's error shape
      const a = h.anthropicClient(tg, 't1');
      await assert.rejects(a.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
        (e) => e.status === 401 && e.error && e.error.type === 'error' && e.error.error && e.error.error.type === 'authentication_error');
      // the SDKs with the token as a default header
      const nonce = h.uniq('tok');
      const c = h.openaiClient(tg, 't1', { headers: { 'X-Tollgate-Client-Token': TOKEN2 } });
      const ok = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${nonce} mock:tokens=3,2` }] });
      assert.ok(ok.choices);
      const [up] = env.mock.requestsWith(nonce);
      assert.ok(up, 'forwarded');
      assert.equal(up.headers['x-tollgate-client-token'], undefined, 'the client token never reaches the upstream');
      assert.equal(env.mock.requests().length - before, 1, 'refused requests were not forwarded');
    });
  });

  test('tenant_policy = configured: [tenant] sections and tenant_pattern served, others 403', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({ server: { tenant_policy: 'configured', tenant_pattern: 'cust_[0-9]+' }, 'tenant acme': { plan: 'free' } }, async (tg) => {
      assert.equal((await chat(tg, { 'x-tenant-id': 'acme' })).status, 200);
      assert.equal((await chat(tg, { 'x-tenant-id': 'cust_42' })).status, 200);
      const r = await chat(tg, { 'x-tenant-id': 'cust_42x' });
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, 'unknown_tenant');
      assert.equal((await chat(tg, { 'x-tenant-id': 'newcomer' })).status, 403);
    });
  });

  test('plan_header: only plans in plan_header_allow unless trust_plan_header = yes; an unknown plan is 400', { timeout: h.ms(30000) }, async () => {
    const plans = { 'plan pro': { price: '10' }, 'plan max': { price: '100' } };
    await env.withTollgate({ server: { trust_plan_header: 'no', plan_header_allow: 'free, pro' }, ...plans }, async (tg) => {
      assert.equal((await chat(tg, { 'x-tenant-id': 'p1', 'x-tenant-plan': 'pro' })).status, 200);
      const r = await chat(tg, { 'x-tenant-id': 'p1', 'x-tenant-plan': 'max' });
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, 'plan_not_allowed');
    });
    await env.withTollgate({ server: { trust_plan_header: 'yes' }, ...plans }, async (tg) => {
      assert.equal((await chat(tg, { 'x-tenant-id': 'p2', 'x-tenant-plan': 'max' })).status, 200);
      const r = await chat(tg, { 'x-tenant-id': 'p2', 'x-tenant-plan': 'platinum' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'unknown_plan');
    });
  });

  test('SIGHUP applies client_token, tenant_policy and plan_header_allow', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({ 'plan pro': { price: '10' } }, async (tg) => {
      assert.equal((await chat(tg, { 'x-tenant-id': 'r1', 'x-tenant-plan': 'pro' })).status, 200);
      const loaded0 = count(tg, /reload: .* loaded/);
      const v2 = {
        server: { client_token: TOKEN, tenant_policy: 'configured', trust_plan_header: 'no', plan_header_allow: 'free' },
        'plan pro': { price: '10' }, 'tenant r1': { plan: 'free' },
      };
      fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, v2).text);
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => count(tg, /reload: .* loaded/) > loaded0, { timeout: h.ms(5000), what: 'reload: ... loaded' });
      await h.waitFor(async () => (await chat(tg, { 'x-tenant-id': 'r1' })).status === 401 || null,
        { timeout: h.ms(5000), what: '401 without the token after the reload' });
      const tok = { 'x-tollgate-client-token': TOKEN };
      assert.equal((await chat(tg, { ...tok, 'x-tenant-id': 'r1' })).status, 200);
      assert.equal((await chat(tg, { ...tok, 'x-tenant-id': 'r2' })).status, 403, 'r2 is not configured');
      assert.equal((await chat(tg, { ...tok, 'x-tenant-id': 'r1', 'x-tenant-plan': 'pro' })).status, 403, 'pro no longer allowed');
    });
  });

  test('X-Tollgate-* request headers are not forwarded upstream', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate({}, async (tg) => {
      const nonce = h.uniq('xt');
      const r = await chat(tg, { 'x-tenant-id': 't9', 'x-tollgate-request-id': 'spoofed', 'X-Tollgate-Anything': 'x' }, `${nonce} mock:tokens=3,2`);
      assert.equal(r.status, 200);
      const [up] = env.mock.requestsWith(nonce);
      assert.ok(up, 'forwarded');
      const ours = Object.keys(up.headers).filter((n) => n.startsWith('x-tollgate-'));
      assert.deepEqual(ours, [], 'no x-tollgate-* header upstream');
    });
  });
});

'use strict';
// Issue 8, "Every paid call is counted": every path is metered, free or unknown (the route
// tables in src/providers/*.c). A tenant at its hard limit reaches no metered endpoint; unknown
// paths are refused with 403 route_not_metered unless [pricing] unmetered_routes = allow; free
// endpoints (model lists, moderations, token counting, file and batch metadata) are forwarded
// at cost 0 even for a blocked tenant; WebSocket upgrades are refused as not metered.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const { execFile } = require('node:child_process');
const h = require('../lib/harness');

const PREFIX = 'tollgate:';
const PLANS = {
  // blocked once its month's spend reaches $0.001, hard limit too
  'plan capped': { price: 9, budget_monthly: '0.001', hard_limit: '0.001', on_exceed: 'block' },
};
const CAP_NANO = 1000000;
const nano = (usd) => Math.round(usd * 1e9);

const mKey = (tenant) => `${PREFIX}{${tenant}}:m:${new Date().toISOString().slice(0, 7)}`;

describe('routes: metered, free and unknown paths', () => {
  const env = h.useStack({ overrides: PLANS });

  async function blockedTenant(tag) {
    const tenant = h.uniq(tag);
    await env.redis.cmd('HSET', mKey(tenant), 'cost', String(CAP_NANO));
    return tenant;
  }
  const headers = (tenant) => ({ 'X-Tenant-Plan': 'capped', ...(tenant ? { 'X-Tenant-Id': tenant } : {}) });
  const seen = (nonce) => env.mock.requestsWith(nonce);

  test('a tenant at its hard limit is refused on every metered route before anything reaches the upstream', async () => {
    const tenant = await blockedTenant('hard');
    const nonce = h.uniq('n');
    const msgs = [{ role: 'user', content: `${nonce} mock:tokens=5,5` }];
    const cases = [
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: msgs }, 'openai'],
      ['/v1/chat/completions', { model: 'gpt-4o', service_tier: 'priority', messages: msgs }, 'openai'],
      ['/v1/completions', { model: 'gpt-4o-mini', prompt: `${nonce} p` }, 'openai'],
      ['/v1/embeddings', { model: 'text-embedding-3-small', input: `${nonce} e` }, 'openai'],
      ['/v1/responses', { model: 'gpt-4o-mini', input: `${nonce} r` }, 'openai'],
      ['/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 10, messages: msgs }, 'anthropic'],
      ['/v1beta/models/gemini-2.5-flash:generateContent', { contents: [{ role: 'user', parts: [{ text: `${nonce} g` }] }] }, 'gemini'],
      ['/v1beta/models/gemini-2.5-flash:streamGenerateContent', { contents: [{ role: 'user', parts: [{ text: `${nonce} s` }] }] }, 'gemini'],
      ['/v1beta/openai/chat/completions', { model: 'gemini-2.5-flash', messages: msgs }, 'gemini'],
      ['/v1/images/generations', { model: 'dall-e-3', prompt: `${nonce} a cat` }, 'openai'],
      ['/v1/images/generations', { model: 'gpt-image-1', prompt: `${nonce} a dog`, stream: true }, 'openai'],
      ['/v1/audio/speech', { model: 'tts-1', voice: 'alloy', input: `${nonce} hello` }, 'openai'],
      ['/v1/audio/speech', { model: 'gpt-4o-mini-tts', voice: 'alloy', input: `${nonce} hi`, stream_format: 'sse' }, 'openai'],
    ];
    for (const [path, body, dialect] of cases) {
      const r = await h.post(env.tg, path, body, { ...headers(tenant), 'anthropic-version': '2023-06-01' });
      assert.equal(r.status, 429, `${path}: ${r.text}`);
      assert.equal(r.headers.get('x-should-retry'), 'false', path);
      if (dialect === 'openai') assert.equal(r.json.error.code, 'budget_exceeded', path);
      else if (dialect === 'anthropic') assert.equal(r.json.error.type, 'rate_limit_error', path);
      else assert.equal(r.json.error.status, 'RESOURCE_EXHAUSTED', path);
    }
    await h.sleep(h.ms(200));
    assert.deepEqual(seen(nonce), [], 'nothing reached the upstream');
    const recs = await env.tg.records({ tenant }, cases.length);
    assert.ok(recs.every((x) => x.outcome === 'blocked' && x.cost_usd === 0), JSON.stringify(recs));
  });

  test('unknown and not-yet-metered paths are refused by default: 403 route_not_metered in the route\'s dialect, naming the path and the key', async () => {
    const tenant = h.uniq('unk');
    const nonce = h.uniq('n');
    const before = env.mock.count();
    // OpenAI SDK: fine-tuning job creation (paid, not metered) -> PermissionDeniedError
    const o = env.openai(tenant);
    const err = await o.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: `file-${nonce}` }).then(() => null, (e) => e);
    assert.ok(err, 'fineTuning.jobs.create was refused');
    assert.equal(err.status, 403);
    assert.equal(err.code, 'route_not_metered');
    assert.match(err.message, /POST \/v1\/fine_tuning\/jobs/);
    assert.match(err.message, /unmetered_routes = allow/);
    // realtime client secrets mint keys that bypass tollgate
    const rt = await h.post(env.tg, '/v1/realtime/client_secrets', { session: { type: 'realtime', model: 'gpt-realtime' } }, { 'X-Tenant-Id': tenant });
    assert.equal(rt.status, 403, rt.text);
    assert.equal(rt.json.error.code, 'route_not_metered');
    assert.match(rt.json.error.message, /ephemeral/);
    // a path nobody knows
    const any = await h.post(env.tg, '/v1/some/new/paid/thing', { model: 'gpt-4o' }, { 'X-Tenant-Id': tenant });
    assert.equal(any.status, 403, any.text);
    // Anthropic SDK: message batches -> its own dialect
    const a = env.anthropic(tenant);
    const aerr = await a.messages.batches.create({ requests: [{ custom_id: nonce, params: { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: nonce }] } }] })
      .then(() => null, (e) => e);
    assert.ok(aerr && aerr.status === 403, `anthropic batches refused: ${aerr && aerr.message}`);
    assert.equal(aerr.error.type, 'error');
    assert.equal(aerr.error.error.type, 'permission_error');
    assert.match(aerr.error.error.message, /\/v1\/messages\/batches/);
    // Gemini SDK: context caches (storage billed per hour) -> Gemini's dialect
    const g = env.gemini(tenant);
    const gerr = await g.caches.create({ model: 'gemini-2.5-flash', config: { contents: [{ role: 'user', parts: [{ text: `${nonce} e` }] }] } })
      .then(() => null, (e) => e);
    assert.ok(gerr && gerr.status === 403, `gemini caches.create refused: ${gerr && gerr.message}`);
    assert.match(gerr.message, /PERMISSION_DENIED/);
    assert.match(gerr.message, /cachedContents is not metered/);
    assert.match(gerr.message, /unmetered_routes = allow/);

    await h.sleep(h.ms(200));
    assert.equal(env.mock.count(), before, 'nothing reached the upstream');
    const recs = await env.tg.records({ tenant }, 5);
    for (const rec of recs) {
      assert.equal(rec.status, 403);
      assert.equal(rec.outcome, 'blocked');
      assert.equal(rec.cost_usd, 0);
    }
  });

  test('free endpoints are forwarded at cost 0 for a tenant at its hard limit: model list, moderations, Anthropic count_tokens, file and batch metadata', async () => {
    const tenant = await blockedTenant('free');
    const nonce = h.uniq('n');
    const o = env.openai(tenant, { headers: headers() });
    const models = await o.models.list();
    assert.ok(models.data.length > 0, 'model list');
    const mod = await o.moderations.create({ model: 'omni-moderation-latest', input: `${nonce} hello` });
    assert.equal(mod.results[0].flagged, false);
    const a = env.anthropic(tenant, { headers: headers() });
    const ct = await a.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: `${nonce} mock:tokens=42,0` }] });
    assert.equal(ct.input_tokens, 42);
    // file and batch metadata: the mock has no such endpoints (404) but they must reach it
    const before = env.mock.count();
    const files = await o.files.list().then(() => null, (e) => e);
    assert.equal(files && files.status, 404, 'files.list reached the upstream (its 404)');
    const batch = await o.batches.retrieve(`batch_${nonce}`).then(() => null, (e) => e);
    assert.equal(batch && batch.status, 404, 'batches.retrieve reached the upstream (its 404)');
    await h.sleep(h.ms(200));
    const up = env.mock.requests().slice(before).map((q) => `${q.method} ${q.path}`);
    assert.deepEqual(up, ['GET /v1/files', `GET /v1/batches/batch_${nonce}`]);
    assert.equal(seen(nonce).length, 3, 'moderations, count_tokens and the batch retrieval reached the upstream');

    const recs = await env.tg.records({ tenant }, 5);
    for (const rec of recs) {
      assert.equal(rec.cost_usd, 0, JSON.stringify(rec));
      assert.equal(rec.priced, true, 'a free route is priced (at 0)');
      assert.notEqual(rec.outcome, 'blocked');
    }
    const m = await env.redis.counters(tenant);
    assert.equal(m.cost, CAP_NANO, 'spend unchanged');
  });

  test('WebSocket upgrades are refused with a message that they are not metered', async () => {
    const req = h.buildRequest('GET', '/v1/realtime?model=gpt-realtime', [['Host', '127.0.0.1'], ['X-Tenant-Id', 'ws'],
      ['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'],
      ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']], '');
    const before = env.mock.count();
    const r = await h.rawRequest(env.tg.port, req, { timeout: h.ms(5000) });
    const [res] = h.parseResponses(r.buf);
    assert.equal(res.status, 405);
    assert.match(res.body.toString(), /not metered/);
    await h.sleep(h.ms(100));
    assert.equal(env.mock.count(), before);
  });

  test('[pricing] unmetered_routes = allow forwards unknown paths, recorded "priced": false at cost 0', async () => {
    await env.withTollgate({ ...PLANS, pricing: { unmetered_routes: 'allow' } }, async (tg) => {
      const tenant = h.uniq('allow');
      const nonce = h.uniq('n');
      const { OpenAI } = require('openai');
      const o = new OpenAI({ baseURL: `${tg.base}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: h.ms(20000),
        defaultHeaders: { 'X-Tenant-Id': tenant } });
      const err = await o.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: `file-${nonce}` }).then(() => null, (e) => e);
      assert.equal(err && err.status, 404, 'forwarded: the mock answered (404, it has no fine-tuning endpoint)');
      assert.equal(seen(nonce).length, 1, 'reached the upstream');
      const [rec] = await tg.records({ tenant }, 1);
      assert.equal(rec.endpoint, '/v1/fine_tuning/jobs');
      assert.equal(rec.priced, false);
      assert.equal(rec.cost_usd, 0);
    });
  });

  test('an unknown plan named by the plan header is a 400 unknown_plan, never the default plan', async () => {
    const tenant = h.uniq('plan');
    const nonce = h.uniq('n');
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: nonce }] },
      { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'platinum' });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'unknown_plan');
    assert.match(r.json.error.message, /platinum/);
    await h.sleep(h.ms(100));
    assert.equal(seen(nonce).length, 0);
    const ok = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${nonce}b` }] },
      { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'capped' });
    assert.equal(ok.status, 200, ok.text);
  });

  test('unknown_model = highest: a fine-tune, a new embedding model and a new image model are charged at the provider\'s highest price of their kind, "priced": false, counted, warned once', async () => {
    await env.withTollgate({ ...PLANS, pricing: { unknown_model: 'highest' } }, async (tg) => {
      const tenant = h.uniq('hi');
      const { OpenAI } = require('openai');
      const o = new OpenAI({ baseURL: `${tg.base}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: h.ms(20000),
        defaultHeaders: { 'X-Tenant-Id': tenant } });
      const ft = 'ft:gpt-4o-mini:acme::abc123';
      for (let i = 0; i < 2; i++) {
        await o.chat.completions.create({ model: ft, messages: [{ role: 'user', content: 'mock:tokens=1000,100 mock:cached=200' }] });
      }
      await o.embeddings.create({ model: 'new-embedding-9', input: 'mock:tokens=1000,0' });
      await o.images.generate({ model: 'gpt-image-9', prompt: 'mock:tokens=10,100 x' });
      const recs = await tg.records({ tenant }, 4);
      // an image model with no price: the highest OpenAI image prices (gpt-image-1's tokens,
      // dall-e-3 hd's $0.12 an image), "priced": false
      const img = recs.find((x) => x.endpoint === '/v1/images/generations');
      assert.equal(img.priced, false);
      assert.equal(img.units, 1);
      const imgNano = h.nanoCost([[10, 5], [100, 40]]) + 120000000;
      assert.equal(h.recordNano(img), imgNano);
      const chats = recs.filter((x) => x.endpoint === '/v1/chat/completions');
      // conf/pricing.conf, OpenAI chat: highest input o1-pro 150, highest cached o1-pro's
      // (defaults to its input) 150, highest output o1-pro 600 USD per 1M tokens
      const want = h.nanoCost([[800, 150], [200, 150], [100, 600]]);
      for (const rec of chats) {
        assert.equal(rec.model, ft);
        assert.equal(rec.priced, false);
        assert.equal(h.recordNano(rec), want, JSON.stringify(rec));
      }
      // embeddings: highest OpenAI embedding input, text-embedding-3-large 0.13
      const emb = recs.find((x) => x.endpoint === '/v1/embeddings');
      assert.equal(emb.priced, false);
      assert.equal(h.recordNano(emb), h.nanoCost([[1000, 0.13]]));
      const m = await env.redis.waitRequests(tenant, 4);
      assert.equal(m.cost, 2 * want + h.nanoCost([[1000, 0.13]]) + imgNano, 'settled what was recorded');
      const res = await fetch(`http://127.0.0.1:${tg.adminPort}/metrics`, { headers: { authorization: 'Bearer test-admin-token' } });
      const text = await res.text();
      const line = text.split('\n').find((l) => l.startsWith('tollgate_unpriced_requests_total{') && l.includes(ft));
      assert.ok(line && / 2$/.test(line), `unpriced counter: ${line}`);
      const warns = tg.stderr.split('\n').filter((l) => l.includes(ft) && /no price/.test(l));
      assert.equal(warns.length, 1, `warned once: ${warns.join(' | ')}`);

      // The report, its CSV and table, and the admin API show how much of the cost is not the
      // provider's exact bill: the unpriced requests above, and an estimated one (Gemini
      // embeddings report no usage).
      await h.geminiClient(tg, tenant).models.embedContent({ model: 'gemini-embedding-001', contents: 'y'.repeat(400) });
      const [est] = (await tg.records({ tenant }, 5)).filter((x) => x.estimated);
      assert.equal(est.priced, true);
      const unpricedNano = m.cost;
      await env.redis.waitRequests(tenant, 5);
      const period = new Date().toISOString().slice(0, 7);
      const report = (args) => new Promise((resolve) => {
        execFile(h.BINARY, ['report', '-c', tg.configFile, '--period', period, '--tenant', tenant, ...args],
          { timeout: h.ms(20000) }, (e, stdout, stderr) => resolve({ code: e ? e.code : 0, stdout, stderr }));
      });
      const j = await report(['--format', 'json']);
      assert.equal(j.code, 0, j.stderr);
      const rep = JSON.parse(j.stdout);
      const row = rep.tenants.find((t) => t.tenant === tenant);
      assert.equal(nano(row.unpriced_usd), unpricedNano);
      assert.equal(row.unpriced_requests, 4);
      assert.equal(nano(row.estimated_usd), h.recordNano(est));
      assert.equal(row.estimated_requests, 1);
      assert.equal(nano(row.cost_usd), unpricedNano + h.recordNano(est));
      assert.equal(nano(rep.totals.unpriced_usd), unpricedNano);
      assert.equal(nano(rep.totals.estimated_usd), h.recordNano(est));
      const csv = await report(['--format', 'csv']);
      const [head, csvRow] = csv.stdout.trim().split('\n');
      const at = (name) => csvRow.split(',')[head.split(',').indexOf(name)];
      assert.equal(at('unpriced_usd'), String(row.unpriced_usd));
      assert.equal(at('estimated_requests'), '1');
      const table = await report([]);
      assert.match(table.stdout, /COST +SAVED +MARGIN +MARGIN% +UNPRICED +ESTIMATED +REQUESTS/);
      const res2 = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants/${tenant}?period=${period}`,
        { headers: { authorization: 'Bearer test-admin-token' } });
      const detail = await res2.json();
      assert.equal(nano(detail.unpriced_usd), unpricedNano);
      assert.equal(nano(detail.estimated_usd), h.recordNano(est));
      assert.equal(detail.unpriced_requests, 4);
    });
  });

  test('service_tier: flex and priority are charged at their own prices (the tier the answer names, else the one asked for); a tier without a price is a stand-in, "priced": false', async () => {
    const tenant = h.uniq('tier');
    const o = env.openai(tenant);
    // priority, plain: gpt-4o at 4.25 / cached 2.125 / 17
    const a = await o.chat.completions.create({ model: 'gpt-4o', service_tier: 'priority',
      messages: [{ role: 'user', content: 'mock:tokens=1000,100 mock:cached=200' }] });
    assert.equal(a.service_tier, 'priority');
    // flex, streamed: o4-mini at 0.55 / 2.20
    const s = await o.chat.completions.create({ model: 'o4-mini', service_tier: 'flex', stream: true,
      messages: [{ role: 'user', content: 'mock:tokens=1000,100' }] });
    for await (const chunk of s) assert.equal(chunk.service_tier, 'flex');
    // Responses with auto, served at priority: the answer's tier is the bill
    const r = await o.responses.create({ model: 'gpt-4o', service_tier: 'auto', input: 'mock:tokens=1000,100 mock:served-priority' });
    assert.equal(r.service_tier, 'priority');
    // priority asked, served at the default tier: standard prices
    await o.chat.completions.create({ model: 'gpt-4o', service_tier: 'priority',
      messages: [{ role: 'user', content: 'mock:tokens=1000,100 mock:served-default' }] });
    // flex for a model without flex prices: the standard prices stand in, "priced": false
    await o.chat.completions.create({ model: 'gpt-4o', service_tier: 'flex',
      messages: [{ role: 'user', content: 'mock:tokens=1000,100' }] });
    const recs = await env.tg.records({ tenant }, 5);
    const want = [
      ['/v1/chat/completions', 'gpt-4o', false, h.nanoCost([[800, 4.25], [200, 2.125], [100, 17]]), true],
      ['/v1/chat/completions', 'o4-mini', true, h.nanoCost([[1000, 0.55], [100, 2.2]]), true],
      ['/v1/responses', 'gpt-4o', false, h.nanoCost([[1000, 4.25], [100, 17]]), true],
      ['/v1/chat/completions', 'gpt-4o', false, h.nanoCost([[1000, 2.5], [100, 10]]), true],
      ['/v1/chat/completions', 'gpt-4o', false, h.nanoCost([[1000, 2.5], [100, 10]]), false],
    ];
    const got = recs.map((x) => [x.endpoint, x.model, x.stream, h.recordNano(x), x.priced]);
    const key = (x) => JSON.stringify(x);
    assert.deepEqual(got.map(key).sort(), want.map(key).sort());
    const m = await env.redis.waitRequests(tenant, 5);
    assert.equal(m.cost, want.reduce((n, w) => n + w[3], 0), 'Redis spend equals the records');
    // the upstream got the tier as asked
    const sent = env.mock.requests().filter((q) => q.json && q.json.service_tier && q.headers['x-tenant-id'] === undefined)
      .map((q) => q.json.service_tier);
    assert.ok(sent.includes('flex') && sent.includes('priority') && sent.includes('auto'), `forwarded as asked: ${sent}`);
  });

  test('Bedrock\'s OpenAI-compatible API (an [upstream] with kind = openai): Bedrock model ids are priced as the listed model, without region, vendor and version; refused at the hard limit', async () => {
    const upstream = { 'upstream bedrock': { url: `${env.mock.url}/openai`, ca_file: env.mock.certs.ca, kind: 'openai', prefix: '/bedrock' } };
    await env.withTollgate({ ...PLANS, ...upstream }, async (tg) => {
      const tenant = h.uniq('bedrock');
      const { OpenAI } = require('openai');
      const client = (t, extra = {}) => new OpenAI({ baseURL: `${tg.base}/bedrock/v1`, apiKey: 'bedrock-api-key', maxRetries: 0,
        timeout: h.ms(20000), defaultHeaders: { 'X-Tenant-Id': t, ...extra } });
      const id = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
      const a = await client(tenant).chat.completions.create({ model: id, messages: [{ role: 'user', content: 'mock:tokens=1000,200' }] });
      assert.equal(a.model, id);
      const sent = env.mock.requests().filter((q) => q.json && q.json.model === id);
      assert.ok(sent.length >= 1 && sent.every((q) => q.path === '/openai/v1/chat/completions'), 'reached the base path');
      const [rec] = await tg.records({ tenant }, 1);
      assert.equal(rec.upstream, 'bedrock');
      assert.equal(rec.model, id);
      assert.equal(rec.priced, true);
      assert.equal(h.recordNano(rec), h.nanoCost([[1000, 1], [200, 5]]), 'claude-haiku-4-5: 1 and 5 USD per 1M');
      const m = await env.redis.waitRequests(tenant, 1);
      assert.equal(m.cost, h.recordNano(rec));
      // at the hard limit: refused before the upstream
      const blocked = await blockedTenant('bedrockcap');
      const nonce = h.uniq('n');
      const err = await client(blocked, headers()).chat.completions.create({ model: id, messages: [{ role: 'user', content: nonce }] })
        .then(() => null, (e) => e);
      assert.equal(err && err.status, 429);
      assert.equal(err.code, 'budget_exceeded');
      await h.sleep(h.ms(200));
      assert.deepEqual(seen(nonce), [], 'nothing reached the upstream');
    });
  });

  test('Gemini\'s OpenAI-compatible /v1beta/openai/chat/completions is metered as chat: plain and streamed, charged exactly at the Gemini price', async () => {
    const tenant = h.uniq('gcompat');
    const { OpenAI } = require('openai');
    const o = new OpenAI({ baseURL: `${env.tg.base}/v1beta/openai`, apiKey: 'g-test-key', maxRetries: 0,
      timeout: h.ms(20000), defaultHeaders: { 'X-Tenant-Id': tenant } });
    const a = await o.chat.completions.create({ model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'mock:tokens=1000,200 mock:cached=100' }] }).withResponse();
    assert.equal(a.data.choices[0].message.content, 'tok0 tok1 tok2 ');
    const s = await o.chat.completions.create({ model: 'gemini-2.5-flash', stream: true, messages: [{ role: 'user', content: 'mock:tokens=300,30' }] }).withResponse();
    let chunks = 0;
    for await (const ch of s.data) { chunks++; assert.ok(!ch.usage, 'no usage chunk the client did not ask for'); }
    assert.ok(chunks > 0);
    const r1 = await env.tg.record(a.response.headers.get('x-tollgate-request-id'));
    const r2 = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    for (const [rec, t] of [[r1, { input: 1000, cached: 100, output: 200 }], [r2, { input: 300, output: 30 }]]) {
      assert.equal(rec.provider, 'gemini');
      assert.equal(rec.endpoint, '/v1beta/openai/chat/completions');
      assert.equal(rec.priced, true);
      assert.equal(rec.estimated, false);
      h.assertTokens(rec, t);
      assert.equal(h.recordNano(rec), h.expectedNano('gemini-2.5-flash', t));
    }
    const up = env.mock.requests().filter((q) => q.path === '/v1beta/openai/chat/completions' && q.json && q.json.stream);
    assert.ok(up.length >= 1 && up[up.length - 1].json.stream_options.include_usage === true, 'usage asked upstream');
  });

  test('records carry upstream and cache_write_tokens: Anthropic cache writes are priced at cache_write, 1-hour writes at cache_write_1h', async () => {
    const tenant = h.uniq('cw');
    const a = env.anthropic(tenant);
    const res = await a.messages.create({ model: 'claude-haiku-4-5', max_tokens: 50,
      messages: [{ role: 'user', content: 'mock:tokens=3000,200 mock:cached=1000 mock:cachewrite=1500' }] }).withResponse();
    assert.equal(res.data.usage.cache_creation_input_tokens, 1500);
    const rec = await env.tg.record(res.response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.upstream, 'anthropic');
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.cache_write_tokens, 1500);
    assert.equal(rec.units, null);
    assert.equal(rec.unit, null);
    h.assertTokens(rec, { input: 3000, cached: 1000, output: 200 });
    // claude-haiku-4-5: 500 plain at 1.00, 1000 reads at 0.10, 1500 writes at 1.25, 200 out at 5.00
    assert.equal(h.recordNano(rec), h.nanoCost([[500, 1.0], [1000, 0.1], [1500, 1.25], [200, 5.0]]));
    // 1-hour writes (cache_creation.ephemeral_1h_input_tokens) at cache_write_1h, 2 x input
    const res1h = await a.messages.create({ model: 'claude-haiku-4-5', max_tokens: 50,
      messages: [{ role: 'user', content: 'mock:tokens=3000,200 mock:cachewrite=1500 mock:cachewrite1h=1000' }] }).withResponse();
    const rec1h = await env.tg.record(res1h.response.headers.get('x-tollgate-request-id'));
    assert.equal(rec1h.cache_write_tokens, 1500);
    assert.equal(h.recordNano(rec1h), h.nanoCost([[1500, 1.0], [500, 1.25], [1000, 2.0], [200, 5.0]]));
    const m = await env.redis.waitRequests(tenant, 2);
    assert.equal(m.cost, h.recordNano(rec) + h.recordNano(rec1h), 'settled what was recorded');
  });

  test('images.generate is metered: dall-e per image by size and quality, gpt-image-1 by its token usage (plain and streamed), a lost streamed usage billed on the bound', async () => {
    const tenant = h.uniq('img');
    const o = env.openai(tenant);
    const rec = async (p) => env.tg.record((await p.withResponse()).response.headers.get('x-tollgate-request-id'));
    // dall-e-3 hd 1792x1024: $0.12 an image; dall-e-2 256x256, n = 3: 3 x $0.016
    const d3 = await rec(o.images.generate({ model: 'dall-e-3', prompt: 'a lighthouse', size: '1792x1024', quality: 'hd' }));
    const d2 = await rec(o.images.generate({ model: 'dall-e-2', prompt: 'a cat', size: '256x256', n: 3 }));
    // no model: OpenAI's default, dall-e-2 at 1024x1024 ($0.02)
    const dflt = await rec(o.images.generate({ prompt: 'a dog' }));
    for (const [r, model, n, nano] of [[d3, 'dall-e-3', 1, 120000000], [d2, 'dall-e-2', 3, 48000000], [dflt, 'dall-e-2', 1, 20000000]]) {
      assert.equal(r.endpoint, '/v1/images/generations');
      assert.equal(r.model, model);
      assert.equal(r.units, n, JSON.stringify(r));
      assert.equal(r.unit, 'image');
      assert.equal(r.priced, true);
      assert.equal(r.estimated, false);
      assert.equal(h.recordNano(r), nano, JSON.stringify(r));
    }
    // gpt-image-1: 50 text tokens in at 5.00, 4160 image tokens out at 40.00 (USD per 1M)
    const g = await rec(o.images.generate({ model: 'gpt-image-1', prompt: 'mock:tokens=50,4160 a fox', quality: 'high' }));
    h.assertTokens(g, { input: 50, output: 4160 });
    assert.equal(g.units, 1);
    assert.equal(g.priced, true);
    assert.equal(h.recordNano(g), h.nanoCost([[50, 5], [4160, 40]]));
    // streamed: the usage of the completed event
    const s = await o.images.generate({ model: 'gpt-image-1', prompt: 'mock:tokens=40,1056 an owl', stream: true, partial_images: 1 }).withResponse();
    const types = [];
    for await (const ev of s.data) types.push(ev.type);
    assert.deepEqual(types, ['image_generation.partial_image', 'image_generation.completed']);
    const gs = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    assert.equal(gs.stream, true);
    assert.equal(gs.estimated, false);
    h.assertTokens(gs, { input: 40, output: 1056 });
    assert.equal(h.recordNano(gs), h.nanoCost([[40, 5], [1056, 40]]));
    // a streamed image whose usage never came: billed on the estimate's upper bound (6240 out)
    const lost = await o.images.generate({ model: 'gpt-image-1', prompt: 'mock:nousage a bee', stream: true }).withResponse();
    for await (const ev of lost.data) assert.ok(ev.type);
    const gl = await env.tg.record(lost.response.headers.get('x-tollgate-request-id'));
    assert.equal(gl.estimated, true);
    assert.equal(gl.output_tokens, 6240);
    const m = await env.redis.waitRequests(tenant, 6);
    const all = await env.tg.records({ tenant }, 6);
    assert.equal(m.cost, all.reduce((a, r) => a + h.recordNano(r), 0), 'settled what was recorded');
  });

  test('audio.speech is metered: tts-1 and tts-1-hd per character of input, gpt-4o-mini-tts by the tokens of its SSE answer, else on a bound from the characters', async () => {
    const tenant = h.uniq('tts');
    const o = env.openai(tenant);
    const speak = async (params) => {
      const res = await o.audio.speech.create(params).withResponse();
      const bytes = Buffer.from(await res.data.arrayBuffer());
      assert.ok(bytes.length > 0);
      return env.tg.record(res.response.headers.get('x-tollgate-request-id'));
    };
    const text = 'Grüße, 世界! ' + 'x'.repeat(100); // 11 characters (15 bytes) + 100
    const t1 = await speak({ model: 'tts-1', voice: 'alloy', input: text });
    const hd = await speak({ model: 'tts-1-hd', voice: 'alloy', input: text, response_format: 'wav' });
    for (const [r, model, usdPerChar] of [[t1, 'tts-1', 15], [hd, 'tts-1-hd', 30]]) {
      assert.equal(r.endpoint, '/v1/audio/speech');
      assert.equal(r.model, model);
      assert.equal(r.unit, 'character');
      assert.equal(r.units, 111, JSON.stringify(r));
      assert.equal(r.priced, true);
      assert.equal(r.estimated, false);
      assert.equal(h.recordNano(r), 111 * usdPerChar * 1000, JSON.stringify(r)); // USD per 1M characters
    }
    // gpt-4o-mini-tts with stream_format sse: its usage, 0.60 in and 12.00 out per 1M tokens
    const sse = await speak({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'mock:tokens=20,700 hello', stream_format: 'sse' });
    assert.equal(sse.stream, true);
    assert.equal(sse.estimated, false);
    h.assertTokens(sse, { input: 20, output: 700 });
    assert.equal(h.recordNano(sse), h.nanoCost([[20, 0.6], [700, 12]]));
    // plain audio carries no usage: billed on the bound, 2 tokens a character, flagged
    const plain = await speak({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'y'.repeat(300) });
    assert.equal(plain.estimated, true);
    assert.equal(plain.output_tokens, 600);
    assert.equal(plain.units, 300);
    const bad = await o.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 42 }).then(() => null, (e) => e);
    assert.equal(bad && bad.status, 400);
    assert.match(bad.message, /`input` must be a string/);
    const m = await env.redis.waitRequests(tenant, 4);
    const all = (await env.tg.records({ tenant }, 5)).filter((r) => r.status === 200);
    assert.equal(m.cost, all.reduce((a, r) => a + h.recordNano(r), 0), 'settled what was recorded');
  });

  test('audio transcriptions and translations (multipart) are metered: whisper-1 per second, gpt-4o transcribe models by tokens, text formats on a bound from the file size; refused at the hard limit', async () => {
    const { toFile } = require('openai');
    const tenant = h.uniq('stt');
    const o = env.openai(tenant);
    const audio = (bytes) => toFile(Buffer.alloc(bytes, 7), 'speech.mp3', { type: 'audio/mpeg' });
    const rec = async (p) => env.tg.record((await p.withResponse()).response.headers.get('x-tollgate-request-id'));
    // whisper-1: the seconds its usage reports, at 0.0001 USD a second
    const w = await rec(o.audio.transcriptions.create({ file: await audio(5000), model: 'whisper-1', prompt: 'mock:seconds=42' }));
    // verbose_json without usage: its duration, rounded up
    const v = await rec(o.audio.transcriptions.create({ file: await audio(5000), model: 'whisper-1', response_format: 'verbose_json', prompt: 'mock:seconds=42 mock:nousage' }));
    const tr = await rec(o.audio.translations.create({ file: await audio(5000), model: 'whisper-1', prompt: 'mock:seconds=9' }));
    for (const [r, secs, ep] of [[w, 42, 'transcriptions'], [v, 43, 'transcriptions'], [tr, 9, 'translations']]) {
      assert.equal(r.endpoint, `/v1/audio/${ep}`);
      assert.equal(r.model, 'whisper-1');
      assert.equal(r.unit, 'second');
      assert.equal(r.units, secs, JSON.stringify(r));
      assert.equal(r.priced, true);
      assert.equal(r.estimated, false);
      assert.equal(h.recordNano(r), secs * 100000);
    }
    // text format: no usage in the answer; billed on the file's bound (10000 bytes at
    // 2000 a second: 5 s), flagged
    const t = await rec(o.audio.transcriptions.create({ file: await audio(10000), model: 'whisper-1', response_format: 'text' }));
    assert.equal(t.estimated, true);
    assert.equal(t.units, 5);
    assert.equal(h.recordNano(t), 5 * 100000);
    // gpt-4o-transcribe: tokens at 6.00 in and 10.00 out
    const g = await rec(o.audio.transcriptions.create({ file: await audio(3000), model: 'gpt-4o-transcribe', prompt: 'mock:tokens=500,40' }));
    h.assertTokens(g, { input: 500, output: 40 });
    assert.equal(g.unit, null, 'token-priced: no units');
    assert.equal(g.estimated, false);
    assert.equal(h.recordNano(g), h.nanoCost([[500, 6], [40, 10]]));
    // streamed gpt-4o-mini-transcribe: the usage of transcript.text.done
    const s = await o.audio.transcriptions.create({ file: await audio(3000), model: 'gpt-4o-mini-transcribe', stream: true, prompt: 'mock:tokens=300,20' }).withResponse();
    const types = [];
    for await (const ev of s.data) types.push(ev.type);
    assert.equal(types[types.length - 1], 'transcript.text.done');
    const gs = await env.tg.record(s.response.headers.get('x-tollgate-request-id'));
    assert.equal(gs.stream, true);
    h.assertTokens(gs, { input: 300, output: 20 });
    assert.equal(h.recordNano(gs), h.nanoCost([[300, 3], [20, 5]]));
    const m = await env.redis.waitRequests(tenant, 6);
    const all = await env.tg.records({ tenant }, 6);
    assert.equal(m.cost, all.reduce((a, r) => a + h.recordNano(r), 0), 'settled what was recorded');

    // bad forms: no model field, and JSON instead of a form
    const up = env.mock.count();
    const fd = new FormData();
    fd.append('file', new Blob([Buffer.alloc(100)]), 'a.mp3');
    const nomodel = await fetch(`${env.tg.base}/v1/audio/transcriptions`, { method: 'POST', body: fd,
      headers: { 'X-Tenant-Id': tenant, authorization: 'Bearer sk-test' } });
    assert.equal(nomodel.status, 400);
    assert.match((await nomodel.json()).error.message, /`model` field/);
    const asJson = await h.post(env.tg, '/v1/audio/transcriptions', { model: 'whisper-1', file: 'x' }, { 'X-Tenant-Id': tenant });
    assert.equal(asJson.status, 400);
    assert.match(asJson.json.error.message, /multipart\/form-data/);
    const cut = await fetch(`${env.tg.base}/v1/audio/transcriptions`, { method: 'POST',
      body: '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b',
      headers: { 'content-type': 'multipart/form-data; boundary=b', 'X-Tenant-Id': tenant } });
    assert.equal(cut.status, 400);
    assert.match((await cut.json()).error.message, /malformed: the body ended before its closing boundary/);
    assert.equal(env.mock.count(), up, 'bad forms never reach the upstream');

    // a tenant at its hard limit: refused before anything reaches the upstream
    const blocked = await blockedTenant('sttcap');
    const nonce = h.uniq('n');
    const ob = env.openai(blocked, { headers: headers() });
    for (const call of [() => ob.audio.transcriptions.create({ file: toFile(Buffer.alloc(100), 'a.mp3'), model: 'whisper-1', prompt: nonce }),
      () => ob.audio.translations.create({ file: toFile(Buffer.alloc(100), 'a.mp3'), model: 'whisper-1', prompt: nonce })]) {
      const err = await call().then(() => null, (e) => e);
      assert.equal(err && err.status, 429);
      assert.equal(err.code, 'budget_exceeded');
      assert.equal(err.headers.get('x-should-retry'), 'false');
    }
    await h.sleep(h.ms(200));
    assert.deepEqual(seen(nonce), [], 'nothing reached the upstream');
  });

  test('image edits and variations (multipart) are metered: gpt-image-1 by its usage with image input tokens at image_input, dall-e-2 per image by size; an edit without a model is refused; refused at the hard limit', async () => {
    const { toFile } = require('openai');
    const png = () => toFile(Buffer.alloc(3000, 9), 'in.png', { type: 'image/png' });
    const tenant = h.uniq('imgedit');
    const o = env.openai(tenant);
    const a = await o.images.edit({ model: 'gpt-image-1', image: await png(), prompt: 'mock:tokens=300,4160 mock:imagetokens=200 add a hat' });
    assert.equal(a.data.length, 1);
    const b = await o.images.edit({ model: 'dall-e-2', image: await png(), prompt: 'add a hat', n: 2, size: '512x512' });
    assert.equal(b.data.length, 2);
    const c = await o.images.createVariation({ image: await png(), n: 3, size: '256x256' });
    assert.equal(c.data.length, 3);
    const recs = await env.tg.records({ tenant }, 3);
    const want = [
      // 100 text tokens at 5, 200 image tokens at 10, 4160 output at 40 (USD per 1M)
      ['/v1/images/edits', 'gpt-image-1', h.nanoCost([[100, 5], [200, 10], [4160, 40]]), 1],
      ['/v1/images/edits', 'dall-e-2', 2 * 18000000, 2],
      ['/v1/images/variations', 'dall-e-2', 3 * 16000000, 3],
    ];
    const key = (x) => JSON.stringify(x);
    assert.deepEqual(recs.map((x) => key([x.endpoint, x.model, h.recordNano(x), x.units])).sort(), want.map(key).sort());
    for (const r of recs) {
      assert.equal(r.unit, 'image');
      assert.equal(r.priced, true);
      assert.equal(r.estimated, false);
    }
    const m = await env.redis.waitRequests(tenant, 3);
    assert.equal(m.cost, want.reduce((n, w) => n + w[2], 0), 'Redis spend equals the records');

    // an edit must name its model (OpenAI's default depends on the parameters)
    const up = env.mock.count();
    const err = await o.images.edit({ image: await png(), prompt: 'x' }).then(() => null, (e) => e);
    assert.equal(err && err.status, 400);
    assert.match(err.message, /`model` field/);
    assert.equal(env.mock.count(), up, 'never forwarded');

    // a tenant at its hard limit: refused before anything reaches the upstream
    const blocked = await blockedTenant('imgcap');
    const ob = env.openai(blocked, { headers: headers() });
    for (const call of [() => ob.images.edit({ model: 'gpt-image-1', image: toFile(Buffer.alloc(100), 'a.png'), prompt: 'x' }),
      () => ob.images.createVariation({ image: toFile(Buffer.alloc(100), 'a.png') })]) {
      const e = await call().then(() => null, (x) => x);
      assert.equal(e && e.status, 429);
      assert.equal(e.code, 'budget_exceeded');
      assert.equal(e.headers.get('x-should-retry'), 'false');
    }
    await h.sleep(h.ms(200));
    assert.equal(env.mock.count(), up, 'nothing reached the upstream');
  });

  test('Imagen :predict is metered per image asked for (parameters.sampleCount, default 4) at the model\'s per_image price; refused at the hard limit', async () => {
    // @google/genai's generateImages speaks :predict to Vertex only now; the Gemini API's REST
    // shape (ai.google.dev, Imagen) is sent as is
    const tenant = h.uniq('imagen');
    const nonce = h.uniq('n');
    const predict = (t, model, body, extra = {}) => h.post(env.tg, `/v1beta/models/${model}:predict`, body,
      { 'X-Tenant-Id': t, 'x-goog-api-key': 'g-test-key', ...extra });
    const two = await predict(tenant, 'imagen-4.0-generate-001', { instances: [{ prompt: `${nonce} a cat` }], parameters: { sampleCount: 2 } });
    assert.equal(two.status, 200, two.text);
    assert.equal(two.json.predictions.length, 2);
    const four = await predict(tenant, 'imagen-4.0-fast-generate-001', { instances: [{ prompt: `${nonce} a dog` }] });
    assert.equal(four.status, 200, four.text);
    assert.equal(four.json.predictions.length, 4);
    const bad = await predict(tenant, 'imagen-4.0-generate-001', { instances: [{ prompt: `${nonce} x` }], parameters: { sampleCount: 'two' } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.status, 'INVALID_ARGUMENT');
    const sent = seen(nonce).map((q) => q.path).sort();
    assert.deepEqual(sent, ['/v1beta/models/imagen-4.0-fast-generate-001:predict', '/v1beta/models/imagen-4.0-generate-001:predict']);
    // the refused request's record may be written before the second answer's
    const recs = (await env.tg.records({ tenant }, 3)).filter((r) => r.status === 200);
    const want = [['imagen-4.0-generate-001', 2, 2 * 40000000], ['imagen-4.0-fast-generate-001', 4, 4 * 20000000]];
    const key = (x) => JSON.stringify(x);
    assert.deepEqual(recs.map((r) => key([r.model, r.units, h.recordNano(r)])).sort(), want.map(key).sort());
    for (const r of recs) {
      assert.equal(r.provider, 'gemini');
      assert.equal(r.unit, 'image');
      assert.equal(r.priced, true);
    }
    const m = await env.redis.waitRequests(tenant, 2);
    assert.equal(m.cost, 2 * 40000000 + 4 * 20000000, 'Redis spend equals the records');

    const blocked = await blockedTenant('imagencap');
    const n2 = h.uniq('n');
    const refused = await predict(blocked, 'imagen-4.0-generate-001', { instances: [{ prompt: `${n2} x` }] }, headers());
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.json.error.status, 'RESOURCE_EXHAUSTED');
    assert.equal(refused.headers.get('x-should-retry'), 'false');
    await h.sleep(h.ms(200));
    assert.deepEqual(seen(n2), [], 'nothing reached the upstream');
  });

  test('Gemini embedContent and batchEmbedContents are metered: input estimated from the text (Gemini reports no usage), flagged; a body naming another model is refused; refused at the hard limit', async () => {
    const tenant = h.uniq('gemb');
    const g = env.gemini(tenant);
    const text = 'z'.repeat(4000);
    const one = await g.models.embedContent({ model: 'gemini-embedding-001', contents: text });
    assert.equal(one.embeddings.length, 1);
    const two = await g.models.embedContent({ model: 'gemini-embedding-001', contents: [text, text] });
    assert.equal(two.embeddings.length, 2);
    const recs = await env.tg.records({ tenant }, 2);
    for (const r of recs) {
      assert.equal(r.provider, 'gemini');
      assert.match(r.endpoint, /^\/v1beta\/models\/gemini-embedding-001:(batchE|e)mbedContents?$/);
      assert.equal(r.model, 'gemini-embedding-001');
      assert.equal(r.estimated, true);
      assert.equal(r.priced, true);
      assert.equal(r.output_tokens, 0);
      assert.equal(h.recordNano(r), h.nanoCost([[r.input_tokens, 0.15]]));
    }
    const byIn = recs.map((r) => r.input_tokens).sort((a, b) => a - b);
    assert.ok(byIn[0] >= 1000 && byIn[0] < 1100, `about 4 bytes a token: ${byIn}`);
    assert.ok(byIn[1] >= 2000 && byIn[1] < 2200, `two texts: ${byIn}`);
    // the path names the model; a body naming another is refused
    const mix = await h.post(env.tg, '/v1beta/models/gemini-embedding-001:embedContent',
      { model: 'models/text-embedding-004', content: { parts: [{ text: 'x' }] } }, { 'X-Tenant-Id': tenant });
    assert.equal(mix.status, 400, mix.text);
    assert.equal(mix.json.error.status, 'INVALID_ARGUMENT');
    assert.match(mix.json.error.message, /differs from the model in the path/);
    // at the hard limit
    const blocked = await blockedTenant('gembcap');
    const nonce = h.uniq('n');
    const gb = env.gemini(blocked, { headers: headers() });
    const err = await gb.models.embedContent({ model: 'gemini-embedding-001', contents: `${nonce} x` }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429, `refused: ${err && err.message}`);
    assert.match(err.message, /RESOURCE_EXHAUSTED/);
    await h.sleep(h.ms(200));
    assert.deepEqual(seen(nonce), [], 'nothing reached the upstream');
  });

  h.cleanRunTest(env);
});

'use strict';
// The cap holds against a determined client (issue 17): estimates that are upper bounds (the
// 20-way race without max_tokens, n = 5, Gemini candidateCount), one canonical path (variants
// and methods reach nothing upstream while over the cap).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const PREFIX = 'tollgate:';
const mKey = (tenant) => `${PREFIX}{${tenant}}:m:${new Date().toISOString().slice(0, 7)}`;
const CAP_NANO = 50000000; // $0.05, the cap of plan "tight"

const PLANS = {
  'plan tight': { price: 9, budget_monthly: '0.05', on_exceed: 'block' },
  'plan big': { price: 9, budget_monthly: '100', on_exceed: 'block' },
  'plan open': { price: 9, rpm: 1000 }, // admitted (a lease), no cap
};

async function monthHash(redis, tenant) {
  const o = {};
  for (const [k, v] of Object.entries(await redis.hgetall(mKey(tenant)))) o[k] = Number(v);
  return o;
}

const headers = (tenant, plan) => ({ 'X-Tenant-Id': tenant, 'X-Tenant-Plan': plan });

describe('cap', () => {
  const env = h.useStack({ overrides: { ...PLANS } });

  // ---- estimates that bound the bill ------------------------------------------------------

  test('20 parallel gpt-4o requests without max_tokens, each answered with 100k output tokens: spend <= cap + one request', { timeout: h.ms(60000) }, async () => {
    const tenant = h.uniq('race20');
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'mock:tokens=20,100000 mock:delay=1500' }] };
    const results = await Promise.all(Array.from({ length: 20 },
      () => h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'tight'))));
    const ok = results.filter((r) => r.status === 200).length;
    const blocked = results.filter((r) => r.status === 429).length;
    assert.equal(ok + blocked, 20, `every request admitted or blocked: ${results.map((r) => r.status)}`);
    const recs = await env.tg.records((r) => r.tenant === tenant, 20, h.ms(10000));
    const one = h.expectedNano('gpt-4o', { input: 20, output: 100000 });
    const m = await h.waitFor(async () => {
      const x = await monthHash(env.redis, tenant);
      return (x.reserved || 0) === 0 && (x.requests || 0) === ok ? x : null;
    }, { what: 'every admitted request settled' });
    const sumRecs = recs.reduce((s, r) => s + h.recordNano(r), 0);
    assert.equal(m.cost, sumRecs, 'Redis cost = sum of the records');
    // One request's estimate error is at most its whole cost: the one short reservation.
    process.stderr.write(`race20: ${ok} admitted, spend ${m.cost / 1e9} USD on a ${CAP_NANO / 1e9} USD cap\n`);
    assert.ok(m.cost <= CAP_NANO + one, `spend ${m.cost} nano <= cap ${CAP_NANO} + one request ${one} (admitted ${ok})`);
  });

  // The reservation held while a request is in flight: output bound x answers + a few input
  // tokens (the body's text, about 4 bytes a token).
  async function reservedWhileInFlight(tenant, send) {
    const p = send();
    const held = await h.waitFor(async () => (await monthHash(env.redis, tenant)).reserved || 0,
      { timeout: h.ms(3000), what: 'the request holding a reservation' });
    const res = await p;
    assert.equal(res.status, 200, res.text);
    return held;
  }

  test('n = 5 with max_tokens 1000 reserves 5000 output tokens, not 1000', async () => {
    const tenant = h.uniq('n5');
    const body = { model: 'gpt-4o', max_tokens: 1000, n: 5, messages: [{ role: 'user', content: 'mock:delay=1500' }] };
    const held = await reservedWhileInFlight(tenant, () => h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'big')));
    const out = h.expectedNano('gpt-4o', { input: 0, output: 5000 });
    const inTok = h.expectedNano('gpt-4o', { input: 1, output: 0 });
    assert.ok(held >= out && held < out + 20 * inTok, `reserved ${held} nano = 5000 output tokens (${out}) + a few input tokens`);
  });

  test('n = 5 without max_tokens: gpt-4o reserves its listed max_output (16384) times 5', async () => {
    const tenant = h.uniq('nomax');
    const body = { model: 'gpt-4o', n: 5, messages: [{ role: 'user', content: 'mock:delay=1500' }] };
    const held = await reservedWhileInFlight(tenant, () => h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'big')));
    const out = h.expectedNano('gpt-4o', { input: 0, output: 5 * 16384 });
    const inTok = h.expectedNano('gpt-4o', { input: 1, output: 0 });
    assert.ok(held >= out && held < out + 20 * inTok, `reserved ${held} nano = 5 x 16384 output tokens (${out}) + a few input tokens`);
  });

  test('Gemini candidateCount = 3 without maxOutputTokens reserves 3 x the model maximum (65535)', async () => {
    const tenant = h.uniq('gcand');
    const body = { contents: [{ role: 'user', parts: [{ text: 'mock:delay=1500' }] }], generationConfig: { candidateCount: 3, thinkingConfig: { thinkingBudget: 10 } } };
    const held = await reservedWhileInFlight(tenant, () => h.post(env.tg, '/v1beta/models/gemini-2.5-flash:generateContent', body,
      { ...headers(tenant, 'big'), 'x-goog-api-key': 'g-test-key' }));
    const out = h.expectedNano('gemini-2.5-flash', { input: 0, output: 3 * 65535 });
    const inTok = h.expectedNano('gemini-2.5-flash', { input: 1, output: 0 });
    assert.ok(held >= out && held < out + 20 * inTok, `reserved ${held} nano = 3 x 65535 output tokens (${out}) + a few input tokens`);
  });

  // ---- one canonical path -----------------------------------------------------------------

  // One request in exact bytes (the path as written, no URL normalisation); resolves
  // {status, headers, body}.
  async function raw(method, target, hdrs, body) {
    const list = [['Host', '127.0.0.1'], ['Connection', 'close'], ['Content-Type', 'application/json'],
      ...Object.entries(hdrs)];
    if (body !== undefined) list.push(['Content-Length', Buffer.byteLength(body)]);
    const res = await h.rawRequest(env.tg.port, h.buildRequest(method, target, list, body));
    const [r] = h.parseResponses(res.buf);
    assert.ok(r, `an answer to ${method} ${target.slice(0, 80)}: ${res.text.slice(0, 200)}`);
    return { status: r.status, headers: r.headers, body: r.body.toString('utf8') };
  }

  const chatBody = (text) => JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: text }] });
  const gemBody = (text) => JSON.stringify({ contents: [{ role: 'user', parts: [{ text }] }] });
  const anthBody = (text) => JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: text }] });
  const GEM = '/v1beta/models/gemini-2.5-flash';

  test('over the cap, no spelling of a metered path and no other method reaches the upstream', { timeout: h.ms(60000) }, async () => {
    const tenant = h.uniq('paths');
    await env.redis.cmd('HSET', mKey(tenant), 'cost', String(CAP_NANO));
    const hd = { ...headers(tenant, 'tight'), Authorization: 'Bearer sk-test', 'x-goog-api-key': 'g-test-key', 'x-api-key': 'sk-ant' };
    const variants = [
      ['POST', '/v1/chat/completion%73', chatBody],
      ['POST', '/v1/chat/completions/', chatBody],
      ['POST', '/v1/Chat/Completions', chatBody],
      ['POST', '/V1/CHAT/COMPLETIONS/', chatBody],
      ['POST', '/v1/chat/completions;x', chatBody],
      ['POST', '/v1/chat;x/completions', chatBody],
      ['POST', '/v1/chat/completions%20', chatBody],
      ['POST', '/v1/chat/completions.json', chatBody],
      ['POST', '/v1/chat/%63ompletions', chatBody],
      ['POST', '/v1/Messages', anthBody],
      ['POST', '/v1/messages/', anthBody],
      ['POST', `${GEM}:generate%43ontent`, gemBody],
      ['POST', `${GEM}%3AgenerateContent`, gemBody],
      ['POST', `${GEM}:GenerateContent`, gemBody],
      ['POST', `${GEM}:streamGenerateContent.json`, gemBody],
      ['PUT', '/v1/chat/completions', chatBody],
      ['PATCH', '/v1/chat/completions', chatBody],
      ['GET', '/v1/chat/completions', undefined],
      ['HEAD', '/v1/chat/completions', undefined],
      ['DELETE', '/v1/messages', undefined],
      ['PUT', `${GEM}:generateContent`, gemBody],
      ['GET', `${GEM}:streamGenerateContent`, undefined],
    ];
    const since = env.mock.count();
    for (const [method, path, mk] of variants) {
      const nonce = h.uniq('pv');
      const res = await raw(method, `${path}?nonce=${nonce}`, hd, mk ? mk(`${nonce} mock:tokens=5,5`) : undefined);
      assert.ok([400, 405, 429].includes(res.status), `${method} ${path}: ${res.status} ${res.body}`);
      if (res.status === 405) assert.equal(res.headers.allow, 'POST', `${method} ${path}: Allow`);
      if (method !== 'HEAD') assert.ok(res.body.length > 0, `${method} ${path}: an error body`);
    }
    const reached = (await h.newRequests(env.mock, since)).filter((q) => `${q.path}${q.query}`.includes('nonce=pv'));
    assert.deepEqual(reached.map((q) => `${q.method} ${q.path}`), [], 'nothing reached the upstream');
  });

  test('a path variant is metered and forwarded in its canonical form', async () => {
    const tenant = h.uniq('canon');
    const hd = { ...headers(tenant, 'big'), Authorization: 'Bearer sk-test' };
    const nonce = h.uniq('cv');
    const res = await raw('POST', '/v1/Chat/Completion%73/', hd, chatBody(`${nonce} mock:tokens=10,20`));
    assert.equal(res.status, 200, res.body);
    const [q] = env.mock.requestsWith(nonce);
    assert.equal(q.path, '/v1/chat/completions');
    const rec = await env.tg.record(res.headers['x-tollgate-request-id']);
    assert.equal(rec.endpoint, '/v1/chat/completions');
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o', { input: 10, output: 20 }));
    const gn = h.uniq('gv');
    const g = await raw('POST', `${GEM}%3Agenerate%43ontent?key=x`, { ...headers(tenant, 'big') }, gemBody(`${gn} mock:tokens=10,20`));
    assert.equal(g.status, 200, g.body);
    assert.equal(env.mock.requestsWith(gn)[0].path, `${GEM}:generateContent`);
  });

  test('long paths are forwarded whole up to 2048 bytes, 414 past it', async () => {
    const tenant = h.uniq('long');
    const hd = { ...headers(tenant, 'big'), Authorization: 'Bearer sk-test' };
    const long = `/v1/files/${'f'.repeat(300)}`;
    const since = env.mock.count();
    const res = await raw('GET', long, hd);
    assert.equal(res.status, 404, 'the mock knows no such file: its 404 comes back');
    const got = (await h.newRequests(env.mock, since)).filter((q) => q.method === 'GET');
    assert.deepEqual(got.map((q) => q.path), [long], 'the whole path went upstream');
    const tooLong = `/v1/files/${'f'.repeat(2100)}`;
    const since2 = env.mock.count();
    const r2 = await raw('GET', tooLong, hd);
    assert.equal(r2.status, 414, r2.body);
    assert.equal((await h.newRequests(env.mock, since2)).length, 0, 'nothing forwarded');
  });

  // ---- leases that last, requests that end ---------------------------------------------------

  test('a stream outliving the lease TTL keeps its reservation: leases are renewed while the request is alive', { timeout: h.ms(60000) }, async () => {
    const tg = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { ...PLANS }, env: { TOLLGATE_TEST_LEASE_TTL_S: '2' } });
    try {
      const tenant = h.uniq('lease');
      const leases = `${PREFIX}{${tenant}}:leases`;
      const body = { model: 'gpt-4o', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'mock:tokens=10,20 mock:chunks=40 mock:slow=200' }] };
      const res = await fetch(`${tg.base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test', ...headers(tenant, 'big') } });
      assert.equal(res.status, 200);
      const id = res.headers.get('x-tollgate-request-id');
      const done = res.text();
      const held = (await monthHash(env.redis, tenant)).reserved;
      assert.ok(held > 0, 'the stream holds a reservation');
      const [score0] = await env.redis.cmd('ZSCORE', leases, id);
      await h.sleep(3500); // past the 2 s TTL
      const [score1] = await env.redis.cmd('ZSCORE', leases, id);
      assert.ok(Number(score1) > Number(score0) + 1000, `the lease was renewed: expiry ${score0} -> ${score1}`);
      // another admission sweeps expired leases: the stream's must not be one of them
      const b = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o', max_tokens: 10, messages: [{ role: 'user', content: 'mock:tokens=5,5' }] }, headers(tenant, 'big'));
      assert.equal(b.status, 200);
      await h.waitFor(async () => (await monthHash(env.redis, tenant)).requests === 1, { what: 'the short request settled' });
      assert.equal((await monthHash(env.redis, tenant)).reserved, held, 'the stream still holds its reservation after the TTL');
      await done;
      await h.waitFor(async () => { const m = await monthHash(env.redis, tenant); return m.requests === 2 && m.reserved === 0; }, { what: 'both settled, nothing reserved' });
      await tg.stopAndCheck();
    } finally {
      await tg.stop();
    }
  });

  test('max_request_time cuts a stream that runs too long and settles it on its estimate (max_tokens), flagged', { timeout: h.ms(60000) }, async () => {
    await env.withTollgate({ ...PLANS, server: { max_request_time: '1s' } }, async (tg) => {
      const tenant = h.uniq('maxtime');
      const body = { model: 'gpt-4o', max_tokens: 300, stream: true, messages: [{ role: 'user', content: 'mock:tokens=10,20 mock:chunks=20 mock:slow=200' }] };
      const t0 = Date.now();
      const res = await fetch(`${tg.base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test', ...headers(tenant, 'big') } });
      const id = res.headers.get('x-tollgate-request-id');
      await res.text().then(() => null, () => null); // cut: the body ends early or errors
      const took = Date.now() - t0;
      assert.ok(took < h.ms(3000), `cut near 1 s, not after the 4 s stream (${took} ms)`);
      const rec = await tg.record(id).catch((e) => { throw new Error(`${e.message}; took ${took}; records ${JSON.stringify(tg.readRecords())}; stderr ${tg.proc.tail(80)}`); });
      assert.equal(rec.outcome, 'upstream_error');
      assert.equal(rec.estimated, true);
      assert.equal(rec.output_tokens, 300, JSON.stringify(rec));
    });
  });

  // ---- background Responses ------------------------------------------------------------------

  test('background Responses are refused with a clear 400 (their usage would arrive past the budget check), nothing forwarded', async () => {
    const tenant = h.uniq('bg');
    const c = env.openai(tenant, { headers: { 'X-Tenant-Plan': 'big' } });
    const nonce = h.uniq('bgn');
    const err = await c.responses.create({ model: 'gpt-4o', background: true, input: `${nonce} mock:tokens=10,10` }).then(() => null, (e) => e);
    assert.ok(err, 'refused');
    assert.equal(err.status, 400);
    assert.match(err.message, /background/);
    assert.equal((await h.newRequests(env.mock, 0)).filter((q) => q.body && q.body.includes(nonce)).length, 0, 'nothing forwarded');
    const ok = await c.responses.create({ model: 'gpt-4o', background: false, input: 'mock:tokens=10,10' });
    assert.ok(ok.id, 'background: false is an ordinary Response');
  });

  test('every endpoint whose usage arrives later is refused by default, with money left, nothing forwarded: batches, Assistants runs, long-running predictions', async () => {
    const tenant = h.uniq('later');
    const nonce = h.uniq('ln');
    const since = env.mock.count();
    const o = env.openai(tenant, { headers: { 'X-Tenant-Plan': 'big' } });
    const berr = await o.batches.create({ input_file_id: `file-${nonce}`, endpoint: '/v1/chat/completions', completion_window: '24h' }).then(() => null, (e) => e);
    assert.ok(berr, 'batches.create refused');
    assert.equal(berr.status, 403);
    assert.equal(berr.code, 'route_not_metered');
    const hd = { ...headers(tenant, 'big'), 'x-goog-api-key': 'g-test-key' };
    const cases = [
      ['/v1/threads/runs', { assistant_id: `asst_${nonce}` }],
      [`/v1/threads/thread_${nonce}/runs`, { assistant_id: `asst_${nonce}` }],
      [`${GEM}:batchGenerateContent`, { batch: { displayName: nonce } }],
      ['/v1beta/models/veo-3.0-generate-001:predictLongRunning', { instances: [{ prompt: nonce }] }],
    ];
    for (const [path, body] of cases) {
      const res = await h.post(env.tg, path, body, hd);
      assert.equal(res.status, 403, `${path}: ${res.text}`);
      assert.match(res.text, /not metered/, path);
    }
    const reached = (await h.newRequests(env.mock, since)).filter((q) => (q.body || '').includes(nonce));
    assert.deepEqual(reached.map((q) => `${q.method} ${q.path}`), [], 'nothing reached the upstream');
    // a background Response is refused even where unknown routes are let through: its route is
    // metered, and its bill would come after the budget check
    await env.withTollgate({ ...PLANS, pricing: { unmetered_routes: 'allow' } }, async (tg) => {
      const res = await h.post(tg, '/v1/responses', { model: 'gpt-4o', background: true, input: `${nonce} bg` }, headers(tenant, 'big'));
      assert.equal(res.status, 400, res.text);
      assert.match(res.json.error.message, /background/);
    });
    assert.equal((await h.newRequests(env.mock, since)).filter((q) => (q.body || '').includes(nonce)).length, 0, 'nothing forwarded');
  });

  // ---- usage from answers of any size ------------------------------------------------------

  test('a 9 MB non-streamed answer: the usage after the text is read (OpenAI and Anthropic)', { timeout: h.ms(60000) }, async () => {
    const PAD = 9 * 1024 * 1024;
    const tenant = h.uniq('big-answer');
    const body = { model: 'gpt-4o', max_tokens: 1000, messages: [{ role: 'user', content: `mock:tokens=25,600 mock:pad=${PAD}` }] };
    const res = await h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'big'));
    assert.equal(res.status, 200);
    assert.ok(res.text.length > PAD, 'the whole answer reached the client');
    const rec = await env.tg.record(res.headers.get('x-tollgate-request-id'));
    assert.equal(rec.estimated, false, JSON.stringify(rec));
    h.assertTokens(rec, { input: 25, output: 600 });
    const ab = { model: 'claude-haiku-4-5', max_tokens: 1000, messages: [{ role: 'user', content: `mock:tokens=30,700 mock:pad=${PAD}` }] };
    const ar = await h.post(env.tg, '/v1/messages', ab, { ...headers(tenant, 'big'), 'x-api-key': 'sk-ant', 'anthropic-version': '2023-06-01' });
    assert.equal(ar.status, 200);
    const arec = await env.tg.record(ar.headers.get('x-tollgate-request-id'));
    assert.equal(arec.estimated, false, JSON.stringify(arec));
    h.assertTokens(arec, { input: 30, output: 700 });
  });

  test('a gzip answer despite Accept-Encoding: identity is billed on the estimate (max_tokens), flagged, upstream_error', async () => {
    const tenant = h.uniq('gzip');
    const nonce = h.uniq('gz');
    const body = { model: 'gpt-4o', max_tokens: 1000, messages: [{ role: 'user', content: `${nonce} mock:tokens=25,600 mock:gzip` }] };
    const res = await h.post(env.tg, '/v1/chat/completions', body, { ...headers(tenant, 'big'), 'Accept-Encoding': 'gzip' });
    assert.equal(res.status, 200);
    assert.equal(env.mock.requestsWith(nonce)[0].headers['accept-encoding'], 'identity', 'identity asked upstream');
    const rec = await env.tg.record(res.headers.get('x-tollgate-request-id'));
    assert.equal(rec.estimated, true);
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.output_tokens, 1000, JSON.stringify(rec));
  });

  // ---- usage that lies ------------------------------------------------------------------------

  test('negative, string, fractional or absurd usage counts: billed on the estimate (max_tokens), flagged, upstream_error; JSON and stream', async () => {
    const tenant = h.uniq('lie');
    for (const [lie, stream] of [[1, false], [2, false], [3, false], [4, false], [1, true], [2, true], [4, true]]) {
      const body = { model: 'gpt-4o', max_tokens: 1000, stream, messages: [{ role: 'user', content: `mock:tokens=25,600 mock:lie=${lie}` }] };
      const res = await h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'big'));
      assert.equal(res.status, 200);
      const rec = await env.tg.record(res.headers.get('x-tollgate-request-id'));
      const what = `lie=${lie} stream=${stream}: ${JSON.stringify(rec)}`;
      assert.equal(rec.estimated, true, what);
      assert.equal(rec.outcome, 'upstream_error', what);
      assert.equal(rec.output_tokens, 1000, what);
      assert.ok(rec.input_tokens > 0 && rec.cost_usd > 0, what);
    }
  });

  test('two settlements onto counters near INT64_MAX: they saturate there, nothing is half-written, each request counts once', { timeout: h.ms(30000) }, async () => {
    const tenant = h.uniq('sat');
    const MAX = '9223372036854775807';
    const dKey = `${PREFIX}{${tenant}}:d:${new Date().toISOString().slice(0, 10)}`;
    // the month's counters already near the top (an import, years of a huge tenant)
    await env.redis.cmd('HSET', mKey(tenant), 'cost', '9223372036854774807', 'output_tokens', '9223372036000000000');
    const since = env.tg.stderr.length;
    // the largest bounds a request may ask (10M output tokens, n = 128) with usage that cannot
    // be believed: each is billed on its bound, 1.28e9 output tokens, $12,800
    const body = { model: 'gpt-4o', max_tokens: 10000000, n: 128, messages: [{ role: 'user', content: 'mock:tokens=10,20 mock:lie=1' }] };
    const recs = [];
    for (let i = 0; i < 2; i++) {
      const res = await h.post(env.tg, '/v1/chat/completions', body, headers(tenant, 'open'));
      assert.equal(res.status, 200, res.text);
      const rec = await env.tg.record(res.headers.get('x-tollgate-request-id'));
      assert.equal(rec.estimated, true, JSON.stringify(rec));
      assert.equal(rec.output_tokens, 1280000000, JSON.stringify(rec));
      recs.push(rec);
    }
    const m = await h.waitFor(async () => {
      const x = await env.redis.hgetall(mKey(tenant));
      return x.requests === '2' && x.reserved === '0' ? x : null;
    }, { what: 'both settled and tallied' });
    assert.equal(m.cost, MAX, 'the month cost saturated at INT64_MAX');
    assert.equal(m.output_tokens, MAX, 'the month output tokens saturated at INT64_MAX');
    assert.equal(Number(m.input_tokens), recs[0].input_tokens + recs[1].input_tokens);
    // the day's counters started at 0: exact
    const d = await env.redis.hgetall(dKey);
    assert.equal(d.requests, '2');
    assert.equal(Number(d.cost), h.recordNano(recs[0]) + h.recordNano(recs[1]));
    assert.equal(d.output_tokens, '2560000000');
    assert.equal(d.reserved, '0');
    assert.ok(Object.keys(d).some((f) => f.startsWith('w:')), `the settlements' markers: ${Object.keys(d)}`);
    const [left] = await env.redis.cmd('ZCOUNT', `${PREFIX}{${tenant}}:leases`, '-inf', '(+inf');
    assert.equal(Number(left), 0, 'no lease left behind');
    // an ordinary request is counted as usual on top of the saturated counters
    const ok = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', max_tokens: 50, messages: [{ role: 'user', content: 'mock:tokens=10,20' }] }, headers(tenant, 'open'));
    assert.equal(ok.status, 200);
    await h.waitFor(async () => (await env.redis.hgetall(dKey)).requests === '3', { what: 'the third request tallied' });
    const m3 = await env.redis.hgetall(mKey(tenant));
    assert.equal(m3.cost, MAX);
    assert.equal(m3.requests, '3');
    assert.equal(m3.reserved, '0');
    const log = env.tg.stderr.slice(since);
    assert.doesNotMatch(log, /settlement of .* failed|journaled|overflow|not an integer/i, log);
  });

  // ---- no free aborts -----------------------------------------------------------------------

  // Posts body and aborts the request after abortMs; resolves the request id tollgate gave it
  // (found by the nonce in the records, since the client never saw the headers).
  async function abortAfter(tg, path, body, hdrs, abortMs) {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), abortMs);
    await h.post(tg, path, body, hdrs, ac.signal).then(() => assert.fail('the request was meant to be aborted'), (e) => {
      assert.equal(e.name, 'AbortError', String(e));
    });
  }

  async function settledAs(tenant, rec) {
    const m = await h.waitFor(async () => {
      const x = await monthHash(env.redis, tenant);
      return x.requests === 1 && (x.reserved || 0) === 0 ? x : null;
    }, { what: 'the aborted request settled' });
    assert.equal(m.cost, h.recordNano(rec), 'Redis settled the recorded cost');
  }

  test('a client that aborts before a non-streamed answer: the answer is still read, the record has the provider\'s usage', { timeout: h.ms(30000) }, async () => {
    const tenant = h.uniq('abort-json');
    const body = { model: 'gpt-4o', max_tokens: 2000, messages: [{ role: 'user', content: 'mock:tokens=30,700 mock:delay=1500' }] };
    await abortAfter(env.tg, '/v1/chat/completions', body, headers(tenant, 'big'), 300);
    const [rec] = await env.tg.records({ tenant }, 1, h.ms(10000));
    assert.equal(rec.outcome, 'client_aborted');
    assert.equal(rec.estimated, false, `the provider's usage, not an estimate: ${JSON.stringify(rec)}`);
    h.assertTokens(rec, { input: 30, output: 700 });
    assert.equal(h.recordNano(rec), h.expectedNano('gpt-4o', { input: 30, output: 700 }));
    await settledAs(tenant, rec);
  });

  test('a client that aborts a stream before its first byte: the stream is read to its usage', { timeout: h.ms(30000) }, async () => {
    const tenant = h.uniq('abort-sse');
    const body = { model: 'gpt-4o', stream: true, max_tokens: 2000, messages: [{ role: 'user', content: 'mock:tokens=40,900 mock:delay=1000 mock:chunks=5 mock:slow=100' }] };
    await abortAfter(env.tg, '/v1/chat/completions', body, headers(tenant, 'big'), 300);
    const [rec] = await env.tg.records({ tenant }, 1, h.ms(10000));
    assert.equal(rec.outcome, 'client_aborted');
    assert.equal(rec.estimated, false, JSON.stringify(rec));
    h.assertTokens(rec, { input: 40, output: 900 });
    await settledAs(tenant, rec);
  });

  test('drain_on_abort bounds the wait: past it the call is cut and billed on its estimate (max_tokens), flagged; the key reloads', { timeout: h.ms(60000) }, async () => {
    await env.withTollgate({ ...PLANS, server: { drain_on_abort: '60s' } }, async (tg) => {
      const count = (re) => (tg.stderr.match(new RegExp(re.source, 'gm')) || []).length;
      // 60 s: a 2.5 s answer is waited for
      const t1 = h.uniq('drain-long');
      const slow = { model: 'gpt-4o', max_tokens: 3000, messages: [{ role: 'user', content: 'mock:tokens=50,800 mock:delay=2500' }] };
      await abortAfter(tg, '/v1/chat/completions', slow, headers(t1, 'big'), 200);
      const [r1] = await tg.records({ tenant: t1 }, 1, h.ms(10000));
      assert.equal(r1.estimated, false, JSON.stringify(r1));
      h.assertTokens(r1, { input: 50, output: 800 });
      // reloaded to 1 s: the same answer is cut at 1 s and billed on the estimate
      const loaded0 = count(/reload: .* loaded/);
      fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, { server: { drain_on_abort: '1s' } }).text);
      tg.proc.child.kill('SIGHUP');
      await h.waitFor(() => count(/reload: .* loaded/) > loaded0, { timeout: h.ms(3000), what: 'the reload' });
      await h.waitFor(() => count(/worker \d+: new requests use the reloaded config/) >= 2, { timeout: h.ms(3000), what: 'both workers reloaded' });
      const t2 = h.uniq('drain-cut');
      const started = Date.now();
      await abortAfter(tg, '/v1/chat/completions', slow, headers(t2, 'big'), 200);
      const [r2] = await tg.records({ tenant: t2 }, 1, h.ms(10000));
      const took = Date.now() - started;
      assert.ok(took < h.ms(2400), `cut at the 1 s bound, before the answer (${took} ms)`);
      assert.equal(r2.outcome, 'client_aborted');
      assert.equal(r2.estimated, true);
      assert.equal(r2.output_tokens, 3000, `output billed at max_tokens: ${JSON.stringify(r2)}`);
      assert.ok(r2.input_tokens > 0);
      await settledAs(t2, r2);
    });
  });

  h.cleanRunTest(env);
});

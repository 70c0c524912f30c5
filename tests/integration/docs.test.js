'use strict';
// Issue 15, "every header, error code and record field the app can see is documented": the
// names are read from the code, so a new code, header, record field or outcome fails this
// test until docs/answers.md names it. Each check also proves it found what it looks for, so
// a change of the code's shape cannot make it pass by finding nothing.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');

const root = path.resolve(__dirname, '../..');
const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');
const page = read('docs/answers.md');

function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.[ch]$/.test(e.name)) out.push([p, read(p)]);
  }
  return out;
}
const src = sources('src');

function all(re, texts) {
  const found = new Set();
  for (const [, text] of texts) for (const m of text.matchAll(re)) found.add(m[1]);
  return [...found];
}

function undocumented(names) {
  return names.filter((n) => !page.includes('`' + n + '`'));
}

describe('docs/answers.md names what the app can see', () => {
  test('every error code tollgate answers with', () => {
    const codes = [
      // reject(r, 400, "code", ...), answer_error(r, 429, "code", ...), answer_refusal(...)
      ...all(/\b(?:reject|answer_error|answer_refusal)\(\s*r,\s*\d{3},\s*"([a-z_]+)"/g, src),
      // the status -> code tables: {413, "request_too_large"}, {..., 502, "upstream_unreachable", "..."}
      ...all(/\{\s*\d{3},\s*"([a-z_]+)"\s*\}/g, src),
      ...all(/\{\s*UPSTREAM_[A-Z_]+,\s*\d{3},\s*"([a-z_]+)"/g, src),
      // the fallback of the upstream failure table
      ...all(/code\s*=\s*"([a-z_]+)"/g, src),
    ];
    for (const must of ['budget_exceeded', 'rate_limit_exceeded', 'route_not_metered',
      'missing_tenant', 'request_too_large', 'upstream_unreachable', 'upstream_error'])
      assert.ok(codes.includes(must), `the scan no longer finds ${must}: fix the patterns`);
    assert.deepEqual(undocumented([...new Set(codes)]), [], 'codes missing from docs/answers.md');
  });

  test('every cap a limit\'s 429 names', () => {
    // the plan keys cap_key() in proxy.c returns
    const proxy = read('src/proxy/proxy.c');
    const body = proxy.slice(proxy.indexOf('static const char *cap_key('));
    const names = all(/"([a-z_]+)"/g, [['', body.slice(0, body.indexOf('\n}\n'))]]);
    for (const must of ['budget_monthly', 'budget_daily', 'hard_limit', 'rpm', 'tpm', 'included_tokens', 'included_requests'])
      assert.ok(names.includes(must), `the scan no longer finds the cap ${must}: fix the pattern`);
    assert.deepEqual(undocumented(names), [], 'caps missing from docs/answers.md');
  });

  test('every header tollgate adds to an answer', () => {
    const headers = all(/"((?:X-Tollgate-[A-Za-z-]+)|(?:x-ratelimit-[a-z-]+)|Retry-After|retry-after-ms|x-should-retry)"/g, src);
    for (const must of ['X-Tollgate-Request-Id', 'X-Tollgate-Budget-Remaining', 'x-ratelimit-reset-tokens'])
      assert.ok(headers.includes(must), `the scan no longer finds ${must}`);
    assert.deepEqual(undocumented(headers), [], 'headers missing from docs/answers.md');
  });

  test('every field of the usage record', () => {
    const record = src.filter(([p]) => p.startsWith(path.join('src', 'records')));
    const fields = all(/\\"([a-z_]+)\\":/g, record);
    for (const must of ['ts', 'tenant', 'cost_usd', 'outcome', 'ttfb_ms'])
      assert.ok(fields.includes(must), `the scan no longer finds the record field ${must}`);
    assert.deepEqual(undocumented(fields), [], 'record fields missing from docs/answers.md');
  });

  test('every outcome value', () => {
    const outcomes = all(/\[OUTCOME_[A-Z_]+\]\s*=\s*"([a-z_]+)"/g, src);
    assert.ok(outcomes.length >= 7, `found only ${outcomes.length} outcomes`);
    assert.deepEqual(undocumented(outcomes), [], 'outcomes missing from docs/answers.md');
  });

  test('README names every metric /metrics serves', () => {
    const readme = read('README.md');
    const metrics = all(/\bX\(\s*METRIC_[A-Z_]+,\s*"(tollgate_[a-z_]+)"/g, src);
    assert.ok(metrics.includes('tollgate_requests_total'), 'the scan no longer finds the metrics table');
    assert.deepEqual(metrics.filter((m) => !readme.includes('`' + m + '`')), [],
      'metrics missing from README.md, section Metrics');
  });

  test('README links the page', () => {
    assert.match(read('README.md'), /\]\(docs\/answers\.md\)/);
  });
});

'use strict';
// tests/deploy: what can be checked of docker/ without a Docker engine or a cluster.
// Parses every YAML file, then checks that the Dockerfile, compose.yaml, the Kubernetes
// manifests and docker/proxy.conf agree with each other, with the Makefile and with
// `tollgate -t`. No network; runs build/release/tollgate (or $TOLLGATE_BUILD/tollgate) -t.
// Run: node --test tests/deploy/   (after `cd tests && npm install`: needs the `yaml` package)
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const DOCKER = path.join(ROOT, 'docker');
const BUILD = process.env.TOLLGATE_BUILD || 'build/release';
const BIN = path.resolve(ROOT, BUILD, 'tollgate');

let YAML = null;
let yamlError = null;
try {
    YAML = require('yaml');
} catch (e) {
    yamlError = e;
}
function needYaml() {
    if (!YAML)
        assert.fail(`the npm package "yaml" is missing (${yamlError.code}): ` +
                    'add "yaml" to tests/package.json devDependencies and run `cd tests && npm install`');
}

const read = (p) => fs.readFileSync(path.join(ROOT, p), 'utf8');

// ---- small parsers ------------------------------------------------------------------------

// tollgate's INI: sections, key = value, ';'/'#' comment lines, ' ;' inline comments.
function parseIni(text) {
    const out = {};
    let sect = null;
    for (const raw of text.split('\n')) {
        const line = raw.replace(/\s;.*$/, '').trim();
        if (!line || line.startsWith(';') || line.startsWith('#'))
            continue;
        const m = /^\[(.+)\]$/.exec(line);
        if (m) {
            sect = m[1].trim();
            out[sect] = out[sect] || {};
            continue;
        }
        const eq = line.indexOf('=');
        if (eq < 0 || !sect)
            continue;
        out[sect][line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    return out;
}

function envRefs(ini) {
    const names = new Set();
    for (const sect of Object.values(ini))
        for (const v of Object.values(sect)) {
            const m = /^env:\s*(\S+)$/.exec(v);
            if (m)
                names.add(m[1]);
        }
    return [...names].sort();
}

const portOf = (hostport) => Number(/:(\d+)$/.exec(hostport)[1]);

// 500ms, 10s, 2m, 1h (tollgate); compose also writes 1m30s. Bare numbers: seconds.
function seconds(d) {
    if (typeof d === 'number')
        return d;
    const s = String(d).trim();
    if (/^\d+(\.\d+)?$/.test(s))
        return Number(s);
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
    let total = 0;
    let rest = s;
    const re = /^(\d+(?:\.\d+)?)(ms|s|m|h)/;
    while (rest) {
        const m = re.exec(rest);
        if (!m)
            throw new Error(`bad duration ${d}`);
        total += Number(m[1]) * unit[m[2]];
        rest = rest.slice(m[0].length);
    }
    return total;
}

// Dockerfile: instructions with continuations joined, comments dropped, grouped by stage.
function parseDockerfile(text) {
    const ins = [];
    let cur = '';
    for (const raw of text.split('\n')) {
        if (/^\s*#/.test(raw) && !cur)
            continue;
        if (/^\s*#/.test(raw))
            continue; // comment lines inside a continuation are skipped by Docker too
        const line = raw.replace(/\s+$/, '');
        if (line.endsWith('\\')) {
            cur += line.slice(0, -1) + ' ';
            continue;
        }
        cur += line;
        if (cur.trim()) {
            const m = /^\s*(\w+)\s+([\s\S]*)$/.exec(cur);
            ins.push({ op: m[1].toUpperCase(), args: m[2].trim() });
        }
        cur = '';
    }
    const stages = [];
    for (const i of ins) {
        if (i.op === 'FROM')
            stages.push({ from: i.args, ins: [] });
        else if (stages.length)
            stages[stages.length - 1].ins.push(i);
    }
    return { ins, stages };
}

// exec form ["a", "b"] or shell form "a b"
function words(args) {
    const a = args.trim();
    if (a.startsWith('['))
        return JSON.parse(a);
    return a.split(/\s+/);
}

function runCheck(confText, env) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-deploy-'));
    try {
        const file = path.join(dir, 'proxy.conf');
        fs.writeFileSync(file, confText);
        const r = spawnSync(BIN, ['-t', '-c', file], {
            cwd: ROOT,
            env: { PATH: process.env.PATH, ...env },
            encoding: 'utf8',
            timeout: 20000,
        });
        return { status: r.status, out: (r.stdout || '') + (r.stderr || '') };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

// ---- what every test uses ------------------------------------------------------------------

const yamlFiles = ['docker/compose.yaml',
                   ...fs.readdirSync(path.join(DOCKER, 'k8s'))
                       .filter((f) => /\.ya?ml$/.test(f))
                       .map((f) => `docker/k8s/${f}`)];

function docs() {
    needYaml();
    const all = [];
    for (const f of yamlFiles)
        for (const d of YAML.parseAllDocuments(read(f))) {
            if (d.errors.length)
                assert.fail(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
            const js = d.toJS();
            if (js !== null)
                all.push({ file: f, js });
        }
    return all;
}
const k8s = () => docs().filter((d) => d.file.startsWith('docker/k8s/')).map((d) => d.js);
const compose = () => docs().find((d) => d.file === 'docker/compose.yaml').js;
const kind = (k, name) => k8s().filter((o) => o.kind === k && (!name || o.metadata.name === name));

const dockerConfText = read('docker/proxy.conf');
const dockerConf = parseIni(dockerConfText);
const dockerfile = parseDockerfile(read('docker/Dockerfile'));
const finalStage = dockerfile.stages[dockerfile.stages.length - 1];

function deployment() {
    const deps = kind('Deployment');
    assert.equal(deps.length, 1, 'one Deployment in docker/k8s');
    return deps[0];
}
function tollgateContainer(dep) {
    const spec = dep.spec.template.spec;
    const all = [...(spec.initContainers || []), ...(spec.containers || [])];
    const c = all.filter((x) => x.name === 'tollgate');
    assert.equal(c.length, 1, 'one container named tollgate in the Deployment');
    return c[0];
}
function configMapConf() {
    const dep = deployment();
    const c = tollgateContainer(dep);
    const cfgPath = configPathOf(c.args || c.command || []);
    const mount = c.volumeMounts.find((m) => cfgPath.startsWith(m.mountPath.replace(/\/?$/, '/')));
    assert.ok(mount, `a volume mounted over ${cfgPath}`);
    const vol = dep.spec.template.spec.volumes.find((v) => v.name === mount.name);
    assert.ok(vol && vol.configMap, `${cfgPath} comes from a ConfigMap volume`);
    const key = mount.subPath || path.posix.relative(mount.mountPath, cfgPath);
    const cms = kind('ConfigMap', vol.configMap.name);
    assert.equal(cms.length, 1, `ConfigMap ${vol.configMap.name} is in docker/k8s`);
    const text = cms[0].data && cms[0].data[key];
    assert.ok(text, `ConfigMap ${vol.configMap.name} has the key ${key}`);
    return { text, ini: parseIni(text), mount, cfgPath };
}
function configPathOf(argv) {
    const i = argv.indexOf('-c');
    assert.ok(i >= 0 && argv[i + 1], `-c FILE in ${JSON.stringify(argv)}`);
    return argv[i + 1];
}
function secretValues() {
    const vals = {};
    for (const s of kind('Secret')) {
        vals[s.metadata.name] = { ...(s.stringData || {}) };
        for (const [k, v] of Object.entries(s.data || {}))
            vals[s.metadata.name][k] = Buffer.from(v, 'base64').toString();
    }
    return vals;
}
// the Dockerfile's COPY of conf/pricing.conf: where the image keeps the shipped prices
function pricingInImage() {
    const cp = finalStage.ins.filter((i) => i.op === 'COPY' && !/--from/.test(i.args))
        .map((i) => words(i.args)).find((w) => w[0] === 'conf/pricing.conf');
    assert.ok(cp, 'the runtime stage COPYs conf/pricing.conf');
    return cp[cp.length - 1];
}
function confForCheck(text, ini) {
    const pricing = ini.pricing && ini.pricing.file;
    assert.equal(pricing, pricingInImage(), '[pricing] file is where the Dockerfile puts it');
    // that one path, the image's, becomes the repo's file it was copied from
    return text.split('\n').map((l) => /^\s*file\s*=/.test(l) && l.includes(pricing)
        ? l.replace(pricing, path.join(ROOT, 'conf/pricing.conf')) : l).join('\n');
}
function needBinary() {
    if (!fs.existsSync(BIN))
        assert.fail(`${BIN} is missing: run make first`);
}

// [redis] url as the container sees it: env:TOLLGATE_REDIS_URL is set by compose (from
// REDIS_PASSWORD in .env) and by the k8s Secret; `password` stands in for ${REDIS_PASSWORD}.
function composeEnv(svc, password = 'test-password') {
    const out = {};
    for (const [k, v] of Object.entries(svc.environment || {}))
        out[k] = String(v).replace(/\$\{REDIS_PASSWORD[^}]*\}/g, password)
            .replace(/\$\{[A-Z_]+:-\}/g, '');
    return out;
}
function redisUrl() {
    const m = /^env:\s*(\S+)$/.exec(dockerConf.redis.url);
    return m ? composeEnv(compose().services.tollgate)[m[1]] : dockerConf.redis.url;
}

// ---- the checks -----------------------------------------------------------------------------

test('every YAML document in docker/ parses', () => {
    const all = docs();
    assert.ok(all.length >= 5, `found ${all.length} documents`);
    for (const d of all.filter((x) => x.file.startsWith('docker/k8s/')))
        assert.ok(d.js.apiVersion && d.js.kind && d.js.metadata && d.js.metadata.name,
                  `${d.file}: apiVersion, kind and metadata.name`);
});

test('docker/proxy.conf passes tollgate -t (in the container: json logs, ports, env, paths)', () => {
    needBinary();
    const s = dockerConf.server;
    assert.equal(s.listen, '0.0.0.0:8080');
    assert.equal(s.admin_listen, '0.0.0.0:9090');
    assert.equal(s.admin_token, 'env:TOLLGATE_ADMIN_TOKEN');
    assert.equal(s.log_format, 'json');
    assert.match(dockerConf.records.file, /^\/var\/lib\/tollgate\//);
    assert.match(dockerConf.redis.journal_dir, /^\/var\/lib\/tollgate\//);
    const env = {};
    for (const n of envRefs(dockerConf))
        env[n] = n === 'TOLLGATE_ADMIN_TOKEN' ? 'test-admin-token' : '';
    if (/^env:/.test(dockerConf.redis.url))
        env[dockerConf.redis.url.slice(4).trim()] = redisUrl();
    const r = runCheck(confForCheck(dockerConfText, dockerConf), env);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /: ok \(/);
});

test('the ConfigMap proxy.conf is docker/proxy.conf with listen on 127.0.0.1, and passes -t', () => {
    needBinary();
    const { text, ini } = configMapConf();
    assert.equal(ini.server.listen, `127.0.0.1:${portOf(dockerConf.server.listen)}`);
    const strip = (t) => t.split('\n').filter((l) => !/^listen\s*=/.test(l)).join('\n').trimEnd();
    assert.equal(strip(text), strip(dockerConfText), 'only `listen` differs from docker/proxy.conf');
    const sec = secretValues();
    const env = {};
    for (const e of tollgateContainer(deployment()).env || [])
        if (e.valueFrom && e.valueFrom.secretKeyRef)
            env[e.name] = sec[e.valueFrom.secretKeyRef.name][e.valueFrom.secretKeyRef.key];
        else if ('value' in e)
            env[e.name] = e.value;
    const r = runCheck(confForCheck(text, ini), env);
    assert.equal(r.status, 0, r.out);
});

test('Deployment: ports, probes, grace period, mounts and env agree with proxy.conf', () => {
    const dep = deployment();
    const spec = dep.spec.template.spec;
    const c = tollgateContainer(dep);
    const { ini, mount } = configMapConf();
    const api = portOf(ini.server.listen);
    const admin = portOf(ini.server.admin_listen);
    assert.equal(ini.server.admin_listen.split(':')[0], '0.0.0.0', 'the kubelet probes the pod IP');

    const ports = Object.fromEntries((c.ports || []).map((p) => [p.name || String(p.containerPort),
                                                                p.containerPort]));
    assert.deepEqual(Object.values(ports).sort(), [api, admin].sort(), 'containerPorts = listen ports');
    const portNum = (p) => (typeof p === 'number' ? p : ports[p]);
    const probe = (name, want) => {
        const p = c[name];
        assert.ok(p && p.httpGet, `${name} is an httpGet probe`);
        assert.equal(p.httpGet.path, want, `${name} path`);
        assert.equal(portNum(p.httpGet.port), admin, `${name} on the admin port`);
    };
    probe('livenessProbe', '/healthz');
    probe('readinessProbe', '/readyz');
    if (c.startupProbe)
        probe('startupProbe', '/healthz');

    const drain = seconds(ini.server.drain_timeout || '30s');
    assert.ok(spec.terminationGracePeriodSeconds > drain,
              `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} > drain_timeout ${drain}s`);

    // a native sidecar (initContainer with restartPolicy Always) outlives the app on shutdown
    if ((spec.initContainers || []).includes(c))
        assert.equal(c.restartPolicy, 'Always', 'tollgate in initContainers is a native sidecar');

    assert.ok(c.resources && c.resources.requests && c.resources.requests.cpu &&
              c.resources.requests.memory, 'tollgate has cpu and memory requests');
    for (const x of spec.containers)
        assert.ok(x.resources && x.resources.requests, `${x.name} has resource requests`);

    assert.ok(!mount.subPath, 'the ConfigMap is mounted as a directory (subPath mounts never update)');
    assert.equal(configPathOf(c.args || []), '/etc/tollgate/proxy.conf');
    const recDir = path.posix.dirname(ini.records.file);
    const rec = c.volumeMounts.find((m) => m.mountPath === recDir);
    assert.ok(rec, `a volume at ${recDir} for the records`);
    const jour = c.volumeMounts.find((m) => m.mountPath === ini.redis.journal_dir);
    assert.ok(jour, `a volume at ${ini.redis.journal_dir} for the journal`);
    assert.notEqual(jour.name, rec.name, 'journal and records on separate volumes');
    // each volume has a bound, and the records' fits the rotation
    const vol = (name) => spec.volumes.find((v) => v.name === name);
    const bytes = (q) => {
        const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(q));
        assert.ok(m, `a size: ${q}`);
        return Number(m[1]) * { undefined: 1, Ki: 1024, Mi: 1 << 20, Gi: 1 << 30 }[m[2]];
    };
    for (const v of [vol(rec.name), vol(jour.name)])
        assert.ok(v.persistentVolumeClaim || (v.emptyDir && v.emptyDir.sizeLimit), `${v.name}: a size limit`);
    const rot = /^(\d+)([kmg])$/.exec(ini.records.rotate || '');
    assert.ok(rot, '[records] rotate = SIZE: the records volume cannot grow without bound');
    const rotBytes = Number(rot[1]) * { k: 1024, m: 1 << 20, g: 1 << 30 }[rot[2]];
    const keep = Number(ini.records.keep || 7);
    const limit = vol(rec.name).emptyDir ? bytes(vol(rec.name).emptyDir.sizeLimit) : Infinity;
    assert.ok(rotBytes * (keep + 1) < limit,
              `records volume ${limit} B holds rotate x (keep + 1) = ${rotBytes * (keep + 1)} B`);
    // non-root on the container, not the pod: an app image running as root may share the pod
    assert.ok(!(spec.securityContext || {}).runAsNonRoot, 'no pod-level runAsNonRoot');
    const sc = c.securityContext || {};
    assert.equal(sc.runAsNonRoot, true, 'tollgate: runAsNonRoot');
    assert.ok(sc.runAsUser && sc.runAsUser !== 0, 'tollgate runs as non-root');
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities && sc.capabilities.drop, ['ALL']);

    // the app reaches the sidecar on its listen port
    const app = spec.containers.find((x) => x.name !== 'tollgate');
    const base = (app.env || []).find((e) => e.name === 'OPENAI_BASE_URL');
    assert.ok(base, 'the app container sets OPENAI_BASE_URL');
    assert.equal(base.value, `http://127.0.0.1:${api}/v1`);
});

test('Secret: every env:NAME of the ConfigMap is set, and every secretKeyRef exists', () => {
    const { ini } = configMapConf();
    const c = tollgateContainer(deployment());
    const env = new Map((c.env || []).map((e) => [e.name, e]));
    const sec = secretValues();
    for (const name of envRefs(ini))
        assert.ok(env.has(name) || (c.envFrom || []).length, `the tollgate container sets ${name}`);
    for (const e of env.values()) {
        const ref = e.valueFrom && e.valueFrom.secretKeyRef;
        if (!ref)
            continue;
        assert.ok(sec[ref.name], `Secret ${ref.name} is in docker/k8s`);
        assert.ok(ref.key in sec[ref.name], `Secret ${ref.name} has the key ${ref.key}`);
    }
    for (const f of c.envFrom || [])
        if (f.secretRef)
            assert.ok(sec[f.secretRef.name], `Secret ${f.secretRef.name} is in docker/k8s`);
    assert.ok(env.has('TOLLGATE_ADMIN_TOKEN'), 'the admin token comes from the Secret');
});

test('Redis: the k8s Service and the compose service are what [redis] url names', () => {
    const url = new URL(redisUrl());
    assert.equal(url.protocol, 'redis:');
    const host = url.hostname;
    const port = Number(url.port || 6379);
    assert.ok(url.password, 'tollgate authenticates to Redis');
    const svc = kind('Service', host);
    assert.equal(svc.length, 1, `a k8s Service named ${host}`);
    assert.ok(svc[0].spec.ports.some((p) => p.port === port), `Service ${host} on ${port}`);
    const cs = compose().services;
    assert.ok(cs[host], `a compose service named ${host}`);
    const persist = (argv) => argv.join(' ').includes('--appendonly yes');
    assert.ok(persist(words(Array.isArray(cs[host].command) ? JSON.stringify(cs[host].command)
                                                              : cs[host].command)),
              'compose Redis runs with --appendonly yes');
    assert.ok((cs[host].volumes || []).some((v) => String(v).endsWith(':/data')),
              'compose Redis keeps /data on a volume');
    // a bound and a password on both: noeviction without maxmemory grows until killed
    const argv = Array.isArray(cs[host].command) ? cs[host].command : words(cs[host].command);
    const arg = (a, flag) => a[a.indexOf(flag) + 1];
    assert.ok(argv.includes('--maxmemory') && /^\d+[kmg]b?$/i.test(arg(argv, '--maxmemory')), 'compose Redis: --maxmemory');
    assert.match(arg(argv, '--requirepass') || '', /^\$\{REDIS_PASSWORD[:?}]/, 'compose Redis: --requirepass from the environment');
    const sts = kind('StatefulSet', host);
    assert.equal(sts.length, 1);
    const kargs = sts[0].spec.template.spec.containers[0].args;
    assert.ok(persist(kargs), 'k8s Redis: --appendonly yes');
    assert.ok(kargs.includes('--maxmemory'), 'k8s Redis: --maxmemory');
    assert.equal(arg(kargs, '--requirepass'), '$(REDIS_PASSWORD)', 'k8s Redis: --requirepass from the Secret');
    const kenv = sts[0].spec.template.spec.containers[0].env || [];
    assert.ok(kenv.some((e) => e.name === 'REDIS_PASSWORD' && e.valueFrom && e.valueFrom.secretKeyRef));
    const sec = secretValues();
    for (const e of tollgateContainer(deployment()).env || [])
        if (e.name === dockerConf.redis.url.replace(/^env:\s*/, '') && e.valueFrom) {
            const ref = e.valueFrom.secretKeyRef;
            const ku = new URL(sec[ref.name][ref.key]);
            const pw = kenv.find((x) => x.name === 'REDIS_PASSWORD').valueFrom.secretKeyRef;
            assert.equal(decodeURIComponent(ku.password), sec[pw.name][pw.key], 'the k8s URL carries Redis\'s password');
            assert.equal(ku.hostname, host);
        }
    assert.ok(sts[0].spec.volumeClaimTemplates, 'k8s Redis data on a PersistentVolumeClaim');
});

test('compose.yaml: ports, config mount, records volume, env and stop grace agree', () => {
    const svc = compose().services.tollgate;
    assert.ok(svc, 'a service named tollgate');
    assert.equal(path.resolve(DOCKER, svc.build.context, svc.build.dockerfile),
                 path.join(DOCKER, 'Dockerfile'));
    const target = (p) => (typeof p === 'object' ? Number(p.target)
        : Number(String(p).split(':').pop().split('/')[0]));
    assert.deepEqual((svc.ports || []).map(target).sort(),
                     [portOf(dockerConf.server.listen), portOf(dockerConf.server.admin_listen)].sort(),
                     'published container ports = listen ports');
    const cfgPath = configPathOf(words(finalStage.ins.filter((i) => i.op === 'CMD').pop().args));
    const vols = (svc.volumes || []).map((v) => String(v).split(':'));
    const cfgVol = vols.find((v) => v[1] === cfgPath);
    assert.ok(cfgVol, `compose mounts a file at ${cfgPath}`);
    assert.equal(path.resolve(DOCKER, cfgVol[0]), path.join(DOCKER, 'proxy.conf'));
    assert.ok(vols.some((v) => v[1] === path.posix.dirname(dockerConf.records.file)),
              'compose keeps the records directory on a volume');
    const jv = vols.find((v) => v[1] === dockerConf.redis.journal_dir);
    assert.ok(jv && !jv[0].startsWith('.') && !jv[0].startsWith('/') && compose().volumes && jv[0] in compose().volumes,
              'compose keeps the journal on a named volume of its own (it outlives the container)');
    // the hardening of the k8s example, on every service
    for (const [name, x] of Object.entries(compose().services)) {
        assert.equal(x.read_only, true, `${name}: read_only`);
        assert.deepEqual(x.cap_drop, ['ALL'], `${name}: cap_drop ALL`);
        assert.ok((x.security_opt || []).some((o) => /^no-new-privileges(:true)?$/.test(o)), `${name}: no-new-privileges`);
    }
    const env = svc.environment || {};
    for (const name of envRefs(dockerConf))
        assert.ok(name in env, `compose sets ${name}`);
    const drain = seconds(dockerConf.server.drain_timeout || '30s');
    assert.ok(svc.stop_grace_period && seconds(svc.stop_grace_period) > drain,
              `stop_grace_period > drain_timeout ${drain}s`);
});

test('Dockerfile: bookworm stages, make targets that exist, non-root USER, HEALTHCHECK, COPY paths', () => {
    const st = dockerfile.stages;
    assert.ok(st.length >= 2, 'multi-stage');
    for (const s of st)
        assert.match(s.from, /^debian:bookworm(-slim)?(\s|@|$)/, `FROM ${s.from} is Debian 12`);
    assert.match(finalStage.from, /^debian:bookworm-slim\b/, 'runtime on bookworm-slim');

    // every make in a RUN names targets that `make -pnq` knows; never the tests
    // -q: exit 1 when something is out of date; -n: run nothing; -p: print the database
    const mk = spawnSync('make', ['-pnq', '-C', ROOT], { encoding: 'utf8', maxBuffer: 64 << 20,
                                                        stdio: ['ignore', 'pipe', 'ignore'] });
    assert.ok(mk.status === 0 || mk.status === 1, `make -pnq exited ${mk.status}`);
    const db = mk.stdout;
    const targets = new Set();
    let notTarget = false;
    for (const line of db.split('\n')) {
        if (line.startsWith('# Not a target'))
            notTarget = true;
        const m = /^([^\s#:=][^:=]*):(?!=)/.exec(line);
        if (m && !notTarget)
            m[1].trim().split(/\s+/).forEach((t) => targets.add(t));
        if (line === '')
            notTarget = false;
    }
    let makes = 0;
    for (const run of dockerfile.ins.filter((i) => i.op === 'RUN'))
        for (const cmd of run.args.split(/&&|;|\|\|/)) {
            const w = cmd.trim().split(/\s+/);
            if (w[0] !== 'make')
                continue;
            makes++;
            const named = [];
            for (let i = 1; i < w.length; i++) {
                if (/^-[oWCfI]$/.test(w[i])) {
                    if (w[i] === '-o')
                        assert.ok(targets.has(w[i + 1]), `make -o ${w[i + 1]}: a target`);
                    i++;
                } else if (!w[i].startsWith('-') && !w[i].includes('=')) {
                    named.push(w[i]);
                }
            }
            assert.ok(named.length, `${cmd.trim()}: names its target (the default builds the tests)`);
            for (const t of named) {
                assert.ok(targets.has(t), `${cmd.trim()}: ${t} is a Makefile target`);
                assert.ok(!/^(all|test|asan|valgrind|bench|unit)$/.test(t) && !t.includes('/unit/'),
                          `${t}: the release binary only, no tests`);
            }
        }
    assert.ok(makes >= 1, 'the build stage runs make');
    assert.ok(st[0].ins.some((i) => i.op === 'RUN' && /\bmake\b/.test(i.args)), 'make in the build stage');

    const users = dockerfile.ins.filter((i) => i.op === 'USER');
    assert.ok(users.length, 'a USER instruction');
    const user = users[users.length - 1].args.split(':')[0];
    assert.ok(!/^(root|0)$/.test(user), `USER ${user} is not root`);
    assert.ok(finalStage.ins.includes(users[users.length - 1]), 'USER in the runtime stage');

    const hc = finalStage.ins.find((i) => i.op === 'HEALTHCHECK');
    assert.ok(hc, 'HEALTHCHECK');
    const url = /(http:\/\/[^\s"']+)/.exec(hc.args);
    assert.ok(url, 'HEALTHCHECK hits an http URL');
    const u = new URL(url[1]);
    assert.equal(u.pathname, '/healthz');
    assert.equal(u.hostname, '127.0.0.1');
    assert.equal(Number(u.port), portOf(dockerConf.server.admin_listen), 'on the admin port');
    // the binary probes itself: no curl in the image
    const hcArgv = words(hc.args.replace(/^.*?\bCMD\s+/, ''));
    assert.equal(hcArgv[0], '/usr/local/bin/tollgate', 'HEALTHCHECK runs tollgate itself');
    assert.equal(hcArgv[1], 'health', 'tollgate health');
    assert.ok(!/\bcurl\b/.test(finalStage.ins.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ')),
              'no curl in the runtime stage');
    // BuildKit would reach a registry for the dockerfile frontend: nothing needs it
    assert.ok(!/^#\s*syntax\s*=/m.test(read('docker/Dockerfile')), 'no # syntax= line');
    // the records and the journal each on a declared volume
    const volumes = finalStage.ins.filter((i) => i.op === 'VOLUME').flatMap((i) => words(i.args));
    for (const d of [path.posix.dirname(dockerConf.records.file), dockerConf.redis.journal_dir])
        assert.ok(volumes.includes(d), `VOLUME ${d}`);

    const expose = finalStage.ins.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/))
        .map((p) => Number(p.split('/')[0]));
    for (const p of [portOf(dockerConf.server.listen), portOf(dockerConf.server.admin_listen)])
        assert.ok(expose.includes(p), `EXPOSE ${p}`);

    // COPY sources (not --from) exist and the dockerignore does not drop them
    const ignore = read('docker/Dockerfile.dockerignore').split('\n').map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#') && !l.startsWith('!'));
    for (const c of dockerfile.ins.filter((i) => i.op === 'COPY' || i.op === 'ADD')) {
        const w = words(c.args).filter((x) => !x.startsWith('--'));
        if (/--from/.test(c.args))
            continue;
        for (const src of w.slice(0, -1)) {
            assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY ${src}: exists in the repo`);
            const top = src.replace(/\/$/, '');
            assert.ok(!ignore.some((p) => !/[*?]/.test(p) && (top === p || top.startsWith(p + '/'))),
                      `COPY ${src}: not excluded by Dockerfile.dockerignore`);
        }
    }

    // runs as PID 1 in exec form, with the config the compose and k8s mounts provide
    const ep = finalStage.ins.filter((i) => i.op === 'ENTRYPOINT').pop();
    assert.ok(ep && ep.args.trim().startsWith('['), 'ENTRYPOINT in exec form (tollgate is PID 1)');
    assert.equal(words(ep.args)[0], '/usr/local/bin/tollgate');
    assert.ok(finalStage.ins.some((i) => i.op === 'COPY' && /--from=\S+\s+\S*build\/release\/tollgate\s/
        .test(i.args + ' ')), 'the runtime copies build/release/tollgate from the build stage');
});

test('Dockerfile: the runtime packages provide every library the binary links (Debian 12 hosts)', (t) => {
    const osr = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
    if (!/VERSION_CODENAME=bookworm/.test(osr) || spawnSync('dpkg', ['--version']).status !== 0) {
        t.skip('not a Debian 12 host: package names cannot be checked here');
        return;
    }
    needBinary();
    const run = finalStage.ins.find((i) => i.op === 'RUN' && /apt-get install/.test(i.args));
    assert.ok(run, 'the runtime stage apt-get installs its libraries');
    const pkgs = new Set(run.args.split('&&').find((s) => /apt-get install/.test(s))
        .split(/\s+/).filter((w) => w && !w.startsWith('-') && !/^(apt-get|install)$/.test(w)));
    // the binary's own NEEDED entries (their dependencies come with their packages)
    const needed = [...execFileSync('readelf', ['-d', BIN], { encoding: 'utf8' })
        .matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    assert.ok(needed.length, 'readelf lists the NEEDED libraries');
    const ldd = execFileSync('ldd', [BIN], { encoding: 'utf8' });
    for (const soname of needed) {
        const m = new RegExp(`^\\s*${soname.replace(/[.+]/g, '\\$&')}\\s+=>\\s+(\\/\\S+)`, 'm').exec(ldd);
        assert.ok(m, `${soname} resolves (ldd)`);
        const lib = m[1];
        if (/\/(libc|libm|libpthread|libdl|ld-linux[^/]*)\.so/.test(lib) || /\/libc\.so/.test(lib))
            continue; // libc6: in every Debian image
        if (/\/lib(asan|ubsan|lsan|tsan)\.so/.test(lib))
            continue; // sanitizer runtimes: only in `make asan` builds, never in the image
        const real = fs.realpathSync(lib);
        let owner = '';
        for (const p of [lib, real, lib.replace(/^\/lib\//, '/usr/lib/'), real.replace(/^\/lib\//, '/usr/lib/')]) {
            const r = spawnSync('dpkg', ['-S', p], { encoding: 'utf8' });
            if (r.status === 0) {
                owner = r.stdout.split(':')[0].trim();
                break;
            }
        }
        assert.ok(owner, `${lib}: owned by a Debian package`);
        if (owner === 'libc6')
            continue;
        assert.ok(pkgs.has(owner), `${path.basename(lib)} comes from ${owner}, not installed in the runtime stage`);
    }
    assert.ok(pkgs.has('ca-certificates'), 'ca-certificates in the runtime stage');
    assert.ok(!pkgs.has('curl'), 'no curl in the runtime stage (tollgate health is the probe)');
});

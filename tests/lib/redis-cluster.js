'use strict';
// A Redis Cluster the test starts and owns: n primaries and as many replicas
// (redis-server --cluster-enabled yes on free 127.0.0.1 ports, each with its bus port
// port + 10000 free too), joined by `redis-cli --cluster create --cluster-replicas 1`.
// Each node is a RedisCtl (kill, stop, cmd). Helpers read a key on whichever node serves it.
//
//   const cl = await RedisCluster.start(3);   // 3 primaries + 3 replicas
//   cl.url                                     // redis-cluster://127.0.0.1:p1,127.0.0.1:p2
//   await cl.counters(tenant)                  // the month hash, from its slot's primary
//   await cl.stop();

const { execFile } = require('node:child_process');
const net = require('node:net');
const { RedisCtl } = require('./redis-ctl');
const { findBinary } = require('./redis');
const { ms, waitFor, freePort, periods } = require('./util');

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// A free port whose cluster bus port (+10000) is free too.
async function clusterPort(taken) {
  for (let i = 0; i < 200; i++) {
    const p = await freePort();
    if (p + 10000 > 65535 || taken.has(p) || taken.has(p + 10000)) continue;
    if (await portFree(p + 10000)) { taken.add(p); taken.add(p + 10000); return p; }
  }
  throw new Error('no free port pair for a cluster node');
}

function cli(args, timeout = ms(30000)) {
  return new Promise((resolve, reject) => {
    execFile(findBinary('redis-cli'), args.map(String), { timeout }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`redis-cli ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`));
      resolve(stdout);
    });
  });
}

class RedisCluster {
  constructor(nodes) {
    this.nodes = nodes; // RedisCtl, the first half primaries at creation
    this.url = `redis-cluster://${nodes.slice(0, 2).map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  static async start(primaries = 3, { nodeTimeout = 1000, extra = [] } = {}) {
    const taken = new Set();
    const nodes = [];
    try {
      for (let i = 0; i < primaries * 2; i++) {
        const port = await clusterPort(taken);
        const n = new RedisCtl(port, { extra: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', String(nodeTimeout), '--appendonly', 'no',
          // a replica may take over however long its primary was away (a test kills one soon)
          '--cluster-replica-validity-factor', '0', ...extra] });
        nodes.push(n);
        await n.start();
      }
      await cli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas', '1', '--cluster-yes']);
      const cl = new RedisCluster(nodes);
      await cl.waitHealthy();
      return cl;
    } catch (e) {
      for (const n of nodes) await n.stop().catch(() => {});
      throw e;
    }
  }

  // Every live node says cluster_state:ok and all 16384 slots are served, and every live
  // replica is in sync with its primary.
  async waitHealthy(timeout = ms(30000)) {
    await waitFor(async () => {
      for (const n of this.nodes) {
        if (!n.running) continue;
        const info = (await n.cmd('CLUSTER', 'INFO')).join('\n');
        if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) return null;
        const repl = (await n.cmd('INFO', 'replication')).join('\n');
        if (/role:slave/.test(repl) && !/master_link_status:up/.test(repl)) return null;
      }
      return true;
    }, { timeout, interval: 100, what: 'cluster state ok' });
  }

  // The live node that is the primary of key's slot now (from CLUSTER NODES).
  async primaryOf(key) {
    const live = this.nodes.filter((n) => n.running);
    const slot = Number((await live[0].cmd('CLUSTER', 'KEYSLOT', key))[0]);
    for (const line of await live[0].cmd('CLUSTER', 'NODES')) {
      const f = line.split(' ');
      if (!/master/.test(f[2]) || /fail/.test(f[2])) continue;
      const port = Number(f[1].split('@')[0].split(':').pop());
      for (const r of f.slice(8)) {
        if (r.startsWith('[')) continue; // a migration in progress
        const [a, b] = r.split('-').map(Number);
        if (slot >= a && slot <= (Number.isNaN(b) || b === undefined ? a : b)) return this.nodes.find((n) => n.port === port);
      }
    }
    return null;
  }

  // Any command for a key, run on the primary that serves it (redis-cli -c follows MOVED).
  async cmd(...args) {
    const live = this.nodes.find((n) => n.running);
    const out = await cli(['-c', '-h', '127.0.0.1', '-p', live.port, '--no-auth-warning', ...args], ms(5000));
    const lines = out.split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }

  async hgetall(key) {
    const lines = await this.cmd('HGETALL', key);
    const out = {};
    for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = Number(lines[i + 1]);
    return out;
  }

  counters(tenant, prefix = 'tollgate:') {
    return this.hgetall(`${prefix}{${tenant}}:m:${periods().month}`);
  }

  // Keys in the whole cluster (DBSIZE summed over the primaries).
  async dbsize() {
    let sum = 0;
    for (const n of this.nodes) {
      if (!n.running || (await n.cmd('ROLE'))[0] !== 'master') continue;
      sum += Number((await n.cmd('DBSIZE'))[0]);
    }
    return sum;
  }

  async stop() {
    for (const n of this.nodes) await n.stop().catch(() => {});
  }
}

module.exports = { RedisCluster };

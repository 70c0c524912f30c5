'use strict';
// loopback.js: `node --require` this before the Portkey gateway (bench/run.sh). The gateway
// listens on every interface; a benchmark server here must only be reachable on 127.0.0.1, so
// every listen() with a port is bound to loopback whatever host the gateway asked for.
const net = require('node:net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function loopbackListen(...args) {
  const cb = args.find((a) => typeof a === 'function');
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    return listen.call(this, { port: Number(args[0]), host: '127.0.0.1' }, cb);
  }
  if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined) {
    return listen.call(this, { ...args[0], host: '127.0.0.1' }, cb);
  }
  return listen.apply(this, args);
};

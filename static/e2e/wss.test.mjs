// WSS with Node's `ws` as a strict, well-behaved peer: a noom server with
// -tls-self-signed on a free port, its certificate pinned by the SHA-256
// fingerprint it logs, two clients chatting through a room, and old TLS
// versions refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const BIN = process.env.NOOM_BIN ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/noom');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// startTLS runs the server and resolves once it logs its fingerprint and
// listens.
async function startTLS() {
  const port = await freePort();
  // The admin listener on a free port and the store in memory, as in
  // harness.mjs: 9090 may be taken, and ./noom-data is shared.
  const args = ['-addr', `127.0.0.1:${port}`, '-admin-addr', '127.0.0.1:0', '-data', '', '-tls-self-signed'];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const fingerprint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no fingerprint in:\n${log}`)), 10_000);
    proc.stderr.on('data', (b) => {
      log += b;
      const m = /sha256=([0-9A-F:]{95})/.exec(log);
      if (m && log.includes('msg=listening')) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => reject(new Error(`exited ${code}:\n${log}`)));
  });
  return { port, fingerprint, stop: () => proc.kill('SIGTERM') };
}

// open connects with `ws` and checks the certificate is the one logged.
function open(srv, nick) {
  const ws = new WebSocket(`wss://127.0.0.1:${srv.port}/ws?nick=${nick}`, {
    rejectUnauthorized: false, // self-signed: pinned below instead
    origin: `https://127.0.0.1:${srv.port}`,
  });
  const inbox = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false);
    const m = JSON.parse(data.toString());
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m);
    else inbox.push(m);
  });
  ws.next = (type) => {
    const i = inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
    return new Promise((resolve) => waiters.push({ type, resolve }));
  };
  ws.ready = new Promise((resolve, reject) => {
    ws.once('open', () => {
      const cert = ws._socket.getPeerCertificate();
      if (cert.fingerprint256 !== srv.fingerprint) reject(new Error(`certificate ${cert.fingerprint256}`));
      else resolve(ws._socket);
    });
    ws.once('error', reject);
  });
  return ws;
}

test('chat over WSS with ws', async () => {
  const srv = await startTLS();
  try {
    const a = open(srv, 'ann');
    const b = open(srv, 'bob');
    const sock = await a.ready;
    await b.ready;
    assert.equal(sock.getProtocol(), 'TLSv1.3');
    assert.equal(sock.alpnProtocol, false); // ws offers no ALPN
    const hello = await a.next('hello');
    assert.equal(hello.nick, 'ann');
    await b.next('hello');
    a.send(JSON.stringify({ type: 'join', room: 'r' }));
    await a.next('joined');
    b.send(JSON.stringify({ type: 'join', room: 'r' }));
    await b.next('joined');
    a.send(JSON.stringify({ type: 'say', room: 'r', text: 'héllo over tls' }));
    for (const ws of [a, b]) {
      const m = await ws.next('msg');
      assert.equal(m.text, 'héllo over tls');
      assert.equal(m.nick, 'ann');
    }
    const closed = new Promise((resolve) => a.once('close', (code) => resolve(code)));
    a.close(1000);
    assert.equal(await closed, 1000);
    b.terminate();
  } finally {
    srv.stop();
  }
});

test('TLS 1.1 and an http origin are refused', async () => {
  const srv = await startTLS();
  try {
    await assert.rejects(new Promise((resolve, reject) => {
      const s = tls.connect({
        host: '127.0.0.1', port: srv.port, rejectUnauthorized: false,
        minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0',
      }, () => { s.end(); resolve(); });
      s.once('error', reject);
    }));
    const ws = new WebSocket(`wss://127.0.0.1:${srv.port}/ws`, { rejectUnauthorized: false, origin: `http://127.0.0.1:${srv.port}` });
    const status = await new Promise((resolve) => ws.once('unexpected-response', (_, res) => resolve(res.statusCode)));
    assert.equal(status, 403);
  } finally {
    srv.stop();
  }
});

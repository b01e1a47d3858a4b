// What every browser test needs: a noom server of its own on a free port,
// Debian's Chromium, and pages driven the way a person would, through the
// accessible names of the controls.

import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/** TIMEOUT bounds every wait in the tests, in milliseconds. */
export const TIMEOUT = 15_000;

/** BIN is the server binary: $NOOM_BIN, or the one `make build` writes. */
const BIN = process.env.NOOM_BIN ?? path.resolve(here, '../../bin/noom');

/**
 * TLS runs every server with -tls-self-signed and the pages over https:
 * `NOOM_TLS=1 npm test`. The certificate is made at start, so nothing can
 * verify it: node's own requests (the /healthz poll) skip verification, and
 * so do the browser contexts.
 */
export const TLS = process.env.NOOM_TLS === '1';
if (TLS) process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/** freePort asks the kernel for an unused loopback port, then releases it for the server. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Server is one noom process. Its stderr goes to logs/NAME.log beside the
 * tests, the place to look when a test fails.
 */
export class Server {
  #proc = null;
  #exited = null;

  constructor(name, port, args) {
    this.name = name;
    this.port = port;
    this.args = args;
    this.url = `${TLS ? 'https' : 'http'}://127.0.0.1:${port}/`;
    mkdirSync(path.join(here, 'logs'), { recursive: true });
    this.logPath = path.join(here, 'logs', `${name}.log`);
    this.log = createWriteStream(this.logPath, { flags: 'w' });
  }

  /**
   * start runs a server on a free port and waits until /healthz answers 200.
   * args are extra flags, such as ['-call-limit', '1'].
   */
  static async start(name, args = []) {
    const server = new Server(name, await freePort(), args);
    await server.restart();
    return server;
  }

  /** restart starts the process again on the same port, as after a crash or a deploy. */
  async restart() {
    if (this.#proc) throw new Error('server already running');
    const tlsArgs = TLS ? ['-tls-self-signed'] : [];
    // Every server gets an admin listener on a free port: the default,
    // 127.0.0.1:9090, would be shared by the servers a test runs at once
    // (and by one already running on this machine). And its store in memory
    // (-data ""): the default, ./noom-data, would be one directory for all
    // of them, locked by the first, and outlive the run. A restart then
    // starts the rooms afresh, under new epochs. this.args come last so that
    // a test can still choose its own (-data DIR for a store on disk).
    // Its SFU's media on a free loopback port, for the same reason.
    const args = ['-addr', `127.0.0.1:${this.port}`, '-admin-addr', '127.0.0.1:0', '-rtc-udp', '127.0.0.1:0', '-data', '', ...tlsArgs, ...this.args];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#proc = proc;
    proc.stdout.pipe(this.log, { end: false });
    proc.stderr.pipe(this.log, { end: false });
    this.#exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
      proc.once('error', (err) => resolve({ code: null, signal: null, err }));
    });
    const deadline = Date.now() + TIMEOUT;
    let last = '';
    while (Date.now() < deadline) {
      const early = await Promise.race([this.#exited, delay(50).then(() => null)]);
      if (early) {
        this.#proc = null;
        throw new Error(`${BIN} exited before it was healthy (${JSON.stringify(early)}); see ${this.logPath}`);
      }
      try {
        const res = await fetch(new URL('healthz', this.url), { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.cause?.code ?? err.message;
      }
    }
    await this.stop();
    throw new Error(`${BIN} not healthy within ${TIMEOUT} ms (last: ${last}); see ${this.logPath}`);
  }

  /** stop sends SIGTERM (a graceful shutdown: clients get close 1001) and waits for the exit. */
  async stop() {
    const proc = this.#proc;
    if (!proc) return;
    this.#proc = null;
    proc.kill('SIGTERM');
    const done = await Promise.race([this.#exited, delay(TIMEOUT).then(() => null)]);
    if (!done) {
      proc.kill('SIGKILL');
      await this.#exited;
      throw new Error(`server did not exit within ${TIMEOUT} ms of SIGTERM; see ${this.logPath}`);
    }
  }
}

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * launch starts Debian's Chromium headless, with fake camera, microphone and
 * permission prompts. mDNS hiding of local addresses is off so that ICE host
 * candidates are plain addresses the two pages on this machine can reach.
 * extra are more command-line flags, such as a file for the fake microphone.
 */
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    timeout: TIMEOUT,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Two fake cameras, so that switching camera can be tested.
      '--use-fake-device-for-media-stream=device-count=2',
      '--use-fake-ui-for-media-stream',
      '--auto-select-desktop-capture-source=Entire screen',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      ...extra,
    ],
  });
}

/**
 * suite gives a test file a noom server (named name, for its log) and a
 * browser: both start before the file's first test and stop after its
 * last; read them as env.server and env.browser inside the tests.
 */
export function suite(name) {
  const env = { server: undefined, browser: undefined };
  before(async () => {
    env.server = await Server.start(name);
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/**
 * openPage opens the chat page in a fresh browser context (its own storage,
 * like another person's browser), waits for "online" and sets the nickname.
 * Page errors and console errors are collected in page.problems. setup, if
 * given, runs before the page loads (to route its WebSocket, say).
 */
export async function openPage(browser, server, nick, setup) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: TLS });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console: ${msg.text()}`);
  });
  await setup?.(page);
  await page.goto(server.url);
  await waitStatus(page, 'online');
  if (nick !== undefined) await setNick(page, nick);
  return page;
}

/** waitStatus waits until the connection indicator reads text exactly. */
export async function waitStatus(page, text, timeout = TIMEOUT) {
  await page
    .getByRole('status', { name: 'Connection' })
    .filter({ hasText: new RegExp(`^\\s*${text}\\s*$`) })
    .waitFor({ timeout });
}

/** setNick types a nickname and presses Enter, then waits until the server has accepted it. */
export async function setNick(page, nick) {
  const field = page.getByLabel('Nickname', { exact: true });
  await field.fill(nick);
  await field.press('Enter');
  // The page stores the nickname only when the server confirms it.
  await page.waitForFunction((n) => localStorage.getItem('noom.nick') === n, nick, { timeout: TIMEOUT });
}

/** joinRoom joins through the Room field and the Join button, and waits until the room's log is there. */
export async function joinRoom(page, room) {
  await page.getByLabel('Room', { exact: true }).fill(room);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.getByRole('tab', { name: room, exact: true, selected: true }).waitFor();
  // Members come with `joined`: the page itself is one of them.
  await page.getByRole('list', { name: 'Members' }).getByText('(you)').waitFor();
}

/** say sends text from the Message field with Enter. */
export async function say(page, text) {
  const field = page.getByLabel('Message', { exact: true });
  await field.fill(text);
  await field.press('Enter');
}

/** log returns the message log of room. */
export function log(page, room) {
  return page.getByRole('log', { name: `Messages in ${room}` });
}

/** waitMessage waits until text shows as a message in room's log. */
export async function waitMessage(page, room, text) {
  await log(page, room).locator('.msg .text').getByText(text, { exact: true }).first().waitFor();
}

/** messages returns the texts of room's messages, oldest first. */
export function messages(page, room) {
  return log(page, room).locator('.msg .text').allTextContents();
}

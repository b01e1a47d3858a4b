// Paging back through a room's kept history in real Chromium: "Load older
// messages" at the top of the log asks the server (`history`) for the page
// before the oldest message shown, puts it above without duplicates or a
// jump of the reader's view, and goes away at the room's first message.
// A refused request shows why and can be tried again. Pages stop at the
// page's bound, and the log shrinks back once the reader is at the newest.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { delay, joinRoom, launch, log, messages, openPage, Server, TIMEOUT, TLS } from './harness.mjs';

const env = { server: undefined, browser: undefined };
before(async () => {
  // Loosen the rate limit so that one client can post its messages at once.
  env.server = await Server.start('history', ['-rate', '5000', '-burst', '5000']);
  env.browser = await launch();
});
after(async () => {
  await env.browser?.close();
  await env.server?.stop();
});

/** texts returns ['m1', …, 'mN'] for from = 1, to = N. */
const texts = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `m${from + i}`);

/**
 * writer connects a plain WebSocket client (node's `ws`, not a page) to
 * room, says m1 … mN there and resolves once the server has sent all of
 * them back, so that all are in the room's history. It stays in the room
 * until closed.
 */
async function writer(server, room, n) {
  const url = new URL('ws?nick=writer', server.url.replace(/^http/, 'ws'));
  const ws = new WebSocket(url, { rejectUnauthorized: !TLS });
  const frames = [];
  let wake = () => {};
  ws.on('message', (data) => {
    frames.push(JSON.parse(data.toString()));
    wake();
  });
  const until = async (test, what) => {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const found = frames.find(test);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`writer: no ${what} within ${TIMEOUT} ms; got ${JSON.stringify(frames.slice(-3))}`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  };
  await until((f) => f.type === 'hello', 'hello');
  ws.send(JSON.stringify({ type: 'join', room }));
  await until((f) => f.type === 'joined', 'joined');
  for (const text of texts(1, n)) ws.send(JSON.stringify({ type: 'say', room, text }));
  await until((f) => f.type === 'msg' && f.text === `m${n}`, `m${n} back`);
  const refused = frames.filter((f) => f.type === 'error');
  assert.deepEqual(refused, [], 'the server took every message');
  return ws;
}

/** olderButton is the log's "Load older messages" control, whatever it says now. */
function olderButton(page, room) {
  return log(page, room).locator('.older button');
}

/**
 * topOf returns the distance in pixels from the top of room's log view to
 * a message's text: the text, not its whole entry, whose header goes when
 * the message above it turns out to be from the same sender.
 */
function topOf(page, room, text) {
  return log(page, room).evaluate(
    (el, t) => [...el.querySelectorAll('.msg .text')].find((m) => m.textContent === t).getBoundingClientRect().top - el.getBoundingClientRect().top,
    text,
  );
}

test('a late joiner pages back through 120 messages: each shows once, in order, and the button goes', { timeout: 120_000 }, async () => {
  const ws = await writer(env.server, 'older', 120);
  try {
    const reader = await openPage(env.browser, env.server, 'reader');
    await joinRoom(reader, 'older');
    // `joined` brings the newest 50.
    await log(reader, 'older').getByText('m120', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'older'), texts(71, 120));

    const load = log(reader, 'older').getByRole('button', { name: 'Load older messages', exact: true });
    await load.waitFor();
    // Read from the top of the log, the button in view: where m71 sits must
    // not move when the page before it arrives above.
    await log(reader, 'older').evaluate((el) => (el.scrollTop = 0));
    const at = await topOf(reader, 'older', 'm71');
    await load.click();
    await log(reader, 'older').getByText('m21', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'older'), texts(21, 120));
    assert.ok(Math.abs((await topOf(reader, 'older', 'm71')) - at) <= 1, 'the view stayed on m71');
    assert.ok(await log(reader, 'older').evaluate((el) => el.scrollTop > 0), 'the new page is above the view');

    // The second page is the last: 1 … 20, and nothing before seq 1.
    await load.click();
    await log(reader, 'older').getByText('m1', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'older'), texts(1, 120));
    await olderButton(reader, 'older').waitFor({ state: 'hidden' });
    assert.equal(await log(reader, 'older').getByRole('button').count(), 0);
    // One sender, all within minutes: one header for the whole run, the
    // pages' seams included.
    assert.equal(await log(reader, 'older').locator('.msg:not(.cont)').count(), 1);

    // Live messages still go at the end.
    ws.send(JSON.stringify({ type: 'say', room: 'older', text: 'm121' }));
    await log(reader, 'older').getByText('m121', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'older'), texts(1, 121));
    assert.deepEqual(reader.problems, []);
    await reader.context().close();
  } finally {
    ws.close();
  }
});

test('a refused request says so and can be tried again; while one is open the button says Loading…', { timeout: 120_000 }, async () => {
  const ws = await writer(env.server, 'refused', 60);
  // The reader's WebSocket goes through the test: it answers the first
  // `history` request itself with the error a server with an unreachable
  // store sends, and holds the server's answer to the second.
  const requests = [];
  let mode = 'refuse';
  const held = [];
  let release = null;
  const reader = await openPage(env.browser, env.server, 'reader', (page) =>
    page.routeWebSocket(/\/ws/, (route) => {
      const server = route.connectToServer();
      route.onMessage((raw) => {
        const frame = JSON.parse(raw);
        if (frame.type !== 'history') return server.send(raw);
        requests.push(frame);
        if (mode === 'refuse') {
          route.send(JSON.stringify({ type: 'error', code: 'unavailable', message: 'store unreachable', ref: 'history' }));
        } else {
          server.send(raw);
        }
      });
      server.onMessage((raw) => {
        if (mode === 'hold' && JSON.parse(raw).type === 'history') held.push(raw);
        else route.send(raw);
      });
      release = () => {
        mode = 'pass';
        for (const raw of held.splice(0)) route.send(raw);
      };
    }),
  );
  try {
    await joinRoom(reader, 'refused');
    await log(reader, 'refused').getByText('m60', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'refused'), texts(11, 60));

    // By keyboard: the control is a real button.
    const load = log(reader, 'refused').getByRole('button', { name: 'Load older messages', exact: true });
    await load.focus();
    await reader.keyboard.press('Enter');
    await log(reader, 'refused').getByText('Could not load older messages (store unreachable). Try again.', { exact: true }).waitFor();
    assert.deepEqual(requests, [{ type: 'history', room: 'refused', before: 11, limit: 50 }]);
    assert.deepEqual(await messages(reader, 'refused'), texts(11, 60));
    assert.equal(await load.getAttribute('aria-disabled'), 'false');

    // Again, the server's answer held back.
    mode = 'hold';
    await reader.keyboard.press('Enter');
    const loading = log(reader, 'refused').getByRole('button', { name: 'Loading…', exact: true });
    await loading.waitFor();
    assert.equal(await loading.getAttribute('aria-disabled'), 'true');
    assert.equal(await log(reader, 'refused').getByText(/^Could not load/).count(), 0, 'the old error is gone');
    // Neither Enter nor a click does anything while it loads.
    await reader.keyboard.press('Enter');
    await loading.click({ force: true });
    assert.equal(requests.length, 2);
    await waitFor(() => held.length === 1, 'the server answered');

    release();
    await log(reader, 'refused').getByText('m1', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'refused'), texts(1, 60));
    assert.equal(requests.length, 2);
    await olderButton(reader, 'refused').waitFor({ state: 'hidden' });
    // The focus the button had goes to the log, not to the end of the page.
    assert.equal(await reader.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Messages in refused');
    assert.deepEqual(reader.problems, []);
  } finally {
    await reader.context().close();
    ws.close();
  }
});

test('paging back stops at the page\'s bound; back at the newest, the log keeps its usual 500', { timeout: 120_000 }, async () => {
  // room.js: MAX_LOG = 2000 entries at most, LOG_LIMIT = 500 while following the newest.
  const ws = await writer(env.server, 'bound', 2100);
  try {
    const reader = await openPage(env.browser, env.server, 'reader');
    await joinRoom(reader, 'bound');
    await log(reader, 'bound').getByText('m2100', { exact: true }).waitFor();
    const load = log(reader, 'bound').getByRole('button', { name: 'Load older messages', exact: true });
    const full = log(reader, 'bound').getByText(/^This page shows at most 2000 messages/);
    // 39 pages of 50 above the 50 of `joined`, then the log is full.
    for (let pages = 0; !(await full.isVisible()); pages++) {
      assert.ok(pages < 39, 'the log is full after 39 pages');
      const oldest = `m${2051 - 50 * pages}`;
      await log(reader, 'bound').locator('.msg .text').first().filter({ hasText: new RegExp(`^${oldest}$`) }).waitFor();
      await load.click();
      await log(reader, 'bound').getByText(`m${2051 - 50 * (pages + 1)}`, { exact: true }).waitFor();
    }
    assert.deepEqual(await messages(reader, 'bound'), texts(101, 2100));
    assert.equal(await load.count(), 0, 'no button once full');

    // Scrolled up, a new message drops nothing but what exceeds the bound.
    ws.send(JSON.stringify({ type: 'say', room: 'bound', text: 'm2101' }));
    await log(reader, 'bound').getByText('m2101', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'bound'), texts(102, 2101));
    // At the end again, the next one trims the log to its usual size, and
    // what was dropped can be loaded again.
    await log(reader, 'bound').evaluate((el) => (el.scrollTop = el.scrollHeight));
    await reader.waitForFunction(() => {
      const el = document.querySelector('.log:not([hidden])');
      return el.scrollTop + el.clientHeight >= el.scrollHeight - 1;
    });
    await delay(100); // The log learns it is at the end from its scroll event.
    ws.send(JSON.stringify({ type: 'say', room: 'bound', text: 'm2102' }));
    await log(reader, 'bound').getByText('m2102', { exact: true }).waitFor();
    assert.deepEqual(await messages(reader, 'bound'), texts(1603, 2102));
    await load.waitFor();
    assert.equal(await full.count(), 0);
    assert.deepEqual(reader.problems, []);
    await reader.context().close();
  } finally {
    ws.close();
  }
});

async function waitFor(check, what) {
  const deadline = Date.now() + TIMEOUT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${TIMEOUT} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

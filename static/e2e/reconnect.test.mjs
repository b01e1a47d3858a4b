// Reconnects: the pages show "reconnecting", then "online", rejoin their
// rooms, and show what was said meanwhile exactly once, with nothing from
// before repeated. Two cases: one page's connection drops while the server
// stays up (the room's seq goes on), and the server restarts (the room starts
// a new epoch and numbers its messages from 1 again, so the new messages have
// seqs the pages already saw: only the epoch tells them apart).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinRoom, log, messages, openPage, say, suite, waitMessage, waitStatus } from './harness.mjs';

const env = suite('reconnect');

/** Connection attempts refused while the server is down or the page offline are expected. */
const expected = /WebSocket connection to .* failed|ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_REFUSED/;

test('a server restart mid-conversation: messages sent meanwhile appear once', { timeout: 120_000 }, async () => {
  const alice = await openPage(env.browser, env.server, 'alice');
  const bob = await openPage(env.browser, env.server, 'bob');
  await joinRoom(alice, 'restart');
  await joinRoom(bob, 'restart');
  const before = ['one', 'two', 'three', 'four'];
  for (const [i, text] of before.entries()) await say(i % 2 ? bob : alice, text);
  for (const page of [alice, bob]) await waitMessage(page, 'restart', 'four');

  // SIGTERM: the server closes every connection with 1001 and exits.
  await env.server.stop();
  await waitStatus(alice, 'reconnecting');
  await waitStatus(bob, 'reconnecting');

  // Keep bob off the network while alice comes back and talks, so that bob
  // must get those messages from the room's history when he rejoins.
  await bob.context().setOffline(true);
  await env.server.restart();
  await waitStatus(alice, 'online');
  await log(alice, 'restart').getByText(/^Reconnected/).waitFor();
  await say(alice, 'after the restart');
  await say(alice, 'still there?');
  await waitMessage(alice, 'restart', 'still there?');
  assert.equal((await bob.getByRole('status', { name: 'Connection' }).textContent()).trim(), 'reconnecting');

  // Back online, bob reconnects at once (the browser's `online` event) and
  // gets the two messages from the new epoch's history.
  await bob.context().setOffline(false);
  await waitStatus(bob, 'online');
  await waitMessage(bob, 'restart', 'still there?');

  // A last message from each side, seen by both, proves that every frame
  // before it has been handled: any duplicate would be in the log by now.
  await say(bob, 'yes');
  await say(alice, 'good');
  for (const page of [alice, bob]) await waitMessage(page, 'restart', 'good');
  const all = [...before, 'after the restart', 'still there?', 'yes', 'good'];
  assert.deepEqual(await messages(alice, 'restart'), all);
  assert.deepEqual(await messages(bob, 'restart'), all);
  // The members list was rebuilt from the rejoin: both, once each.
  for (const page of [alice, bob]) {
    assert.deepEqual(await page.getByRole('list', { name: 'Members' }).locator('.member-nick').allTextContents(), ['alice', 'bob']);
  }

  for (const page of [alice, bob]) {
    assert.deepEqual(page.problems.filter((p) => !expected.test(p)), []);
    await page.context().close();
  }
});

test('a dropped connection resumes in the same epoch: missed messages appear once', { timeout: 120_000 }, async () => {
  // bob's WebSocket goes through the test, which can cut it and hold his
  // reconnect back until alice has talked.
  let current = null;
  let gate = null;
  const route = (page) =>
    page.routeWebSocket(/\/ws/, async (ws) => {
      await gate;
      current = { page: ws, server: ws.connectToServer() };
    });
  const alice = await openPage(env.browser, env.server, 'alice');
  const bob = await openPage(env.browser, env.server, 'bob', route);
  await joinRoom(alice, 'drop');
  await joinRoom(bob, 'drop');
  for (const text of ['a', 'b', 'c']) await say(alice, text);
  await waitMessage(bob, 'drop', 'c');

  let release;
  gate = new Promise((resolve) => (release = resolve));
  // Closing the server side is passed on to the page, as a network drop
  // would be. (4000: the close travels through the page's own WebSocket,
  // which may not send 1001.)
  await current.server.close({ code: 4000, reason: 'cut by the test' });
  await waitStatus(bob, 'reconnecting');
  await log(alice, 'drop').getByText('bob left').waitFor();
  await say(alice, 'while you were out');
  await say(alice, 'and this');
  await waitMessage(alice, 'drop', 'and this');

  release();
  await waitStatus(bob, 'online');
  await waitMessage(bob, 'drop', 'and this');
  // The server vouched that nothing was lost in between.
  await log(bob, 'drop').getByText('Reconnected.', { exact: true }).waitFor();
  await say(bob, 'back');
  for (const page of [alice, bob]) await waitMessage(page, 'drop', 'back');
  const all = ['a', 'b', 'c', 'while you were out', 'and this', 'back'];
  assert.deepEqual(await messages(alice, 'drop'), all);
  assert.deepEqual(await messages(bob, 'drop'), all);

  for (const page of [alice, bob]) {
    assert.deepEqual(page.problems.filter((p) => !expected.test(p)), []);
    await page.context().close();
  }
});

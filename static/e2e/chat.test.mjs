// Chat in real Chromium: two people talk, a late joiner gets the history,
// the room list counts members, several rooms live side by side as tabs, and
// hostile names and messages stay text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinRoom, log, messages, openPage, say, Server, setNick, suite, waitMessage } from './harness.mjs';

const env = suite('chat');

/** roomButton is room's entry in the Open rooms list, named like "lobby, 2 members". */
function roomButton(page, room, count) {
  const name = `${room}, ${count} ${count === 1 ? 'member' : 'members'}`;
  return page.getByRole('list', { name: 'Open rooms' }).getByRole('button', { name, exact: true });
}

test('two pages chat, a late joiner sees the history, the room list counts members', { timeout: 120_000 }, async () => {
  const alice = await openPage(env.browser, env.server, 'alice');
  const bob = await openPage(env.browser, env.server, 'bob');
  // carol stays in no room: the server pushes her the room list.
  const carol = await openPage(env.browser, env.server, 'carol');

  await joinRoom(alice, 'lobby');
  await roomButton(carol, 'lobby', 1).waitFor();
  await joinRoom(bob, 'lobby');
  await roomButton(carol, 'lobby', 2).waitFor();

  // alice sees bob arrive, in the log and in the members list.
  await log(alice, 'lobby').getByText('bob joined').waitFor();
  await alice.getByRole('list', { name: 'Members' }).getByText('bob', { exact: true }).waitFor();

  await say(alice, 'hello bob');
  await waitMessage(bob, 'lobby', 'hello bob');
  // The Send button works as well as Enter.
  await bob.getByLabel('Message', { exact: true }).fill('hi alice');
  await bob.getByRole('button', { name: 'Send', exact: true }).click();
  await waitMessage(alice, 'lobby', 'hi alice');
  await waitMessage(bob, 'lobby', 'hi alice');
  assert.deepEqual(await messages(alice, 'lobby'), ['hello bob', 'hi alice']);
  assert.deepEqual(await messages(bob, 'lobby'), ['hello bob', 'hi alice']);
  // The sender's name goes with the message.
  assert.deepEqual(await log(bob, 'lobby').locator('.msg .nick').allTextContents(), ['alice', 'bob']);

  // carol joins by clicking the room in the list, and gets the history.
  await roomButton(carol, 'lobby', 2).click();
  await carol.getByRole('tab', { name: 'lobby', exact: true, selected: true }).waitFor();
  await waitMessage(carol, 'lobby', 'hi alice');
  assert.deepEqual(await messages(carol, 'lobby'), ['hello bob', 'hi alice']);
  // The rooms list is refreshed while in rooms too.
  await roomButton(alice, 'lobby', 3).waitFor();

  // bob leaves: alice is told, and the count follows.
  await bob.getByRole('button', { name: 'Leave', exact: true }).click();
  await log(alice, 'lobby').getByText('bob left').waitFor();
  await roomButton(bob, 'lobby', 2).waitFor();
  assert.equal(await bob.getByRole('tab').count(), 0);

  // A rename shows in the room, for others and in one's own members list.
  await setNick(alice, 'alicia');
  await log(carol, 'lobby').getByText('alice is now alicia', { exact: true }).waitFor();
  await carol.getByRole('list', { name: 'Members' }).getByText('alicia', { exact: true }).waitFor();
  await alice.getByRole('list', { name: 'Members' }).getByText('alicia', { exact: true }).waitFor();
  await say(alice, 'new name');
  await waitMessage(carol, 'lobby', 'new name');
  assert.equal(await log(carol, 'lobby').locator('.msg').last().locator('.nick').textContent(), 'alicia');

  for (const page of [alice, bob, carol]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('several rooms at once, as tabs with unread counts', { timeout: 120_000 }, async () => {
  const dora = await openPage(env.browser, env.server, 'dora');
  const emil = await openPage(env.browser, env.server, 'emil');
  await joinRoom(dora, 'tabs.one');
  await joinRoom(dora, 'tabs.two');
  await joinRoom(emil, 'tabs.one');
  assert.equal(await dora.getByRole('tab').count(), 2);

  // dora looks at tabs.two; a message in tabs.one counts as unread there.
  await say(emil, 'over here');
  await dora.getByRole('tab', { name: 'tabs.one 1 unread', exact: true }).waitFor();
  await dora.getByRole('tab', { name: 'tabs.one 1 unread' }).click();
  await waitMessage(dora, 'tabs.one', 'over here');
  await dora.getByRole('tab', { name: 'tabs.one', exact: true, selected: true }).waitFor();

  // Messages go to the room on show.
  await dora.getByRole('tab', { name: 'tabs.two', exact: true }).click();
  await say(dora, 'only in two');
  await waitMessage(dora, 'tabs.two', 'only in two');
  await say(emil, 'only in one');
  await dora.getByRole('tab', { name: 'tabs.one 1 unread', exact: true }).waitFor();
  assert.deepEqual(await messages(dora, 'tabs.two'), ['only in two']);
  assert.deepEqual(await messages(emil, 'tabs.one'), ['over here', 'only in one']);

  for (const page of [dora, emil]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('a hostile nickname and hostile messages show as text and run nothing', { timeout: 120_000 }, async () => {
  const nick = '<img src=x onerror=window.__x=1>';
  const texts = ['<script>window.__x=2</script>', '"><svg onload=window.__x=3>', "<img src=x onerror='window.__x=4'>"];
  const mallory = await openPage(env.browser, env.server, nick);
  const victim = await openPage(env.browser, env.server, 'victim');
  await joinRoom(victim, 'hostile');
  await joinRoom(mallory, 'hostile');
  for (const text of texts) await say(mallory, text);
  for (const page of [victim, mallory]) await waitMessage(page, 'hostile', texts.at(-1));

  // The nickname shows literally in the presence notice and the members list.
  await log(victim, 'hostile').getByText(`${nick} joined`, { exact: true }).waitFor();
  for (const page of [victim, mallory]) {
    assert.deepEqual(await messages(page, 'hostile'), texts);
    assert.deepEqual(await log(page, 'hostile').locator('.msg .nick').allTextContents(), [nick, nick, nick]);
    await page.getByRole('list', { name: 'Members' }).getByText(nick, { exact: true }).waitFor();
    // Nothing was parsed as markup: no such elements anywhere in the room view.
    assert.equal(await page.locator('#room-view').locator('img, svg, script').count(), 0);
    // And nothing ran. An onerror or onload would have fired as the element
    // was created, long before the last message arrived.
    assert.equal(await page.evaluate(() => window.__x), undefined);
  }

  for (const page of [victim, mallory]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('a busy room keeps the page bounded: old messages are dropped', { timeout: 120_000 }, async () => {
  // Loosen the rate limit so one sender can post 600 messages at once.
  const busy = await Server.start('chat-busy', ['-rate', '5000', '-burst', '5000']);
  try {
    const reader = await openPage(env.browser, busy, 'reader');
    const writer = await openPage(env.browser, busy, 'writer');
    await joinRoom(reader, 'busy');
    await joinRoom(writer, 'busy');
    // The writer posts through its own raw WebSocket: the page's limit, not
    // the typing speed of a test, is under test here.
    await writer.evaluate(async (n) => {
      const ws = new WebSocket(new URL('ws', location.href).href.replace(/^http/, 'ws'));
      await new Promise((resolve) => ws.addEventListener('message', resolve, { once: true }));
      ws.send(JSON.stringify({ type: 'join', room: 'busy' }));
      for (let i = 1; i <= n; i++) ws.send(JSON.stringify({ type: 'say', room: 'busy', text: `m${i}` }));
    }, 600);
    await waitMessage(reader, 'busy', 'm600');
    // Entries are messages and notices (the log's first child is the bar of "Load older messages").
    const entries = await log(reader, 'busy').locator(':scope > :is(.msg, .notice)').count();
    assert.ok(entries <= 500, `${entries} entries in the log`);
    const texts = await messages(reader, 'busy');
    assert.equal(texts.at(-1), 'm600');
    assert.ok(!texts.includes('m1'), 'the oldest messages were dropped');
    // What is kept is the newest run, in order.
    const first = Number(texts[0].slice(1));
    assert.deepEqual(texts, Array.from({ length: texts.length }, (_, i) => `m${first + i}`));
    for (const page of [reader, writer]) await page.context().close();
  } finally {
    await busy.stop();
  }
});

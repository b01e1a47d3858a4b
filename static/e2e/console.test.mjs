// The operator's console in real Chromium: log in on the admin listener,
// find a room a chat page made, watch its member count move as a second
// page joins, end it, and see both chat pages taken out of it. Leaves a
// screenshot of the overview for the README (screenshots/console.png).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TIMEOUT, freePort, joinRoom, launch, openPage, say, Server, waitMessage } from './harness.mjs';

const screenshots = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');
const PASSWORD = 'e2e console password, long enough';
const ROOM = 'ops-room';

// The server reads the password from its environment, which it inherits
// from this process (each test file runs in a process of its own).
process.env.NOOM_ADMIN_PASSWORD = PASSWORD;

const env = { server: undefined, browser: undefined, adminURL: '' };
before(async () => {
  const adminPort = await freePort();
  env.adminURL = `http://127.0.0.1:${adminPort}/admin/`;
  env.server = await Server.start('console', ['-admin-addr', `127.0.0.1:${adminPort}`]);
  env.browser = await launch();
});
after(async () => {
  await env.browser?.close();
  await env.server?.stop();
});

/** openConsole opens the console page in a context of its own and logs in. */
async function openConsole() {
  const context = await env.browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // Refusals the page expects and shows in its own words, which Chromium
    // also reports as failed resources: the session asked for before the
    // login (401), and the room asked for again once it has ended (404).
    if (msg.type() === 'error' && !/status of 40[14]/.test(msg.text())) page.problems.push(`console: ${msg.text()}`);
  });
  await page.goto(env.adminURL);
  await page.getByRole('heading', { name: 'Log in to the console' }).waitFor();
  await page.getByLabel('Password', { exact: true }).fill('not the password');
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
  await page.getByRole('alert').getByText('wrong password').waitFor();
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
  await page.getByRole('heading', { name: 'Overview', exact: true }).waitFor();
  return page;
}

/** membersCell is the Members cell of room's row in the console's Rooms table. */
function membersCell(page, room) {
  return page.getByRole('table', { name: 'Rooms' }).getByRole('row').filter({ has: page.getByRole('link', { name: `Open room ${room}`, exact: true }) }).locator('td').nth(1);
}

test('the console finds a room, follows its count, ends it; the chat pages leave it', { timeout: 120_000 }, async () => {
  const admin = await openConsole();
  // The overview lists this node, and it is the one serving the console.
  const nodes = admin.getByRole('table', { name: 'Nodes' });
  await nodes.getByText('this node', { exact: true }).waitFor();
  assert.equal(await admin.getByRole('img', { name: /^Connections over the last ten minutes/ }).count(), 1);

  const alice = await openPage(env.browser, env.server, 'alice');
  await joinRoom(alice, ROOM);
  await say(alice, 'hello from alice');
  await waitMessage(alice, ROOM, 'hello from alice');

  await admin.getByRole('link', { name: 'Rooms', exact: true }).click();
  await admin.getByLabel('Search rooms').fill('ops');
  await membersCell(admin, ROOM).filter({ hasText: /^1$/ }).waitFor();

  // A second page joins: the count moves without a reload.
  const bob = await openPage(env.browser, env.server, 'bob');
  await joinRoom(bob, ROOM);
  await membersCell(admin, ROOM).filter({ hasText: /^2$/ }).waitFor();

  // The room's page: its members and its newest message.
  await admin.getByRole('link', { name: `Open room ${ROOM}`, exact: true }).click();
  await admin.getByRole('heading', { name: `Room ${ROOM}` }).waitFor();
  const members = admin.getByRole('table', { name: 'Members' });
  await members.getByRole('button', { name: `Remove alice from ${ROOM}` }).waitFor();
  await members.getByRole('button', { name: `Remove bob from ${ROOM}` }).waitFor();
  await admin.getByRole('list', { name: 'Newest messages' }).getByText('hello from alice').waitFor();

  // End it, once confirmed.
  await admin.getByRole('button', { name: `End room ${ROOM}` }).click();
  const dialog = admin.getByRole('dialog', { name: `End room ${ROOM}?` });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await alice.getByRole('tab', { name: ROOM }).count(), 1, 'cancelled, yet the room ended');
  await admin.getByRole('button', { name: `End room ${ROOM}` }).click();
  await dialog.getByRole('button', { name: 'End room', exact: true }).click();
  await admin.getByText(`Room ${ROOM} ended: 2 members left.`).waitFor();

  // Both chat pages show the room ended, by an operator.
  for (const page of [alice, bob]) {
    await page.getByText(`An operator ended the meeting in ${ROOM}.`).waitFor();
    await page.getByRole('tab', { name: ROOM }).waitFor({ state: 'detached' });
    assert.deepEqual(page.problems, []);
  }
  await admin.getByText('Nobody is in this room now.').waitFor();

  // The overview, after some traffic, for the README.
  await joinRoom(alice, 'lobby');
  await joinRoom(bob, 'lobby');
  await admin.getByRole('link', { name: 'Overview', exact: true }).click();
  await nodes.getByText('this node', { exact: true }).waitFor();
  for (let i = 0; i < 12; i++) {
    // Some traffic, and a few more samples on the charts.
    await say(i % 2 ? bob : alice, `message ${i}`);
    await admin.waitForTimeout(500);
  }
  mkdirSync(screenshots, { recursive: true });
  await admin.screenshot({ path: path.join(screenshots, 'console.png'), fullPage: true });

  // Logging out sends the page back to the login.
  await admin.getByRole('button', { name: 'Log out' }).click();
  await admin.getByRole('heading', { name: 'Log in to the console' }).waitFor();
  assert.deepEqual(admin.problems, []);
  for (const page of [alice, bob, admin]) await page.context().close();
});

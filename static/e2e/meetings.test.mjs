// Rooms that belong to someone, in real Chromium: the creator is host and
// stays host across a reload (its host key in localStorage), sets a
// passcode and the lobby, and copies invite links that never hold the host
// key (nor the passcode, unless asked). A guest with the link is asked for
// the passcode, is told in words when it is wrong, waits in the lobby and
// is let in; another is sent away first. In a call the host mutes the
// guest, whose tile says so on the host's page; then removes the guest,
// who cannot come back; and ends the meeting for everyone. Every control
// is found by its role and accessible name, and none lacks a name.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { joinRoom, log, openPage, setNick, suite, waitStatus } from './harness.mjs';

const screenshots = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');

const env = suite('meetings');

const ROOM = 'standup';
const PASSCODE = 'sesame-42';

function button(page, name) {
  return page.getByRole('button', { name, exact: true });
}

function members(page) {
  return page.getByRole('list', { name: 'Members' });
}

/** member is the row of nick in the members list. */
function member(page, nick) {
  return members(page).getByRole('listitem').filter({ has: page.getByText(nick, { exact: true }) });
}

/** dialog is the open modal dialog named name. */
function dialog(page, name) {
  return page.getByRole('dialog', { name, exact: true });
}

/** memberAction opens the action menu of nick on page and picks the item named action. */
async function memberAction(page, nick, action) {
  await button(page, `Actions for ${nick}`).click();
  await page.getByRole('menu', { name: `Actions for ${nick}` }).getByRole('menuitem', { name: action, exact: true }).click();
}

/** menuItems lists the items of nick's action menu, and closes it again with Escape. */
async function menuItems(page, nick) {
  await button(page, `Actions for ${nick}`).click();
  const menu = page.getByRole('menu', { name: `Actions for ${nick}` });
  const items = await menu.getByRole('menuitem').allTextContents();
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
  return items;
}

/** copyInvite clicks Copy invite link and returns what landed on the clipboard. */
async function copyInvite(page) {
  await page.evaluate(() => navigator.clipboard.writeText(''));
  await button(page, 'Copy invite link').click();
  const handle = await page.waitForFunction(async () => (await navigator.clipboard.readText()) || null);
  return handle.jsonValue();
}

/**
 * unnamed lists the visible buttons, inputs and selects of page that have
 * no accessible name: no text, aria-label, aria-labelledby, label or title.
 */
function unnamed(page) {
  return page.evaluate(() => {
    const visible = (el) => el.checkVisibility({ visibilityProperty: true });
    return [...document.querySelectorAll('button, input, select, [role="menuitem"]')]
      .filter(visible)
      .filter((el) => {
        if (el.getAttribute('aria-label')?.trim() || el.getAttribute('aria-labelledby') || el.title) return false;
        if (el.labels?.length > 0 && [...el.labels].some((l) => l.textContent.trim())) return false;
        return el.matches('input, select') || el.textContent.trim() === '';
      })
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

/** localAudio reports whether the call's own microphone track is enabled. */
function localAudio(page) {
  return page
    .getByRole('figure', { name: 'You', exact: true })
    .locator('video')
    .evaluate((v) => v.srcObject?.getAudioTracks()[0]?.enabled ?? null);
}

test('a hosted meeting: passcode, lobby, invite links, mute, remove, reload as host, end for everyone', { timeout: 240_000 }, async () => {
  const host = await openPage(env.browser, env.server, 'hana');
  await host.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(env.server.url).origin });

  // Creating the room makes hana its host; the key is kept, and shown nowhere.
  await joinRoom(host, ROOM);
  await member(host, 'hana').getByText('host', { exact: true }).waitFor();
  const hostKey = await host.evaluate((room) => JSON.parse(localStorage.getItem('noom.hostKeys') ?? '{}')[room], ROOM);
  assert.match(hostKey ?? '', /^[A-Za-z0-9_-]{20,}$/, 'the host key is kept per room');
  await button(host, 'End for everyone').waitFor();
  assert.equal(new URL(host.url()).hash, `#room=${ROOM}`, 'the address bar names the room on show');

  // The settings: the lobby, then a passcode. Settings are applied in order,
  // so "A passcode is set" means the lobby is on too.
  await button(host, 'Room settings').click();
  const settings = host.getByRole('region', { name: 'Room settings' });
  await settings.getByRole('checkbox', { name: 'Lobby: the host lets each person in' }).check();
  await settings.getByLabel('New passcode', { exact: true }).fill(PASSCODE);
  await settings.getByRole('button', { name: 'Set passcode', exact: true }).click();
  await settings.getByText('A passcode is set: people need it to join.').waitFor();
  assert.equal(await settings.getByRole('checkbox', { name: 'Lobby: the host lets each person in' }).isChecked(), true);
  assert.equal(await settings.getByRole('checkbox', { name: 'Listed in Open rooms' }).isDisabled(), true, 'a room with a passcode is never listed');
  assert.deepEqual(await unnamed(host), [], 'every control of the settings panel has a name');

  // Invite links: the room in the fragment; the passcode only when asked; never the host key.
  const plain = await copyInvite(host);
  assert.equal(plain, `${env.server.url}#room=${ROOM}`);
  await settings.getByRole('checkbox', { name: 'Include passcode' }).check();
  const withPasscode = await copyInvite(host);
  assert.equal(withPasscode, `${env.server.url}#room=${ROOM}&passcode=${PASSCODE}`);
  for (const link of [plain, withPasscode]) assert.ok(!link.includes(hostKey), 'no host key in an invite link');
  const html = await host.evaluate(() => document.documentElement.outerHTML + [...document.querySelectorAll('input')].map((i) => i.value).join(' '));
  assert.ok(!html.includes(hostKey), 'the host key is nowhere in the page');

  // gus opens the link without the passcode: asked for it, a wrong one is refused in words.
  const gus = await openPage(env.browser, env.server, 'gus');
  await gus.goto(plain);
  const ask = dialog(gus, `Join ${ROOM}`);
  await ask.getByText(`${ROOM} needs a passcode.`, { exact: false }).waitFor();
  assert.deepEqual(await unnamed(gus), [], 'every control of the passcode dialog has a name');
  await ask.getByLabel('Passcode', { exact: true }).fill('not-it');
  await ask.getByRole('button', { name: 'Join', exact: true }).click();
  await ask.getByText('That passcode is wrong. Check it and try again.').waitFor();
  await ask.getByLabel('Passcode', { exact: true }).fill(PASSCODE);
  await ask.getByRole('button', { name: 'Join', exact: true }).click();
  await gus.getByRole('status').filter({ hasText: 'Waiting for the host to let you in' }).waitFor();
  await button(gus, 'Stop waiting').waitFor();
  assert.equal(await members(gus).getByRole('listitem').count(), 0, 'the lobby sees nothing of the room');

  // ivy has the link with the passcode: straight to the lobby. The host sends her away once.
  const ivy = await openPage(env.browser, env.server, 'ivy');
  await ivy.goto(withPasscode);
  await ivy.getByRole('status').filter({ hasText: 'Waiting for the host to let you in' }).waitFor();
  assert.equal(new URL(ivy.url()).hash, `#room=${ROOM}`, 'the passcode does not stay in the address bar');
  const lobby = host.getByRole('list', { name: 'Waiting to join' });
  await lobby.getByText('ivy', { exact: true }).waitFor();
  await button(host, 'Deny ivy').click();
  await dialog(ivy, `Join ${ROOM}`).getByText(`The host did not let you in to ${ROOM}.`).waitFor();
  await button(ivy, 'Close').click();
  await ivy.goto(withPasscode);
  await lobby.getByText('ivy', { exact: true }).waitFor();
  await lobby.getByText('gus', { exact: true }).waitFor();
  assert.deepEqual(await unnamed(host), [], 'every control of the lobby list has a name');
  // The check itself finds a control without a name.
  await host.evaluate(() => document.body.append(Object.assign(document.createElement('button'), { id: 'nameless' })));
  assert.equal((await unnamed(host)).length, 1);
  await host.evaluate(() => document.getElementById('nameless').remove());
  // The README's picture: the host's view with the settings and two people knocking.
  mkdirSync(screenshots, { recursive: true });
  await host.evaluate(() => document.getElementById('toasts').replaceChildren());
  await host.screenshot({ path: path.join(screenshots, 'meeting-host.png') });
  await button(host, 'Admit gus').click();
  await button(host, 'Admit ivy').click();
  for (const page of [gus, ivy]) {
    await members(page).getByText('(you)').waitFor();
    await member(page, 'hana').getByText('host', { exact: true }).waitFor();
  }
  await member(host, 'gus').waitFor();
  await member(host, 'ivy').waitFor();

  // Members see roles but get none of the host's controls.
  for (const name of ['Room settings', 'End for everyone', 'Actions for hana', 'Actions for ivy']) {
    assert.equal(await button(gus, name).count(), 0, `gus has no ${name}`);
  }
  assert.deepEqual(await menuItems(host, 'gus'), ['Make cohost', 'Make host', 'Mute', 'Remove']);
  await button(host, 'Actions for gus').click();
  assert.deepEqual(await unnamed(host), [], 'every item of the member menu has a name');
  await host.keyboard.press('Escape');

  // A call: the host mutes gus; his microphone goes off, and hana's tile of him says so.
  await button(host, 'Join call').click();
  await button(gus, 'Join call').click();
  const gusTile = host.getByRole('figure', { name: 'gus', exact: true });
  await gusTile.waitFor();
  await button(gus, 'Mute').waitFor();
  assert.equal(await localAudio(gus), true);
  await memberAction(host, 'gus', 'Mute');
  await button(gus, 'Unmute').waitFor();
  assert.equal(await localAudio(gus), false, 'the muted page turned its microphone off');
  await log(gus, ROOM).getByText('hana muted your microphone. Only you can turn it on again.').waitFor();
  await gusTile.getByText('Microphone off', { exact: true }).waitFor();
  await button(gus, 'Camera off').click();
  await gusTile.getByText('Camera off', { exact: true }).waitFor();
  // Only gus turns his microphone on again; the tile follows.
  await button(gus, 'Unmute').click();
  await gusTile.getByText('Microphone off', { exact: true }).waitFor({ state: 'hidden' });

  // Made cohost, gus gets the settings and a menu for ivy, but may not remove the host.
  await memberAction(host, 'gus', 'Make cohost');
  await member(gus, 'gus').getByText('cohost', { exact: true }).waitFor();
  await button(gus, 'Room settings').waitFor();
  assert.equal(await button(gus, 'End for everyone').count(), 0, 'ending is the host\'s alone');
  assert.deepEqual(await menuItems(gus, 'hana'), ['Mute']);
  assert.deepEqual(await menuItems(gus, 'ivy'), ['Make cohost', 'Mute', 'Remove']);

  // Removed, gus's page closes the room and its call, and says why.
  await memberAction(host, 'gus', 'Remove');
  await gus.getByRole('alert').filter({ hasText: `You were removed from the room ${ROOM}.` }).waitFor();
  assert.equal(await gus.getByRole('tab').count(), 0);
  assert.equal(await gus.getByRole('region', { name: /^Call in/ }).count(), 0, 'out of the call too');
  await member(host, 'gus').waitFor({ state: 'detached' });
  // With the lobby off he cannot come back, passcode or not.
  await settings.getByRole('checkbox', { name: 'Lobby: the host lets each person in' }).uncheck();
  await gus.goto(withPasscode);
  await dialog(gus, `Join ${ROOM}`).getByText(`You were removed from ${ROOM} and cannot come back for now.`).waitFor();

  // A reload: the page opens the room again from its address, and the host key makes hana host.
  await host.reload();
  await waitStatus(host, 'online');
  await members(host).getByText('(you)').waitFor();
  await member(host, 'hana').getByText('host', { exact: true }).waitFor();
  await button(host, 'End for everyone').waitFor();
  assert.deepEqual(await menuItems(host, 'ivy'), ['Make cohost', 'Make host', 'Mute', 'Remove']);
  // The menu works from the keyboard: arrows and End move, Escape gives the focus back.
  const focused = () => host.evaluate(() => document.activeElement.getAttribute('aria-label') ?? document.activeElement.textContent);
  await button(host, 'Actions for ivy').focus();
  await host.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Make cohost');
  await host.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Make host');
  await host.keyboard.press('End');
  assert.equal(await focused(), 'Remove');
  await host.keyboard.press('Escape');
  assert.equal(await focused(), 'Actions for ivy');
  assert.equal(await button(host, 'Actions for ivy').getAttribute('aria-expanded'), 'false');

  // End for everyone, confirmed: the room closes on every page.
  await button(host, 'End for everyone').click();
  const confirm = dialog(host, `End the meeting in ${ROOM}?`);
  assert.deepEqual(await unnamed(host), [], 'every control of the confirmation has a name');
  await confirm.getByRole('button', { name: 'End for everyone', exact: true }).click();
  for (const page of [host, ivy]) {
    await page.getByRole('alert').filter({ hasText: `The host ended the meeting in ${ROOM}.` }).waitFor();
    assert.equal(await page.getByRole('tab').count(), 0);
  }

  for (const page of [host, gus, ivy]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('Stop waiting leaves the lobby; everyone sees how the room is kept', { timeout: 120_000 }, async () => {
  const host = await openPage(env.browser, env.server, 'olga');
  await joinRoom(host, 'waitroom');
  await button(host, 'Room settings').click();
  await host.getByRole('checkbox', { name: 'Lobby: the host lets each person in' }).check();
  // The room's header shows the setting once the server has it.
  await host.locator('.room-head').getByText('Lobby', { exact: true }).waitFor();
  const guest = await openPage(env.browser, env.server, 'pete');
  await guest.goto(`${env.server.url}#room=waitroom`);
  await guest.getByRole('status').filter({ hasText: 'Waiting for the host to let you in' }).waitFor();
  await host.getByRole('list', { name: 'Waiting to join' }).getByText('pete', { exact: true }).waitFor();
  await button(guest, 'Stop waiting').click();
  assert.equal(await guest.getByRole('tab').count(), 0);
  assert.equal(new URL(guest.url()).hash, '', 'no room in the address bar');
  await setNick(guest, 'pete2'); // the connection is still fine
  for (const page of [host, guest]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

// Calls through the server's SFU in real Chromium, with fake camera and
// microphone: a mesh call moves to the SFU when its third peer joins (the
// default -sfu auto), every page then plays the others' videos from the one
// connection to the server, a shared screen gets a tile of its own, and a
// peer that leaves loses its tile on the others' pages. With -sfu on, a call
// starts on the SFU, and the server's speakers ring the tiles.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { delay, joinRoom, launch, openPage, Server, suite, TIMEOUT, TLS } from './harness.mjs';

const env = suite('sfu');

/** tile is the call tile captioned name: "You", a nickname, or "nick (screen)". */
function tile(page, name) {
  return page.getByRole('figure', { name, exact: true });
}

function button(page, name) {
  return page.getByRole('button', { name, exact: true });
}

/** until polls probe (which may throw while the page changes) until it returns true, or fails saying what it last saw. */
async function until(what, probe) {
  const deadline = Date.now() + TIMEOUT;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last === true) return;
    } catch (err) {
      last = err.message.split('\n')[0];
    }
    await delay(100);
  }
  assert.fail(`${what}; last: ${JSON.stringify(last)}`);
}

let waits = 0;

/**
 * waitPlaying waits until the video in name's tile has decoded `frames`
 * more frames since this wait first saw it with a picture: the media flows
 * now, not only once. The first count is kept on the element itself, per
 * wait, so a tile made anew (the call moved) starts a count of its own.
 */
async function waitPlaying(page, name, frames = 5) {
  const video = tile(page, name).locator('video');
  const wait = ++waits;
  await until(`${name}'s video plays on ${page.nick}'s page`, () =>
    video.evaluate(
      (v, [n, id]) => {
        if (v.videoWidth === 0 || v.paused || v.readyState < 2) return { width: v.videoWidth, paused: v.paused, ready: v.readyState };
        const decoded = v.getVideoPlaybackQuality().totalVideoFrames;
        v.noomWaits ??= {};
        v.noomWaits[id] ??= decoded;
        return decoded >= v.noomWaits[id] + n || { decoded, first: v.noomWaits[id] };
      },
      [frames, wait],
    ),
  );
}

/** remoteNames lists the captions of page's remote tiles, sorted. */
async function remoteNames(page) {
  return (await page.locator('figure.tile.remote .tile-name').allTextContents()).sort();
}

/** open opens one page per nick on server, each in room and in its call, one after the other. */
async function open(browser, server, nicks, room) {
  const pages = [];
  for (const nick of nicks) {
    const page = await openPage(browser, server, nick);
    page.nick = nick;
    await joinRoom(page, room);
    await button(page, 'Join call').click();
    await tile(page, 'You').waitFor();
    pages.push(page);
  }
  return pages;
}

/** via waits until page's call stage says its media goes through the 'sfu' or a 'mesh'. */
function via(page, how) {
  return page.locator(`section#call[data-via="${how}"]`).waitFor();
}

test('a call moves to the SFU at its third peer, shares a screen and loses a peer that leaves', { timeout: 240_000 }, async () => {
  const [alice, bob] = await open(env.browser, env.server, ['alice', 'bob'], 'sync');
  // Two peers: a mesh, as before.
  await via(alice, 'mesh');
  await waitPlaying(alice, 'bob');
  await waitPlaying(bob, 'alice');

  const [carol] = await open(env.browser, env.server, ['carol'], 'sync');
  const pages = [alice, bob, carol];
  for (const page of pages) await via(page, 'sfu');
  for (const page of pages) {
    const others = pages.filter((p) => p !== page).map((p) => p.nick);
    for (const nick of others) await waitPlaying(page, nick);
    assert.deepEqual(await remoteNames(page), others.sort(), `${page.nick}'s tiles`);
    assert.equal(await page.getByRole('figure').count(), 3, `${page.nick}: own preview and two peers`);
    await page.getByRole('region', { name: 'Call in sync · 3 people' }).waitFor();
    // The peer's tile plays its microphone; only a screen tile is muted.
    assert.equal(await tile(page, others[0]).locator('video').evaluate((v) => v.muted), false);
  }
  // The camera tile carries the peer's microphone too.
  for (const page of pages) {
    const audio = await tile(page, page === alice ? 'bob' : 'alice')
      .locator('video')
      .evaluate((v) => v.srcObject.getAudioTracks().length);
    assert.equal(audio, 1, `${page.nick} hears the peer`);
  }

  // bob shares his screen: it gets a tile of its own beside his camera's.
  await button(bob, 'Share screen').click();
  await button(bob, 'Stop sharing').waitFor();
  for (const page of [alice, carol]) {
    await waitPlaying(page, 'bob (screen)', 1);
    await waitPlaying(page, 'bob');
    assert.equal(await tile(page, 'bob (screen)').locator('video').evaluate((v) => v.muted), true);
    assert.equal(await page.getByRole('figure').count(), 4);
  }
  await button(bob, 'Stop sharing').click();
  await button(bob, 'Share screen').waitFor();
  for (const page of [alice, carol]) await tile(page, 'bob (screen)').waitFor({ state: 'detached' });

  // carol leaves the call: her tile goes, and alice and bob still see each other.
  await button(carol, 'Leave call').click();
  for (const page of [alice, bob]) {
    await tile(page, 'carol').waitFor({ state: 'detached' });
    await page.getByRole('region', { name: 'Call in sync · 2 people' }).waitFor();
  }
  // The call stays on the SFU until it empties, and its media goes on.
  await via(alice, 'sfu');
  await waitPlaying(alice, 'bob');
  await waitPlaying(bob, 'alice');

  for (const page of pages) {
    assert.deepEqual(page.problems, [], `${page.nick}'s problems`);
    await page.context().close();
  }
});

/**
 * toneFile writes a WAV of a steady tone, loud enough for the server to
 * count whoever sends it as speaking (Chromium's own fake microphone only
 * beeps, too seldom for that). Chromium plays it in a loop.
 */
function toneFile() {
  const rate = 48_000;
  const samples = rate * 2;
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) buf.writeInt16LE(Math.round(12_000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  const file = path.join(os.tmpdir(), `noom-tone-${process.pid}.wav`);
  writeFileSync(file, buf);
  return file;
}

test('with -sfu on a call of two goes through the SFU, and speakers are ringed', { timeout: 180_000 }, async () => {
  const server = await Server.start('sfu-on', ['-sfu', 'on']);
  const tone = toneFile();
  const browser = await launch([`--use-file-for-fake-audio-capture=${tone}`]);
  try {
    const [dana, eli] = await open(browser, server, ['dana', 'eli'], 'always');
    for (const page of [dana, eli]) await via(page, 'sfu');
    await waitPlaying(dana, 'eli');
    await waitPlaying(eli, 'dana');
    assert.deepEqual(await remoteNames(dana), ['eli']);
    assert.deepEqual(await remoteNames(eli), ['dana']);

    // Both send a steady tone: each page rings the other's tile and its own.
    const speaking = (page, name) => tile(page, name).getByText('Speaking', { exact: true });
    await speaking(eli, 'dana').waitFor();
    await speaking(dana, 'eli').waitFor();
    await speaking(dana, 'You').waitFor();
    assert.equal(await tile(eli, 'dana').evaluate((f) => f.classList.contains('speaking')), true);
    // The flag is not part of the name: the tile is still found by the nickname.
    assert.equal(await tile(eli, 'dana').count(), 1);

    // The media announcements still say what is off: eli's camera, then dana's microphone.
    await button(eli, 'Camera off').click();
    await tile(dana, 'eli').getByText('Camera off', { exact: true }).waitFor();
    assert.equal(await tile(dana, 'eli').evaluate((f) => f.classList.contains('camera-off')), true);
    await button(eli, 'Camera on').click();
    await tile(dana, 'eli').getByText('Camera off', { exact: true }).waitFor({ state: 'hidden' });
    await waitPlaying(dana, 'eli');

    // dana mutes: the server hears silence and drops her from the speakers.
    await button(dana, 'Mute').click();
    await tile(eli, 'dana').getByText('Microphone off', { exact: true }).waitFor();
    await speaking(eli, 'dana').waitFor({ state: 'hidden' });
    await speaking(dana, 'You').waitFor({ state: 'hidden' });
    assert.equal(await tile(eli, 'dana').evaluate((f) => f.classList.contains('speaking')), false);
    await speaking(dana, 'eli').waitFor();

    for (const page of [dana, eli]) {
      assert.deepEqual(page.problems, [], `${page.nick}'s problems`);
      await page.context().close();
    }
  } finally {
    await browser.close();
    await server.stop();
    rmSync(tone, { force: true });
  }
});

/**
 * BENCH is the load harness, whose call scenario runs pion peers: here one
 * peer, a fourth participant that is no browser (`make build` writes it).
 */
const BENCH = process.env.NOOM_BENCH ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../bin/noom-bench');

test('four people, three pages and a pion peer, hold a call through the server; the speakers are ringed', { timeout: 240_000 }, async () => {
  const server = await Server.start('sfu-four');
  const tone = toneFile();
  const browser = await launch([`--use-file-for-fake-audio-capture=${tone}`]);
  const out = path.join(os.tmpdir(), `noom-four-${process.pid}.json`);
  let peer;
  try {
    const pages = await open(browser, server, ['alice', 'bob', 'carol'], 'four');
    for (const page of pages) await via(page, 'sfu');
    const scheme = TLS ? 'wss' : 'ws';
    const args = ['-url', `${scheme}://127.0.0.1:${server.port}/ws`, '-scenario', 'call', '-peers', '1', '-room', 'four',
      '-warmup', '2s', '-duration', '15s', '-json', out, ...(TLS ? ['-insecure'] : [])];
    peer = spawn(BENCH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    peer.stdout.pipe(server.log, { end: false });
    peer.stderr.pipe(server.log, { end: false });
    const exited = new Promise((resolve) => peer.once('exit', (code) => resolve(code)));

    // Every page gets a fourth tile: the pion peer's (its synthetic VP8 is
    // no picture, so only its tile is checked), and still plays the others.
    for (const page of pages) {
      await until(`${page.nick} shows four tiles`, async () => (await page.getByRole('figure').count()) === 4 || (await remoteNames(page)));
      for (const other of pages.filter((p) => p !== page)) await waitPlaying(page, other.nick);
    }
    // The tone makes the pages speakers; the picture is the README's.
    await tile(pages[0], 'bob').getByText('Speaking', { exact: true }).waitFor();
    await pages[0].screenshot({ path: path.join(path.dirname(new URL(import.meta.url).pathname), 'screenshots', 'call-four.png') });

    assert.equal(await exited, 0, 'the pion peer ran to the end');
    peer = null;
    const call = JSON.parse(readFileSync(out, 'utf8')).call;
    assert.ok(call.joined === 1 && call.tracks_min >= 6, `the pion peer received ${call.tracks_min} tracks, want the three pages' audio and camera`);
    for (const page of pages) {
      assert.deepEqual(page.problems, [], `${page.nick}'s problems`);
      await page.context().close();
    }
  } finally {
    peer?.kill();
    await browser.close();
    await server.stop();
    rmSync(tone, { force: true });
    rmSync(out, { force: true });
  }
});

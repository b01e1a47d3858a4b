// A video call between two pages in real Chromium, with fake camera and
// microphone: each sees the other's video, the toggles flip the local
// tracks, switching camera and sharing the screen keep the call going, and
// leaving removes the tile on the other side. Also takes the README's
// screenshot of a two-person call with chat.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { delay, joinRoom, openPage, say, Server, suite, TIMEOUT, waitMessage, waitStatus } from './harness.mjs';

const screenshots = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');

const env = suite('call');

/** tile is the call tile captioned name: "You" for the local preview, else a peer's nickname. */
function tile(page, name) {
  return page.getByRole('figure', { name, exact: true });
}

/** waitPlaying waits until the video in name's tile shows frames. */
async function waitPlaying(page, name) {
  const video = await tile(page, name).locator('video').elementHandle();
  await page.waitForFunction((v) => v.videoWidth > 0 && !v.paused && v.readyState >= 2, video, { timeout: TIMEOUT });
}

/** localTrack reports the local preview's track of kind: its label and whether it is enabled. */
function localTrack(page, kind) {
  return tile(page, 'You')
    .locator('video')
    .evaluate((v, k) => {
      const t = v.srcObject?.getTracks().find((track) => track.kind === k);
      return t ? { label: t.label, enabled: t.enabled, state: t.readyState } : null;
    }, kind);
}

/** waitTrack polls the local preview's video track until ok(track) holds. */
async function waitTrack(page, ok) {
  const deadline = Date.now() + TIMEOUT;
  let last;
  while (Date.now() < deadline) {
    last = await localTrack(page, 'video');
    if (last && ok(last)) return;
    await delay(100);
  }
  assert.fail(`local video track never changed as expected; last: ${JSON.stringify(last)}`);
}

/** button finds a call control by its exact accessible name. */
function button(page, name) {
  return page.getByRole('button', { name, exact: true });
}

/** pair opens two pages on server, both in room and both in its call, and waits for each other's video. */
async function pair(server, nicks, room) {
  const pages = [];
  for (const nick of nicks) {
    const page = await openPage(env.browser, server, nick);
    await joinRoom(page, room);
    pages.push(page);
  }
  for (const page of pages) await button(page, 'Join call').click();
  await waitPlaying(pages[0], nicks[1]);
  await waitPlaying(pages[1], nicks[0]);
  return pages;
}

test('two pages hold a video call', { timeout: 120_000 }, async () => {
  const alice = await openPage(env.browser, env.server, 'alice');
  const bob = await openPage(env.browser, env.server, 'bob');
  await joinRoom(alice, 'standup');
  await joinRoom(bob, 'standup');

  // alice starts the call; bob joins it and offers to her.
  await button(alice, 'Join call').click();
  await alice.getByRole('region', { name: /^Call in standup/ }).waitFor();
  await waitPlaying(alice, 'You');
  await button(bob, 'Join call').click();

  await waitPlaying(alice, 'bob');
  await waitPlaying(bob, 'alice');
  // Each page shows two tiles: its own preview and the other peer.
  assert.equal(await alice.getByRole('figure').count(), 2);
  assert.equal(await bob.getByRole('figure').count(), 2);
  // The preview never plays one's own microphone; the peer's tile does play sound.
  assert.equal(await tile(alice, 'You').locator('video').evaluate((v) => v.muted), true);
  assert.equal(await tile(alice, 'bob').locator('video').evaluate((v) => v.muted), false);

  // The README's picture: a call with some chat beside it.
  await say(alice, 'Morning! Can you see me?');
  await say(bob, 'Loud and clear. Sharing the roadmap next.');
  await say(alice, 'Great, go ahead.');
  await waitMessage(alice, 'standup', 'Great, go ahead.');
  mkdirSync(screenshots, { recursive: true });
  await alice.screenshot({ path: path.join(screenshots, 'call.png') });

  // Mute / Unmute flip the microphone track.
  assert.equal((await localTrack(alice, 'audio')).enabled, true);
  await button(alice, 'Mute').click();
  await button(alice, 'Unmute').waitFor();
  assert.equal((await localTrack(alice, 'audio')).enabled, false);
  await button(alice, 'Unmute').click();
  await button(alice, 'Mute').waitFor();
  assert.equal((await localTrack(alice, 'audio')).enabled, true);

  // Camera off / Camera on flip the camera track.
  await button(bob, 'Camera off').click();
  await button(bob, 'Camera on').waitFor();
  assert.equal((await localTrack(bob, 'video')).enabled, false);
  await button(bob, 'Camera on').click();
  await button(bob, 'Camera off').waitFor();
  assert.equal((await localTrack(bob, 'video')).enabled, true);

  // Switching camera replaces the track being sent; the call goes on.
  const camera = alice.getByLabel('Camera', { exact: true });
  const options = await camera.locator('option').evaluateAll((os) => os.map((o) => o.value));
  assert.equal(options.length, 2, 'two fake cameras');
  const current = await camera.inputValue();
  const before = await localTrack(alice, 'video');
  await camera.selectOption(options.find((v) => v !== current));
  await waitTrack(alice, (t) => t.label !== before.label && t.state === 'live');
  await waitPlaying(bob, 'alice');

  // Share screen sends the screen instead of the camera, and Stop sharing brings the camera back.
  const cameraTrack = await localTrack(bob, 'video');
  await button(bob, 'Share screen').click();
  await button(bob, 'Stop sharing').waitFor();
  await waitTrack(bob, (t) => t.label !== cameraTrack.label && t.state === 'live');
  await waitPlaying(alice, 'bob');
  await button(bob, 'Stop sharing').click();
  await button(bob, 'Share screen').waitFor();
  await waitTrack(bob, (t) => t.label === cameraTrack.label && t.state === 'live');
  await waitPlaying(alice, 'bob');

  // bob leaves the call: his tile disappears on alice's page.
  await button(bob, 'Leave call').click();
  await tile(alice, 'bob').waitFor({ state: 'detached' });
  assert.equal(await bob.getByRole('region', { name: /^Call in/ }).count(), 0);
  assert.equal(await localTrack(alice, 'audio').then((t) => t.state), 'live');

  for (const page of [alice, bob]) {
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('a peer that closes its page disappears from the call', { timeout: 120_000 }, async () => {
  const [carol, dave] = await pair(env.server, ['carol', 'dave'], 'drop');
  await dave.context().close();
  await tile(carol, 'dave').waitFor({ state: 'detached' });
  assert.deepEqual(carol.problems, []);
  await carol.context().close();
});

test('the call comes back after a server restart', { timeout: 120_000 }, async () => {
  const [erin, finn] = await pair(env.server, ['erin', 'finn'], 'resume');

  await env.server.stop();
  for (const page of [erin, finn]) {
    await waitStatus(page, 'reconnecting');
    // The server ended the call with the connection: the peer's tile goes,
    // the page's own camera stays on, waiting to rejoin.
    await tile(page, page === erin ? 'finn' : 'erin').waitFor({ state: 'detached' });
    await tile(page, 'You').waitFor();
  }
  await env.server.restart();
  // Whoever rejoins the call second offers to the first.
  await waitPlaying(erin, 'finn');
  await waitPlaying(finn, 'erin');
  const expected = /WebSocket connection to .* failed/;
  for (const page of [erin, finn]) {
    assert.deepEqual(page.problems.filter((p) => !expected.test(p)), []);
    await page.context().close();
  }
});

test('a full call is refused with a message', { timeout: 120_000 }, async () => {
  const small = await Server.start('call-full', ['-call-limit', '1']);
  try {
    const gina = await openPage(env.browser, small, 'gina');
    const hugo = await openPage(env.browser, small, 'hugo');
    await joinRoom(gina, 'tiny');
    await joinRoom(hugo, 'tiny');
    await button(gina, 'Join call').click();
    await waitPlaying(gina, 'You');
    await button(hugo, 'Join call').click();
    await hugo.getByText('The call in tiny is full: at most 1 person.').waitFor();
    // hugo is back where he was: no call, camera released, Join call offered again.
    await button(hugo, 'Join call').waitFor();
    assert.equal(await hugo.getByRole('region', { name: /^Call in/ }).count(), 0);
    assert.equal(await gina.getByRole('figure').count(), 1);
    for (const page of [gina, hugo]) await page.context().close();
  } finally {
    await small.stop();
  }
});

test('the page answers offers only from peers the server announced', { timeout: 120_000 }, async () => {
  // alice's WebSocket goes through the test: it keeps her signals (the
  // server would refuse them to peers it does not know) and can hand her
  // page frames the server would never send now, such as an offer from a
  // member outside the call.
  let route = null;
  const signals = [];
  const warnings = [];
  const alice = await openPage(env.browser, env.server, 'alice', (page) =>
    page.routeWebSocket(/\/ws/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((raw) => {
        const frame = JSON.parse(raw);
        if (frame.type === 'signal') signals.push(frame);
        else server.send(raw);
      });
      route = ws;
    }),
  );
  alice.on('console', (msg) => {
    if (msg.type() === 'warning') warnings.push(msg.text());
  });
  await joinRoom(alice, 'guard');
  await button(alice, 'Join call').click();
  await alice.getByRole('region', { name: 'Call in guard · 1 person' }).waitFor();

  const sdp = await alice.evaluate(async () => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('audio');
    pc.addTransceiver('video');
    await pc.setLocalDescription();
    const offer = pc.localDescription.sdp;
    pc.close();
    return offer;
  });
  const inject = (frame) => route.send(JSON.stringify({ room: 'guard', ...frame }));
  const offerFrom = (from, nick) => inject({ type: 'signal', from, nick, data: { kind: 'offer', sdp } });
  const answerTo = (to) => signals.find((s) => s.to === to && s.data?.kind === 'answer');
  async function waitAnswer(to) {
    const deadline = Date.now() + TIMEOUT;
    while (!answerTo(to)) {
      if (Date.now() > deadline) assert.fail(`no answer to ${to}; signals sent: ${JSON.stringify(signals.map((s) => [s.to, s.data?.kind]))}`);
      await delay(50);
    }
  }

  // An offer from someone the server never announced: no tile, no answer.
  offerFrom('intruder', 'mallory');
  // Then a peer announced with call_peer: its offer is answered. Frames
  // are handled in order, so once this answer is out the intruder's offer
  // was handled too.
  inject({ type: 'call_peer', event: 'join', id: 'friend', nick: 'frank' });
  offerFrom('friend', 'frank');
  await waitAnswer('friend');
  // Tiles are made before the answer; these peers never connect, so their
  // tiles stay captioned "Connecting…" beside the nickname.
  const remoteTiles = () => alice.locator('figure.tile.remote .tile-name').allTextContents();
  assert.deepEqual(await remoteTiles(), ['frank'], 'tiles: only the announced peer');
  assert.deepEqual(signals.filter((s) => s.to === 'intruder'), [], 'signals to a peer the server never announced');
  assert.ok(warnings.some((w) => w.includes('ignored a signal from intruder')), `warnings: ${JSON.stringify(warnings)}`);

  // Once it has left the call, the same peer is a stranger again.
  inject({ type: 'call_peer', event: 'leave', id: 'friend', nick: 'frank' });
  const before = signals.length;
  offerFrom('friend', 'frank');
  inject({ type: 'call_peer', event: 'join', id: 'other', nick: 'olga' });
  offerFrom('other', 'olga');
  await waitAnswer('other');
  assert.deepEqual(await remoteTiles(), ['olga'], 'tiles: not the peer that left');
  assert.deepEqual(signals.slice(before).filter((s) => s.to === 'friend'), [], 'signals to a peer that left');

  assert.deepEqual(alice.problems, []);
  await alice.context().close();
});

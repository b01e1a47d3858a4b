// Unit tests of the page's DOM-free logic: which messages are new after a
// rejoin, which older messages a `history` reply adds, the reconnect backoff,
// the WebSocket address, the nickname rules, invite links and join refusals in words.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinProblem } from '../access.js';
import { nickProblem } from '../chat.js';
import { inviteURL, readLink } from '../invite.js';
import { backoffDelay, BASE_MS, CAP_MS, wsURL } from '../connection.js';
import { PAGE, RoomHistory } from '../history.js';

// msg is a message of the room; messages of one epoch are sent at ts = seq,
// those of epoch eN at N·1000 + seq, so that they differ as real ones do.
const msg = (seq, epoch = 'e1') => ({ type: 'msg', room: 'r', seq, from: 'a', nick: 'a', text: `m${seq}`, ts: tsOf(epoch, seq) });
const tsOf = (epoch, seq) => (Number(String(epoch ?? 'e1').slice(1)) || 1) * 1000 + seq;
const joined = (epoch, seqs, extra = {}) => ({ type: 'joined', room: 'r', epoch, members: [], count: 1, history: seqs.map((s) => msg(s, epoch)), ...extra });
const seqs = (list) => list.map((m) => m.seq);

test('first join shows the whole history and sends no since', () => {
  const h = new RoomHistory();
  assert.deepEqual(h.joinFrame('r'), { type: 'join', room: 'r' });
  const got = h.onJoined(joined('e1', [1, 2, 3]));
  assert.deepEqual(seqs(got.messages), [1, 2, 3]);
  assert.equal(got.resumed, false);
  assert.deepEqual(h.joinFrame('r'), { type: 'join', room: 'r', since: 3, epoch: 'e1' });
});

test('live messages are deduplicated by seq within an epoch', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1, 2]));
  assert.equal(h.accept(msg(2)), false);
  assert.equal(h.accept(msg(3)), true);
  assert.equal(h.accept(msg(3)), false);
  assert.equal(h.accept(msg(1)), false);
  assert.equal(h.accept({ ...msg(4), seq: '4' }), false, 'a non-integer seq is refused');
});

test('rejoin in the same epoch shows only what came after lastSeq', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1, 2, 3]));
  h.accept(msg(4));
  assert.deepEqual(h.joinFrame('r'), { type: 'join', room: 'r', since: 4, epoch: 'e1' });
  // A server may send more than asked (a whole history window): no duplicates.
  const got = h.onJoined(joined('e1', [3, 4, 5, 6], { recovered: true }));
  assert.deepEqual(seqs(got.messages), [5, 6]);
  assert.equal(got.resumed, true);
  assert.equal(got.complete, true);
  assert.equal(h.lastSeq, 6);
});

test('rejoin after messages were lost reports the gap', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1]));
  const got = h.onJoined(joined('e1', [60, 61], { recovered: false }));
  assert.deepEqual(seqs(got.messages), [60, 61]);
  assert.equal(got.complete, false);
});

test('a new epoch shows all of its history, even seqs below the old lastSeq', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1, 2, 3, 4, 5]));
  const got = h.onJoined(joined('e2', [1, 2], { recovered: false }));
  assert.deepEqual(seqs(got.messages), [1, 2]);
  assert.equal(got.complete, false);
  assert.deepEqual(h.joinFrame('r'), { type: 'join', room: 'r', since: 2, epoch: 'e2' });
  assert.equal(h.accept(msg(2, 'e2')), false);
  assert.equal(h.accept(msg(3, 'e2')), true);
});

test('a new epoch whose history repeats messages shown before shows only the new ones', () => {
  // A cluster node cut off from NATS runs the room as an island: its history
  // starts with the messages of the cluster's epoch, then its own.
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1, 2, 3]));
  const island = { ...joined('e9', []), history: [msg(2), msg(3), { ...msg(4, 'e9') }] };
  assert.deepEqual(seqs(h.onJoined(island).messages), [4]);
  // Back in the cluster's epoch, with what others said meanwhile.
  const back = joined('e1', [2, 3, 4, 5]);
  assert.deepEqual(seqs(h.onJoined(back).messages), [4, 5], 'the cluster\'s 4 and 5 are other messages than the island\'s 4');
});

test('a new epoch with an empty history starts from seq 1', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [1, 2, 3]));
  assert.deepEqual(h.onJoined(joined('e2', [])).messages, []);
  assert.equal(h.accept(msg(1)), true);
});

test('a server without epochs still resumes by seq', () => {
  const h = new RoomHistory();
  h.onJoined(joined(undefined, [1, 2]));
  assert.deepEqual(h.joinFrame('r'), { type: 'join', room: 'r', since: 2 });
  assert.deepEqual(seqs(h.onJoined(joined(undefined, [2, 3])).messages), [3]);
});

// top is the `oldest` the page passes: the topmost message shown, by seq and epoch.
const top = (seq, epoch = 'e1') => ({ seq, epoch });
const page = (seqs, more, epoch = 'e1') => ({ type: 'history', room: 'r', messages: seqs.map((s) => msg(s, epoch)), more });

test('paging back asks for the messages before the oldest shown, one request at a time', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [71, 72]));
  assert.equal(h.canLoadOlder(top(71)), true);
  assert.deepEqual(h.olderFrame('r', top(71)), { type: 'history', room: 'r', before: 71, limit: PAGE });
  assert.deepEqual(h.olderFrame('r', top(71), 500).limit, 100, 'the protocol allows 100 at most');
  h.olderSent();
  assert.equal(h.loadingOlder, true);
  assert.equal(h.olderFrame('r', top(71)), null, 'no second request while one is open');
  assert.deepEqual(seqs(h.onOlder(page([21, 22, 70], true), top(71))), [21, 22, 70]);
  assert.equal(h.loadingOlder, false);
  assert.equal(h.canLoadOlder(top(21)), true);
  // Live messages still count from the newest.
  assert.equal(h.accept(msg(73)), true);
  assert.equal(h.accept(msg(70)), false);
});

test('a history reply is shown without duplicates, in seq order', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [50, 51]));
  h.olderSent();
  const reply = page([49, 50, 51, 48, 48], true);
  reply.messages.push({ seq: '47' }, null, { seq: 0 });
  assert.deepEqual(seqs(h.onOlder(reply, top(50))), [48, 49]);
});

test('more:false ends paging back until the oldest shown moves up again', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [21, 22]));
  h.olderSent();
  // Retention has dropped 1..4: the kept history starts at 5.
  assert.deepEqual(seqs(h.onOlder(page([5, 6, 20], false), top(21))), [5, 6, 20]);
  assert.equal(h.canLoadOlder(top(5)), false);
  // The log bound dropped the top of what was loaded: those can come again.
  assert.equal(h.canLoadOlder(top(6)), true);
  // An empty last page ends it at the oldest shown.
  h.olderSent();
  assert.deepEqual(h.onOlder(page([], false), top(6)), []);
  assert.equal(h.canLoadOlder(top(6)), false);
});

test('nothing to page back from: seq 1, no message, another epoch, no epochs at all', () => {
  const h = new RoomHistory();
  assert.equal(h.canLoadOlder(top(5)), false, 'before the join');
  h.onJoined(joined('e1', [1, 2]));
  assert.equal(h.canLoadOlder(top(1)), false);
  assert.equal(h.canLoadOlder(null), false);
  assert.equal(h.olderFrame('r', top(1)), null);
  // The room started a new life; the oldest message shown is of the old one.
  h.onJoined(joined('e2', [1]));
  assert.equal(h.canLoadOlder(top(7, 'e1')), false);
  const old = new RoomHistory();
  old.onJoined(joined(undefined, [7]));
  assert.equal(old.canLoadOlder(top(7, undefined)), false);
});

test('a history reply nobody waits for, or from before a joined, is dropped', () => {
  const h = new RoomHistory();
  h.onJoined(joined('e1', [30]));
  assert.equal(h.onOlder(page([29], true), top(30)), null, 'not asked');
  h.olderSent();
  h.olderFailed(); // refused, or the connection closed
  assert.equal(h.loadingOlder, false);
  assert.equal(h.onOlder(page([29], true), top(30)), null);
  h.olderSent();
  h.onJoined(joined('e1', [30, 31])); // an unasked joined came first
  assert.equal(h.onOlder(page([29], true), top(30)), null);
  assert.equal(h.loadingOlder, false, 'the button works again');
});

test('backoff is fully jittered, doubles and is capped', () => {
  assert.equal(backoffDelay(0, () => 0), 0);
  assert.equal(backoffDelay(0, () => 0.999999), BASE_MS - 1);
  assert.equal(backoffDelay(3, () => 0.5), (BASE_MS * 8) / 2);
  for (const attempt of [5, 10, 50, 1e6]) {
    assert.ok(backoffDelay(attempt, () => 0.999999) < CAP_MS);
    assert.ok(backoffDelay(attempt, () => 0.999999) >= CAP_MS - 1);
  }
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(4);
    assert.ok(d >= 0 && d < BASE_MS * 16 && Number.isInteger(d));
  }
});

test('the WebSocket address follows the page: scheme, host and path prefix', () => {
  const at = (href) => {
    const u = new URL(href);
    return { href: u.href, protocol: u.protocol };
  };
  assert.equal(wsURL(at('http://127.0.0.1:8080/'), ''), 'ws://127.0.0.1:8080/ws');
  assert.equal(wsURL(at('https://chat.example/'), 'bob'), 'wss://chat.example/ws?nick=bob');
  assert.equal(wsURL(at('https://example.org/noom/index.html?x=1#y'), ''), 'wss://example.org/noom/ws');
  assert.equal(wsURL(at('http://h/'), 'a b&c=<x>'), 'ws://h/ws?nick=a+b%26c%3D%3Cx%3E');
});

test('nicknames follow PROTOCOL.md: 1 to 32 characters, no control characters', () => {
  assert.equal(nickProblem('alice'), '');
  assert.equal(nickProblem('<img src=x onerror=window.__x=1>'), '', '32 characters is fine');
  assert.equal(nickProblem('😀'.repeat(32)), '', 'characters, not UTF-16 units');
  assert.notEqual(nickProblem(''), '');
  assert.notEqual(nickProblem('x'.repeat(33)), '');
  assert.notEqual(nickProblem('a\u0007b'), '');
});

test('invite links name the room in the fragment, the passcode only when given', () => {
  const page = new URL('https://meet.example/noom/?x=1#room=old');
  assert.equal(inviteURL(page, 'standup'), 'https://meet.example/noom/#room=standup');
  assert.equal(inviteURL(page, 'standup', 'a b&c#d'), 'https://meet.example/noom/#room=standup&passcode=a+b%26c%23d');
  assert.deepEqual(readLink(new URL(inviteURL(page, 'standup', 'a b&c#d'))), { room: 'standup', passcode: 'a b&c#d' });
  assert.deepEqual(readLink(new URL('https://meet.example/#room=x')), { room: 'x', passcode: '' });
  assert.equal(readLink(new URL('https://meet.example/')), null);
  assert.equal(readLink(new URL('https://meet.example/#passcode=only')), null);
});

test('every join refusal the page explains is said in words', () => {
  for (const code of ['passcode_required', 'bad_passcode', 'too_many_attempts', 'room_locked', 'banned', 'denied']) {
    const text = joinProblem(code, 'standup');
    assert.ok(!text.includes('_'), `${code} is not shown as a code: ${text}`);
    assert.ok(text.endsWith('.'), text);
  }
});

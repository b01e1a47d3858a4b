// The chat view: nickname, the list of open rooms, one tab per joined room
// with its message log (room.js) and members, and the composer. The way in
// (passcodes, the lobby, host keys) is access.js's, the host controls
// meeting.js's; this file decides when a room opens and closes.
//
// Events (CustomEvent, detail: room name or null):
//   active  the room where a call can start changed: the one on show, or
//           null when none is, or while it waits in a lobby
//   leave   the page is out of a room: the user left, was removed, or the
//           host or an operator ended it (the server also ended its part
//           in the call)

import { ACCESS_CODES, hostKeys, JoinDialog } from './access.js';
import { byId, h, hash, plural, toast } from './dom.js';
import { readLink, showRoom } from './invite.js';
import { MEMBER_LIMIT, Meeting } from './meeting.js';
import { Room } from './room.js';
import { RoomList } from './roomlist.js';

const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const NICK_STORE = 'noom.nick';
const encoder = new TextEncoder();

/** nickProblem returns why a nickname is refused (PROTOCOL.md "Names"), or '' if it is fine. */
export function nickProblem(nick) {
  const length = [...nick].length;
  if (length < 1) return 'Choose a nickname.';
  if (length > 32) return 'A nickname has at most 32 characters.';
  if (/\p{Cc}/u.test(nick)) return 'A nickname cannot contain control characters.';
  return '';
}

export class ChatView extends EventTarget {
  #conn;
  /** rooms in tab order. */
  #rooms = new Map();
  #active = null;
  /** pendingJoins lists rooms asked for and not yet answered, in request order. */
  #pendingJoins = [];
  /**
   * pendingOlder lists the rooms with an open `history` request. An error
   * names no room, and the server may answer a quick refusal before a slow
   * page of another room, so an error fails all of them: each shows it and
   * may be tried again. In practice it is one room, the one on show.
   */
  #pendingOlder = new Set();
  /**
   * myId is this connection's id. Ids are unique only within one server
   * lifetime, so messages are "mine" by the current id alone.
   */
  #myId = null;
  /** nick is the nickname the user chose (and the server accepted), kept across reloads. */
  #nick = localStorage.getItem(NICK_STORE) ?? '';
  /** serverNick is the nickname the server knows this connection by, a guest name included. */
  #serverNick = '';
  #tabSeq = 0;
  #roomList;
  #meeting;
  #dialog;

  #els = {
    nickForm: byId('nick-form'),
    nick: byId('nick'),
    joinForm: byId('join-form'),
    roomInput: byId('room'),
    welcome: byId('welcome'),
    roomView: byId('room-view'),
    tabs: byId('tabs'),
    panel: byId('room-panel'),
    title: byId('room-title'),
    count: byId('room-count'),
    leave: byId('leave-room'),
    main: byId('main'),
    roomBody: byId('room-body'),
    waiting: byId('waiting'),
    waitingText: byId('waiting-text'),
    stopWaiting: byId('stop-waiting'),
    logs: byId('logs'),
    composer: byId('composer'),
    message: byId('message'),
  };

  constructor(conn) {
    super();
    this.#conn = conn;
    this.#meeting = new Meeting(conn);
    this.#roomList = new RoomList(conn, (name) => this.join(name));
    this.#dialog = new JoinDialog((name, passcode) => this.join(name, { passcode }));
    const els = this.#els;
    els.nick.value = this.#nick;
    els.nickForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#saveNick();
    });
    // A refused value stays marked until the user edits it.
    els.nick.addEventListener('input', () => els.nick.setCustomValidity(''));
    els.roomInput.addEventListener('input', () => els.roomInput.setCustomValidity(''));
    els.joinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.join(els.roomInput.value.trim());
    });
    els.composer.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#send();
    });
    els.leave.addEventListener('click', () => this.leave(this.#active));
    els.stopWaiting.addEventListener('click', () => this.leave(this.#active));
    // A link pasted into this tab's address bar opens its room too.
    window.addEventListener('hashchange', () => this.openLink());
    els.tabs.addEventListener('keydown', (e) => this.#tabKey(e));
    this.#render();
  }

  /** nick is the nickname to connect with: the one the user chose, if any. */
  get nick() {
    return this.#nick;
  }

  /**
   * join switches to room, joining it first if the page is not in it;
   * passcode goes with that join (and every rejoin) if given.
   */
  join(name, { passcode = '' } = {}) {
    if (!ROOM_NAME.test(name)) {
      this.#els.roomInput.setCustomValidity('Use 1–64 letters, digits, _ - or .');
      this.#els.roomInput.reportValidity();
      return;
    }
    if (!this.#rooms.has(name)) {
      const room = new Room(name, `tab-${++this.#tabSeq}`, () => this.#loadOlder(room));
      room.passcode = passcode;
      room.tab.addEventListener('click', () => this.#activate(name));
      this.#rooms.set(name, room);
      this.#els.tabs.append(room.tab);
      this.#els.logs.append(room.log);
      this.#notice(room, 'Joining…');
      this.#banner(null);
      // Offline, the rejoin after the next `hello` will send it.
      if (this.#conn.send(this.#joinFrame(room))) this.#pendingJoins.push(name);
    }
    this.#els.roomInput.value = '';
    this.#activate(name);
    this.#els.message.focus();
  }

  /** openLink joins the room the page's address names (invite.js), with the link's passcode. */
  openLink() {
    const link = readLink(location);
    if (!link) return;
    if (ROOM_NAME.test(link.room)) this.join(link.room, { passcode: link.passcode });
    else toast('That link names no room noom knows: a room name has 1–64 letters, digits, _ - or .');
  }

  /** leave leaves room (or stops waiting in its lobby) and closes its tab. */
  leave(name) {
    if (!this.#rooms.has(name)) return;
    // Offline there is nothing to tell: the server forgot the room with the
    // connection, and the rejoin after `hello` will skip it.
    this.#conn.send({ type: 'leave', room: name });
    this.#remove(name);
    this.dispatchEvent(new CustomEvent('leave', { detail: name }));
    this.#roomList.requestSoon();
  }

  // ---- server frames ----

  onHello(frame) {
    this.#myId = frame.id;
    this.#setNick(frame.nick);
    this.#roomList.request();
    // Rejoin every room, asking only for what this page has not shown.
    this.#pendingJoins = [];
    for (const [name, room] of this.#rooms) {
      room.lobby.clear(); // Knocks come again with the join.
      this.#conn.send(this.#joinFrame(room));
      this.#pendingJoins.push(name);
    }
  }

  onNick(frame) {
    this.#setNick(frame.nick);
    localStorage.setItem(NICK_STORE, frame.nick);
    this.#nick = frame.nick;
    for (const room of this.#rooms.values()) {
      if (room.members.has(this.#myId)) room.members.set(this.#myId, frame.nick);
    }
    this.#renderMeeting();
  }

  onJoined(frame) {
    this.#pendingJoins = this.#pendingJoins.filter((name) => name !== frame.room);
    const room = this.#rooms.get(frame.room);
    if (!room) return; // Left again before the answer came.
    const { messages, resumed, complete } = room.history.onJoined(frame);
    room.members = new Map();
    for (const m of frame.members ?? []) room.members.set(m.id, m.nick);
    room.count = frame.count ?? room.members.size;
    const admitted = room.waiting;
    room.waiting = false;
    this.#meeting.onJoined(room, frame);
    if (!resumed) {
      room.clear(); // Drop "Joining…".
      this.#roomList.requestSoon(); // The list will have this room, or its new count.
    }
    for (const msg of messages) this.#showMessage(room, msg);
    if (resumed) {
      this.#notice(room, complete ? 'Reconnected.' : 'Reconnected. Messages sent while you were away may be missing.');
    } else if (messages.length === 0) {
      this.#notice(room, `You joined ${room.name}. No messages yet: say hello.`);
    }
    // A new epoch may leave the oldest message shown without older ones to load.
    room.renderOlder();
    if (room.name === this.#active) {
      room.scrollToEnd();
      room.stick = true;
      if (admitted) this.#activate(room.name); // The call can start now.
    }
    this.#render();
  }

  /** onWaiting: the join waits in the room's lobby until a host or cohost lets the page in. */
  onWaiting(frame) {
    this.#pendingJoins = this.#pendingJoins.filter((name) => name !== frame.room);
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    room.waiting = true;
    // A first join drops "Joining…"; a rejoin (after a restart the lobby
    // holds members too) keeps what the page showed, hidden while it waits.
    if (!room.history.joined) room.clear();
    this.#notice(room, 'Waiting for the host to let you in');
    if (room.name === this.#active) this.#activate(room.name);
    this.#render();
  }

  /** onRoom takes a change of the room's settings or roles. */
  onRoom(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    const was = room.role;
    this.#meeting.onRoom(room, frame, this.#myId);
    if (room.role !== was) this.#notice(room, `You are now ${room.role === 'member' ? 'a member' : `a ${room.role}`} of ${room.name}.`);
    this.#renderMeeting();
  }

  /** onKnock: someone waits in the lobby of a room this page hosts. */
  onKnock(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    this.#meeting.onKnock(room, frame);
    // Someone looking at the room sees the lobby list; anyone else is told.
    if (room.name !== this.#active || document.hidden) toast(`${frame.nick} is waiting to join ${room.name}.`, 'info');
    this.#renderMeeting();
  }

  /** onOut closes a room the server took the page out of: `removed` or `ended`. */
  onOut(frame) {
    if (!this.#rooms.has(frame.room)) return;
    this.#remove(frame.room);
    this.dispatchEvent(new CustomEvent('leave', { detail: frame.room }));
    // The server's console acts as a host would, with by "operator".
    const operator = frame.by === 'operator';
    if (frame.type === 'removed') {
      this.#banner(operator ? `An operator removed you from the room ${frame.room}.` : `You were removed from the room ${frame.room}.`);
    } else {
      this.#banner(operator ? `An operator ended the meeting in ${frame.room}.` : `The host ended the meeting in ${frame.room}.`);
    }
    this.#roomList.requestSoon();
  }

  /**
   * onLeft handles a `left` the page did not ask for: the server took it
   * out of the room some other way than removed or ended (an operator's
   * console uses those too). The answer to the user's own Leave finds the
   * tab closed already, and so does one that comes before the answer to a
   * join of the same room, sent after a Leave.
   */
  onLeft(frame) {
    const name = frame.room;
    if (!this.#rooms.has(name) || this.#pendingJoins.includes(name)) return;
    this.#remove(name);
    this.dispatchEvent(new CustomEvent('leave', { detail: name }));
    toast(`You are no longer in ${name}: the server took you out of the room.`, 'info');
    this.#roomList.requestSoon();
  }

  /** onMute says in the room that a host turned this page's microphone off (call.js turns it off). */
  onMute(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    const by = room.members.get(frame.by) ?? 'A host';
    this.#notice(room, `${by} muted your microphone. Only you can turn it on again.`);
  }

  onMsg(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room || !room.history.accept(frame)) return;
    this.#showMessage(room, frame);
    if (frame.room !== this.#active) {
      room.setUnread(room.unread + 1);
      this.#renderTitle();
    }
  }

  /** onHistory shows a page of older messages above the room's log. */
  onHistory(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    this.#pendingOlder.delete(room);
    const messages = room.history.onOlder(frame, room.oldest());
    if (messages === null) room.renderOlder(); // Stale: the button works again.
    else room.prepend(messages, (msg) => msg.from === this.#myId);
  }

  onPresence(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    room.count = frame.count ?? room.count;
    this.#meeting.onPresence(room, frame);
    const old = room.members.get(frame.id);
    switch (frame.event) {
      case 'join':
        if (room.members.size < MEMBER_LIMIT) room.members.set(frame.id, frame.nick);
        this.#notice(room, `${frame.nick} joined`);
        break;
      case 'leave':
        room.members.delete(frame.id);
        this.#notice(room, `${frame.nick} left`);
        break;
      case 'nick':
        if (old !== undefined) room.members.set(frame.id, frame.nick);
        if (old !== undefined && old !== frame.nick) this.#notice(room, `${old} is now ${frame.nick}`);
        break;
    }
    this.#renderCount(room);
  }

  onCount(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room) return;
    room.count = frame.count;
    this.#renderCount(room);
  }

  onRooms(frame) {
    this.#roomList.onRooms(frame);
    this.#renderRoomList();
  }

  onError(frame) {
    const what = frame.message || frame.code;
    switch (frame.ref) {
      case 'join': {
        const name = this.#refusedJoin(frame);
        if (name !== undefined && this.#rooms.has(name)) this.#remove(name);
        if (name !== undefined && ACCESS_CODES.has(frame.code)) this.#dialog.ask(name, frame.code);
        else toast(name ? `Could not join ${name}: ${what}` : `Could not join: ${what}`);
        break;
      }
      case 'nick':
        this.#els.nick.value = this.#serverNick;
        toast(`Nickname not changed: ${what}`);
        break;
      case 'say':
        toast(`Message not sent: ${what}`);
        break;
      case 'history':
        this.#failOlder(`Could not load older messages (${what}). Try again.`);
        break;
      case 'rooms': // The next refresh will do.
      case 'leave': // The tab is closed already; not_in_room changes nothing.
        break;
      default:
        toast(what);
    }
  }

  /**
   * onStatus dims the Send button while there is no connection to send on,
   * and ends the `history` requests that died with the old one: their
   * buttons work again (and send once the page is online).
   */
  onStatus(status) {
    this.#els.composer.classList.toggle('offline', status !== 'online');
    if (status !== 'online') this.#failOlder('');
  }

  /**
   * refusedJoin returns the room a join error is about. An error names no
   * room: it is the oldest join not yet answered, except that a passcode
   * is checked off the server's event loop, so bad_passcode may overtake
   * a quicker answer (it is the oldest join that carried a passcode), and
   * denied answers a join that waits in a lobby, not an open one (the one
   * its message names, if several wait).
   */
  #refusedJoin(frame) {
    if (frame.code === 'denied') {
      const waiting = [...this.#rooms.values()].filter((r) => r.waiting);
      return (waiting.find((r) => String(frame.message).includes(`room ${r.name} `)) ?? waiting[0])?.name;
    }
    let i = 0;
    if (frame.code === 'bad_passcode') i = Math.max(0, this.#pendingJoins.findIndex((name) => this.#rooms.get(name)?.passcode));
    return this.#pendingJoins.splice(i, 1)[0];
  }

  // ---- actions ----

  /** joinFrame is room's `join` (or rejoin), with the host key this browser keeps for it and its passcode. */
  #joinFrame(room) {
    const frame = room.history.joinFrame(room.name);
    const hostKey = hostKeys.get(room.name);
    if (hostKey) frame.host_key = hostKey;
    if (room.passcode) frame.passcode = room.passcode;
    return frame;
  }

  #saveNick() {
    const input = this.#els.nick;
    const nick = input.value.trim();
    const problem = nickProblem(nick);
    input.setCustomValidity(problem);
    if (problem) {
      input.reportValidity();
      return;
    }
    input.value = nick;
    if (!this.#conn.send({ type: 'nick', nick })) {
      // Offline: the next connection carries it in ?nick=.
      this.#nick = nick;
      localStorage.setItem(NICK_STORE, nick);
    }
    input.blur();
  }

  #send() {
    const input = this.#els.message;
    const text = input.value;
    if (!this.#active || text.trim() === '') return;
    if (encoder.encode(text).length > 4096) {
      toast('That message is too long (4096 bytes at most).');
      return;
    }
    if (!this.#conn.send({ type: 'say', room: this.#active, text })) {
      toast('Not connected: the message was not sent. It is still in the field.');
      return;
    }
    input.value = '';
  }

  /** loadOlder asks for the page of messages above room's log. */
  #loadOlder(room) {
    const frame = room.olderFrame();
    if (!frame) return;
    if (!this.#conn.send(frame)) {
      room.setOlderError('Not connected: try again once the page is online.');
      return;
    }
    room.history.olderSent();
    this.#pendingOlder.add(room);
    room.setOlderError('');
  }

  /** failOlder ends every open `history` request unanswered, showing why (or nothing). */
  #failOlder(why) {
    for (const room of this.#pendingOlder) {
      room.history.olderFailed();
      room.setOlderError(why);
    }
    this.#pendingOlder.clear();
  }

  /** remove closes a room's tab and forgets it, left or refused. */
  #remove(name) {
    const room = this.#rooms.get(name);
    this.#rooms.delete(name);
    this.#pendingOlder.delete(room);
    room.tab.remove();
    room.log.remove();
    if (this.#active === name) this.#activate(this.#rooms.keys().next().value ?? null);
    this.#render();
  }

  #activate(name) {
    this.#active = name;
    showRoom(name);
    for (const room of this.#rooms.values()) {
      const on = room.name === name;
      room.tab.setAttribute('aria-selected', String(on));
      room.tab.tabIndex = on ? 0 : -1;
      room.log.hidden = !on;
      if (on) {
        room.setUnread(0);
        this.#els.panel.setAttribute('aria-labelledby', room.tab.id);
        if (room.stick) room.scrollToEnd();
      }
    }
    const callable = name !== null && !this.#rooms.get(name).waiting;
    this.dispatchEvent(new CustomEvent('active', { detail: callable ? name : null }));
    this.#render();
  }

  /** tabKey moves between tabs with the arrow, Home and End keys (the ARIA tabs pattern). */
  #tabKey(e) {
    const tabs = [...this.#rooms.values()].map((r) => r.tab);
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const tab = tabs[(to + tabs.length) % tabs.length];
    tab.focus();
    tab.click();
  }

  // ---- rendering ----

  #setNick(nick) {
    this.#serverNick = nick;
    // Don't overwrite what the user is typing.
    if (document.activeElement !== this.#els.nick) this.#els.nick.value = nick;
  }

  #showMessage(room, msg) {
    room.showMessage(msg, msg.from === this.#myId);
  }

  #notice(room, text) {
    room.notice(text);
  }

  /**
   * banner says, above the room view, why a room closed on the page
   * (removed, ended) until dismissed or the next join; null removes it.
   * It is built afresh each time: an alert inserted is read out at once.
   */
  #banner(text) {
    this.#els.main.querySelector(':scope > .banner')?.remove();
    if (text === null) return;
    const banner = h(
      'div',
      { class: 'banner', role: 'alert' },
      h('p', { text }),
      h('button', { type: 'button', text: 'Dismiss', onclick: () => banner.remove() }),
    );
    this.#els.main.prepend(banner);
  }

  #render() {
    const any = this.#rooms.size > 0;
    this.#els.welcome.hidden = any;
    this.#els.roomView.hidden = !any;
    // Only connections in no room get the list pushed; in rooms, poll it.
    this.#roomList.poll(any);
    this.#renderRoomHead();
    this.#renderRoomList();
    this.#renderTitle();
  }

  /** renderCount shows a joined room's new member count, in its header and in the room list. */
  #renderCount(room) {
    if (room.name === this.#active) this.#renderRoomHead();
    this.#renderRoomList();
  }

  #renderRoomHead() {
    const room = this.#rooms.get(this.#active);
    const els = this.#els;
    const waiting = room?.waiting === true;
    els.title.replaceChildren(...(room ? [hash(), room.name] : []));
    els.count.textContent = room && !waiting ? plural(room.count, 'member') : '';
    // Waiting in a lobby, the page sees nothing of the room: only how to stop waiting.
    els.waiting.hidden = !waiting;
    els.waitingText.textContent = waiting ? 'Waiting for the host to let you in' : '';
    els.roomBody.hidden = waiting;
    els.composer.hidden = waiting;
    els.leave.hidden = waiting;
    els.message.disabled = !room || waiting;
    els.message.placeholder = room ? `Message ${room.name}` : '';
    this.#renderMeeting();
  }

  #renderMeeting() {
    this.#meeting.render(this.#rooms.get(this.#active) ?? null, this.#myId);
  }

  #renderRoomList() {
    this.#roomList.render(this.#rooms, this.#active);
  }

  #renderTitle() {
    let unread = 0;
    for (const room of this.#rooms.values()) unread += room.unread;
    document.title = unread > 0 ? `(${unread}) noom` : 'noom';
  }
}

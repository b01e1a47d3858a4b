// The chat view: nickname, the list of open rooms, one tab per joined room
// with its message log (room.js) and members, and the composer.
//
// Events (CustomEvent, detail: room name or null):
//   active  the shown room changed
//   leave   the user left a room, or the server took the page out of one
//           (the server also ends their part in its call)

import { byId, h, hash, nickClass, toast } from './dom.js';
import { Room } from './room.js';

/** MEMBER_LIMIT bounds each room's member list; the rest shows as "and N more". */
const MEMBER_LIMIT = 500;
/**
 * ROOMS_REFRESH_MS is how often the open-rooms list is asked for while the
 * page is in a room: the server pushes it only to connections in no room.
 */
const ROOMS_REFRESH_MS = 5000;
/**
 * ROOMS_SETTLE_MS is how long after a join or a leave the list is asked
 * for: the server rebuilds it once a second, so a list asked for at once
 * may not show the change yet.
 */
const ROOMS_SETTLE_MS = 1200;
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
  #openRooms = [];
  #tabSeq = 0;
  #refreshTimer = 0;
  #settleTimer = 0;

  #els = {
    nickForm: byId('nick-form'),
    nick: byId('nick'),
    joinForm: byId('join-form'),
    roomInput: byId('room'),
    roomList: byId('room-list'),
    roomListEmpty: byId('room-list-empty'),
    welcome: byId('welcome'),
    roomView: byId('room-view'),
    tabs: byId('tabs'),
    panel: byId('room-panel'),
    title: byId('room-title'),
    count: byId('room-count'),
    leave: byId('leave-room'),
    logs: byId('logs'),
    members: byId('members'),
    composer: byId('composer'),
    message: byId('message'),
  };

  constructor(conn) {
    super();
    this.#conn = conn;
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
    els.tabs.addEventListener('keydown', (e) => this.#tabKey(e));
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.#requestRooms();
    });
    this.#render();
  }

  /** nick is the nickname to connect with: the one the user chose, if any. */
  get nick() {
    return this.#nick;
  }

  /** join switches to room, joining it first if the page is not in it. */
  join(name) {
    if (!ROOM_NAME.test(name)) {
      this.#els.roomInput.setCustomValidity('Use 1–64 letters, digits, _ - or .');
      this.#els.roomInput.reportValidity();
      return;
    }
    if (!this.#rooms.has(name)) {
      const room = new Room(name, `tab-${++this.#tabSeq}`, () => this.#loadOlder(room));
      room.tab.addEventListener('click', () => this.#activate(name));
      this.#rooms.set(name, room);
      this.#els.tabs.append(room.tab);
      this.#els.logs.append(room.log);
      this.#notice(room, 'Joining…');
      // Offline, the rejoin after the next `hello` will send it.
      if (this.#conn.send(room.history.joinFrame(name))) this.#pendingJoins.push(name);
    }
    this.#els.roomInput.value = '';
    this.#activate(name);
    this.#els.message.focus();
  }

  /** leave leaves room and closes its tab. */
  leave(name) {
    if (!this.#rooms.has(name)) return;
    // Offline there is nothing to tell: the server forgot the room with the
    // connection, and the rejoin after `hello` will skip it.
    this.#conn.send({ type: 'leave', room: name });
    this.#remove(name);
    this.dispatchEvent(new CustomEvent('leave', { detail: name }));
    this.#requestRoomsSoon();
  }

  // ---- server frames ----

  onHello(frame) {
    this.#myId = frame.id;
    this.#setNick(frame.nick);
    this.#requestRooms();
    // Rejoin every room, asking only for what this page has not shown.
    this.#pendingJoins = [];
    for (const [name, room] of this.#rooms) {
      this.#conn.send(room.history.joinFrame(name));
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
    this.#renderMembers();
  }

  onJoined(frame) {
    this.#pendingJoins = this.#pendingJoins.filter((name) => name !== frame.room);
    const room = this.#rooms.get(frame.room);
    if (!room) return; // Left again before the answer came.
    const { messages, resumed, complete } = room.history.onJoined(frame);
    room.members = new Map();
    for (const m of frame.members ?? []) room.members.set(m.id, m.nick);
    room.count = frame.count ?? room.members.size;
    if (!resumed) {
      room.clear(); // Drop "Joining…".
      this.#requestRoomsSoon(); // The list will have this room, or its new count.
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
    }
    this.#render();
  }

  /**
   * onLeft handles a `left` the page did not ask for: the server took it
   * out of the room (an operator removed it, or ended the room). The answer
   * to the user's own Leave finds the tab closed already, and so does one
   * that comes before the answer to a join of the same room, sent after a
   * Leave.
   */
  onLeft(frame) {
    const name = frame.room;
    if (!this.#rooms.has(name) || this.#pendingJoins.includes(name)) return;
    this.#remove(name);
    this.dispatchEvent(new CustomEvent('leave', { detail: name }));
    toast(`You are no longer in ${name}: the server took you out of the room.`, 'info');
    this.#requestRoomsSoon();
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
    this.#openRooms = Array.isArray(frame.rooms) ? frame.rooms : [];
    this.#renderRoomList();
  }

  onError(frame) {
    const what = frame.message || frame.code;
    switch (frame.ref) {
      case 'join': {
        const name = this.#pendingJoins.shift();
        if (name !== undefined && this.#rooms.has(name)) this.#remove(name);
        toast(name ? `Could not join ${name}: ${what}` : `Could not join: ${what}`);
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

  // ---- actions ----

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

  #requestRooms() {
    this.#conn.send({ type: 'rooms' });
  }

  /** requestRoomsSoon asks for the list once the server's next rebuild has seen a change. */
  #requestRoomsSoon() {
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => this.#requestRooms(), ROOMS_SETTLE_MS);
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
    this.dispatchEvent(new CustomEvent('active', { detail: name }));
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

  #render() {
    const any = this.#rooms.size > 0;
    this.#els.welcome.hidden = any;
    this.#els.roomView.hidden = !any;
    // Only connections in no room get the list pushed; in rooms, poll it.
    if (any && !this.#refreshTimer) {
      this.#refreshTimer = setInterval(() => {
        if (!document.hidden) this.#requestRooms();
      }, ROOMS_REFRESH_MS);
    } else if (!any && this.#refreshTimer) {
      clearInterval(this.#refreshTimer);
      this.#refreshTimer = 0;
    }
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
    els.title.replaceChildren(...(room ? [hash(), room.name] : []));
    els.count.textContent = room ? plural(room.count, 'member') : '';
    els.message.disabled = !room;
    els.message.placeholder = room ? `Message ${room.name}` : '';
    this.#renderMembers();
  }

  #renderMembers() {
    const room = this.#rooms.get(this.#active);
    if (!room) {
      this.#els.members.replaceChildren();
      return;
    }
    const sorted = [...room.members].sort((a, b) => a[1].localeCompare(b[1]));
    const items = sorted.map(([id, nick]) =>
      h(
        'li',
        { class: 'member' },
        h('span', { class: `avatar ${nickClass(nick)}`, 'aria-hidden': 'true', text: initial(nick) }),
        h('span', { class: 'member-nick', text: nick }),
        id === this.#myId ? h('span', { class: 'you', text: '(you)' }) : '',
      ),
    );
    const more = room.count - room.members.size;
    if (more > 0) items.push(h('li', { class: 'member more', text: `and ${more} more` }));
    this.#els.members.replaceChildren(...items);
  }

  #renderRoomList() {
    const items = this.#openRooms.map(({ room: name, count }) => {
      const joined = this.#rooms.get(name);
      // In a joined room the live count is fresher than the last list.
      const n = joined ? joined.count : count;
      return h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: `room-item${joined ? ' joined' : ''}`,
            // Shown as "# lobby   3", read out as "lobby, 3 members".
            'aria-label': `${name}, ${plural(n, 'member')}`,
            'aria-current': name === this.#active ? 'true' : undefined,
            onclick: () => this.join(name),
          },
          h('span', { class: 'room-name' }, hash(), name),
          h('span', { class: 'room-count', text: String(n) }),
        ),
      );
    });
    this.#els.roomList.replaceChildren(...items);
    this.#els.roomListEmpty.hidden = items.length > 0;
  }

  #renderTitle() {
    let unread = 0;
    for (const room of this.#rooms.values()) unread += room.unread;
    document.title = unread > 0 ? `(${unread}) noom` : 'noom';
  }
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function initial(nick) {
  return ([...nick.trim()][0] ?? '?').toUpperCase();
}

// One joined room's part of the page: its tab, and its message log with the
// "Load older messages" bar at the top. ChatView (chat.js) decides what goes
// in; this file decides how it sits in the log: grouping, the bound, and the
// scroll position when older messages arrive above.

import { h, hash, nickClass } from './dom.js';
import { PAGE, RoomHistory } from './history.js';
import { DEFAULT_SETTINGS } from './meeting.js';

/**
 * LOG_LIMIT bounds a log that follows the newest messages: a message added
 * at the end, while the reader is at the end, drops the oldest entries past
 * it, older pages loaded before included (they can be loaded again).
 */
export const LOG_LIMIT = 500;
/**
 * MAX_LOG bounds a log whatever the reader does. While the reader is
 * scrolled up, new messages drop nothing until it: what they have scrolled
 * back to read, or loaded, stays put. Older pages are loaded only up to it
 * (the last request asks for fewer), so it is a hard bound. It is a few
 * thousand plain elements, which a page handles without trouble.
 */
export const MAX_LOG = 2000;
/** A message within GROUP_MS of the previous one from the same sender shares its header. */
const GROUP_MS = 5 * 60_000;
/** A log scrolled to within STICK_PX of its end follows new messages. */
const STICK_PX = 48;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** sameGroup reports whether message b, right after a, shares a's header. */
function sameGroup(a, b) {
  return a !== undefined && b !== undefined && a.from === b.from && b.ts - a.ts < GROUP_MS;
}

export class Room {
  /** shown maps each message element in the log to {from, ts, seq, epoch}, the epoch it was shown under. */
  #shown = new WeakMap();
  #older;
  #olderButton;
  #olderNote;
  /** olderError is why the last request for older messages failed, or ''. */
  #olderError = '';

  /** onOlder is called when the reader asks for older messages. */
  constructor(name, tabId, onOlder) {
    this.name = name;
    this.history = new RoomHistory();
    /** members maps connection id to nickname. */
    this.members = new Map();
    this.count = 0;
    // The room's meeting state, kept by meeting.js: this page's role, the
    // hosts and cohosts (id to role), the settings, and who knocks (id to
    // nickname, for hosts and cohosts).
    this.role = 'member';
    this.roles = new Map();
    this.settings = { ...DEFAULT_SETTINGS };
    this.lobby = new Map();
    /** waiting is true while this page waits in the room's lobby. */
    this.waiting = false;
    /**
     * passcode is the one this page joined with or set, sent again with
     * every rejoin; '' for none. Kept in memory only, never stored.
     */
    this.passcode = '';
    this.unread = 0;
    this.stick = true;
    // aria-disabled rather than disabled while loading: a disabled button
    // loses the keyboard focus, and the reader would have to find it again.
    this.#olderButton = h('button', {
      type: 'button',
      class: 'older-button',
      onclick: () => {
        if (!this.history.loadingOlder) onOlder();
      },
    });
    this.#olderNote = h('span', { class: 'older-note', hidden: true });
    this.#older = h('div', { class: 'older', hidden: true }, this.#olderButton, this.#olderNote);
    this.log = h(
      'div',
      { class: 'log', role: 'log', 'aria-label': `Messages in ${name}`, tabindex: 0, hidden: true },
      this.#older,
    );
    this.log.addEventListener('scroll', () => {
      const { scrollTop, clientHeight, scrollHeight } = this.log;
      this.stick = scrollTop + clientHeight >= scrollHeight - STICK_PX;
    });
    // The log shrinks when a call opens above it: keep the newest in view.
    new ResizeObserver(() => {
      if (this.stick) this.scrollToEnd();
    }).observe(this.log);
    this.badge = h('span', { class: 'badge', hidden: true });
    this.tab = h(
      'button',
      { type: 'button', role: 'tab', id: tabId, 'aria-controls': 'room-panel', tabindex: -1 },
      hash(),
      h('span', { class: 'tab-name', text: name }),
      this.badge,
    );
  }

  /** entries is how many messages and notices the log holds. */
  get entries() {
    return this.log.childElementCount - 1; // The bar is always its first child.
  }

  /** oldest is {from, ts, seq, epoch} of the topmost message shown, or null. */
  oldest() {
    const el = this.log.querySelector(':scope > .msg');
    return el ? this.#shown.get(el) : null;
  }

  /** olderFrame returns the `history` request for the page above the log, or null. */
  olderFrame() {
    return this.history.olderFrame(this.name, this.oldest(), Math.min(PAGE, MAX_LOG - this.entries));
  }

  /** clear empties the log, for a join that starts it afresh. */
  clear() {
    this.log.replaceChildren(this.#older);
    this.renderOlder();
  }

  /** showMessage adds msg at the end of the log; mine marks one's own. */
  showMessage(msg, mine) {
    const info = this.#info(msg);
    const cont = sameGroup(this.#shown.get(this.log.lastElementChild), info);
    this.#append(this.#entry(msg, info, mine, cont));
  }

  /** notice adds a line of the page's own at the end of the log. */
  notice(text) {
    this.#append(h('div', { class: 'notice', text }));
  }

  /**
   * prepend shows older messages (oldest first) above the log's entries,
   * and keeps the reader's view where it was: the distance from the view to
   * the end of the log is what stays the same, as everything added or
   * removed (the messages, the bar's own change) is above it. mine tells
   * one's own messages.
   */
  prepend(msgs, mine) {
    const fromEnd = this.log.scrollHeight - this.log.scrollTop;
    const first = this.#older.nextElementSibling;
    const block = document.createDocumentFragment();
    let prev;
    for (const msg of msgs) {
      const info = this.#info(msg);
      block.append(this.#entry(msg, info, mine(msg), sameGroup(prev, info)));
      prev = info;
    }
    // The message that topped the log may now continue the last one added.
    if (first && sameGroup(prev, this.#shown.get(first))) first.classList.add('cont');
    this.#older.after(block);
    this.#olderError = '';
    this.renderOlder();
    this.log.scrollTop = this.log.scrollHeight - fromEnd;
  }

  /** setOlderError shows why older messages did not come ('' for none). */
  setOlderError(text) {
    this.#olderError = text;
    this.renderOlder();
  }

  /**
   * renderOlder shows the bar while the room may keep older messages than
   * the log's oldest: the button, "Loading…" while a request is open, and
   * beside it why the last request failed, or that the log is full.
   */
  renderOlder() {
    const button = this.#olderButton;
    const offered = this.history.canLoadOlder(this.oldest());
    if (!offered) {
      // Nothing to load: the bar goes, and the focus it had moves to the log.
      if (document.activeElement === button) this.log.focus({ preventScroll: true });
      this.#older.hidden = true;
      return;
    }
    this.#older.hidden = false;
    const full = this.entries >= MAX_LOG;
    const loading = this.history.loadingOlder;
    button.hidden = full;
    button.textContent = loading ? 'Loading…' : 'Load older messages';
    button.setAttribute('aria-disabled', String(loading));
    const note = full ? `This page shows at most ${MAX_LOG} messages and notices: older ones are not loaded.` : this.#olderError;
    this.#olderNote.textContent = note;
    this.#olderNote.hidden = note === '';
    this.#olderNote.classList.toggle('error', !full && note !== '');
  }

  scrollToEnd() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  setUnread(n) {
    this.unread = n;
    this.badge.hidden = n === 0;
    this.badge.replaceChildren(
      String(n > 99 ? '99+' : n),
      h('span', { class: 'visually-hidden', text: ' unread' }),
    );
  }

  /** append adds an entry at the end, and drops the oldest past the bound (LOG_LIMIT, MAX_LOG). */
  #append(entry) {
    this.log.append(entry);
    const limit = this.stick ? LOG_LIMIT : MAX_LOG;
    let dropped = false;
    while (this.entries > limit) {
      this.#older.nextElementSibling.remove();
      dropped = true;
    }
    // A continued message that lost its group's header gets one back.
    if (dropped) this.#older.nextElementSibling?.classList.remove('cont');
    // The oldest message changed: the bar may come or go.
    if (dropped || entry === this.log.querySelector(':scope > .msg')) this.renderOlder();
    if (this.stick && !this.log.hidden) this.scrollToEnd();
  }

  /** info is what the log remembers of a message it shows. */
  #info(msg) {
    return { from: msg.from, ts: Number(msg.ts) || Date.now(), seq: msg.seq, epoch: this.history.epoch };
  }

  #entry(msg, info, mine, cont) {
    const date = new Date(info.ts);
    const el = h(
      'div',
      { class: `msg${mine ? ' mine' : ''}${cont ? ' cont' : ''}` },
      h(
        'div',
        { class: 'meta' },
        h('span', { class: `nick ${nickClass(String(msg.nick))}`, text: String(msg.nick) }),
        h('time', { datetime: date.toISOString(), title: dateFormat.format(date), text: timeFormat.format(date) }),
      ),
      h('div', { class: 'text', text: String(msg.text) }),
    );
    this.#shown.set(el, info);
    return el;
  }
}

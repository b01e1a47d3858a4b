// The way into a room (PROTOCOL.md, "Rooms that belong to someone"): the
// host keys this browser keeps, the join refusals in words, and the dialog
// that asks for a passcode or says why a room stays shut.

import { byId } from './dom.js';

const HOST_KEYS = 'noom.hostKeys';
/**
 * HOST_KEY_LIMIT bounds the rooms whose host key this browser keeps; past
 * it the key kept longest goes. Someone who created more rooms than that
 * has long forgotten the first ones, and the server forgets empty rooms
 * after a day anyway.
 */
const HOST_KEY_LIMIT = 200;

/**
 * hostKeys keeps each room's host key in localStorage, so that a reload or
 * a server restart leaves the creator host (the key goes with every join of
 * that room). The key is a secret: it goes to the server and nowhere else,
 * never into the page's text or an invite link.
 */
export const hostKeys = {
  get(room) {
    return readKeys()[room] ?? '';
  },
  set(room, key) {
    const keys = readKeys();
    delete keys[room]; // re-inserted last: the newest stays longest
    keys[room] = key;
    const names = Object.keys(keys);
    for (const name of names.slice(0, Math.max(0, names.length - HOST_KEY_LIMIT))) delete keys[name];
    try {
      localStorage.setItem(HOST_KEYS, JSON.stringify(keys));
    } catch {
      // Storage full or disabled: the page stays host until it leaves.
    }
  },
};

function readKeys() {
  try {
    const keys = JSON.parse(localStorage.getItem(HOST_KEYS) ?? '{}');
    return typeof keys === 'object' && keys !== null && !Array.isArray(keys) ? keys : {};
  } catch {
    return {};
  }
}

/** PASSCODE_CODES are the refusals a passcode may answer, so the dialog offers the field. */
const PASSCODE_CODES = new Set(['passcode_required', 'bad_passcode', 'too_many_attempts']);

/** ACCESS_CODES are the join refusals this dialog explains (the rest are toasts). */
export const ACCESS_CODES = new Set([...PASSCODE_CODES, 'room_locked', 'banned', 'denied']);

/** joinProblem says in words why a join of room was refused with code. */
export function joinProblem(code, room) {
  switch (code) {
    case 'passcode_required':
      return `${room} needs a passcode. Ask the host for it, or for a link that includes it.`;
    case 'bad_passcode':
      return 'That passcode is wrong. Check it and try again.';
    case 'too_many_attempts':
      return 'Too many wrong passcodes. Wait a minute, then try again.';
    case 'room_locked':
      return `${room} is locked: the host is not letting anyone new in.`;
    case 'banned':
      return `You were removed from ${room} and cannot come back for now.`;
    case 'denied':
      return `The host did not let you in to ${room}.`;
    default:
      return `Could not join ${room}.`;
  }
}

/**
 * JoinDialog is the modal that a refused join opens: the reason in words,
 * and for the passcode refusals a Passcode field and a Join button, which
 * call onJoin(room, passcode).
 */
export class JoinDialog {
  #onJoin;
  #room = '';
  #els = {
    dialog: byId('join-dialog'),
    form: byId('join-dialog-form'),
    title: byId('join-dialog-title'),
    message: byId('join-dialog-message'),
    field: byId('join-dialog-field'),
    passcode: byId('passcode'),
    submit: byId('join-dialog-submit'),
    cancel: byId('join-dialog-cancel'),
  };

  constructor(onJoin) {
    this.#onJoin = onJoin;
    const els = this.#els;
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const passcode = els.passcode.value;
      if (els.field.hidden || passcode === '') {
        els.dialog.close();
        return;
      }
      els.dialog.close();
      this.#onJoin(this.#room, passcode);
    });
    els.cancel.addEventListener('click', () => els.dialog.close());
    // What was typed is a secret: it does not wait in the field for the next room.
    els.dialog.addEventListener('close', () => (els.passcode.value = ''));
  }

  /** ask opens the dialog for room, refused with code. */
  ask(room, code) {
    const els = this.#els;
    const withField = PASSCODE_CODES.has(code);
    this.#room = room;
    els.title.textContent = `Join ${room}`;
    els.message.textContent = joinProblem(code, room);
    els.field.hidden = !withField;
    els.submit.hidden = !withField;
    els.cancel.textContent = withField ? 'Cancel' : 'Close';
    if (els.dialog.open) els.dialog.close();
    els.dialog.showModal();
    (withField ? els.passcode : els.cancel).focus();
  }
}

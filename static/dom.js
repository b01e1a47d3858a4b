// DOM helpers shared by the chat and call views.
//
// Text that came from the network (nicknames, messages, room names, error
// messages) only ever reaches the page through textContent, here in h() and
// in the callers' own assignments; nothing is parsed as HTML anywhere.

/**
 * h builds an element. props may hold `class`, `text` (set as textContent),
 * `hidden`, event handlers as `on<event>`, and any other attribute. Children
 * are nodes or strings (strings become text nodes).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children);
  return el;
}

/** byId returns the element with the given id, failing loudly if the page lacks it. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el;
}

const TOAST_MS = 6000;

/**
 * toast shows a short message in the page's alert region and removes it
 * after a few seconds or when clicked. kind is 'error' or 'info'.
 */
export function toast(text, kind = 'error') {
  const item = h('div', { class: `toast toast-${kind}`, text });
  const remove = () => item.remove();
  item.addEventListener('click', remove);
  byId('toasts').append(item);
  setTimeout(remove, TOAST_MS);
}

/**
 * nickClass picks one of eight colour classes from a stable hash of the
 * sender, so a person keeps their colour across messages and reloads.
 */
export function nickClass(key) {
  let hash = 0;
  for (const ch of key) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `nick-c${hash % 8}`;
}

/** hash is the "#" shown before room names; screen readers skip it. */
export function hash() {
  return h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' });
}

/**
 * confirmAction asks in the page's confirmation dialog whether to go on
 * with something that cannot be undone. It resolves true when the user
 * presses the button named confirm, false on Cancel or Escape.
 */
export function confirmAction(title, text, confirm) {
  const dialog = byId('confirm-dialog');
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  const ok = byId('confirm-ok');
  ok.textContent = confirm;
  dialog.returnValue = '';
  dialog.showModal();
  byId('confirm-cancel').focus(); // the safe choice is the one under Enter
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** plural is "1 member", "2 members". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

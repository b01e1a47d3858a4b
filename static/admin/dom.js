// DOM and formatting helpers of the console page.
//
// Everything that came from the server (room names, nicks, messages,
// addresses, error texts) reaches the page through textContent, in h()
// and in the callers' own assignments: nothing is parsed as HTML.

/**
 * h builds an element. props may hold `class`, `text` (set as
 * textContent), event handlers as `on<event>`, and other attributes;
 * children are nodes or strings.
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

/** toast shows a short message for a few seconds; kind is 'error' or 'info'. */
export function toast(text, kind = 'error') {
  const item = h('div', { class: `toast toast-${kind}`, text });
  const remove = () => item.remove();
  item.addEventListener('click', remove);
  byId('toasts').append(item);
  setTimeout(remove, TOAST_MS);
}

/**
 * confirmAction asks before an action, in the page's modal dialog, and
 * resolves to true if the operator confirmed.
 */
export function confirmAction(title, text, ok) {
  const dialog = byId('confirm');
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-ok').textContent = ok;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

/** fill replaces el's children. */
export function fill(el, ...children) {
  el.replaceChildren(...children);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** bytes formats a byte count: 1.5 MiB. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 || n >= 100 || Number.isInteger(n) ? Math.round(n) : n.toFixed(1)} ${UNITS[i]}`;
}

/** num formats a count or a rate: whole numbers as such, rates with one decimal, large ones as 12.3k. */
export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(a >= 100 ? 0 : 1);
}

/** pct formats CPU cores used as a percentage of one core. */
export function pct(cores) {
  if (cores === null || cores === undefined) return '—';
  return `${(cores * 100).toFixed(cores >= 1 ? 0 : 1)}%`;
}

/** duration formats seconds: 3d 4h, 2h 5m, 4m 10s, 9s. */
export function duration(s) {
  if (s === null || s === undefined) return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${hr}h`;
  if (hr > 0) return `${hr}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

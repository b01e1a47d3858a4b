// Formatting helpers of the console page. The DOM helpers (h, byId, toast,
// confirmAction) are the chat page's own dom.js, which the console is
// served too (static.AdminFS).

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

// Line charts on canvas, drawn by the page itself: time across (the last
// ten minutes, now at the right), the value up from zero, one thin line
// per node and a thick one for the total. A null is a gap: the node did
// not answer then.

/** NODE_COLORS are the lines of the nodes, in the order of their names. */
export const NODE_COLORS = ['#4f46e5', '#0e7490', '#c2410c', '#15803d', '#a21caf', '#b91c1c', '#7c3aed', '#4d7c0f'];

const PAD = { right: 8, top: 8, bottom: 18 };

/**
 * drawChart draws lines ([{values, color, width}], values aligned with t,
 * Unix ms) over the window of windowMs ending at now. fmt formats the axis
 * labels; binary rounds the axis to powers of 1024 (for bytes).
 */
export function drawChart(canvas, t, lines, fmt, now, windowMs, binary = false) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return; // not shown
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const muted = style.getPropertyValue('--muted').trim() || '#888';
  const grid = style.getPropertyValue('--border').trim() || '#ddd';

  let top = 0;
  for (const line of lines) {
    for (const v of line.values) if (v !== null && v > top) top = v;
  }
  top = binary ? niceCeilBinary(top) : niceCeil(top);
  ctx.font = '11px system-ui, sans-serif';
  const labels = [0, top / 2, top].map((v) => [v, fmt(v)]);
  const left = Math.ceil(Math.max(...labels.map(([, s]) => ctx.measureText(s).width))) + 10; // room for the widest label
  const plotW = width - left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const x = (ms) => left + ((ms - (now - windowMs)) / windowMs) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  ctx.lineWidth = 1;
  ctx.strokeStyle = grid;
  ctx.fillStyle = muted;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (const [v, label] of labels) {
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y(v)) + 0.5);
    ctx.lineTo(width - PAD.right, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(label, left - 6, y(v));
  }
  ctx.textBaseline = 'top';
  ctx.textAlign = 'center';
  for (const [label, ago] of [['−10 min', windowMs], ['−5 min', windowMs / 2], ['now', 0]]) {
    ctx.textAlign = ago === windowMs ? 'left' : ago === 0 ? 'right' : 'center';
    ctx.fillText(label, x(now - ago), height - PAD.bottom + 4);
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(left, PAD.top - 2, plotW, plotH + 4);
  ctx.clip();
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.lineWidth = line.width;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < t.length; i++) {
      const v = line.values[i];
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(x(t[i]), y(v));
      else ctx.moveTo(x(t[i]), y(v));
      pen = true;
    }
    ctx.stroke();
  }
  ctx.restore();
}

/** niceCeil rounds up to 1, 2 or 5 times a power of ten, so the axis reads well; 1 at least. */
function niceCeil(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** niceCeilBinary is niceCeil in units of 1024, 1 KiB at least: 20 MiB rather than 2×10⁷ bytes. */
function niceCeilBinary(v) {
  let unit = 1024;
  while (v / unit >= 1024) unit *= 1024;
  return niceCeil(v / unit) * unit;
}

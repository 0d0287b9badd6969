/* taskq dashboard: the helpers every view shares.
 *
 * The element builder, the formatters of numbers, durations and times, the status
 * badge, toasts and inline alerts. Nothing here talks to the server or holds state
 * beyond the page itself, so any view can import it without an order to respect.
 */

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Tiny element builder. Text always goes in as text nodes, never as HTML, because
 * task names, payloads and error messages come from users.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const numberFormat = new Intl.NumberFormat();
export const fmtInt = (n) => (typeof n === 'number' && Number.isFinite(n) ? numberFormat.format(n) : '—');

/** Compact duration for people: 42s, 3m 12s, 2h 5m, 3d 4h; below 10 s with tenths. */
export function fmtDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '—';
  if (seconds > 0 && seconds < 10 && !Number.isInteger(seconds)) return `${seconds.toFixed(seconds < 1 ? 3 : 1)}s`;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export const parseTs = (ts) => {
  const ms = typeof ts === 'string' ? Date.parse(ts) : NaN;
  return Number.isFinite(ms) ? ms : null;
};

/**
 * Sort key of a server timestamp, precise to the nanosecond: Date.parse stops at the
 * millisecond, and a fast task can start and finish within one.
 */
function tsKey(ts) {
  const m = typeof ts === 'string' ? /^(.*:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)$/i.exec(ts) : null;
  const ms = m ? Date.parse(m[1] + m[3]) : parseTs(ts);
  if (!Number.isFinite(ms)) return null;
  return { ms, frac: m ? (m[2] || '').padEnd(9, '0').slice(0, 9) : '000000000' };
}

/** True when timestamp `a` is strictly later than `b` (false when either is unknown). */
export function isLater(a, b) {
  const x = tsKey(a);
  const y = tsKey(b);
  if (!x || !y) return false;
  return x.ms !== y.ms ? x.ms > y.ms : x.frac > y.frac;
}

/** Seconds from timestamp `a` to `b`, to the microsecond; null when either is unknown. */
export function secondsBetween(a, b) {
  const x = tsKey(a);
  const y = tsKey(b);
  if (!x || !y) return null;
  return (y.ms - x.ms) / 1000 + (Number(y.frac) - Number(x.frac)) / 1e9;
}

export function fmtRel(ts) {
  const ms = parseTs(ts);
  if (ms == null) return '—';
  const diff = (ms - Date.now()) / 1000;
  // A few seconds of clock skew between server and browser should not read "in 2s".
  if (Math.abs(diff) < 5) return 'just now';
  return diff < 0 ? `${fmtDuration(Math.round(-diff))} ago` : `in ${fmtDuration(Math.round(diff))}`;
}

export function fmtAbs(ts) {
  const ms = parseTs(ts);
  return ms == null ? '—' : new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A <time> showing relative time; the ticker in app.js keeps it current. */
export function timeEl(ts) {
  if (!ts) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: ts, title: fmtAbs(ts), dataset: { rel: '' } }, fmtRel(ts));
}

export function statusBadge(status) {
  return h('span', { class: 'badge', dataset: { status: status || '' } },
    h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), status || 'unknown');
}

/** UUID v7 ids share their first (time) bits, so the tail tells tasks apart. */
export const shortId = (id) => (typeof id === 'string' && id.length > 8 ? `…${id.slice(-8)}` : id || '');

export function toast(message, kind = 'info') {
  const el = h('div', { class: `toast toast-${kind}` }, message);
  $('#toasts').append(el);
  setTimeout(() => el.remove(), 5000);
}

/** Restart a CSS animation on an element (used to flash changed values). */
export function flash(el, cls = 'flash') {
  el.classList.remove(cls);
  void el.offsetWidth; // force a reflow so the animation starts again
  el.classList.add(cls);
}

/** Show an error in an inline alert (with its HTTP status when it has one), or clear it. */
export function showAlert(el, error) {
  if (!error) {
    el.hidden = true;
    el.textContent = '';
    return;
  }
  el.textContent = error.status ? `${error.message} (HTTP ${error.status})` : error.message || String(error);
  el.hidden = false;
}

/** Copies text to the clipboard; the toast says whether it worked. */
export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied.`, 'ok');
  } catch {
    // No clipboard permission (an http:// page other than localhost): say so.
    toast(`${what} could not be copied; select it and copy by hand.`, 'error');
  }
}

/* taskq dashboard: the overview, fed by the stream's stats snapshots.
 *
 * The counters, the success rate, the live workers and the two charts (finished tasks
 * per minute, and queue depth over the last 10 minutes, kept in a ring of snapshots).
 * The only global it reads is `uPlot` (static/vendor/uPlot.iife.min.js).
 */

import { $, flash, fmtDuration, fmtInt, h, parseTs, timeEl } from './util.js';

/** One stats snapshot arrives per second: 600 of them cover the queue chart's 10 minutes. */
const RING_CAPACITY = 600;
const QUEUE_WINDOW_SECONDS = 600;
/** Per-minute throughput is kept a little longer than the server's window, for a page left open. */
const THROUGHPUT_KEEP_MINUTES = 30;

/** Fixed-size ring of stats snapshots: the queue chart's memory. */
class Ring {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = [];
    this.start = 0;
  }
  push(item) {
    if (this.items.length < this.capacity) this.items.push(item);
    else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }
  last() {
    if (!this.items.length) return undefined;
    return this.items[(this.start + this.items.length - 1) % this.items.length];
  }
  toArray() {
    return this.items.slice(this.start).concat(this.items.slice(0, this.start));
  }
}

const snapshots = new Ring(RING_CAPACITY);
/** minute (unix seconds) -> { succeeded, failed }, merged from the server's per-minute series. */
const throughput = new Map();
let throughputWindow = 15;
let lastServerTime = null;

/** Shows one stats snapshot: counters, workers, and a point for each chart. */
export function applyStats(s) {
  if (!s || typeof s !== 'object') return;
  const serverMs = parseTs(s.generated_at) ?? Date.now();
  lastServerTime = serverMs / 1000;

  // A gap in the ring (the stream was down) becomes a gap in the chart, not a slope.
  const prev = snapshots.last();
  if (prev && lastServerTime - prev.t > 5) snapshots.push({ t: prev.t + 1, gap: true });
  snapshots.push({
    t: lastServerTime,
    queued: s.queued_tasks,
    running: s.running_tasks,
    scheduled: s.scheduled_tasks,
    succeeded: s.succeeded_tasks,
    failed: s.failed_tasks,
  });

  mergeThroughput(s, prev);
  renderCounters(s);
  renderWorkers(s);
  const now = new Date();
  const updated = $('#updated-at');
  updated.dateTime = now.toISOString();
  updated.textContent = now.toLocaleTimeString();
  scheduleChartUpdate();
}

function mergeThroughput(s, prev) {
  const series = s.throughput && Array.isArray(s.throughput.per_minute) ? s.throughput.per_minute : null;
  if (series) {
    if (Number.isFinite(s.throughput.window_minutes)) throughputWindow = s.throughput.window_minutes;
    // The server's per-minute counts are the truth for the minutes they cover.
    for (const point of series) {
      const ms = parseTs(point.minute);
      if (ms == null) continue;
      throughput.set(Math.floor(ms / 60000) * 60, {
        succeeded: Number(point.succeeded) || 0,
        failed: Number(point.failed) || 0,
      });
    }
  } else if (prev && !prev.gap) {
    // An older server without the series: derive it from counter deltas between
    // snapshots. Manual retries and pruning lower the counters, hence the clamp.
    const minute = Math.floor(lastServerTime / 60) * 60;
    const bucket = throughput.get(minute) || { succeeded: 0, failed: 0 };
    bucket.succeeded += Math.max(0, (s.succeeded_tasks || 0) - (prev.succeeded || 0));
    bucket.failed += Math.max(0, (s.failed_tasks || 0) - (prev.failed || 0));
    throughput.set(minute, bucket);
  }
  const oldest = Math.floor(lastServerTime / 60) * 60 - THROUGHPUT_KEEP_MINUTES * 60;
  for (const minute of throughput.keys()) if (minute < oldest) throughput.delete(minute);
}

function setCounter(id, value) {
  const el = $(id);
  const text = fmtInt(value);
  if (el.textContent !== text) {
    const changed = el.textContent !== '—';
    el.textContent = text;
    if (changed) flash(el, 'bump');
  }
}

function renderCounters(s) {
  setCounter('#count-total', s.total_tasks);
  setCounter('#count-queued', s.queued_tasks);
  setCounter('#count-running', s.running_tasks);
  setCounter('#count-succeeded', s.succeeded_tasks);
  setCounter('#count-failed', s.failed_tasks);
  setCounter('#count-cancelled', s.cancelled_tasks);
  setCounter('#count-scheduled', s.scheduled_tasks);

  const workers = Array.isArray(s.workers) ? s.workers : [];
  const slots = workers.reduce((sum, w) => sum + (Number(w.concurrency) || 0), 0);
  $('#sub-running').textContent = slots ? `of ${fmtInt(slots)} worker slots` : 'on live workers';

  // Success rate of finished work; cancelled tasks were never judged, so they do not count.
  const ok = s.succeeded_tasks || 0;
  const bad = s.failed_tasks || 0;
  const finished = ok + bad;
  const bar = $('#success-bar');
  if (finished > 0) {
    const rate = (ok / finished) * 100;
    const label = `${rate >= 99.95 || rate < 0.05 ? rate.toFixed(0) : rate.toFixed(1)}%`;
    $('#success-rate').textContent = label;
    $('#success-bar-ok').style.width = `${rate}%`;
    $('#success-bar-bad').style.width = `${100 - rate}%`;
    bar.setAttribute('aria-valuenow', rate.toFixed(1));
    bar.setAttribute('aria-valuetext', `${label} of finished tasks succeeded`);
    $('#success-detail').textContent =
      `${fmtInt(ok)} succeeded and ${fmtInt(bad)} failed out of ${fmtInt(finished)} finished. Cancelled tasks are not counted.`;
  } else {
    $('#success-rate').textContent = '—';
    $('#success-bar-ok').style.width = '0%';
    $('#success-bar-bad').style.width = '0%';
    bar.setAttribute('aria-valuenow', '0');
    bar.setAttribute('aria-valuetext', 'no finished tasks yet');
    $('#success-detail').textContent = 'No finished tasks yet. Cancelled tasks are not counted.';
  }
  bar.dataset.empty = finished > 0 ? 'false' : 'true';

  $('#avg-retries').textContent = typeof s.avg_retry_count === 'number' ? s.avg_retry_count.toFixed(2) : '—';
  $('#with-retries').textContent = fmtInt(s.tasks_with_retries);
  const total = s.total_tasks || 0;
  $('#with-retries-detail').textContent = total && typeof s.tasks_with_retries === 'number'
    ? `${((s.tasks_with_retries / total) * 100).toFixed(1)}% of all tasks`
    : 'needed more than one attempt';
  const age = s.oldest_runnable_age_seconds;
  $('#oldest-age').textContent = typeof age === 'number' ? fmtDuration(age) : 'none';
  $('#sub-queued').textContent = typeof age === 'number' ? `oldest waiting ${fmtDuration(age)}` : 'waiting to run';
}

function renderWorkers(s) {
  const workers = (Array.isArray(s.workers) ? s.workers : [])
    .slice()
    .sort((a, b) => String(a.worker_id).localeCompare(String(b.worker_id)));
  const live = typeof s.live_workers === 'number' ? s.live_workers : workers.length;
  $('#workers-count').textContent = fmtInt(live);
  $('#workers-empty').hidden = workers.length > 0;
  // Workers hold nothing focusable, so rebuilding the list every second is safe.
  $('#workers-list').replaceChildren(...workers.map((w) => {
    const concurrency = Number(w.concurrency) || 0;
    const running = Number(w.running) || 0;
    const load = concurrency ? Math.min(100, (running / concurrency) * 100) : 0;
    const startedMs = parseTs(w.started_at);
    return h('li', { class: 'worker', dataset: { workerId: w.worker_id } },
      h('div', { class: 'worker-row' },
        h('span', { class: 'worker-id mono', title: w.worker_id }, w.worker_id),
        h('span', { class: 'worker-load' }, `${fmtInt(running)} / ${fmtInt(concurrency)} busy`)),
      h('div', { class: 'loadbar', 'aria-hidden': 'true' }, h('span', { style: `width:${load}%` })),
      h('p', { class: 'muted small' },
        startedMs == null ? 'up —' : `up ${fmtDuration((Date.now() - startedMs) / 1000)}`,
        ' · seen ', timeEl(w.last_seen_at)),
      w.queues ? h('p', { class: 'muted small worker-queues' }, 'serves ', workerQueues(w.queues)) : null);
  }));
}

/** "default=5,emails=20" as "default ×5, emails ×20". */
function workerQueues(spec) {
  const parts = String(spec).split(',').filter(Boolean).map((entry) => {
    const [name, count] = entry.split('=');
    return [h('span', { class: 'mono' }, name), count ? ` ×${count}` : ''];
  });
  return parts.flatMap((part, i) => (i ? [', ', ...part] : part));
}

const charts = { throughput: null, queue: null, queued: false };

/** Chart colours come from the CSS custom properties, so light and dark stay in one place. */
function chartColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    axis: v('--muted'),
    grid: v('--grid'),
    queued: v('--queued'),
    running: v('--running'),
    scheduled: v('--scheduled'),
    succeeded: v('--succeeded'),
    failed: v('--failed'),
    font: `12px ${v('--font-sans') || 'system-ui, sans-serif'}`,
  };
}

/** Integer steps only: these are task counts. */
const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

function axes(c) {
  const common = { stroke: c.axis, font: c.font, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1, size: 4 } };
  // Hours and minutes in the reader's locale; uPlot's default adds dates and am/pm.
  const clock = (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  return [
    { ...common, values: clock, space: 90 },
    { ...common, size: 48, incrs: COUNT_INCRS, values: (u, ticks) => ticks.map((t) => fmtInt(t)) },
  ];
}

const countRange = (u, min, max) => [0, Math.max(4, Math.ceil((max || 0) * 1.15))];

function throughputData() {
  const end = Math.floor((lastServerTime ?? Date.now() / 1000) / 60) * 60;
  const start = end - (Math.max(1, throughputWindow) - 1) * 60;
  const xs = [];
  const succeeded = [];
  const failed = [];
  const stacked = [];
  for (let m = start; m <= end; m += 60) {
    const b = throughput.get(m) || { succeeded: 0, failed: 0 };
    xs.push(m);
    succeeded.push(b.succeeded);
    failed.push(b.failed);
    stacked.push(b.succeeded + b.failed);
  }
  return { xs, succeeded, failed, stacked };
}

function queueData() {
  const xs = [];
  const queued = [];
  const running = [];
  const scheduled = [];
  const end = lastServerTime ?? Date.now() / 1000;
  for (const snap of snapshots.toArray()) {
    if (snap.t < end - QUEUE_WINDOW_SECONDS) continue;
    xs.push(snap.t);
    const val = (n) => (snap.gap || typeof n !== 'number' ? null : n);
    queued.push(val(snap.queued));
    running.push(val(snap.running));
    scheduled.push(val(snap.scheduled));
  }
  return { xs, queued, running, scheduled, end };
}

function chartWidth(el) {
  return Math.max(200, Math.floor(el.clientWidth));
}

export function buildCharts() {
  const tpEl = $('#chart-throughput');
  const qEl = $('#chart-queue');
  if (typeof window.uPlot !== 'function') {
    // The charts are a nicety; everything else works without them.
    for (const el of [tpEl, qEl]) el.replaceChildren(h('p', { class: 'empty' }, 'Chart library not loaded.'));
    return;
  }
  charts.throughput?.destroy();
  charts.queue?.destroy();
  const c = chartColors();
  const tp = throughputData();
  const bars = window.uPlot.paths.bars({ size: [0.7, 28], align: 0 });

  // Stacked bars by drawing the total (red) first and the succeeded part (green) over
  // it: the red that stays visible is the failed count. The legend shows the real
  // per-series numbers from `charts.tp`, not the stacked total.
  charts.tp = tp;
  const legendValue = (key) => (u, raw, si, idx) => (idx == null ? '—' : fmtInt(charts.tp[key][idx]));
  charts.throughput = new window.uPlot({
    width: chartWidth(tpEl),
    height: 200,
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    legend: { live: true },
    scales: {
      x: { time: true, range: (u, min, max) => [min - 40, max + 40] },
      y: { range: countRange },
    },
    axes: axes(c),
    series: [
      { value: (u, ts) => (ts == null ? '—' : new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) },
      { label: 'Failed', fill: c.failed, stroke: c.failed, width: 0, paths: bars, points: { show: false }, value: legendValue('failed') },
      { label: 'Succeeded', fill: c.succeeded, stroke: c.succeeded, width: 0, paths: bars, points: { show: false }, value: legendValue('succeeded') },
    ],
  }, [tp.xs, tp.stacked, tp.succeeded], tpEl);

  const q = queueData();
  charts.queueEnd = q.end;
  const line = (label, color, fill) => ({
    label, stroke: color, width: 2, fill, points: { show: false },
    value: (u, v) => (v == null ? '—' : fmtInt(v)),
  });
  charts.queue = new window.uPlot({
    width: chartWidth(qEl),
    height: 200,
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    scales: {
      // A fixed 10-minute window, so the chart does not stretch while the ring fills.
      x: { time: true, range: () => [charts.queueEnd - QUEUE_WINDOW_SECONDS, charts.queueEnd] },
      y: { range: countRange },
    },
    axes: axes(c),
    series: [
      { value: (u, ts) => (ts == null ? '—' : new Date(ts * 1000).toLocaleTimeString()) },
      line('Queued', c.queued, withAlpha(c.queued, 0.12)),
      line('Running', c.running),
      line('Scheduled', c.scheduled),
    ],
  }, [q.xs, q.queued, q.running, q.scheduled], qEl);

  updateChartCaptions(tp, q);
}

/** `#rrggbb` plus alpha, for the area under the queue line. */
function withAlpha(hex, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(hex);
  if (!m) return undefined;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

export function scheduleChartUpdate() {
  // At most one redraw per frame, and none while the tab is hidden (the ring still fills).
  if (charts.queued || document.hidden) return;
  charts.queued = true;
  requestAnimationFrame(() => {
    charts.queued = false;
    updateCharts();
  });
}

function updateCharts() {
  const tp = throughputData();
  const q = queueData();
  charts.tp = tp;
  charts.queueEnd = q.end;
  charts.throughput?.setData([tp.xs, tp.stacked, tp.succeeded]);
  charts.queue?.setData([q.xs, q.queued, q.running, q.scheduled]);
  updateChartCaptions(tp, q);
}

function updateChartCaptions(tp, q) {
  const sum = (arr) => arr.reduce((a, b) => a + b, 0);
  const ok = sum(tp.succeeded);
  const bad = sum(tp.failed);
  $('#throughput-caption').textContent =
    `Finished tasks per minute, last ${throughputWindow} minutes: ${fmtInt(ok)} succeeded, ${fmtInt(bad)} failed.`;

  // Recent rate from the ring: finished-counter growth over the last minute of snapshots.
  const ring = snapshots.toArray().filter((s) => !s.gap);
  const last = ring[ring.length - 1];
  const first = last && ring.find((s) => s.t >= last.t - 60);
  if (last && first && last.t - first.t >= 10) {
    const done = Math.max(0, (last.succeeded + last.failed) - (first.succeeded + first.failed));
    const perMinute = (done / (last.t - first.t)) * 60;
    $('#throughput-rate').textContent = `now ≈ ${perMinute < 10 ? perMinute.toFixed(1) : fmtInt(Math.round(perMinute))}/min`;
  } else {
    $('#throughput-rate').textContent = `last ${throughputWindow} minutes`;
  }

  const at = (arr) => {
    for (let i = arr.length - 1; i >= 0; i -= 1) if (arr[i] != null) return arr[i];
    return null;
  };
  $('#queue-caption').textContent = q.xs.length
    ? `Now ${fmtInt(at(q.queued))} queued, ${fmtInt(at(q.running))} running, ${fmtInt(at(q.scheduled))} scheduled; sampled every second while this page is open.`
    : 'Queued, running and scheduled tasks, sampled every second while this page is open.';
}

export function watchChartSize() {
  if (!('ResizeObserver' in window)) return;
  const observe = (el, key) => new ResizeObserver(() => {
    const chart = charts[key];
    if (chart && chart.width !== chartWidth(el)) chart.setSize({ width: chartWidth(el), height: 200 });
  }).observe(el);
  observe($('#chart-throughput'), 'throughput');
  observe($('#chart-queue'), 'queue');
}


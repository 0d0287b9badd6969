/* taskq dashboard.
 *
 * A plain script with no build step: the server embeds this file as it is. It lives
 * in one IIFE so nothing leaks into the page's global scope; the only global it
 * reads is `uPlot` (static/vendor/uPlot.iife.min.js). The queues and schedules views
 * live in modules of their own, static/queues.js and static/schedules.js, which get the
 * helpers they share with this file (api() with its token handling, the element
 * builder, the formatters) as arguments.
 *
 * Data flow:
 *   GET /api/tasks/stream (SSE, read with fetch)
 *      ├─ event: stats ─▶ counters, success rate, workers, ring buffer ─▶ charts
 *      │                  └─▶ queues view (static/queues.js, an ES module imported below)
 *      └─ event: task  ─▶ table row patched in place, or a throttled first-page refresh
 *   GET /api/tasks, /api/tasks/{id}, /api/tasks/{id}/history ◀─ filters, detail drawer
 *   POST /api/tasks, /api/tasks/{id}/cancel, /api/tasks/{id}/retry ◀─ form and buttons
 *   POST /api/queues/{name}/pause|resume, PATCH /api/queues/{name} ◀─ queues view
 *   GET /api/schedules, POST /api/schedules/{name}/pause|resume|trigger ◀─ schedules view
 *
 * Auth: when the server has API_TOKEN set, a 401 opens a small dialog; the token is
 * kept in sessionStorage and sent as `Authorization: Bearer …` on every request,
 * the event stream included. That is why the stream is read with fetch() and not
 * EventSource: EventSource cannot send headers, and a token in the URL would end up
 * in access logs and browser history.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------- settings

  const STREAM_URL = '/api/tasks/stream';
  const PAGE_SIZE = 25;
  /** One stats snapshot arrives per second: 600 of them cover the queue chart's 10 minutes. */
  const RING_CAPACITY = 600;
  const QUEUE_WINDOW_SECONDS = 600;
  /** Per-minute throughput is kept a little longer than the server's window, for a page left open. */
  const THROUGHPUT_KEEP_MINUTES = 30;
  /** Stats arrive every second, so 15 s of silence means a dead connection nobody closed. */
  const STALL_TIMEOUT_MS = 15000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  /** Live task events arrive in bursts; refetch the first page at most this often. */
  const REFRESH_THROTTLE_MS = 600;
  const TOKEN_KEY = 'taskq.apiToken';

  const EVENT_LABELS = {
    task_queued: 'Queued',
    task_started: 'Started',
    task_succeeded: 'Succeeded',
    task_failed: 'Attempt failed',
    retry_scheduled: 'Retry scheduled',
    timeout_occurred: 'Timed out',
    worker_lock_expired: 'Worker lease expired',
    task_failed_final: 'Failed, no retries left',
    task_cancelled: 'Cancelled',
    task_requeued: 'Re-queued by hand',
  };

  /** Colour family of each history event in the timeline (matches the status colours). */
  const EVENT_TONES = {
    task_queued: 'queued',
    task_requeued: 'queued',
    retry_scheduled: 'scheduled',
    task_started: 'running',
    task_succeeded: 'succeeded',
    task_failed: 'warning',
    timeout_occurred: 'warning',
    worker_lock_expired: 'warning',
    task_failed_final: 'failed',
    task_cancelled: 'cancelled',
  };

  // ----------------------------------------------------------------- helpers

  const $ = (sel, root = document) => root.querySelector(sel);

  /**
   * Tiny element builder. Text always goes in as text nodes, never as HTML, because
   * task names, payloads and error messages come from users.
   */
  function h(tag, attrs, ...children) {
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
  const fmtInt = (n) => (typeof n === 'number' && Number.isFinite(n) ? numberFormat.format(n) : '—');

  /** Compact duration for people: 42s, 3m 12s, 2h 5m, 3d 4h. */
  function fmtDuration(seconds) {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '—';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  const parseTs = (ts) => {
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
  function isLater(a, b) {
    const x = tsKey(a);
    const y = tsKey(b);
    if (!x || !y) return false;
    return x.ms !== y.ms ? x.ms > y.ms : x.frac > y.frac;
  }

  function fmtRel(ts) {
    const ms = parseTs(ts);
    if (ms == null) return '—';
    const diff = (ms - Date.now()) / 1000;
    // A few seconds of clock skew between server and browser should not read "in 2s".
    if (Math.abs(diff) < 5) return 'just now';
    return diff < 0 ? `${fmtDuration(-diff)} ago` : `in ${fmtDuration(diff)}`;
  }

  function fmtAbs(ts) {
    const ms = parseTs(ts);
    return ms == null ? '—' : new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  }

  /** A <time> showing relative time; the ticker below keeps it current. */
  function timeEl(ts) {
    if (!ts) return h('span', { class: 'muted' }, '—');
    return h('time', { datetime: ts, title: fmtAbs(ts), dataset: { rel: '' } }, fmtRel(ts));
  }

  function statusBadge(status) {
    return h('span', { class: 'badge', dataset: { status: status || '' } },
      h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), status || 'unknown');
  }

  /** UUID v7 ids share their first (time) bits, so the tail tells tasks apart. */
  const shortId = (id) => (typeof id === 'string' && id.length > 8 ? `…${id.slice(-8)}` : id || '');

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function toast(message, kind = 'info') {
    const el = h('div', { class: `toast toast-${kind}` }, message);
    $('#toasts').append(el);
    setTimeout(() => el.remove(), 5000);
  }

  /** Restart a CSS animation on an element (used to flash changed values). */
  function flash(el, cls = 'flash') {
    el.classList.remove(cls);
    void el.offsetWidth; // force a reflow so the animation starts again
    el.classList.add(cls);
  }

  function showAlert(el, error) {
    if (!error) {
      el.hidden = true;
      el.textContent = '';
      return;
    }
    el.textContent = error instanceof ApiError && error.status
      ? `${error.message} (HTTP ${error.status})`
      : error.message || String(error);
    el.hidden = false;
  }

  // --------------------------------------------------------------- API + auth

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** The server's `{"error": "..."}` message, or the status line when the body is not that. */
  async function errorMessage(res) {
    let message = `${res.status} ${res.statusText || ''}`.trim();
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') message = body.error;
    } catch {
      // Not JSON (a proxy's HTML page, for example): keep the status line.
    }
    return message;
  }

  const storage = {
    get() {
      try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
    },
    set(value) {
      try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* storage disabled: keep it in memory */ }
    },
  };

  let token = storage.get();
  let authPending = null;
  /**
   * Set when the user dismisses the token dialog: further 401s then fail quietly
   * instead of reopening it, until the user clicks "Enter token" in the header.
   */
  let authDismissed = false;

  function authHeaders(extra) {
    const headers = { ...extra };
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /**
   * Ask the user for a token. Concurrent 401s share one dialog: the promise resolves
   * when a token is entered and rejects when the user dismisses the dialog.
   */
  function requestToken(reason, { userAsked = false } = {}) {
    if (authDismissed && !userAsked) return Promise.reject(new ApiError(401, 'An API token is required.'));
    if (!authPending) {
      authPending = new Promise((resolve, reject) => openAuthDialog(reason, resolve, reject))
        .then(() => { authDismissed = false; }, (error) => { authDismissed = true; throw error; })
        .finally(() => { authPending = null; });
    }
    return authPending;
  }

  /** JSON request against the API. Throws ApiError with the server's message on failure. */
  async function api(path, { method = 'GET', body } = {}) {
    for (;;) {
      const sentWith = token;
      const headers = authHeaders({ Accept: 'application/json' });
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: 'no-store',
        });
      } catch {
        throw new ApiError(0, 'The server could not be reached.');
      }
      if (res.status === 401) {
        const message = await errorMessage(res);
        // Another request may already have obtained a new token while this one was out.
        if (token !== sentWith) continue;
        try {
          await requestToken(message);
        } catch {
          throw new ApiError(401, 'An API token is required.');
        }
        continue;
      }
      if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
      if (res.status === 204) return null;
      return res.json();
    }
  }

  function openAuthDialog(reason, resolve, reject) {
    const dialog = $('#auth');
    const form = $('#auth-form');
    const input = $('#auth-token');
    let settled = false;

    $('#auth-reason').textContent = token
      ? 'The saved token was not accepted. Enter a valid API token.'
      : 'This server asks for an API token for every request.';
    showAlert($('#auth-error'), token && reason ? new Error(reason) : null);
    input.value = '';

    const cleanup = () => {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('close', onClose);
      $('#auth-cancel').removeEventListener('click', onCancel);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      token = value;
      storage.set(value);
      settled = true;
      cleanup();
      dialog.close();
      resolve();
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      cleanup();
      if (!settled) reject(new ApiError(401, 'An API token is required.'));
    };

    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', onClose);
    $('#auth-cancel').addEventListener('click', onCancel);
    dialog.showModal();
    input.focus();
  }

  // ------------------------------------------------------------- SSE parsing

  /**
   * Incremental parser for text/event-stream, as the HTML spec describes it: lines
   * end in \n, \r\n or \r; a blank line dispatches the event; lines starting with ':'
   * are comments (keep-alives); fields are event, data (joined with \n), id, retry.
   */
  function createSseParser({ onEvent, onRetry }) {
    let buffer = '';
    let eventType = '';
    let data = [];
    let lastEventId = null;

    function dispatch() {
      if (data.length) onEvent({ event: eventType || 'message', data: data.join('\n'), id: lastEventId });
      eventType = '';
      data = [];
    }

    function processLine(line) {
      if (line === '') return dispatch();
      if (line.startsWith(':')) return;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      switch (field) {
        case 'event': eventType = value; break;
        case 'data': data.push(value); break;
        case 'id': if (!value.includes('\0')) lastEventId = value; break;
        case 'retry': if (/^\d+$/.test(value)) onRetry(Number(value)); break;
        default: break; // unknown fields are ignored, as the spec says
      }
    }

    return {
      push(chunk) {
        buffer += chunk;
        let start = 0;
        for (;;) {
          const lf = buffer.indexOf('\n', start);
          const cr = buffer.indexOf('\r', start);
          if (lf === -1 && cr === -1) break;
          let end;
          let next;
          if (cr !== -1 && (lf === -1 || cr < lf)) {
            // A lone \r at the very end may be the first half of \r\n: wait for more.
            if (cr === buffer.length - 1) break;
            end = cr;
            next = buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
          } else {
            end = lf;
            next = lf + 1;
          }
          processLine(buffer.slice(start, end));
          start = next;
        }
        buffer = buffer.slice(start);
      },
      get lastEventId() { return lastEventId; },
    };
  }

  // ---------------------------------------------------------- connection state

  const conn = {
    state: 'connecting',
    everConnected: false,
    lastEventId: null,
    retryAt: 0,
    resync: false,     // set on each (re)connect until its first stats event re-reads the tasks
    wake: null,        // resolves the current backoff sleep early ("Retry now", back online)
    waitSignIn: null,  // resolves when the user asks to enter a token after dismissing the dialog
  };

  function setConn(state, delayMs = 0) {
    conn.state = state;
    conn.retryAt = Date.now() + delayMs;
    const box = $('#conn');
    box.dataset.state = state;
    document.body.dataset.conn = state;
    $('#conn-retry').hidden = state !== 'reconnecting';
    $('#conn-signin').hidden = state !== 'auth';
    renderConnText();
    const announce = {
      live: 'Live updates connected.',
      reconnecting: 'Live updates interrupted; reconnecting.',
      auth: 'An API token is needed.',
    }[state] || '';
    if (announce && $('#conn-announce').textContent !== announce) $('#conn-announce').textContent = announce;
  }

  function renderConnText() {
    const text = {
      connecting: 'Connecting…',
      live: 'Live',
      auth: 'Token needed',
    }[conn.state];
    if (text) {
      $('#conn-text').textContent = text;
      return;
    }
    const seconds = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
    $('#conn-text').textContent = seconds > 0 ? `Offline · retrying in ${seconds}s` : 'Reconnecting…';
  }

  /** Exponential backoff with jitter, so many open dashboards do not reconnect in lockstep. */
  function backoffDelay(attempt, base) {
    const raw = Math.min(BACKOFF_MAX_MS, base * 2 ** Math.max(0, attempt - 1));
    return Math.round(raw * (0.8 + Math.random() * 0.4));
  }

  function sleepOrWake(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        conn.wake = null;
        resolve();
      }
      conn.wake = done;
    });
  }

  async function streamLoop() {
    let attempt = 0;
    let retryBase = BACKOFF_MIN_MS;

    for (;;) {
      setConn(conn.everConnected ? 'reconnecting' : 'connecting');
      const controller = new AbortController();
      let stallTimer = 0;
      const armStall = () => {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => controller.abort(), STALL_TIMEOUT_MS);
      };

      try {
        armStall();
        const sentWith = token;
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (conn.lastEventId) headers['Last-Event-ID'] = conn.lastEventId;
        const res = await fetch(STREAM_URL, { headers, signal: controller.signal, cache: 'no-store' });

        if (res.status === 401) {
          clearTimeout(stallTimer);
          const message = await errorMessage(res);
          if (token === sentWith) {
            setConn('auth');
            try {
              await requestToken(message);
            } catch {
              // Dismissed: wait until the user clicks "Enter token" in the header.
              await new Promise((resolve) => { conn.waitSignIn = resolve; });
            }
          }
          attempt = 0;
          continue;
        }
        if (!res.ok || !res.body) throw new Error(await errorMessage(res));

        conn.everConnected = true;
        conn.resync = true;
        attempt = 0;
        setConn('live');

        const parser = createSseParser({
          onEvent: handleSseEvent,
          onRetry: (ms) => { retryBase = Math.min(BACKOFF_MAX_MS, Math.max(250, ms)); },
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          armStall();
          parser.push(value);
          conn.lastEventId = parser.lastEventId ?? conn.lastEventId;
        }
        // The server closed the stream (a restart or a deploy): reconnect below.
      } catch (error) {
        console.debug('taskq: event stream interrupted:', error);
      } finally {
        clearTimeout(stallTimer);
        controller.abort();
      }

      attempt += 1;
      const delay = backoffDelay(attempt, retryBase);
      setConn('reconnecting', delay);
      await sleepOrWake(delay);
    }
  }

  function handleSseEvent({ event, data }) {
    let payload;
    try {
      payload = JSON.parse(data);
    } catch {
      console.warn('taskq: ignoring an event whose data is not JSON:', event);
      return;
    }
    if (event === 'stats') {
      applyStats(payload);
      // The first tick of a connection marks where its task events begin. Anything
      // before it (while the stream was down, or between page load and subscription)
      // is not replayed, so the table and an open detail are read again from here.
      if (conn.resync) {
        conn.resync = false;
        refreshTasks();
        if (detail.id) refreshDetailSoon();
      }
    } else if (event === 'task') {
      onTaskEvent(payload);
    }
  }

  // ------------------------------------------------------------------- stats

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
  let lastStats = null;
  let lastServerTime = null;

  function applyStats(s) {
    if (!s || typeof s !== 'object') return;
    lastStats = s;
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
    renderQueueChoices(s);
    if (queuesView) {
      // A fault in the queues view must not cut the live stream this runs inside.
      try {
        queuesView.update(s);
      } catch (error) {
        reportError(error);
      }
    }

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

  // ------------------------------------------------------------------ queues

  /** The queues view (static/queues.js), once its module has loaded. */
  let queuesView = null;
  /** Every queue name the stats have listed, for the task filter and the form. */
  let queueNames = [];

  /** Keep the task list's queue filter and the form's suggestions in step with the stats. */
  function renderQueueChoices(s) {
    if (!Array.isArray(s.queues)) return;
    const names = s.queues.map((q) => q && q.name).filter((n) => typeof n === 'string').sort();
    if (names.join('\n') === queueNames.join('\n')) return;
    queueNames = names;
    const select = $('#filter-queue');
    const selected = select.value;
    const options = names.includes(selected) || !selected ? names : [...names, selected].sort();
    select.replaceChildren(h('option', { value: '' }, 'All queues'), ...options.map((n) => h('option', { value: n }, n)));
    select.value = selected;
    $('#cf-queue-list').replaceChildren(...names.map((n) => h('option', { value: n })));
  }

  /**
   * Filter the task list by `name` in one of its filters (`#filter-queue`,
   * `#filter-schedule`) and bring it into view (from the queues and schedules views).
   */
  function showTasksBy(selector, name) {
    const select = $(selector);
    if (![...select.options].some((o) => o.value === name)) select.append(h('option', { value: name }, name));
    select.value = name;
    loadTasks('replace');
    $('.tasks-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
    select.focus({ preventScroll: true });
  }

  async function loadQueuesView() {
    try {
      const { createQueuesView } = await import('/static/queues.js');
      queuesView = createQueuesView({
        api, h, fmtInt, fmtDuration, flash, toast, parseTs,
        onShowTasks: (name) => showTasksBy('#filter-queue', name),
      });
      if (lastStats) queuesView.update(lastStats);
    } catch (error) {
      console.error('taskq: the queues view could not be loaded:', error);
      $('#queues-empty').hidden = true;
      showAlert($('#queues-error'), new Error('The queues view could not be loaded. Reload the page to try again.'));
    }
  }

  // ------------------------------------------------------------------ schedules

  /** Keep the task list's schedule filter in step with the schedules listed. */
  function renderScheduleChoices(names) {
    const select = $('#filter-schedule');
    const selected = select.value;
    const options = names.includes(selected) || !selected ? names : [...names, selected].sort();
    select.replaceChildren(h('option', { value: '' }, 'Any schedule'), ...options.map((n) => h('option', { value: n }, n)));
    select.value = selected;
  }

  async function loadSchedulesView() {
    try {
      const { createSchedulesView } = await import('/static/schedules.js');
      createSchedulesView({
        api, h, toast, parseTs,
        onShowTasks: (name) => showTasksBy('#filter-schedule', name),
        onNames: renderScheduleChoices,
      });
    } catch (error) {
      console.error('taskq: the schedules view could not be loaded:', error);
      $('#schedules-empty').hidden = true;
      showAlert($('#schedules-error'), new Error('The schedules view could not be loaded. Reload the page to try again.'));
    }
  }

  // ------------------------------------------------------------------ charts

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

  function buildCharts() {
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

  function scheduleChartUpdate() {
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

  function watchChartSize() {
    if (!('ResizeObserver' in window)) return;
    const observe = (el, key) => new ResizeObserver(() => {
      const chart = charts[key];
      if (chart && chart.width !== chartWidth(el)) chart.setSize({ width: chartWidth(el), height: 200 });
    }).observe(el);
    observe($('#chart-throughput'), 'throughput');
    observe($('#chart-queue'), 'queue');
  }

  // ------------------------------------------------------------------- tasks

  const tasks = {
    list: [],
    rows: new Map(),       // task id -> { tr, cells } (rows are patched, not rebuilt, to keep focus)
    next: null,
    pages: 0,
    seq: 0,
    loaded: false,
    refreshTimer: 0,
    refreshing: false,
    refreshAgain: false,
    patches: 0,            // live events applied so far; tells a list response it may be stale
  };

  const filters = () => ({
    status: $('#filter-status').value,
    type: $('#filter-type').value,
    queue: $('#filter-queue').value,
    schedule: $('#filter-schedule').value,
  });

  function matchesFilters(task) {
    const f = filters();
    return (!f.status || task.status === f.status) && (!f.type || task.type === f.type)
      // A task from an older server has no queue: only the default queue can hold it.
      && (!f.queue || (task.queue ?? 'default') === f.queue)
      && (!f.schedule || task.schedule === f.schedule);
  }

  /**
   * mode: 'replace' (filters changed), 'append' (load more), or 'refresh' (new tasks
   * arrived: fetch the first page and merge it on top, keeping pages already loaded).
   */
  async function loadTasks(mode = 'replace') {
    const f = filters();
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (f.status) params.set('status', f.status);
    if (f.type) params.set('type', f.type);
    if (f.queue) params.set('queue', f.queue);
    if (f.schedule) params.set('schedule', f.schedule);
    if (mode === 'append' && tasks.next) params.set('cursor', tasks.next);

    const seq = ++tasks.seq; // a newer request wins, so quick filter changes cannot interleave
    const patchesBefore = tasks.patches;
    const table = $('#tasks-table');
    table.setAttribute('aria-busy', 'true');
    if (mode === 'replace') $('#tasks-summary').textContent = 'Loading tasks…';
    try {
      const body = await api(`/api/tasks?${params}`);
      if (seq !== tasks.seq) return;
      const next = Array.isArray(body) ? null : body?.next_cursor ?? null;
      // The response was read on the server before any live event that arrived while it
      // travelled: keep a row's newer live state rather than step it back.
      const current = new Map(tasks.list.map((t) => [t.id, t]));
      const page = (Array.isArray(body) ? body : Array.isArray(body?.tasks) ? body.tasks : [])
        .map((t) => freshest(current.get(t.id), t));
      if (mode === 'append') {
        const known = new Set(tasks.list.map((t) => t.id));
        tasks.list = tasks.list.concat(page.filter((t) => !known.has(t.id)));
        tasks.next = next;
        tasks.pages += 1;
      } else if (mode === 'refresh' && tasks.pages > 1) {
        const fresh = new Set(page.map((t) => t.id));
        tasks.list = page.concat(tasks.list.filter((t) => !fresh.has(t.id)));
        // The cursor still points past the oldest row loaded, so it stays valid.
      } else {
        tasks.list = page;
        tasks.next = next;
        tasks.pages = 1;
      }
      tasks.loaded = true;
      showAlert($('#tasks-error'), null);
      renderTasks({ flashNew: mode === 'refresh' });
      // Events that came in meanwhile may concern rows this response missed: look again.
      if (tasks.patches !== patchesBefore) refreshTasks();
    } catch (error) {
      if (seq === tasks.seq) {
        showAlert($('#tasks-error'), error);
        if (!tasks.loaded) $('#tasks-summary').textContent = 'Tasks could not be loaded.';
      }
    } finally {
      if (seq === tasks.seq) table.setAttribute('aria-busy', 'false');
    }
  }

  /** Throttled first-page refresh: at most one request in flight, one queued behind it. */
  function refreshTasks() {
    if (tasks.refreshTimer) return;
    tasks.refreshTimer = setTimeout(async () => {
      tasks.refreshTimer = 0;
      if (tasks.refreshing) {
        tasks.refreshAgain = true;
        return;
      }
      tasks.refreshing = true;
      try {
        await loadTasks('refresh');
      } finally {
        tasks.refreshing = false;
        if (tasks.refreshAgain) {
          tasks.refreshAgain = false;
          refreshTasks();
        }
      }
    }, REFRESH_THROTTLE_MS);
  }

  function createRow(task) {
    const tr = h('tr', { dataset: { taskId: task.id } });
    const cells = {
      name: h('td', { class: 'c-name' }),
      type: h('td'),
      queue: h('td', { class: 'c-queue' }),
      status: h('td'),
      priority: h('td', { class: 'num' }),
      retries: h('td', { class: 'num' }),
      worker: h('td', { class: 'mono muted c-worker' }),
      created: h('td'),
      updated: h('td'),
    };
    // The name is a real button (keyboard, screen readers); the whole row is a
    // larger click target for the mouse. Both end in the same handler.
    const open = h('button', { type: 'button', class: 'link' });
    cells.name.append(open, h('span', { class: 'id mono' }));
    tr.append(...Object.values(cells));
    tr.addEventListener('click', () => openDetail(task.id));
    return { tr, cells, open, key: '' };
  }

  function fillRow(row, task) {
    // Skip rows whose visible fields did not change: no needless DOM work or flashing.
    const key = [task.name, task.type, task.queue, task.status, task.priority, task.retry_count, task.max_retries,
      task.worker_id, task.created_at, task.updated_at].join('\u0001');
    if (row.key === key) return false;
    const statusChanged = row.tr.dataset.status !== task.status;
    row.key = key;
    row.tr.dataset.status = task.status;
    row.open.textContent = task.name || '(unnamed)';
    row.open.setAttribute('aria-label', `${task.name || 'Unnamed task'}, ${task.status}: show details`);
    row.cells.name.querySelector('.id').textContent = shortId(task.id);
    row.cells.type.replaceChildren(h('code', {}, task.type));
    row.tr.dataset.queue = task.queue ?? 'default';
    row.cells.queue.replaceChildren(h('span', { class: 'mono' }, task.queue ?? 'default'));
    row.cells.queue.title = task.queue ?? 'default';
    row.cells.status.replaceChildren(statusBadge(task.status));
    row.cells.priority.textContent = fmtInt(task.priority);
    row.cells.retries.textContent = `${fmtInt(task.retry_count)} / ${fmtInt(task.max_retries)}`;
    row.cells.worker.textContent = task.worker_id || '—';
    row.cells.worker.title = task.worker_id || '';
    row.cells.created.replaceChildren(timeEl(task.created_at));
    row.cells.updated.replaceChildren(timeEl(task.updated_at));
    return statusChanged;
  }

  /** flashNew: highlight rows that appeared live (not those of a fresh page load). */
  function renderTasks({ flashNew = false } = {}) {
    const body = $('#tasks-body');
    const keep = new Set();
    let cursor = body.firstElementChild;
    for (const task of tasks.list) {
      keep.add(task.id);
      let row = tasks.rows.get(task.id);
      const isNew = !row;
      if (!row) {
        row = createRow(task);
        tasks.rows.set(task.id, row);
      }
      const changed = fillRow(row, task);
      // Move a row only when it is out of place, so a focused row keeps its focus.
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else body.insertBefore(row.tr, cursor);
      if ((isNew && flashNew) || (!isNew && changed)) flash(row.tr);
    }
    for (const [id, row] of tasks.rows) {
      if (!keep.has(id)) {
        row.tr.remove();
        tasks.rows.delete(id);
      }
    }

    const f = filters();
    const empty = tasks.list.length === 0;
    $('#tasks-empty').hidden = !empty;
    $('#tasks-empty').textContent = f.status || f.type || f.queue ? 'No tasks match these filters.' : 'No tasks yet. Create one with “New task”.';
    $('#tasks-more').hidden = !tasks.next;
    $('#tasks-summary').textContent = empty ? '' : `Showing ${fmtInt(tasks.list.length)} ${tasks.list.length === 1 ? 'task' : 'tasks'}, newest first.`;
  }

  /** The later of two versions of one task, by `updated_at`; the fetched one on a tie. */
  function freshest(known, fetched) {
    return known && isLater(known.updated_at, fetched.updated_at) ? known : fetched;
  }

  /** Put a task we just got from the API into the table (from an action or the form). */
  function upsertTask(fetched) {
    if (!fetched || !fetched.id) return;
    const i = tasks.list.findIndex((t) => t.id === fetched.id);
    const task = i === -1 ? fetched : freshest(tasks.list[i], fetched);
    if (i !== -1) {
      if (matchesFilters(task)) tasks.list[i] = task;
      else tasks.list.splice(i, 1);
    } else if (matchesFilters(task)) {
      tasks.list.unshift(task);
    } else {
      return;
    }
    renderTasks({ flashNew: true });
  }

  /** `event: task` from the stream: a history entry plus the task's type and name. */
  function onTaskEvent(ev) {
    if (!ev || !ev.task_id) return;
    const i = tasks.list.findIndex((t) => t.id === ev.task_id);
    if (i !== -1 && isLater(tasks.list[i].updated_at, ev.created_at)) {
      // The row already shows a later state than this event describes.
    } else if (i !== -1) {
      const current = tasks.list[i];
      tasks.patches += 1;
      const patched = {
        ...current,
        status: ev.status || current.status,
        retry_count: typeof ev.retry_count === 'number' ? ev.retry_count : current.retry_count,
        worker_id: ev.worker_id === undefined ? current.worker_id : ev.worker_id,
        updated_at: ev.created_at || current.updated_at,
      };
      if (ev.error_message) patched.last_error = ev.error_message;
      if (ev.next_run_at) patched.run_at = ev.next_run_at;
      if (matchesFilters(patched)) tasks.list[i] = patched;
      else tasks.list.splice(i, 1); // it left the filtered set (a failed task retried, say)
      renderTasks();
    } else if (matchesFilters({ status: ev.status, type: ev.type, queue: ev.queue })) {
      refreshTasks();
    }
    if (detail.id === ev.task_id) refreshDetailSoon();
  }

  // ------------------------------------------------------------------ detail

  const detail = { id: null, task: null, seq: 0, timer: 0 };

  function openDetail(id) {
    const dialog = $('#detail');
    if (detail.id !== id) {
      detail.task = null;
      $('#detail-title').textContent = 'Loading…';
      $('#detail-id').textContent = id;
      $('#detail-type').textContent = 'task';
      $('#detail-fields').replaceChildren();
      $('#detail-history').replaceChildren();
      $('#detail-payload').textContent = '';
      $('#detail-error-block').hidden = true;
      $('#detail-result-block').hidden = true;
      setDetailStatus('');
      $('#detail-cancel').hidden = true;
      $('#detail-retry').hidden = true;
      showAlert($('#detail-error'), null);
    }
    detail.id = id;
    if (!dialog.open) dialog.showModal();
    loadDetail();
  }

  function refreshDetailSoon() {
    clearTimeout(detail.timer);
    detail.timer = setTimeout(loadDetail, 250);
  }

  async function loadDetail() {
    const id = detail.id;
    if (!id) return;
    const seq = ++detail.seq;
    const body = $('#detail-body');
    body.setAttribute('aria-busy', 'true');
    try {
      const path = `/api/tasks/${encodeURIComponent(id)}`;
      const [task, history] = await Promise.all([api(path), api(`${path}/history`)]);
      if (seq !== detail.seq || id !== detail.id) return;
      renderDetail(task);
      renderHistory(Array.isArray(history) ? history : history?.history || history?.events || []);
      showAlert($('#detail-error'), null);
      upsertTask(task);
    } catch (error) {
      if (seq === detail.seq) showAlert($('#detail-error'), error);
    } finally {
      if (seq === detail.seq) body.setAttribute('aria-busy', 'false');
    }
  }

  function setDetailStatus(status) {
    const badge = $('#detail-status');
    badge.dataset.status = status;
    badge.replaceChildren(...(status ? [h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), status] : []));
  }

  function renderDetail(task) {
    detail.task = task;
    $('#detail-title').textContent = task.name || '(unnamed)';
    $('#detail-type').textContent = task.type || 'task';
    $('#detail-id').textContent = task.id;
    setDetailStatus(task.status);
    $('#detail-cancel').hidden = task.status !== 'queued';
    $('#detail-retry').hidden = !(task.status === 'failed' || task.status === 'cancelled');

    const started = parseTs(task.started_at);
    const completed = parseTs(task.completed_at);
    const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
    $('#detail-fields').replaceChildren(
      ...field('Queue', h('span', { class: 'mono' }, task.queue ?? 'default')),
      ...field('Priority', fmtInt(task.priority)),
      ...field('Retries', `${fmtInt(task.retry_count)} of ${fmtInt(task.max_retries)}`),
      ...field('Backoff', fmtDuration(task.backoff_seconds)),
      ...field('Timeout', fmtDuration(task.timeout_seconds)),
      ...field('Run at', timeEl(task.run_at)),
      ...field('Worker', task.worker_id ? h('span', { class: 'mono' }, task.worker_id) : '—'),
      ...field('Created', timeEl(task.created_at)),
      ...field('Started', timeEl(task.started_at)),
      ...field('Completed', timeEl(task.completed_at)),
      ...field('Duration', started != null && completed != null ? fmtDuration((completed - started) / 1000) : '—'),
      ...field('Updated', timeEl(task.updated_at)),
    );

    $('#detail-error-block').hidden = !task.last_error;
    $('#detail-last-error').textContent = task.last_error || '';
    $('#detail-payload').textContent = JSON.stringify(task.payload ?? {}, null, 2);
    const hasResult = task.result !== null && task.result !== undefined;
    $('#detail-result-block').hidden = !hasResult;
    $('#detail-result').textContent = hasResult ? JSON.stringify(task.result, null, 2) : '';
  }

  function renderHistory(events) {
    const list = $('#detail-history');
    if (!events.length) {
      list.replaceChildren(h('li', { class: 'muted small' }, 'No history recorded.'));
      return;
    }
    list.replaceChildren(...events.map((ev) => {
      const meta = [timeEl(ev.created_at)];
      if (ev.status) meta.push(' · ', ev.status);
      if (ev.retry_count) meta.push(` · retry ${ev.retry_count}`);
      if (ev.worker_id) meta.push(' · ', h('span', { class: 'mono' }, ev.worker_id));
      return h('li', { class: 'event', dataset: { event: ev.event_type, tone: EVENT_TONES[ev.event_type] || 'neutral' } },
        h('span', { class: 'event-dot', 'aria-hidden': 'true' }),
        h('div', { class: 'event-body' },
          h('p', { class: 'event-title' },
            h('strong', {}, EVENT_LABELS[ev.event_type] || ev.event_type),
            ' ', h('code', { class: 'event-type' }, ev.event_type)),
          h('p', { class: 'event-meta muted small' }, meta),
          ev.next_run_at ? h('p', { class: 'small' }, 'Next attempt ', timeEl(ev.next_run_at)) : null,
          ev.error_message ? h('pre', { class: 'code code-error' }, ev.error_message) : null));
    }));
  }

  async function taskAction(kind) {
    const id = detail.id;
    if (!id) return;
    const buttons = [$('#detail-cancel'), $('#detail-retry')];
    buttons.forEach((b) => { b.disabled = true; });
    showAlert($('#detail-error'), null);
    try {
      const task = await api(`/api/tasks/${encodeURIComponent(id)}/${kind}`, { method: 'POST' });
      if (detail.id === id && task) renderDetail(task);
      upsertTask(task);
      toast(kind === 'cancel' ? `Cancelled “${task?.name ?? id}”.` : `“${task?.name ?? id}” is queued again.`, 'ok');
      loadDetail();
    } catch (error) {
      // 409 means the status moved on meanwhile (it started, or finished): say so and reload.
      showAlert($('#detail-error'), error);
      if (error.status === 409) {
        const message = error.message;
        await loadDetail();
        showAlert($('#detail-error'), new ApiError(409, message));
      }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ------------------------------------------------------------- create form

  let taskTypes = [];

  async function loadTypes() {
    try {
      const body = await api('/api/task-types');
      taskTypes = (Array.isArray(body) ? body : body?.types || []).map(String);
    } catch (error) {
      taskTypes = [];
      return error;
    }
    const filter = $('#filter-type');
    const selected = filter.value;
    filter.replaceChildren(h('option', { value: '' }, 'All types'), ...taskTypes.map((t) => h('option', { value: t }, t)));
    filter.value = taskTypes.includes(selected) ? selected : '';

    const create = $('#cf-type');
    const chosen = create.value;
    create.replaceChildren(...taskTypes.map((t) => h('option', { value: t }, t)));
    if (taskTypes.includes(chosen)) create.value = chosen;
    return null;
  }

  async function openCreate() {
    const dialog = $('#create');
    showAlert($('#create-error'), null);
    dialog.showModal();
    $('#cf-name').focus();
    if (!taskTypes.length) {
      const error = await loadTypes();
      if (error) showAlert($('#create-error'), new ApiError(error.status, `Task types could not be loaded: ${error.message}`));
    }
  }

  /** Integer from a number input, or undefined when it is empty. */
  function intField(selector) {
    const raw = $(selector).value.trim();
    return raw === '' ? undefined : Number.parseInt(raw, 10);
  }

  async function submitCreate(event) {
    event.preventDefault();
    const errorEl = $('#create-error');
    showAlert(errorEl, null);

    // Check the payload here: a JSON syntax error is better shown next to the textarea
    // with its position than as a generic 400 from the server.
    const raw = $('#cf-payload').value.trim();
    let payload = {};
    if (raw) {
      try {
        payload = JSON.parse(raw);
      } catch (error) {
        showAlert(errorEl, new Error(`Payload is not valid JSON: ${error.message}`));
        $('#cf-payload').focus();
        return;
      }
      if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
        showAlert(errorEl, new Error('Payload must be a JSON object, for example {"to": "ada@example.com"}.'));
        $('#cf-payload').focus();
        return;
      }
    }

    const body = { name: $('#cf-name').value.trim(), type: $('#cf-type').value, payload };
    const priority = intField('#cf-priority');
    const delay = intField('#cf-delay');
    const maxRetries = intField('#cf-max-retries');
    const timeout = intField('#cf-timeout');
    const idempotency = $('#cf-idempotency').value.trim();
    const queue = $('#cf-queue').value.trim();
    if (priority !== undefined) body.priority = priority;
    if (delay) body.delay_seconds = delay;
    if (maxRetries !== undefined) body.max_retries = maxRetries;
    if (timeout !== undefined) body.timeout_seconds = timeout;
    if (idempotency) body.idempotency_key = idempotency;
    if (queue) body.queue = queue;

    const submit = $('#create-submit');
    submit.disabled = true;
    submit.textContent = 'Creating…';
    try {
      const task = await api('/api/tasks', { method: 'POST', body });
      $('#create').close();
      resetCreateForm();
      upsertTask(task);
      toast(`Created “${task?.name ?? body.name}”.`, 'ok');
    } catch (error) {
      showAlert(errorEl, error);
    } finally {
      submit.disabled = false;
      submit.textContent = 'Create task';
    }
  }

  function resetCreateForm() {
    const type = $('#cf-type').value;
    const queue = $('#cf-queue').value;
    $('#create-form').reset();
    $('#cf-payload').value = '{}';
    // Keep the last type and queue: people tend to create several alike.
    $('#cf-type').value = type;
    $('#cf-queue').value = queue;
  }

  // ----------------------------------------------------------------- startup

  function wireUi() {
    $('#open-create').addEventListener('click', openCreate);
    $('#create-cancel').addEventListener('click', () => $('#create').close());
    $('#create-form').addEventListener('submit', submitCreate);

    $('#detail-close').addEventListener('click', () => $('#detail').close());
    $('#detail').addEventListener('close', () => { detail.id = null; });
    // A click on the backdrop (outside the drawer's box) closes it, as people expect.
    $('#detail').addEventListener('click', (event) => {
      if (event.target === event.currentTarget) {
        const r = event.currentTarget.getBoundingClientRect();
        const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
        if (!inside) event.currentTarget.close();
      }
    });
    $('#detail-cancel').addEventListener('click', () => taskAction('cancel'));
    $('#detail-retry').addEventListener('click', () => taskAction('retry'));
    $('#detail-refresh').addEventListener('click', loadDetail);

    $('#filter-status').addEventListener('change', () => loadTasks('replace'));
    $('#filter-type').addEventListener('change', () => loadTasks('replace'));
    $('#filter-queue').addEventListener('change', () => loadTasks('replace'));
    $('#filter-schedule').addEventListener('change', () => loadTasks('replace'));
    $('#filters').addEventListener('submit', (event) => event.preventDefault());
    $('#tasks-refresh').addEventListener('click', () => loadTasks('replace'));
    $('#tasks-more').addEventListener('click', () => loadTasks('append'));

    $('#conn-retry').addEventListener('click', () => conn.wake?.());
    $('#conn-signin').addEventListener('click', () => {
      requestToken('', { userAsked: true }).then(() => {
        // Everything that failed for want of a token is fetched again.
        const resume = conn.waitSignIn;
        conn.waitSignIn = null;
        resume?.();
        loadAll();
      }, () => {});
    });
    window.addEventListener('online', () => conn.wake?.());

    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) scheduleChartUpdate();
    });
    // Colours live in CSS; rebuild the charts when the system theme flips.
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', buildCharts);

    // One ticker for every relative time on the page and the reconnect countdown.
    setInterval(() => {
      for (const el of document.querySelectorAll('time[data-rel]')) el.textContent = fmtRel(el.dateTime);
      if (conn.state === 'reconnecting') renderConnText();
    }, 1000);
  }

  async function loadAll() {
    // Paint numbers straight away instead of waiting for the stream's first tick.
    api('/api/stats').then(applyStats, (error) => console.debug('taskq: stats request failed:', error));
    await loadTypes();
    await loadTasks('replace');
  }

  function start() {
    wireUi();
    buildCharts();
    watchChartSize();
    loadQueuesView();
    loadSchedulesView();
    loadAll();
    streamLoop();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

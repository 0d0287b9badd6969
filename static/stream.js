/* taskq dashboard: the live event stream and the connection indicator.
 *
 *   GET /api/tasks/stream (SSE, read with fetch so it can carry the API token)
 *      ├─ event: stats    ─▶ onStats (counters, charts, queues, workers)
 *      ├─ event: task     ─▶ onTask (the task list, an open task)
 *      └─ event: progress ─▶ onProgress (an open task's progress bar)
 *
 * The stream reconnects with jittered exponential backoff; the header shows the state
 * and counts down to the next attempt. `onConnect` runs at the first stats event of
 * every connection: anything that happened while the stream was down is not replayed,
 * so the views read their data again from there.
 */

import { $ } from './util.js';
import { authHeaders, currentToken, errorMessage, requestToken } from './api.js';

const STREAM_URL = '/api/tasks/stream';
/** Stats arrive every second, so 15 s of silence means a dead connection nobody closed. */
const STALL_TIMEOUT_MS = 15000;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

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

const conn = {
  state: 'connecting',
  everConnected: false,
  lastEventId: null,
  retryAt: 0,
  resync: false,     // set on each (re)connect until its first stats event
  wake: null,        // resolves the current backoff sleep early ("Retry now", back online)
  waitSignIn: null,  // resolves when the user asks to enter a token after dismissing the dialog
};

function setConn(state, delayMs = 0) {
  conn.state = state;
  conn.retryAt = Date.now() + delayMs;
  $('#conn').dataset.state = state;
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
  const text = { connecting: 'Connecting…', live: 'Live', auth: 'Token needed' }[conn.state];
  if (text) {
    $('#conn-text').textContent = text;
    return;
  }
  const seconds = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
  $('#conn-text').textContent = seconds > 0 ? `Offline · retrying in ${seconds}s` : 'Reconnecting…';
}

/** Called every second by the page's ticker: the reconnect countdown. */
export function tickConnection() {
  if (conn.state === 'reconnecting') renderConnText();
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

/** Reconnect now instead of at the end of the backoff. */
export const reconnectNow = () => conn.wake?.();

/** The user entered a token after dismissing the dialog: a stream waiting for one resumes. */
export function resumeAfterSignIn() {
  const resume = conn.waitSignIn;
  conn.waitSignIn = null;
  resume?.();
}

/** Reads the stream for ever, reconnecting; hands every event to the callbacks. */
export async function streamLoop({ onStats, onTask, onProgress, onConnect }) {
  let attempt = 0;
  let retryBase = BACKOFF_MIN_MS;

  const handle = ({ event, data }) => {
    let payload;
    try {
      payload = JSON.parse(data);
    } catch {
      console.warn('taskq: ignoring an event whose data is not JSON:', event);
      return;
    }
    if (event === 'stats') {
      onStats(payload);
      if (conn.resync) {
        conn.resync = false;
        onConnect();
      }
    } else if (event === 'task') {
      onTask(payload);
    } else if (event === 'progress') {
      onProgress(payload);
    }
  };

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
      const sentWith = currentToken();
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (conn.lastEventId) headers['Last-Event-ID'] = conn.lastEventId;
      const res = await fetch(STREAM_URL, { headers, signal: controller.signal, cache: 'no-store' });

      if (res.status === 401) {
        clearTimeout(stallTimer);
        const message = await errorMessage(res);
        if (currentToken() === sentWith) {
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
        onEvent: handle,
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

/* taskq dashboard: one task's full story, at `#/tasks/{id}`.
 *
 *   GET  /api/tasks/{id}, /api/tasks/{id}/history  ◀─ opening, and each live event of the task
 *   event: progress (the live stream)              ◀─ the progress bar, between events
 *   POST /api/tasks/{id}/cancel, /retry            ◀─ the drawer's buttons (Cancel stops a
 *                                                     running task too: "Cancelling…" until it ends)
 *
 * The drawer shows the task's fields, its payload and result (pretty-printed, with a
 * copy button), a table of its attempts built from the history, with every failed
 * attempt's error (a snoozed attempt shows when it comes back, like a retry), and the
 * raw history as a timeline. While an attempt runs, its
 * duration counts up each second and every event of the task reloads the drawer; a
 * handler's progress reports move a progress bar with its message, live.
 */

import { $, copyText, fmtDuration, fmtInt, h, parseTs, secondsBetween, showAlert, timeEl, toast } from './util.js';
import { ApiError, api } from './api.js';

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
  task_requeued: 'Re-queued',
  task_snoozed: 'Snoozed',
};

/** Colour family of each history event in the timeline (matches the status colours). */
const EVENT_TONES = {
  task_queued: 'queued',
  task_requeued: 'queued',
  retry_scheduled: 'scheduled',
  task_snoozed: 'scheduled',
  task_started: 'running',
  task_succeeded: 'succeeded',
  task_failed: 'warning',
  timeout_occurred: 'warning',
  worker_lock_expired: 'warning',
  task_failed_final: 'failed',
  task_cancelled: 'cancelled',
};

/** The events that end an attempt, and the outcome each one means. */
const ATTEMPT_ENDS = {
  task_succeeded: 'succeeded',
  task_failed: 'failed',
  timeout_occurred: 'timed out',
  worker_lock_expired: 'lease expired',
  task_requeued: 'released',
  task_snoozed: 'snoozed',
  task_cancelled: 'cancelled',
};

const detail = { id: null, task: null, seq: 0, timer: 0, onChange: () => {}, onClose: () => {} };

/**
 * The attempts of a task from its history, oldest first: each `task_started` opens
 * one, the next ending event closes it, and the decision after a failure (a retry
 * after a delay, or none left) is added to it.
 */
export function attemptsOf(events) {
  const attempts = [];
  let current = null;
  for (const ev of events) {
    if (ev.event_type === 'task_started') {
      current = { n: attempts.length + 1, start: ev.created_at, end: null, worker: ev.worker_id, outcome: 'running', error: null, retryAt: null, retryDelay: null, final: false };
      attempts.push(current);
    } else if (current && !current.end && ATTEMPT_ENDS[ev.event_type]) {
      current.end = ev.created_at;
      current.outcome = ATTEMPT_ENDS[ev.event_type];
      if (ev.event_type === 'task_snoozed') {
        // Not an error: the handler said "not yet", and when to come back.
        current.retryAt = ev.next_run_at;
        current.retryDelay = secondsBetween(ev.created_at, ev.next_run_at);
      } else {
        current.error = ev.error_message || null;
      }
    } else if (current && current.end && ev.event_type === 'retry_scheduled') {
      current.retryAt = ev.next_run_at;
      current.retryDelay = secondsBetween(ev.created_at, ev.next_run_at);
    } else if (current && current.end && ev.event_type === 'task_failed_final') {
      current.final = true;
    }
  }
  return attempts;
}

export function openDetail(id) {
  const dialog = $('#detail');
  if (detail.id !== id) {
    detail.task = null;
    $('#detail-title').textContent = 'Loading…';
    $('#detail-id').textContent = id;
    $('#detail-type').textContent = 'task';
    $('#detail-fields').replaceChildren();
    $('#detail-attempts').replaceChildren();
    $('#detail-history').replaceChildren();
    $('#detail-payload').textContent = '';
    $('#detail-error-block').hidden = true;
    $('#detail-result-block').hidden = true;
    $('#detail-progress-block').hidden = true;
    setStatus('');
    $('#detail-cancel').hidden = true;
    $('#detail-retry').hidden = true;
    showAlert($('#detail-error'), null);
  }
  detail.id = id;
  if (!dialog.open) dialog.showModal();
  loadDetail();
}

/** Closes the drawer without touching the URL (the router calls this on a list route). */
export function closeDetail() {
  detail.id = null;
  if ($('#detail').open) $('#detail').close();
}

/** A live event of some task: reload the drawer if it is this one's. */
export function onTaskEvent(ev) {
  if (detail.id && ev && detail.id === ev.task_id) refreshDetailSoon();
}

/** A live progress report of some task: move the bar if it is this one's. */
export function onProgressEvent(report) {
  if (!detail.id || !report || detail.id !== report.task_id || !detail.task) return;
  detail.task = { ...detail.task, progress: report.progress };
  renderProgress(detail.task);
}

/** The stream reconnected: what happened meanwhile is read again. */
export function refreshOpenDetail() {
  if (detail.id) refreshDetailSoon();
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
    const events = Array.isArray(history) ? history : [];
    renderAttempts(attemptsOf(events));
    renderHistory(events);
    showAlert($('#detail-error'), null);
    detail.onChange(task);
  } catch (error) {
    if (seq === detail.seq) {
      if (error.status === 404) $('#detail-title').textContent = 'No such task';
      showAlert($('#detail-error'), error);
    }
  } finally {
    if (seq === detail.seq) body.setAttribute('aria-busy', 'false');
  }
}

function setStatus(status) {
  const badge = $('#detail-status');
  badge.dataset.status = status;
  badge.replaceChildren(...(status ? [h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), status] : []));
}

function renderDetail(task) {
  detail.task = task;
  $('#detail-title').textContent = task.name || '(unnamed)';
  $('#detail-type').textContent = task.type || 'task';
  $('#detail-id').textContent = task.id;
  setStatus(task.status);
  renderActions(task);

  const started = parseTs(task.started_at);
  const completed = parseTs(task.completed_at);
  const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
  $('#detail-fields').replaceChildren(
    ...field('Queue', h('span', { class: 'mono' }, task.queue ?? 'default')),
    ...field('Priority', fmtInt(task.priority)),
    ...field('Attempts', fmtInt(task.attempt)),
    ...field('Retries', `${fmtInt(task.retry_count)} of ${fmtInt(task.max_retries)}`),
    ...field('Snoozes', `${fmtInt(task.snooze_count ?? 0)} of ${fmtInt(task.max_snoozes ?? 0)}`),
    ...field('Backoff', fmtDuration(task.backoff_seconds)),
    ...field('Timeout', fmtDuration(task.timeout_seconds)),
    ...field('Run at', timeEl(task.run_at)),
    ...field('Worker', task.worker_id ? h('span', { class: 'mono' }, task.worker_id) : '—'),
    ...field('Created', timeEl(task.created_at)),
    ...field('Started', timeEl(task.started_at)),
    ...field('Completed', timeEl(task.completed_at)),
    ...field('Duration', started != null && completed != null ? fmtDuration((completed - started) / 1000) : '—'),
    ...field('Updated', timeEl(task.updated_at)),
    ...(task.idempotency_key ? field('Idempotency key', h('span', { class: 'mono' }, task.idempotency_key)) : []),
    ...(task.concurrency_key ? field('Concurrency key', h('span', { class: 'mono' }, task.concurrency_key)) : []),
    ...(task.cancel_requested_at ? field('Cancel requested', timeEl(task.cancel_requested_at)) : []),
    ...(task.cancel_reason ? field('Cancel reason', task.cancel_reason) : []),
  );

  const held = heldText(task.held);
  $('#detail-held').hidden = !held;
  $('#detail-held-reason').replaceChildren(...(held ?? []));

  renderProgress(task);
  $('#detail-error-block').hidden = !task.last_error;
  $('#detail-last-error').textContent = task.last_error || '';
  $('#detail-payload').textContent = JSON.stringify(task.payload ?? {}, null, 2);
  const hasResult = task.result !== null && task.result !== undefined;
  $('#detail-result-block').hidden = !hasResult;
  $('#detail-result').textContent = hasResult ? JSON.stringify(task.result, null, 2) : '';
}

/** Why a queued task waits, as the API's `held` says (nothing when it does not). */
function heldText(held) {
  switch (held?.reason) {
    case 'queue_paused': return ['its queue is paused'];
    case 'queue_full': return [`its queue runs its limit of ${fmtInt(held.max_running)} tasks`];
    case 'rate_limited': return [`rate limited by its ${held.scope === 'type' ? 'type' : 'queue'} until `, timeEl(held.until)];
    case 'waiting_for_key':
      return ['waiting for key ', h('span', { class: 'mono' }, held.key),
        ` (${fmtInt(held.running)} of ${fmtInt(held.max_per_key)} running)`];
    default: return null;
  }
}

/**
 * The handler's latest report: while the task runs, that of its running attempt;
 * after, the last one it made (so a finished task shows where it got to).
 */
function renderProgress(task) {
  const p = task.progress;
  const current = p && (task.status !== 'running' || p.attempt === task.attempt);
  $('#detail-progress-block').hidden = !current;
  if (!current) return;
  const bar = $('#detail-progress');
  bar.value = p.percent;
  bar.setAttribute('aria-valuetext', `${p.percent}%${p.message ? `: ${p.message}` : ''}`);
  const parts = [h('strong', {}, `${p.percent}%`)];
  if (p.message) parts.push(' · ', p.message);
  parts.push(' · ', h('span', { class: 'muted' }, `attempt ${fmtInt(p.attempt)}, `, timeEl(p.at)));
  $('#detail-progress-text').replaceChildren(...parts);
}

/**
 * Cancel works on queued tasks (cancelled at once) and running ones (their worker stops
 * them): once a running task's cancel is requested the button says so until it ends.
 */
function renderActions(task) {
  const cancel = $('#detail-cancel');
  const cancelling = task.status === 'running' && Boolean(task.cancel_requested_at);
  cancel.hidden = !(task.status === 'queued' || task.status === 'running');
  cancel.disabled = cancelling;
  cancel.textContent = cancelling ? 'Cancelling…' : 'Cancel task';
  $('#detail-retry').hidden = !(task.status === 'failed' || task.status === 'cancelled');
}

function renderAttempts(attempts) {
  const body = $('#detail-attempts');
  $('#detail-attempts-empty').hidden = attempts.length > 0;
  body.replaceChildren(...attempts.flatMap((a) => {
    const duration = a.end
      ? fmtDuration(secondsBetween(a.start, a.end))
      // Counts up each second (the page's ticker) while the attempt runs.
      : h('span', { dataset: { since: a.start } }, fmtDuration((Date.now() - parseTs(a.start)) / 1000));
    const outcome = a.final ? `${a.outcome}, no retries left` : a.outcome;
    const retry = a.retryAt ? [fmtDuration(a.retryDelay), ' → ', timeEl(a.retryAt)] : '—';
    const row = h('tr', { dataset: { attempt: a.n, outcome: a.outcome } },
      h('th', { scope: 'row', class: 'num' }, fmtInt(a.n)),
      h('td', {}, timeEl(a.start)),
      h('td', {}, a.end ? timeEl(a.end) : '—'),
      h('td', { class: 'num' }, duration),
      h('td', { class: 'mono' }, a.worker || '—'),
      h('td', { class: 'attempt-outcome' }, outcome),
      h('td', {}, retry));
    if (!a.error) return [row];
    return [row, h('tr', { class: 'attempt-error', dataset: { attempt: a.n } },
      h('td', { colspan: 7 }, h('pre', { class: 'code code-error' }, a.error)))];
  }));
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
    detail.onChange(task);
    const name = task?.name ?? id;
    const done = {
      cancel: task?.status === 'running' ? `Cancelling “${name}”: its worker is stopping it.` : `Cancelled “${name}”.`,
      retry: `“${name}” is queued again.`,
    }[kind];
    toast(done, 'ok');
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
    if (detail.id === id && detail.task) renderActions(detail.task);
  }
}

/** onChange(task): a fresh copy of the task, for the list; onClose(): the user closed the drawer. */
export function wireDetail({ onChange, onClose }) {
  detail.onChange = onChange;
  detail.onClose = onClose;
  const dialog = $('#detail');
  $('#detail-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    if (detail.id) {
      detail.id = null;
      detail.onClose();
    }
  });
  // A click on the backdrop (outside the drawer's box) closes it, as people expect.
  dialog.addEventListener('click', (event) => {
    if (event.target === event.currentTarget) {
      const r = event.currentTarget.getBoundingClientRect();
      const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
      if (!inside) event.currentTarget.close();
    }
  });
  $('#detail-cancel').addEventListener('click', () => taskAction('cancel'));
  $('#detail-retry').addEventListener('click', () => taskAction('retry'));
  $('#detail-refresh').addEventListener('click', loadDetail);
  $('#detail-copy-payload').addEventListener('click', () => copyText($('#detail-payload').textContent, 'Payload'));
  $('#detail-copy-result').addEventListener('click', () => copyText($('#detail-result').textContent, 'Result'));
  $('#detail-copy-id').addEventListener('click', () => copyText(detail.id || '', 'Task id'));
}

/* taskq dashboard: the queues view.
 *
 * It owns the "Queues" card: one table row per named queue with its figures from the
 * `stats` event of the live stream (the `queues` array and `unserved_tasks`), and the
 * controls that change a queue:
 *
 *   POST  /api/queues/{name}/pause, /resume      ◀─ Pause / Resume button
 *   PATCH /api/queues/{name} {"max_running": n}  ◀─ limit form (Set, No limit)
 *
 * A queue's flow settings (its rate limit, its key limit) are shown under its name;
 * they are changed through the API or `taskq.toml`.
 *
 * It reads nothing on its own: every figure comes from the stream, and an action's
 * answer (the queue's new settings) is shown at once, until a stats snapshot taken
 * after the change arrives. Requests go through api.js, which adds the API token and
 * asks for one on a 401.
 */

import { $, flash, fmtDuration, fmtInt, h, parseTs, toast } from './util.js';
import { api } from './api.js';

/** Size of a row's throughput sparkline: one bar per minute of the server's window. */
const SPARK_WIDTH = 60;
const SPARK_HEIGHT = 22;

/** onShowTasks(name) shows the task list searched by a queue. */
export function createQueuesView({ onShowTasks }) {

  const body = $('#queues-body');
  const empty = $('#queues-empty');
  const unserved = $('#queues-unserved');
  const unservedLink = $('#unserved-link');
  /** queue name -> row state (rows are patched in place, so focus and typing survive). */
  const rows = new Map();
  let seenStats = false;

  // ---------------------------------------------------------------- figures

  function setNum(el, value) {
    const text = fmtInt(value);
    if (el.textContent === text) return;
    const changed = el.textContent !== '' && el.textContent !== '—';
    el.textContent = text;
    if (changed) flash(el, 'bump');
  }

  /**
   * Finished tasks per minute over the server's window, as bars (failed on top of
   * succeeded), ending at the minute of the snapshot. The server lists only minutes
   * that had any.
   */
  function sparkline(throughput, generatedAt) {
    const span = Math.max(1, Number(throughput?.window_minutes) || 15);
    const endMs = Math.floor((parseTs(generatedAt) ?? Date.now()) / 60000) * 60000;
    const startMs = endMs - (span - 1) * 60000;
    const minutes = new Map();
    for (const point of Array.isArray(throughput?.per_minute) ? throughput.per_minute : []) {
      const ms = parseTs(point.minute);
      if (ms == null) continue;
      minutes.set(Math.floor(ms / 60000) * 60000, { ok: Number(point.succeeded) || 0, bad: Number(point.failed) || 0 });
    }
    const bars = [];
    for (let m = startMs; m <= endMs; m += 60000) bars.push(minutes.get(m) || { ok: 0, bad: 0 });
    const ok = bars.reduce((sum, b) => sum + b.ok, 0);
    const bad = bars.reduce((sum, b) => sum + b.bad, 0);
    return { bars, ok, bad, span };
  }

  function drawSparkline(svg, bars) {
    const max = Math.max(1, ...bars.map((b) => b.ok + b.bad));
    const step = SPARK_WIDTH / bars.length;
    const width = Math.max(1, step - 1);
    const rects = [];
    bars.forEach((b, i) => {
      const x = (i * step).toFixed(2);
      const okH = (b.ok / max) * SPARK_HEIGHT;
      const badH = (b.bad / max) * SPARK_HEIGHT;
      // A floor line for empty minutes, so the time axis stays readable.
      if (!b.ok && !b.bad) {
        rects.push(`<rect class="spark-none" x="${x}" y="${SPARK_HEIGHT - 1}" width="${width.toFixed(2)}" height="1"/>`);
        return;
      }
      if (okH) rects.push(`<rect class="spark-ok" x="${x}" y="${(SPARK_HEIGHT - okH).toFixed(2)}" width="${width.toFixed(2)}" height="${okH.toFixed(2)}"/>`);
      if (badH) rects.push(`<rect class="spark-bad" x="${x}" y="${(SPARK_HEIGHT - okH - badH).toFixed(2)}" width="${width.toFixed(2)}" height="${badH.toFixed(2)}"/>`);
    });
    // Only numbers go into this markup, never text from the server.
    const markup = rects.join('');
    if (svg.dataset.markup !== markup) {
      svg.dataset.markup = markup;
      svg.innerHTML = markup;
    }
  }

  function perMinute(count, span) {
    const rate = count / span;
    if (rate === 0) return '0/min';
    return rate < 10 ? `${rate.toFixed(1)}/min` : `${fmtInt(Math.round(rate))}/min`;
  }

  // -------------------------------------------------------------------- rows

  function createRow(name) {
    const ids = `q-${name.replace(/[^a-z0-9_-]/g, '_')}`;
    // Explicit roles keep the table a table for screen readers where a phone's layout
    // (app.css) turns its rows into cards; data-label names each figure there.
    const cell = (col, label, cls = 'num') => h('td', { class: cls, role: 'cell', dataset: { col, label } });
    const row = {
      name,
      tr: h('tr', { role: 'row', dataset: { queue: name } }),
      cells: {
        queued: cell('queued', 'Queued'),
        scheduled: cell('scheduled', 'Scheduled'),
        running: cell('running', 'Running'),
        succeeded: cell('succeeded', 'Succeeded'),
        failed: cell('failed', 'Failed'),
        cancelled: cell('cancelled', 'Cancelled'),
      },
      state: h('span', { class: 'badge q-state' }),
      flow: h('p', { class: 'q-flow muted small' }),
      oldest: cell('oldest', 'Oldest'),
      spark: document.createElementNS('http://www.w3.org/2000/svg', 'svg'),
      rate: h('span', { class: 'q-rate' }),
      rateLabel: h('span', { class: 'visually-hidden' }),
      workers: cell('workers', 'Workers', 'q-workers'),
      limitInput: h('input', {
        id: `${ids}-limit`,
        name: 'max_running',
        type: 'number',
        inputmode: 'numeric',
        step: '1',
        min: '1',
        max: '1000000',
        placeholder: 'none',
        autocomplete: 'off',
        'aria-describedby': `${ids}-limit-error`,
      }),
      limitSet: h('button', { type: 'submit', class: 'btn btn-small', 'aria-label': `Set the limit of queue ${name}` }, 'Set'),
      limitClear: h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'aria-label': `No limit for queue ${name}` }, 'No limit'),
      limitError: h('p', { class: 'field-error', id: `${ids}-limit-error`, role: 'alert', hidden: true }),
      toggle: h('button', { type: 'button', class: 'btn btn-small q-toggle' }),
      dirty: false,      // the limit input holds the user's typing, not the stored limit
      local: null,       // settings from an action's answer, newer than the last snapshot
      settings: { paused: false, max_running: null },
    };

    row.spark.setAttribute('class', 'spark');
    row.spark.setAttribute('viewBox', `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
    row.spark.setAttribute('width', String(SPARK_WIDTH));
    row.spark.setAttribute('height', String(SPARK_HEIGHT));
    row.spark.setAttribute('aria-hidden', 'true');
    row.spark.setAttribute('focusable', 'false');

    const show = h('button', { type: 'button', class: 'link mono', 'aria-label': `Show the tasks of queue ${name}` }, name);
    show.addEventListener('click', () => onShowTasks(name));

    const form = h('form', { class: 'q-limit', novalidate: true },
      h('label', { class: 'visually-hidden', for: `${ids}-limit` }, `Max running tasks of queue ${name}`),
      row.limitInput, row.limitSet, row.limitClear);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submitLimit(row);
    });
    row.limitClear.addEventListener('click', () => saveLimit(row, null));
    row.limitInput.addEventListener('input', () => {
      row.dirty = true;
      setLimitError(row, null);
    });
    // A limit changed elsewhere while the field had focus shows once it loses it.
    row.limitInput.addEventListener('blur', () => {
      if (!row.dirty) row.limitInput.value = row.settings.max_running ?? '';
    });
    row.limitInput.addEventListener('keydown', (event) => {
      // Escape gives up the edit and shows the stored limit again.
      if (event.key === 'Escape' && row.dirty) {
        event.preventDefault();
        row.dirty = false;
        setLimitError(row, null);
        row.limitInput.value = row.settings.max_running ?? '';
      }
    });
    row.toggle.addEventListener('click', () => togglePaused(row));

    row.tr.append(
      // The toggle sits under the name: it stays in view when a narrow screen scrolls the row.
      h('th', { scope: 'row', role: 'rowheader', class: 'q-name' }, h('div', { class: 'q-title' }, show, row.state), row.flow, row.toggle),
      row.cells.queued, row.cells.scheduled, row.cells.running,
      row.cells.succeeded, row.cells.failed, row.cells.cancelled,
      row.oldest,
      h('td', { class: 'q-throughput', role: 'cell', dataset: { col: 'throughput', label: 'Throughput' } }, row.spark, row.rate, row.rateLabel),
      row.workers,
      h('td', { class: 'q-limit-cell', role: 'cell', dataset: { col: 'limit', label: 'Max running' } }, form, row.limitError),
    );
    return row;
  }

  /** The settings to show: an action's answer until a snapshot from after it arrives. */
  function effectiveSettings(row, q, generatedAt) {
    if (row.local) {
      const snapshotMs = parseTs(generatedAt);
      const changedMs = parseTs(row.local.updated_at);
      if (snapshotMs == null || changedMs == null || snapshotMs <= changedMs) {
        return { paused: row.local.paused, max_running: row.local.max_running };
      }
      row.local = null;
    }
    return { paused: Boolean(q.paused), max_running: q.max_running ?? null };
  }

  function applySettings(row, settings) {
    row.settings = settings;
    row.tr.dataset.paused = String(settings.paused);
    row.state.dataset.status = settings.paused ? 'paused' : '';
    row.state.textContent = settings.paused ? 'paused' : '';
    row.toggle.textContent = settings.paused ? 'Resume' : 'Pause';
    row.toggle.setAttribute('aria-label', `${settings.paused ? 'Resume' : 'Pause'} queue ${row.name}`);
    row.toggle.classList.toggle('btn-primary', settings.paused);
    row.tr.dataset.maxRunning = settings.max_running ?? '';
    row.limitClear.disabled = settings.max_running == null || row.busy;
    // Never overwrite what someone is typing.
    if (!row.dirty && document.activeElement !== row.limitInput) {
      const value = settings.max_running == null ? '' : String(settings.max_running);
      if (row.limitInput.value !== value) row.limitInput.value = value;
    }
  }

  /** "at most 10 per 1s · 2 per key": the queue's flow settings, or nothing. */
  function flowText(q) {
    const parts = [];
    if (q.rate_limit) parts.push(`at most ${fmtInt(q.rate_limit.max)} per ${q.rate_limit.per}`);
    if (q.max_per_key != null) parts.push(`${fmtInt(q.max_per_key)} per key`);
    return parts.join(' · ');
  }

  function fillRow(row, q, stats, slotsByQueue) {
    for (const key of Object.keys(row.cells)) setNum(row.cells[key], q[key]);
    const flow = flowText(q);
    if (row.flow.textContent !== flow) row.flow.textContent = flow;
    row.flow.hidden = !flow;
    const settings = effectiveSettings(row, q, stats.generated_at);
    applySettings(row, settings);

    // Running against the limit, when there is one.
    const running = row.cells.running;
    running.title = settings.max_running == null ? 'no limit' : `limit ${fmtInt(settings.max_running)}`;
    running.dataset.full = String(settings.max_running != null && q.running >= settings.max_running);

    const age = q.oldest_runnable_age_seconds;
    const ageText = typeof age === 'number' ? fmtDuration(age) : '—';
    if (row.oldest.textContent !== ageText) row.oldest.textContent = ageText;

    const tp = sparkline(q.throughput, stats.generated_at);
    drawSparkline(row.spark, tp.bars);
    const rate = perMinute(tp.ok + tp.bad, tp.span);
    if (row.rate.textContent !== rate) row.rate.textContent = rate;
    row.rateLabel.textContent = `: ${fmtInt(tp.ok)} succeeded and ${fmtInt(tp.bad)} failed in the last ${tp.span} minutes`;

    const workers = Array.isArray(q.workers) ? q.workers.map(String).sort() : [];
    const workersKey = workers.join('\n') + (q.queued > 0 ? '+' : '') + (slotsByQueue.get(q.name) || 0);
    if (row.workersKey !== workersKey) {
      row.workersKey = workersKey;
      const slots = slotsByQueue.get(q.name) || 0;
      if (!workers.length) {
        // Nobody claims from this queue: its tasks wait until a worker serves it.
        row.workers.replaceChildren(h('span', { class: q.queued > 0 ? 'q-unserved' : 'muted' },
          q.queued > 0 ? h('span', { 'aria-hidden': 'true' }, '⚠ ') : null, 'no live worker'));
      } else {
        row.workers.replaceChildren(
          h('span', { class: 'q-worker-count' },
            `${fmtInt(workers.length)} ${workers.length === 1 ? 'worker' : 'workers'}`,
            slots ? ` · ${fmtInt(slots)} ${slots === 1 ? 'executor' : 'executors'}` : ''),
          h('ul', { class: 'q-worker-ids mono' }, workers.map((id) => h('li', { title: id }, id))));
      }
    }
    row.tr.dataset.unserved = String(!workers.length && q.queued > 0);
  }

  /** Executors per queue, from the workers' `queues` ("default=5,emails=20"). */
  function slotsPerQueue(stats) {
    const slots = new Map();
    for (const worker of Array.isArray(stats.workers) ? stats.workers : []) {
      if (typeof worker.queues !== 'string') continue;
      for (const entry of worker.queues.split(',')) {
        const [name, count] = entry.split('=');
        if (!name) continue;
        slots.set(name.trim(), (slots.get(name.trim()) || 0) + (Number(count) || 0));
      }
    }
    return slots;
  }

  function renderUnserved(count) {
    const n = Number(count) || 0;
    unserved.hidden = n <= 0;
    unservedLink.hidden = n <= 0;
    const text = `${fmtInt(n)} queued ${n === 1 ? 'task is' : 'tasks are'} in queues no live worker serves`;
    const short = `${fmtInt(n)} unserved`;
    const label = unserved.querySelector('.q-unserved-text');
    if (label.textContent !== text) label.textContent = text;
    const linkLabel = unservedLink.querySelector('.unserved-text');
    if (linkLabel.textContent !== short) {
      linkLabel.textContent = short;
      // Said after the visible text, which stays the start of the link's name.
      unservedLink.querySelector('.unserved-detail').textContent = `: ${text}; show the queues`;
    }
    unserved.dataset.count = String(n);
  }

  // ----------------------------------------------------------------- actions

  function setBusy(row, busy) {
    row.busy = busy;
    row.toggle.disabled = busy;
    row.limitSet.disabled = busy;
    row.limitClear.disabled = busy || row.settings.max_running == null;
    row.tr.setAttribute('aria-busy', String(busy));
  }

  function setLimitError(row, message) {
    row.limitError.hidden = !message;
    row.limitError.textContent = message || '';
    if (message) row.limitInput.setAttribute('aria-invalid', 'true');
    else row.limitInput.removeAttribute('aria-invalid');
  }

  /** A settings answer from the API, shown until a later snapshot confirms it. */
  function applyAnswer(row, answer) {
    if (!answer || typeof answer !== 'object') return;
    row.local = { paused: Boolean(answer.paused), max_running: answer.max_running ?? null, updated_at: answer.updated_at };
    applySettings(row, { paused: row.local.paused, max_running: row.local.max_running });
  }

  async function togglePaused(row) {
    const action = row.settings.paused ? 'resume' : 'pause';
    setBusy(row, true);
    try {
      const answer = await api(`/api/queues/${encodeURIComponent(row.name)}/${action}`, { method: 'POST' });
      applyAnswer(row, answer);
      toast(action === 'pause'
        ? `Paused queue “${row.name}”: no task of it starts until it is resumed.`
        : `Resumed queue “${row.name}”.`, 'ok');
    } catch (error) {
      toast(`Could not ${action} queue “${row.name}”: ${error.message}`, 'error');
    } finally {
      setBusy(row, false);
    }
  }

  function submitLimit(row) {
    const raw = row.limitInput.value.trim();
    // A number input gives '' for anything that is not a number (and for an empty field).
    if (raw === '' && row.limitInput.validity.badInput) {
      setLimitError(row, 'Enter a whole number, or use “No limit”.');
      row.limitInput.focus();
      return;
    }
    if (raw === '') {
      saveLimit(row, null);
      return;
    }
    const n = Number(raw);
    if (!Number.isInteger(n)) {
      setLimitError(row, `The limit must be a whole number, got ${raw}.`);
      row.limitInput.focus();
      return;
    }
    // The range is the server's to judge: its message says what it accepts.
    saveLimit(row, n);
  }

  async function saveLimit(row, value) {
    setBusy(row, true);
    setLimitError(row, null);
    try {
      const answer = await api(`/api/queues/${encodeURIComponent(row.name)}`, { method: 'PATCH', body: { max_running: value } });
      row.dirty = false;
      applyAnswer(row, answer);
      row.limitInput.value = answer?.max_running == null ? '' : String(answer.max_running);
      toast(answer?.max_running == null
        ? `Queue “${row.name}” has no limit now.`
        : `Queue “${row.name}” runs at most ${fmtInt(answer.max_running)} at once.`, 'ok');
    } catch (error) {
      setLimitError(row, error.message);
      row.limitInput.focus();
    } finally {
      setBusy(row, false);
    }
  }

  // ------------------------------------------------------------------ update

  /** A `stats` snapshot (from the stream or /api/stats). Older servers have no `queues`. */
  function update(stats) {
    if (!stats || typeof stats !== 'object' || !Array.isArray(stats.queues)) return;
    seenStats = true;
    const slots = slotsPerQueue(stats);
    const keep = new Set();
    let cursor = body.firstElementChild;
    for (const q of stats.queues) {
      if (!q || typeof q.name !== 'string') continue;
      keep.add(q.name);
      let row = rows.get(q.name);
      const isNew = !row;
      if (!row) {
        row = createRow(q.name);
        rows.set(q.name, row);
      }
      fillRow(row, q, stats, slots);
      // The server sorts by name; move a row only when it is out of place.
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else body.insertBefore(row.tr, cursor);
      if (isNew && rows.size > 1 && body.dataset.ready === 'true') flash(row.tr);
    }
    for (const [name, row] of rows) {
      if (!keep.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    body.dataset.ready = 'true';
    empty.hidden = rows.size > 0;
    empty.textContent = 'No queues yet. A queue appears with its first task, or when it is paused or given a limit.';
    renderUnserved(stats.unserved_tasks);
  }

  empty.textContent = 'Waiting for the first figures…';
  return { update, get ready() { return seenStats; } };
}

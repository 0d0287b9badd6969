/* taskq dashboard: the task list, its search, and bulk actions.
 *
 *   GET  /api/tasks?status=&type=&queue=&schedule=&id=&name=&payload=&created_after=…  ◀─ search form
 *   POST /api/tasks/bulk {"filter", "action"}                                            ◀─ bulk bar
 *
 * The search's keys are the API's own, and the page's URL holds them
 * (`#/tasks?status=failed&type=fail`), so a link shows the same list. Rows are patched
 * in place from the live stream and never rebuilt, which keeps focus and selection.
 *
 * Bulk actions act on the rows selected (one request per task, so each answer counts
 * for itself) or on every task matching the search: the server first counts them
 * (`dry_run`), the confirmation states that number, and the work goes in pages of
 * BULK_PAGE tasks, each request continuing at the previous one's `next_cursor`, so the
 * dialog shows progress and every request stays short.
 */

import { $, flash, fmtInt, h, isLater, shortId, showAlert, statusBadge, timeEl, toast } from './util.js';
import { api } from './api.js';

const PAGE_SIZE = 25;
/** Tasks per bulk request when acting on every match: a request's work stays short. */
const BULK_PAGE = 500;
/** Live task events arrive in bursts; refetch the first page at most this often. */
const REFRESH_THROTTLE_MS = 600;

/** The search keys, in the order of the API's query; `kind` says how the form holds each. */
const FIELDS = [
  { key: 'id', kind: 'text' },
  { key: 'name', kind: 'text' },
  { key: 'status', kind: 'select' },
  { key: 'type', kind: 'select' },
  { key: 'queue', kind: 'select' },
  { key: 'schedule', kind: 'select' },
  { key: 'payload', kind: 'text' },
  { key: 'created_after', kind: 'time' },
  { key: 'created_before', kind: 'time' },
  { key: 'finished_after', kind: 'time' },
  { key: 'finished_before', kind: 'time' },
];

/** What each bulk action does, and to which statuses it applies (the server's rule). */
const ACTIONS = {
  cancel: { verb: 'Cancel', past: 'cancelled', applies: 'queued and scheduled' },
  retry: { verb: 'Retry', past: 'queued again', applies: 'failed and cancelled' },
  delete: { verb: 'Delete', past: 'deleted', applies: 'succeeded, failed and cancelled' },
};

const state = {
  list: [],
  rows: new Map(),       // task id -> { tr, cells } (rows are patched, not rebuilt, to keep focus)
  selected: new Set(),
  next: null,
  pages: 0,
  seq: 0,
  loaded: false,
  refreshTimer: 0,
  refreshing: false,
  refreshAgain: false,
  patches: 0,            // live events applied so far; tells a list response it may be stale
  filter: {},            // the search applied now, as API query keys
};

// ------------------------------------------------------------------ the search

const input = (key) => $(`#filter-${key.replaceAll('_', '-')}`);

/** `datetime-local` holds local time without a zone; the API takes RFC 3339. */
function toApiTime(local) {
  const ms = Date.parse(local);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : local;
}

function toLocalInput(iso) {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The search the form holds, as API query keys (empty fields left out). */
function readForm() {
  const filter = {};
  for (const { key, kind } of FIELDS) {
    const raw = input(key).value.trim();
    if (raw) filter[key] = kind === 'time' ? toApiTime(raw) : raw;
  }
  return filter;
}

function fillForm(filter) {
  for (const { key, kind } of FIELDS) {
    const el = input(key);
    const value = filter[key] || '';
    if (kind === 'select' && value && ![...el.options].some((o) => o.value === value)) {
      el.append(h('option', { value }, value));
    }
    el.value = kind === 'time' ? toLocalInput(value) : value;
  }
}

/** The search as the page's URL holds it: `#/tasks?status=failed`, or `#/` for none. */
export function searchHash(filter = state.filter) {
  const query = new URLSearchParams(filter).toString();
  return query ? `#/tasks?${query}` : '#/';
}

/** Reads a search from a route's query string (the router calls this). */
export function applySearch(query) {
  const params = new URLSearchParams(query);
  const filter = {};
  for (const { key } of FIELDS) if (params.get(key)) filter[key] = params.get(key);
  fillForm(filter);
  if (JSON.stringify(filter) === JSON.stringify(state.filter) && state.loaded) return;
  state.filter = filter;
  loadTasks('replace');
}

/** The form changed: put its search in the URL, which loads it (and keeps it for a link). */
function submitSearch() {
  const hash = searchHash(readForm());
  if (location.hash === hash || (hash === '#/' && !location.hash)) applySearch(hash.split('?')[1] || '');
  else location.hash = hash;
}

const hasSearch = () => Object.keys(state.filter).length > 0;

function describeSearch(filter) {
  const parts = Object.entries(filter).map(([key, value]) => `${key.replace('_', ' ')} ${key === 'name' ? 'contains' : '='} ${value}`);
  return parts.length ? parts.join(', ') : 'no filter';
}

/** Keys the browser cannot judge a task by alone: a list searched by them is read from the server. */
const SERVER_ONLY = ['id', 'name', 'payload', 'created_after', 'created_before', 'finished_after', 'finished_before'];

/** Whether a task the live stream or an action brought fits the status, type, queue and schedule searched. */
function matchesFilter(task) {
  const f = state.filter;
  return (!f.status || task.status === f.status) && (!f.type || task.type === f.type)
    // A task from an older server has no queue: only the default queue can hold it.
    && (!f.queue || (task.queue ?? 'default') === f.queue)
    && (!f.schedule || task.schedule === f.schedule);
}

// ------------------------------------------------------------------- the list

/**
 * mode: 'replace' (the search changed), 'append' (load more), or 'refresh' (new tasks
 * arrived: fetch the first page and merge it on top, keeping pages already loaded).
 */
export async function loadTasks(mode = 'replace') {
  const params = new URLSearchParams({ ...state.filter, limit: String(PAGE_SIZE) });
  if (mode === 'append' && state.next) params.set('cursor', state.next);

  const seq = ++state.seq; // a newer request wins, so quick filter changes cannot interleave
  const patchesBefore = state.patches;
  const table = $('#tasks-table');
  table.setAttribute('aria-busy', 'true');
  if (mode === 'replace') {
    $('#tasks-summary').textContent = 'Loading tasks…';
    state.selected.clear();
  }
  try {
    const body = await api(`/api/tasks?${params}`);
    if (seq !== state.seq) return;
    const next = body?.next_cursor ?? null;
    // The response was read on the server before any live event that arrived while it
    // travelled: keep a row's newer live state rather than step it back.
    const current = new Map(state.list.map((t) => [t.id, t]));
    const page = (Array.isArray(body?.tasks) ? body.tasks : []).map((t) => freshest(current.get(t.id), t));
    if (mode === 'append') {
      const known = new Set(state.list.map((t) => t.id));
      state.list = state.list.concat(page.filter((t) => !known.has(t.id)));
      state.next = next;
      state.pages += 1;
    } else if (mode === 'refresh' && state.pages > 1) {
      const fresh = new Set(page.map((t) => t.id));
      state.list = page.concat(state.list.filter((t) => !fresh.has(t.id)));
      // The cursor still points past the oldest row loaded, so it stays valid.
    } else {
      state.list = page;
      state.next = next;
      state.pages = 1;
    }
    state.loaded = true;
    showAlert($('#tasks-error'), null);
    renderTasks({ flashNew: mode === 'refresh' });
    // Events that came in meanwhile may concern rows this response missed: look again.
    if (state.patches !== patchesBefore) refreshTasks();
  } catch (error) {
    if (seq === state.seq) {
      showAlert($('#tasks-error'), error);
      if (mode === 'replace') {
        state.list = [];
        renderTasks();
        $('#tasks-summary').textContent = 'Tasks could not be loaded.';
      }
    }
  } finally {
    if (seq === state.seq) table.setAttribute('aria-busy', 'false');
  }
}

/** Throttled first-page refresh: at most one request in flight, one queued behind it. */
export function refreshTasks() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = 0;
    if (state.refreshing) {
      state.refreshAgain = true;
      return;
    }
    state.refreshing = true;
    try {
      await loadTasks('refresh');
    } finally {
      state.refreshing = false;
      if (state.refreshAgain) {
        state.refreshAgain = false;
        refreshTasks();
      }
    }
  }, REFRESH_THROTTLE_MS);
}

function createRow(task) {
  const tr = h('tr', { dataset: { taskId: task.id } });
  const pick = h('input', { type: 'checkbox', class: 'pick' });
  pick.addEventListener('click', (event) => event.stopPropagation());
  pick.addEventListener('change', () => {
    if (pick.checked) state.selected.add(task.id);
    else state.selected.delete(task.id);
    renderSelection();
  });
  const cells = {
    pick: h('td', { class: 'c-pick' }, pick),
    name: h('td', { class: 'c-name' }),
    type: h('td', { class: 'c-type' }),
    queue: h('td', { class: 'c-queue' }),
    status: h('td'),
    priority: h('td', { class: 'num' }),
    retries: h('td', { class: 'num' }),
    worker: h('td', { class: 'mono muted c-worker' }),
    created: h('td'),
    updated: h('td'),
  };
  // The name is a real link to the task's URL (keyboard, screen readers, a new tab);
  // the whole row is a larger click target for the mouse.
  const open = h('a', { class: 'link', href: `#/tasks/${task.id}` });
  cells.name.append(open, h('span', { class: 'id mono' }));
  tr.append(...Object.values(cells));
  tr.addEventListener('click', (event) => {
    if (event.target.closest('a')) return;
    location.hash = `#/tasks/${task.id}`;
  });
  return { tr, cells, open, pick, key: '' };
}

function fillRow(row, task) {
  row.pick.checked = state.selected.has(task.id);
  // Skip rows whose visible fields did not change: no needless DOM work or flashing.
  const key = [task.name, task.type, task.queue, task.status, task.priority, task.retry_count, task.max_retries,
    task.worker_id, task.created_at, task.updated_at].join('\u0001');
  if (row.key === key) return false;
  const statusChanged = row.tr.dataset.status !== task.status;
  row.key = key;
  row.tr.dataset.status = task.status;
  row.open.textContent = task.name || '(unnamed)';
  row.open.setAttribute('aria-label', `${task.name || 'Unnamed task'}, ${task.status}: show details`);
  row.pick.setAttribute('aria-label', `Select ${task.name || 'unnamed task'} ${shortId(task.id)}`);
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
  for (const task of state.list) {
    keep.add(task.id);
    let row = state.rows.get(task.id);
    const isNew = !row;
    if (!row) {
      row = createRow(task);
      state.rows.set(task.id, row);
    }
    const changed = fillRow(row, task);
    // Move a row only when it is out of place, so a focused row keeps its focus.
    if (row.tr === cursor) cursor = cursor.nextElementSibling;
    else body.insertBefore(row.tr, cursor);
    if ((isNew && flashNew) || (!isNew && changed)) flash(row.tr);
  }
  for (const [id, row] of state.rows) {
    if (!keep.has(id)) {
      row.tr.remove();
      state.rows.delete(id);
      state.selected.delete(id);
    }
  }

  const empty = state.list.length === 0;
  $('#tasks-empty').hidden = !empty;
  $('#tasks-empty').textContent = hasSearch() ? 'No tasks match this search.' : 'No tasks yet. Create one with “New task”.';
  $('#tasks-more').hidden = !state.next;
  $('#tasks-summary').textContent = empty ? '' : `Showing ${fmtInt(state.list.length)} ${state.list.length === 1 ? 'task' : 'tasks'}, newest first.`;
  renderSelection();
}

function renderSelection() {
  const n = state.selected.size;
  const all = $('#tasks-pick-all');
  all.checked = n > 0 && n === state.list.length;
  all.indeterminate = n > 0 && n < state.list.length;
  $('#bulk-selected').textContent = n ? `${fmtInt(n)} selected` : 'None selected';
  for (const button of document.querySelectorAll('#bulk-bar [data-scope="selection"]')) button.disabled = n === 0;
}

/** The later of two versions of one task, by `updated_at`; the fetched one on a tie. */
function freshest(known, fetched) {
  return known && isLater(known.updated_at, fetched.updated_at) ? known : fetched;
}

/** Put a task we just got from the API into the table (from an action or the form). */
export function upsertTask(fetched) {
  if (!fetched || !fetched.id) return;
  const i = state.list.findIndex((t) => t.id === fetched.id);
  const task = i === -1 ? fetched : freshest(state.list[i], fetched);
  if (i !== -1) {
    if (matchesFilter(task)) state.list[i] = task;
    else state.list.splice(i, 1);
  } else if (matchesFilter(task) && !SERVER_ONLY.some((key) => state.filter[key])) {
    state.list.unshift(task);
  } else {
    return;
  }
  renderTasks({ flashNew: true });
}

/** `event: task` from the stream: a history entry plus the task's type and name. */
export function onTaskEvent(ev) {
  if (!ev || !ev.task_id) return;
  const i = state.list.findIndex((t) => t.id === ev.task_id);
  if (i !== -1 && isLater(state.list[i].updated_at, ev.created_at)) {
    // The row already shows a later state than this event describes.
  } else if (i !== -1) {
    const current = state.list[i];
    state.patches += 1;
    const patched = {
      ...current,
      status: ev.status || current.status,
      retry_count: typeof ev.retry_count === 'number' ? ev.retry_count : current.retry_count,
      worker_id: ev.worker_id === undefined ? current.worker_id : ev.worker_id,
      updated_at: ev.created_at || current.updated_at,
    };
    if (ev.error_message) patched.last_error = ev.error_message;
    if (ev.next_run_at) patched.run_at = ev.next_run_at;
    if (matchesFilter(patched)) state.list[i] = patched;
    else state.list.splice(i, 1); // it left the filtered set (a failed task retried, say)
    renderTasks();
  } else if (matchesFilter({ status: ev.status, type: ev.type, queue: ev.queue, schedule: ev.schedule })) {
    refreshTasks();
  }
}

/**
 * The options of the search's select for `key`: `any` first, then `names`. The value
 * chosen stays, listed last if `names` lacks it (a queue gone since, say), so the form
 * keeps showing the search applied.
 */
function setChoices(key, any, names) {
  const select = input(key);
  const selected = select.value;
  const options = names.includes(selected) || !selected ? names : [...names, selected];
  select.replaceChildren(h('option', { value: '' }, any), ...options.map((n) => h('option', { value: n }, n)));
  select.value = selected;
}

export const setTypeChoices = (types) => setChoices('type', 'All types', types);
/** Every queue name the stats list. */
export const setQueueChoices = (names) => setChoices('queue', 'All queues', names);
/** Every schedule name the schedules view lists. */
export const setScheduleChoices = (names) => setChoices('schedule', 'Any schedule', names);

/**
 * Show the tasks of one queue or schedule (`key` is the search's, `queue` or
 * `schedule`) and bring the list into view (from the queues and schedules views).
 */
export function showTasksBy(key, name) {
  location.hash = searchHash({ [key]: name });
  $('.tasks-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
  input(key).focus({ preventScroll: true });
}

// ----------------------------------------------------------------- bulk actions

const bulk = { running: false, stop: false };

/** Opens the confirmation of `action` on the selection or on every match. */
async function openBulk(action, scope) {
  const dialog = $('#bulk');
  const { verb, applies } = ACTIONS[action];
  const filter = { ...state.filter };
  const ids = [...state.selected];
  showAlert($('#bulk-error'), null);
  $('#bulk-result').textContent = '';
  $('#bulk-progress').value = 0;
  $('#bulk-progress').hidden = true;
  const confirm = $('#bulk-confirm');
  confirm.hidden = false;
  confirm.disabled = true;
  $('#bulk-title').textContent = `${verb} tasks`;
  $('#bulk-text').textContent = 'Counting the matching tasks…';
  dialog.showModal();

  let count;
  if (scope === 'selection') {
    count = ids.length;
  } else {
    try {
      count = (await api('/api/tasks/bulk', { method: 'POST', body: { filter, action, dry_run: true } })).matched;
    } catch (error) {
      showAlert($('#bulk-error'), error);
      $('#bulk-text').textContent = '';
      return;
    }
  }
  const what = scope === 'selection' ? 'selected' : `matching this search (${describeSearch(filter)})`;
  $('#bulk-text').textContent = count
    ? `${verb} ${fmtInt(count)} ${count === 1 ? 'task' : 'tasks'} ${what}? Only ${applies} tasks are ${ACTIONS[action].past}; the others are skipped and counted.`
    : `No task is ${what}.`;
  $('#bulk-count').textContent = String(count);
  confirm.textContent = `${verb} ${fmtInt(count)} ${count === 1 ? 'task' : 'tasks'}`;
  confirm.disabled = count === 0;
  confirm.onclick = () => runBulk(action, scope === 'selection' ? { ids } : { filter }, count);
  confirm.focus();
}

/** Does the work in short requests, updating the progress bar after each. */
async function runBulk(action, target, count) {
  const confirm = $('#bulk-confirm');
  const progress = $('#bulk-progress');
  const total = { matched: 0, done: 0, skipped: 0 };
  const add = (answer) => {
    for (const key of Object.keys(total)) total[key] += answer[key] || 0;
    progress.value = Math.min(count, total.matched);
    $('#bulk-result').textContent = `${fmtInt(total.done)} ${ACTIONS[action].past}, ${fmtInt(total.skipped)} skipped of ${fmtInt(total.matched)} so far.`;
  };
  confirm.disabled = true;
  progress.max = Math.max(1, count);
  progress.hidden = false;
  bulk.running = true;
  bulk.stop = false;
  try {
    if (target.ids) {
      for (const id of target.ids) {
        if (bulk.stop) break;
        add(await api('/api/tasks/bulk', { method: 'POST', body: { filter: { id }, action } }));
      }
    } else {
      let cursor;
      do {
        const filter = { ...target.filter, limit: BULK_PAGE, ...(cursor ? { cursor } : {}) };
        const answer = await api('/api/tasks/bulk', { method: 'POST', body: { filter, action } });
        add(answer);
        cursor = answer.next_cursor;
      } while (cursor && !bulk.stop);
    }
    $('#bulk-result').textContent = `Done: ${fmtInt(total.done)} ${ACTIONS[action].past}, ${fmtInt(total.skipped)} skipped (not ${ACTIONS[action].applies} when reached) of ${fmtInt(total.matched)} matched.`;
    toast(`${ACTIONS[action].verb}: ${fmtInt(total.done)} done, ${fmtInt(total.skipped)} skipped.`, 'ok');
    confirm.hidden = true;
  } catch (error) {
    showAlert($('#bulk-error'), error);
  } finally {
    bulk.running = false;
    state.selected.clear();
    loadTasks('replace');
  }
}

// -------------------------------------------------------------------- wiring

export function wireTasks() {
  $('#filters').addEventListener('submit', (event) => {
    event.preventDefault();
    submitSearch();
  });
  for (const { key, kind } of FIELDS) {
    if (kind !== 'text') input(key).addEventListener('change', submitSearch);
  }
  $('#filters-clear').addEventListener('click', () => {
    fillForm({});
    submitSearch();
  });
  $('#tasks-refresh').addEventListener('click', () => loadTasks('replace'));
  $('#tasks-more').addEventListener('click', () => loadTasks('append'));
  $('#tasks-pick-all').addEventListener('change', (event) => {
    state.selected = new Set(event.target.checked ? state.list.map((t) => t.id) : []);
    for (const [id, row] of state.rows) row.pick.checked = state.selected.has(id);
    renderSelection();
  });
  for (const button of document.querySelectorAll('#bulk-bar button[data-action]')) {
    button.addEventListener('click', () => openBulk(button.dataset.action, button.dataset.scope));
  }
  $('#bulk-close').addEventListener('click', () => $('#bulk').close());
  // Closing the dialog mid-way stops after the request in flight; what was done stays done.
  $('#bulk').addEventListener('close', () => { bulk.stop = bulk.running; });
}

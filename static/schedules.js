/* taskq dashboard: the schedules view.
 *
 * It owns the "Schedules" card: one row per schedule with its expression, zone, next
 * and last tick, last task and state, the process that leads the scheduler, and the
 * controls:
 *
 *   GET  /api/schedules                         ◀─ every REFRESH_MS, and after an action
 *   POST /api/schedules/{name}/pause, /resume   ◀─ Pause / Resume button
 *   POST /api/schedules/{name}/trigger          ◀─ Run now button
 *
 * Schedules are not part of the stats stream: the view reads them itself, once every
 * REFRESH_MS while the page is visible. "Tasks" filters the task list by the schedule.
 * Requests go through api.js, which adds the API token and asks for one on a 401.
 */

import { $, h, showAlert, timeEl, toast } from './util.js';
import { api } from './api.js';

/** How often the figures are read again. */
const REFRESH_MS = 2000;

/**
 * onShowTasks(name) shows the task list searched by a schedule; onNames(names) gets
 * the schedules' names whenever they change, for the search's schedule filter.
 */
export function createSchedulesView({ onShowTasks, onNames }) {
  const table = $('#schedules-table');
  const body = $('#schedules-body');
  const empty = $('#schedules-empty');
  const error = $('#schedules-error');
  const leader = $('#schedules-leader');
  let names = [];

  async function act(name, action, done) {
    try {
      await api(`/api/schedules/${encodeURIComponent(name)}/${action}`, { method: 'POST', body: {} });
      toast(done, 'ok');
    } catch (e) {
      toast(`Could not ${action} schedule “${name}”: ${e.message}`, 'error');
    }
    refresh();
  }

  /** schedule name -> its row; rows are patched in place, so a focused button keeps focus. */
  const rows = new Map();
  /** schedule name -> the schedule as last read, for the buttons' handlers. */
  const latest = new Map();

  function button(label, ghost, onClick) {
    const b = h('button', { type: 'button', class: ghost ? 'btn btn-ghost btn-small' : 'btn btn-small' }, label);
    b.addEventListener('click', onClick);
    return b;
  }

  /** The row of schedule `name`, with its cells and buttons; `update` fills it from a schedule. */
  function createRow(name) {
    const toggle = button('', false, () => {
      const paused = latest.get(name)?.paused;
      act(name, paused ? 'resume' : 'pause', `${name} ${paused ? 'resumed' : 'paused'}`);
    });
    const run = button('Run now', false, () => act(name, 'trigger', `${name}: task enqueued`));
    run.setAttribute('aria-label', `Run now: schedule ${name}`);
    const tasks = button('Tasks', true, () => onShowTasks(name));
    tasks.setAttribute('aria-label', `Show the tasks of schedule ${name}`);
    const cell = (cls) => h('td', cls ? { class: cls } : {});
    const [what, cron, zone, next, last, lastTask, state] =
      [cell(), cell(), cell(), cell('next-tick'), cell('last-tick'), cell('last-task'), cell('state')];
    const tr = h('tr', { 'data-schedule': name },
      what, cron, zone, next, last, lastTask, state, h('td', { class: 'actions' }, toggle, ' ', run, ' ', tasks));
    function update(s) {
      const status = s.paused ? 'paused' : 'running';
      tr.dataset.state = status;
      what.replaceChildren(h('strong', {}, s.name), h('div', { class: 'muted small' }, `${s.task?.type ?? ''} · ${s.task?.queue ?? ''}`));
      cron.replaceChildren(h('code', {}, s.cron));
      zone.textContent = s.timezone;
      next.replaceChildren(timeEl(s.paused ? null : s.next_tick));
      last.replaceChildren(timeEl(s.last_tick));
      lastTask.replaceChildren(s.last_task_id
        ? h('span', { class: 'badge', 'data-status': s.last_task_status || '', title: s.last_task_id },
            s.last_task_status || 'pruned')
        : '—');
      state.replaceChildren(h('span', { class: 'badge', 'data-status': s.paused ? 'cancelled' : 'running' }, status));
      toggle.textContent = s.paused ? 'Resume' : 'Pause';
      toggle.setAttribute('aria-label', `${s.paused ? 'Resume' : 'Pause'} schedule ${s.name}`);
    }
    return { tr, update };
  }

  /** Shows `schedules` in their order, reusing the rows of those already shown. */
  function render(schedules) {
    const shown = new Set(schedules.map((s) => s.name));
    for (const [name, r] of rows) {
      if (!shown.has(name)) {
        r.tr.remove();
        rows.delete(name);
      }
    }
    latest.clear();
    schedules.forEach((s, index) => {
      latest.set(s.name, s);
      let r = rows.get(s.name);
      if (!r) {
        r = createRow(s.name);
        rows.set(s.name, r);
      }
      r.update(s);
      // Moved only when out of place: moving a row would take focus from its buttons.
      if (body.children[index] !== r.tr) body.insertBefore(r.tr, body.children[index] ?? null);
    });
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const list = await api('/api/schedules');
      const schedules = Array.isArray(list?.schedules) ? list.schedules : [];
      render(schedules);
      empty.hidden = schedules.length > 0;
      // A table of headers alone says nothing, and on a phone it would be a scrolling
      // region with nothing a keyboard can reach.
      table.hidden = schedules.length === 0;
      empty.textContent = 'No schedules yet: POST /api/schedules, or [[schedules]] in taskq.toml.';
      leader.textContent = list?.leader ? `Leader: ${list.leader.leader_id}` : 'No process leads the scheduler now';
      showAlert(error, null);
      const next = schedules.map((s) => s.name);
      if (next.join('\n') !== names.join('\n')) {
        names = next;
        onNames(names);
      }
    } catch (e) {
      showAlert(error, e);
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
  return { refresh };
}

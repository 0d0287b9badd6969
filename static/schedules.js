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

  function row(s) {
    const state = s.paused ? 'paused' : 'running';
    const lastTask = s.last_task_id
      ? h('span', { class: 'badge', 'data-status': s.last_task_status || '', title: s.last_task_id },
          s.last_task_status || 'pruned')
      : '—';
    const toggle = s.paused
      ? h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Resume schedule ${s.name}` }, 'Resume')
      : h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Pause schedule ${s.name}` }, 'Pause');
    toggle.addEventListener('click', () => act(s.name, s.paused ? 'resume' : 'pause', `${s.name} ${s.paused ? 'resumed' : 'paused'}`));
    const run = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Run now: schedule ${s.name}` }, 'Run now');
    run.addEventListener('click', () => act(s.name, 'trigger', `${s.name}: task enqueued`));
    const tasks = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Show the tasks of schedule ${s.name}` }, 'Tasks');
    tasks.addEventListener('click', () => onShowTasks(s.name));
    return h('tr', { 'data-schedule': s.name, 'data-state': state },
      h('td', {}, h('strong', {}, s.name), h('div', { class: 'muted small' }, `${s.task?.type ?? ''} · ${s.task?.queue ?? ''}`)),
      h('td', {}, h('code', {}, s.cron)),
      h('td', {}, s.timezone),
      h('td', { class: 'next-tick' }, timeEl(s.paused ? null : s.next_tick)),
      h('td', { class: 'last-tick' }, timeEl(s.last_tick)),
      h('td', { class: 'last-task' }, lastTask),
      h('td', { class: 'state' }, h('span', { class: 'badge', 'data-status': s.paused ? 'cancelled' : 'running' }, state)),
      h('td', { class: 'actions' }, toggle, ' ', run, ' ', tasks));
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const list = await api('/api/schedules');
      const schedules = Array.isArray(list?.schedules) ? list.schedules : [];
      body.replaceChildren(...schedules.map(row));
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

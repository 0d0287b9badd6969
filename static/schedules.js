/* taskq dashboard: the schedules view.
 *
 * An ES module, loaded by app.js with import() like the queues view, so the rest of
 * the dashboard works even if this file fails. It owns the "Schedules" card: one row
 * per schedule with its expression, zone, next and last tick, last task and state,
 * the process that leads the scheduler, and the controls:
 *
 *   GET  /api/schedules                         ◀─ every REFRESH_MS, and after an action
 *   POST /api/schedules/{name}/pause, /resume   ◀─ Pause / Resume button
 *   POST /api/schedules/{name}/trigger          ◀─ Run now button
 *
 * Schedules are not part of the stats stream: the view reads them itself, once every
 * REFRESH_MS while the page is visible. "Tasks" filters the task list by the schedule.
 */

/** How often the figures are read again. */
const REFRESH_MS = 2000;

/**
 * deps: the helpers of app.js this view shares (api, h, toast, parseTs) and
 * onShowTasks(name), which filters the task list by a schedule.
 */
export function createSchedulesView(deps) {
  const { api, h, toast, parseTs, onShowTasks } = deps;
  const $ = (sel) => document.querySelector(sel);
  const body = $('#schedules-body');
  const empty = $('#schedules-empty');
  const error = $('#schedules-error');
  const leader = $('#schedules-leader');
  let names = [];

  function when(value) {
    const ms = parseTs(value);
    if (ms == null) return '—';
    const seconds = Math.round((ms - Date.now()) / 1000);
    const relative = seconds > 0 ? `in ${seconds} s` : `${-seconds} s ago`;
    return `${new Date(ms).toLocaleString()} (${Math.abs(seconds) < 3600 ? relative : ''})`.replace(' ()', '');
  }

  async function act(name, action, done) {
    try {
      await api(`/api/schedules/${encodeURIComponent(name)}/${action}`, { method: 'POST', body: {} });
      toast(done);
    } catch (e) {
      toast(e.message || String(e), 'error');
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
    const run = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Run schedule ${s.name} now` }, 'Run now');
    run.addEventListener('click', () => act(s.name, 'trigger', `${s.name}: task enqueued`));
    const tasks = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Show the tasks of schedule ${s.name}` }, 'Tasks');
    tasks.addEventListener('click', () => onShowTasks(s.name));
    return h('tr', { 'data-schedule': s.name, 'data-state': state },
      h('td', {}, h('strong', {}, s.name), h('div', { class: 'muted small' }, `${s.task?.type ?? ''} · ${s.task?.queue ?? ''}`)),
      h('td', {}, h('code', {}, s.cron)),
      h('td', {}, s.timezone),
      h('td', { class: 'next-tick' }, s.paused ? '—' : when(s.next_tick)),
      h('td', { class: 'last-tick' }, when(s.last_tick)),
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
      empty.textContent = 'No schedules yet: POST /api/schedules, or [[schedules]] in taskq.toml.';
      leader.textContent = list?.leader ? `Leader: ${list.leader.leader_id}` : 'No process leads the scheduler now';
      error.hidden = true;
      const next = schedules.map((s) => s.name);
      if (next.join('\n') !== names.join('\n')) {
        names = next;
        deps.onNames?.(names);
      }
    } catch (e) {
      error.textContent = e.message || String(e);
      error.hidden = false;
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
  return { refresh };
}

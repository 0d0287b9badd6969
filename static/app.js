/* taskq dashboard: the entry module, which wires the views together.
 *
 * ES modules with no build step: the server embeds static/ as it is. One module per
 * view, and two shared ones:
 *
 *   util.js      element builder, formatters, alerts, toasts
 *   api.js       requests to the API and the API token
 *   stream.js    the live event stream and the connection indicator
 *   overview.js  counters, success rate, workers, charts          ◀─ stats events
 *   queues.js    the queues view                                 ◀─ stats events
 *   schedules.js the schedules view                              ◀─ GET /api/schedules
 *   tasks.js     the task list, its search and bulk actions      ◀─ task events
 *   detail.js    one task at #/tasks/{id}                        ◀─ task events
 *   create.js    the "New task" form
 *
 * Routes live in the URL's fragment, so a link opens the same view:
 *   #/                     the overview and the newest tasks
 *   #/tasks?status=failed  the same, with the task list searched by the API's keys
 *   #/tasks/{id}           one task's detail, over the list that was shown
 * Any other fragment (`#queues`, `#main`) is a plain anchor and changes nothing.
 */

import { $, fmtDuration, fmtRel, parseTs, showAlert } from './util.js';
import { api, requestToken } from './api.js';
import { reconnectNow, resumeAfterSignIn, streamLoop, tickConnection } from './stream.js';
import { applyStats, buildCharts, scheduleChartUpdate, watchChartSize } from './overview.js';
import { createQueuesView } from './queues.js';
import { createSchedulesView } from './schedules.js';
import * as tasks from './tasks.js';
import * as detail from './detail.js';
import { loadTypes, setQueueSuggestions, wireCreate } from './create.js';

let queuesView = null;
/** Every queue name the stats have listed, for the task filter and the form. */
let queueNames = [];
/** The list's route before a task was opened: closing the task returns to it. */
let listRoute = '#/';

function onStats(s) {
  if (!s || typeof s !== 'object') return;
  applyStats(s);
  if (Array.isArray(s.queues)) {
    const names = s.queues.map((q) => q && q.name).filter((n) => typeof n === 'string').sort();
    if (names.join('\n') !== queueNames.join('\n')) {
      queueNames = names;
      tasks.setQueueChoices(names);
      setQueueSuggestions(names);
    }
  }
  if (queuesView) {
    // A fault in the queues view must not cut the live stream this runs inside.
    try {
      queuesView.update(s);
    } catch (error) {
      reportError(error);
    }
  }
}

function onTask(ev) {
  tasks.onTaskEvent(ev);
  detail.onTaskEvent(ev);
}

/** Shows the view the URL's fragment names. */
function route() {
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return;
  const task = /^#\/tasks\/([0-9a-fA-F-]{36})$/.exec(hash);
  if (task) {
    detail.openDetail(task[1].toLowerCase());
    return;
  }
  detail.closeDetail();
  listRoute = hash;
  const query = hash.startsWith('#/tasks?') ? hash.slice('#/tasks?'.length) : '';
  tasks.applySearch(query);
}

function wireUi() {
  wireCreate({ onCreated: tasks.upsertTask, onTypes: tasks.setTypeChoices });
  tasks.wireTasks();
  detail.wireDetail({
    onChange: tasks.upsertTask,
    onClose: () => { if (location.hash.startsWith('#/tasks/')) location.hash = listRoute; },
  });
  window.addEventListener('hashchange', route);

  $('#conn-retry').addEventListener('click', reconnectNow);
  $('#conn-signin').addEventListener('click', () => {
    requestToken('', { userAsked: true }).then(() => {
      // Everything that failed for want of a token is fetched again.
      resumeAfterSignIn();
      loadAll();
    }, () => {});
  });
  window.addEventListener('online', reconnectNow);

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) scheduleChartUpdate();
  });
  // Colours live in CSS; rebuild the charts when the system theme flips.
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', buildCharts);

  // One ticker for every relative time, running duration and the reconnect countdown.
  setInterval(() => {
    for (const el of document.querySelectorAll('time[data-rel]')) el.textContent = fmtRel(el.dateTime);
    for (const el of document.querySelectorAll('[data-since]')) {
      el.textContent = fmtDuration(Math.round((Date.now() - parseTs(el.dataset.since)) / 1000));
    }
    tickConnection();
  }, 1000);
}

/**
 * Starts the view whose card is `#{name}`: a fault in one view leaves the rest of the
 * dashboard working, and its card says so. Returns the view, or null.
 */
function startView(name, create) {
  try {
    return create();
  } catch (error) {
    console.error(`taskq: the ${name} view could not be started:`, error);
    $(`#${name}-empty`).hidden = true;
    showAlert($(`#${name}-error`), new Error(`The ${name} view could not be started. Reload the page to try again.`));
    return null;
  }
}

async function loadAll() {
  // Paint numbers straight away instead of waiting for the stream's first tick.
  api('/api/stats').then(onStats, (error) => console.debug('taskq: stats request failed:', error));
  await loadTypes();
  route();
  tasks.loadTasks('replace');
}

wireUi();
buildCharts();
watchChartSize();
queuesView = startView('queues', () => createQueuesView({ onShowTasks: (name) => tasks.showTasksBy('queue', name) }));
startView('schedules', () => createSchedulesView({
  onShowTasks: (name) => tasks.showTasksBy('schedule', name),
  onNames: tasks.setScheduleChoices,
}));
loadAll();
streamLoop({
  onStats,
  onTask,
  onProgress: detail.onProgressEvent,
  // The first tick of a connection marks where its task events begin: anything before
  // it is not replayed, so the list and an open task are read again from here.
  onConnect: () => {
    tasks.refreshTasks();
    detail.refreshOpenDetail();
  },
});

// Real-browser test of the taskq dashboard: Debian's Chromium driven by playwright-core,
// written for node's built-in test runner.
//
// README: start taskq (any database), then run
//   TASKQ_URL=http://127.0.0.1:8080 tests/browser/run.sh
// run.sh installs what it needs (npm ci here; apt-get chromium when /usr/bin/chromium is
// missing). Set TASKQ_TOKEN too when the server runs with API_TOKEN. Screenshots land in
// tests/browser/screenshots/ (not committed). CHROMIUM_PATH overrides the browser path.
//
// The steps share one page and run in order, like a person using the dashboard. Every
// wait polls a condition until a deadline; nothing sleeps for a fixed time.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.TASKQ_URL || '').replace(/\/+$/, '');
const TOKEN = process.env.TASKQ_TOKEN || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');
/** Long enough for a worker on a cold database; every wait ends as soon as its condition holds. */
const WAIT_MS = 30_000;
const STEP_TIMEOUT = { timeout: 90_000 };
/** Names unique to this run, so a reused database does not confuse the assertions. */
const RUN = `${Date.now().toString(36)}`;
/** axe-core's browser build, injected into the page to check a view's accessibility. */
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

if (!BASE_URL) throw new Error('TASKQ_URL must be set to the base URL of a running taskq server');

// ------------------------------------------------------------------ helpers

/** Call the API from node, the way a client service would. */
async function api(pathname, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${BASE_URL}${pathname}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* keep null: asserted by callers */ }
  return { status: res.status, body: json, text };
}

async function createTask(task) {
  const res = await api('/api/tasks', { method: 'POST', body: task });
  assert.equal(res.status, 201, `POST /api/tasks answered ${res.status}: ${res.text}`);
  assert.ok(res.body && res.body.id, 'the created task has an id');
  return res.body;
}

/**
 * Poll `check` until it returns a truthy value (which is returned), or fail with the
 * last observation once the deadline passes.
 */
/** Clicks the open drawer's Cancel and waits for the task to show cancelled, in its status and timeline. */
async function cancelInDrawer(page, drawer) {
  const cancel = drawer.getByRole('button', { name: 'Cancel task' });
  await cancel.waitFor({ state: 'visible', timeout: WAIT_MS });
  await cancel.click();
  await eventually(async () => (await page.locator('#detail-status').getAttribute('data-status')) === 'cancelled',
    { message: 'the drawer to show cancelled' });
  await eventually(async () => (await timelineEvents(page)).includes('task_cancelled'),
    { message: 'task_cancelled in the timeline' });
}

async function eventually(check, { timeout = WAIT_MS, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (last: ${detail})`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** A counter as the page shows it ("1,234" -> 1234), or null before the first stats. */
async function counter(page, key) {
  const text = await page.locator(`[data-counter="${key}"] .num`).textContent();
  const digits = (text || '').replace(/[^\d]/g, '');
  return digits ? Number(digits) : null;
}

/** The event types in the detail drawer's timeline, in display order. */
const timelineEvents = (page) =>
  page.locator('#detail-history li[data-event]').evaluateAll((items) => items.map((li) => li.dataset.event));

const rowFor = (page, id) => page.locator(`#tasks-body tr[data-task-id="${id}"]`);

/** A queue's row in the queues view. */
const queueRow = (page, name) => page.locator(`#queues-body tr[data-queue="${name}"]`);

/** A figure of a queue's row as a number ("1,234" -> 1234), or null while it shows none. */
async function queueFigure(page, name, col) {
  const text = await queueRow(page, name).locator(`td[data-col="${col}"]`).textContent();
  const digits = (text || '').replace(/[^\d]/g, '');
  return digits ? Number(digits) : null;
}

/**
 * Wait for `n` more stats snapshots to reach the page (each one stamps "Last update"),
 * so a change has had its chance to show, or to be undone.
 */
async function statsTicks(page, n = 2) {
  for (let i = 0; i < n; i += 1) {
    const seen = await page.locator('#updated-at').getAttribute('datetime');
    await eventually(async () => (await page.locator('#updated-at').getAttribute('datetime')) !== seen,
      { message: 'the next stats snapshot' });
  }
}

/** One queue as GET /api/queues lists it. */
async function apiQueue(name) {
  const res = await api('/api/queues');
  assert.equal(res.status, 200, `GET /api/queues answered ${res.status}: ${res.text}`);
  return (res.body.queues || []).find((q) => q.name === name);
}

/**
 * Runs axe-core on the page as it is now (a dialog open, a theme, a width) and fails
 * on any serious or critical violation, listing each with the elements it found.
 */
async function assertAccessible(page, view) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const { violations } = await window.axe.run(document, { resultTypes: ['violations'] });
    return violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')})`);
  });
  assert.deepEqual(violations, [], `axe-core on ${view}`);
}

/** The ids of the rows the task list shows, in order. */
const shownIds = (page) => page.locator('#tasks-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.taskId));

/** Full page by default; just the viewport while a dialog is open, as a person sees it. */
async function screenshot(page, name, { fullPage = true } = {}) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage });
}

// -------------------------------------------------------------------- tests

describe('taskq dashboard in a real browser', () => {
  let browser;
  let context;
  let page;
  const pageErrors = [];
  let failTask;

  before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As root there is no sandbox; the rest keeps Chromium from reaching out to the
      // network on its own (updates, sync, field trials), since only the server is there.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        '--no-first-run',
      ],
    });
    // A new context is a fresh profile: no cookies, no sessionStorage token from before.
    context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light' });
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
  });

  after(async () => {
    await context?.close();
    await browser?.close();
  });

  it('goes live and shows the counters from /api/stats', STEP_TIMEOUT, async () => {
    await page.goto(`${BASE_URL}/`);
    assert.match(await page.title(), /taskq/);

    if (TOKEN) {
      // The server wants a token: the dashboard must ask for it, not fail silently.
      const dialog = page.locator('#auth');
      await dialog.waitFor({ state: 'visible', timeout: WAIT_MS });
      await page.locator('#auth-token').fill(TOKEN);
      await dialog.getByRole('button', { name: 'Use token' }).click();
    }

    await page.locator('#conn[data-state="live"]').waitFor({ timeout: WAIT_MS });
    assert.equal((await page.locator('#conn-text').textContent()).trim(), 'Live');

    // The counters match the API once the same snapshot is on both sides.
    await eventually(async () => {
      const { body } = await api('/api/stats');
      return (await counter(page, 'total_tasks')) === body.total_tasks;
    }, { message: 'the Total counter to match /api/stats' });
    for (const key of ['queued_tasks', 'running_tasks', 'succeeded_tasks', 'failed_tasks', 'cancelled_tasks', 'scheduled_tasks']) {
      assert.notEqual(await counter(page, key), null, `${key} is shown`);
    }
    assert.notEqual((await page.locator('#updated-at').textContent()).trim(), 'never');
    await screenshot(page, '01-live');
    await assertAccessible(page, 'the overview');
  });

  it('counts tasks enqueued through the API as they are created and finish', STEP_TIMEOUT, async () => {
    const total = await counter(page, 'total_tasks');
    const succeeded = await counter(page, 'succeeded_tasks');

    const created = [];
    for (let i = 1; i <= 3; i += 1) {
      created.push(await createTask({ name: `browser noop ${RUN}-${i}`, type: 'noop', payload: {} }));
    }

    await eventually(async () => (await counter(page, 'total_tasks')) >= total + 3,
      { message: `Total to reach ${total + 3}` });
    await eventually(async () => (await counter(page, 'succeeded_tasks')) >= succeeded + 3,
      { message: `Succeeded to reach ${succeeded + 3}` });

    // The live stream also brought them into the table, with their final status.
    for (const task of created) {
      await rowFor(page, task.id).and(page.locator('[data-status="succeeded"]')).waitFor({ timeout: WAIT_MS });
    }
  });

  it('shows a fatal failure as failed in the tasks table', STEP_TIMEOUT, async () => {
    failTask = await createTask({
      name: `browser fatal ${RUN}`,
      type: 'fail',
      payload: { message: 'boom', fatal: true },
    });
    const row = rowFor(page, failTask.id);
    await row.and(page.locator('[data-status="failed"]')).waitFor({ timeout: WAIT_MS });
    assert.equal((await row.locator('.badge').textContent()).trim(), 'failed');
    await eventually(async () => (await counter(page, 'failed_tasks')) >= 1, { message: 'Failed counter ≥ 1' });
    await screenshot(page, '02-failed-row');
  });

  it('opens the task detail with its history as a timeline', STEP_TIMEOUT, async () => {
    await rowFor(page, failTask.id).getByRole('link').click();
    assert.equal(new URL(page.url()).hash, `#/tasks/${failTask.id}`, 'the task has its own URL');
    const drawer = page.locator('#detail');
    await drawer.waitFor({ state: 'visible' });
    await eventually(async () => (await page.locator('#detail-title').textContent()) === failTask.name,
      { message: 'the drawer to show the task name' });
    assert.equal(await page.locator('#detail-status').getAttribute('data-status'), 'failed');

    const events = await eventually(async () => {
      const seen = await timelineEvents(page);
      return seen.includes('task_failed_final') && seen;
    }, { message: 'task_failed_final in the timeline' });
    const order = ['task_queued', 'task_started', 'task_failed_final'].map((e) => events.indexOf(e));
    assert.ok(order.every((i) => i >= 0), `timeline has queued, started, failed_final: ${events}`);
    assert.deepEqual([...order].sort((a, b) => a - b), order, `oldest first: ${events}`);

    assert.match(await page.locator('#detail-last-error').textContent(), /boom/);
    assert.ok(await drawer.getByRole('button', { name: 'Retry', exact: true }).isVisible(), 'Retry is offered');
    assert.ok(!(await page.locator('#detail-cancel').isVisible()), 'Cancel is not offered for a failed task');
    await screenshot(page, '03-detail-timeline', { fullPage: false });
    await assertAccessible(page, 'the task detail');
  });

  it('retries the failed task from the detail view', STEP_TIMEOUT, async () => {
    // Record every status the drawer shows: a fatal task is re-queued, runs and fails
    // again within milliseconds, so a single look could miss the queued/running step.
    await page.evaluate(() => {
      const badge = document.querySelector('#detail-status');
      window.seenStatuses = [badge.dataset.status];
      new MutationObserver(() => window.seenStatuses.push(badge.dataset.status))
        .observe(badge, { attributes: true, attributeFilter: ['data-status'] });
    });

    await page.locator('#detail').getByRole('button', { name: 'Retry', exact: true }).click();

    await eventually(async () => {
      const seen = await page.evaluate(() => window.seenStatuses);
      return seen.includes('queued') || seen.includes('running');
    }, { message: 'the drawer to show queued or running after Retry' });
    await eventually(async () => (await timelineEvents(page)).includes('task_requeued'),
      { message: 'task_requeued in the timeline' });

    // The handler fails it again at once, with a second final failure in the history.
    await eventually(async () => (await timelineEvents(page)).filter((e) => e === 'task_failed_final').length >= 2,
      { message: 'a second task_failed_final after the retry' });
    const { body: history } = await api(`/api/tasks/${failTask.id}/history`);
    assert.ok(history.some((e) => e.event_type === 'task_requeued'), 'the API history records the manual retry');
    await screenshot(page, '04-after-retry', { fullPage: false });

    await page.keyboard.press('Escape');
    await page.locator('#detail').waitFor({ state: 'hidden' });
  });

  it('cancels a scheduled task from the detail view', STEP_TIMEOUT, async () => {
    const later = await createTask({ name: `browser later ${RUN}`, type: 'noop', payload: {}, delay_seconds: 3600 });
    await rowFor(page, later.id).waitFor({ timeout: WAIT_MS });
    await rowFor(page, later.id).click();
    const drawer = page.locator('#detail');
    await drawer.waitFor({ state: 'visible' });
    await cancelInDrawer(page, drawer);
    await rowFor(page, later.id).and(page.locator('[data-status="cancelled"]')).waitFor({ timeout: WAIT_MS });
    assert.equal((await api(`/api/tasks/${later.id}`)).body.status, 'cancelled');

    await drawer.getByRole('button', { name: 'Close' }).click();
    await drawer.waitFor({ state: 'hidden' });
  });

  it('shows a running task\'s progress live and cancels it', STEP_TIMEOUT, async () => {
    const long = await createTask({
      name: `browser long ${RUN}`, type: 'sleep', payload: { ms: 60000, progress: true }, timeout_seconds: 30,
    });
    await rowFor(page, long.id).waitFor({ timeout: WAIT_MS });
    await rowFor(page, long.id).click();
    const drawer = page.locator('#detail');
    await drawer.waitFor({ state: 'visible' });
    // Reports every 6 s arrive over the live stream and move the bar.
    await page.locator('#detail-progress-block').waitFor({ state: 'visible', timeout: 20000 });
    await eventually(async () => Number(await page.locator('#detail-progress').getAttribute('value')) >= 10,
      { message: 'the progress bar to move', timeout: 20000 });
    assert.match(await page.locator('#detail-progress-text').textContent(), /slept \d+ of 60000 ms/);

    await cancelInDrawer(page, drawer);
    assert.ok(!(await page.locator('#detail-cancel').isVisible()), 'Cancel is not offered for a cancelled task');
    const { body: history } = await api(`/api/tasks/${long.id}/history`);
    assert.match(history.at(-1).error_message, /cancelled by the API; stopped by its handler/);
    await screenshot(page, '04b-cancelled-while-running', { fullPage: false });

    await drawer.getByRole('button', { name: 'Close' }).click();
    await drawer.waitFor({ state: 'hidden' });
  });

  it('filters the table through the list API', STEP_TIMEOUT, async () => {
    const filters = page.locator('#filters');
    const request = page.waitForRequest((req) => {
      const url = new URL(req.url());
      return url.pathname === '/api/tasks' && url.searchParams.get('status') === 'failed';
    });
    await filters.getByLabel('Status').selectOption('failed');
    await request;

    await rowFor(page, failTask.id).waitFor({ timeout: WAIT_MS });
    await eventually(async () => {
      const statuses = await page.locator('#tasks-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.status));
      return statuses.length > 0 && statuses.every((s) => s === 'failed');
    }, { message: 'only failed rows under the failed filter' });

    const typed = page.waitForRequest((req) => new URL(req.url()).searchParams.get('type') === 'fail');
    await filters.getByLabel('Type').selectOption('fail');
    await typed;
    await eventually(async () => {
      const types = await page.locator('#tasks-body tr td.c-type').allTextContents();
      return types.length > 0 && types.every((t) => t.trim() === 'fail');
    }, { message: 'only fail-type rows under the type filter' });
    await screenshot(page, '05-filtered');

    await filters.getByLabel('Status').selectOption('');
    await filters.getByLabel('Type').selectOption('');
    await rowFor(page, failTask.id).waitFor({ timeout: WAIT_MS });
  });

  it('creates a task from the form, and shows errors inline', STEP_TIMEOUT, async () => {
    await page.getByRole('button', { name: 'New task' }).click();
    const form = page.locator('#create');
    await form.waitFor({ state: 'visible' });
    // The type list comes from /api/task-types.
    await eventually(async () => (await form.locator('#cf-type option').allTextContents()).includes('noop'),
      { message: 'task types in the form' });

    const name = `browser form ${RUN}`;
    await form.getByLabel('Name').fill(name);
    await form.getByLabel('Type').selectOption('noop');
    await form.getByLabel('Priority').fill('7');

    // A payload that is not JSON is caught before anything is sent.
    await form.getByLabel('Payload (JSON object)').fill('{"source": ');
    await form.getByRole('button', { name: 'Create task' }).click();
    await form.locator('#create-error').waitFor({ state: 'visible' });
    assert.match(await form.locator('#create-error').textContent(), /not valid JSON/);

    // A server-side rejection shows the API's own {"error": ...} message. An unknown
    // type stands in for a type list that went stale while the form was open.
    const rejected = await api('/api/tasks', { method: 'POST', body: { name, type: `no_such_type_${RUN}`, payload: {} } });
    assert.ok(rejected.status >= 400 && rejected.status < 500, `unknown type is a 4xx, got ${rejected.status}`);
    assert.equal(typeof rejected.body?.error, 'string', 'the 4xx body is {"error": "..."}');
    await form.locator('#cf-type').evaluate((select, type) => {
      select.append(new Option(type, type));
      select.value = type;
    }, `no_such_type_${RUN}`);
    await form.getByLabel('Payload (JSON object)').fill('{"source": "browser-test"}');
    await form.getByRole('button', { name: 'Create task' }).click();
    await eventually(async () => (await form.locator('#create-error').textContent()).includes(rejected.body.error),
      { message: `the server's error "${rejected.body.error}" in the form` });
    assert.ok(await form.isVisible(), 'the form stays open on an error');

    await form.getByLabel('Type').selectOption('noop');
    await screenshot(page, '06-create-form', { fullPage: false });
    await assertAccessible(page, 'the create form');
    await form.getByRole('button', { name: 'Create task' }).click();
    await form.waitFor({ state: 'hidden' });

    const created = await eventually(async () => {
      const { body } = await api('/api/tasks?limit=50');
      return (body.tasks || []).find((t) => t.name === name);
    }, { message: 'the form-created task in /api/tasks' });
    assert.equal(created.type, 'noop');
    assert.equal(created.priority, 7);
    assert.deepEqual(created.payload, { source: 'browser-test' });
    await rowFor(page, created.id).waitFor({ timeout: WAIT_MS });
    await eventually(async () => (await rowFor(page, created.id).getAttribute('data-status')) === 'succeeded',
      { message: 'the form-created task to succeed in the table' });
    await screenshot(page, '07-created');
  });

  // Two queues of this run's own. The test server's worker serves only `default`, so
  // their tasks stay queued: unserved, which the view must point out.
  const queueA = `browser-${RUN}-a`;
  const queueB = `browser-${RUN}-b`;
  const queueTasks = { [queueA]: [], [queueB]: [] };

  it('lists the queues created through the API, and warns of unserved tasks', STEP_TIMEOUT, async () => {
    queueTasks[queueA].push(await createTask({ name: `browser ${queueA} 1`, type: 'noop', payload: {}, queue: queueA }));
    for (let i = 1; i <= 2; i += 1) {
      queueTasks[queueB].push(await createTask({ name: `browser ${queueB} ${i}`, type: 'noop', payload: {}, queue: queueB }));
    }
    assert.equal(queueTasks[queueA][0].queue, queueA, 'the API took the queue');

    const section = page.getByRole('region', { name: 'Queues' });
    await queueRow(page, queueA).waitFor({ timeout: WAIT_MS });
    await queueRow(page, queueB).waitFor({ timeout: WAIT_MS });
    await eventually(async () => (await queueFigure(page, queueA, 'queued')) === 1
      && (await queueFigure(page, queueB, 'queued')) === 2, { message: 'queued 1 in A and 2 in B' });

    // The rows are the API's queues, in its order (by name).
    const { body } = await api('/api/queues');
    const shown = await page.locator('#queues-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.queue));
    assert.deepEqual(shown, body.queues.map((q) => q.name), 'one row per queue of GET /api/queues, by name');
    for (const col of ['running', 'succeeded', 'failed', 'cancelled', 'scheduled']) {
      assert.equal(await queueFigure(page, queueA, col), 0, `${col} of a fresh queue is 0`);
    }
    assert.match(await queueRow(page, queueA).locator('td[data-col="oldest"]').textContent(), /\d+[smhd]/,
      'the oldest runnable age is shown');
    assert.match(await queueRow(page, queueA).locator('td[data-col="throughput"]').textContent(), /\/min/);

    // The default queue is served by the test server's worker, and has run tasks.
    const defaultRow = queueRow(page, 'default');
    await eventually(async () => (await defaultRow.locator('td[data-col="workers"]').textContent()).includes('1 worker'),
      { message: 'the default queue to list its worker' });
    assert.ok((await queueFigure(page, 'default', 'succeeded')) >= 3, 'default counts its succeeded tasks');

    // Nobody serves A or B: the row says so, and the warning counts their tasks.
    assert.match(await queueRow(page, queueA).locator('td[data-col="workers"]').textContent(), /no live worker/);
    const warning = section.locator('#queues-unserved');
    await warning.waitFor({ state: 'visible', timeout: WAIT_MS });
    await eventually(async () => {
      const { body: stats } = await api('/api/stats');
      return stats.unserved_tasks >= 3 && (await warning.getAttribute('data-count')) === String(stats.unserved_tasks);
    }, { message: 'the unserved warning to match unserved_tasks of /api/stats' });
    assert.ok(await page.locator('#unserved-link').isVisible(), 'the header points to the queues too');
    await section.scrollIntoViewIfNeeded();
    await screenshot(page, '09-queues');
  });

  it('updates a queue\'s figures live from the event stream', STEP_TIMEOUT, async () => {
    // Nothing but the stream may bring the new count: record the page's requests.
    const requests = [];
    const onRequest = (req) => {
      const { pathname } = new URL(req.url());
      if (pathname.startsWith('/api/queues') || pathname === '/api/stats') requests.push(pathname);
    };
    page.on('request', onRequest);
    try {
      const before = await queueFigure(page, queueA, 'queued');
      queueTasks[queueA].push(await createTask({ name: `browser ${queueA} 2`, type: 'noop', payload: {}, queue: queueA }));
      await eventually(async () => (await queueFigure(page, queueA, 'queued')) === before + 1,
        { message: `queued of ${queueA} to reach ${before + 1}` });
    } finally {
      page.off('request', onRequest);
    }
    assert.deepEqual(requests, [], 'the figures came over the event stream');
  });

  it('pauses and resumes a queue from its buttons', STEP_TIMEOUT, async () => {
    const row = queueRow(page, queueA);
    await row.getByRole('button', { name: `Pause queue ${queueA}` }).click();
    await eventually(async () => (await apiQueue(queueA))?.paused === true, { message: `${queueA} paused in GET /api/queues` });
    const resume = row.getByRole('button', { name: `Resume queue ${queueA}` });
    await resume.waitFor({ timeout: WAIT_MS });
    assert.equal((await row.locator('.q-state').textContent()).trim(), 'paused');
    // Still paused once stats snapshots from after the change have arrived.
    await statsTicks(page);
    assert.equal(await row.getAttribute('data-paused'), 'true');
    assert.ok(await resume.isVisible(), 'Resume is still offered');
    await screenshot(page, '10-queue-paused');

    // The keyboard reaches the button and presses it.
    await resume.focus();
    await page.keyboard.press('Enter');
    await eventually(async () => (await apiQueue(queueA))?.paused === false, { message: `${queueA} resumed in GET /api/queues` });
    await row.getByRole('button', { name: `Pause queue ${queueA}` }).waitFor({ timeout: WAIT_MS });
    assert.equal((await row.locator('.q-state').textContent()).trim(), '');
  });

  it('sets a queue\'s limit and removes it', STEP_TIMEOUT, async () => {
    const row = queueRow(page, queueA);
    const input = row.getByLabel(`Max running tasks of queue ${queueA}`);
    assert.equal(await input.inputValue(), '', 'no limit to begin with');

    await input.fill('3');
    await input.press('Enter');
    await eventually(async () => (await apiQueue(queueA))?.max_running === 3, { message: `max_running 3 in GET /api/queues` });
    await eventually(async () => (await row.getAttribute('data-max-running')) === '3', { message: 'the row to show limit 3' });
    assert.equal(await input.inputValue(), '3');

    const clear = row.getByRole('button', { name: `No limit for queue ${queueA}` });
    await clear.click();
    await eventually(async () => (await apiQueue(queueA))?.max_running === null, { message: `max_running null in GET /api/queues` });
    await eventually(async () => (await input.inputValue()) === '', { message: 'the limit field to empty' });
    assert.ok(await clear.isDisabled(), '"No limit" is off when there is none');
  });

  it('shows the API\'s message for a rejected limit', STEP_TIMEOUT, async () => {
    const rejected = await api(`/api/queues/${queueA}`, { method: 'PATCH', body: { max_running: 0 } });
    assert.equal(rejected.status, 400, `a limit of 0 is rejected: ${rejected.text}`);
    assert.equal(typeof rejected.body?.error, 'string');

    const row = queueRow(page, queueA);
    const input = row.getByLabel(`Max running tasks of queue ${queueA}`);
    await input.fill('0');
    await row.getByRole('button', { name: `Set the limit of queue ${queueA}` }).click();
    const error = row.getByRole('alert');
    await eventually(async () => (await error.textContent()).includes(rejected.body.error),
      { message: `the server's error "${rejected.body.error}" beside the field` });
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    assert.equal(await input.inputValue(), '0', 'the rejected value stays for correction');
    // Live updates do not overwrite the field while it holds the rejected value.
    await statsTicks(page);
    assert.equal(await input.inputValue(), '0');
    assert.equal((await apiQueue(queueA)).max_running, null, 'nothing was changed');
    await screenshot(page, '11-queue-limit-error');

    // Escape gives the edit up.
    await input.press('Escape');
    assert.equal(await input.inputValue(), '');
    assert.ok(!(await error.isVisible()), 'the error goes with the edit');
  });

  it('shows a queue\'s flow settings and why a queued task is held back', STEP_TIMEOUT, async () => {
    const changed = await api(`/api/queues/${queueB}`, {
      method: 'PATCH', body: { rate_limit: { max: 5, per: '1s' }, max_per_key: 1 },
    });
    assert.equal(changed.status, 200, `PATCH answered ${changed.status}: ${changed.text}`);
    const flow = queueRow(page, queueB).locator('.q-flow');
    await eventually(async () => (await flow.textContent()) === 'at most 5 per 1s · 1 per key',
      { message: 'the rate and key limits under the queue\'s name' });

    // A key's first task runs (a long sleep in the served queue); its second waits.
    const key = `browser-key-${RUN}`;
    const first = await createTask({ name: `browser ${key} 1`, type: 'sleep', payload: { ms: 8000 }, concurrency_key: key });
    await eventually(async () => (await api(`/api/tasks/${first.id}`)).body.status === 'running',
      { message: 'the key\'s first task to run' });
    const second = await createTask({ name: `browser ${key} 2`, type: 'noop', payload: {}, concurrency_key: key });
    await eventually(async () => (await api(`/api/tasks/${second.id}`)).body.held?.reason === 'waiting_for_key',
      { message: 'GET /api/tasks/{id} to say the task waits for its key' });
    await page.goto(`${BASE_URL}/#/tasks/${second.id}`);
    const held = page.locator('#detail-held');
    await held.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await held.textContent(), new RegExp(`Held back: waiting for key ${key} \\(1 of 1 running\\)`));
    await assertAccessible(page, 'a held-back task');
    await screenshot(page, '12-held-back', { fullPage: false });
    await page.keyboard.press('Escape');
    await page.locator('#detail').waitFor({ state: 'hidden' });
    // Once the first ends, the second runs: the key held it, nothing else.
    await eventually(async () => (await api(`/api/tasks/${second.id}`)).body.status === 'succeeded',
      { message: 'the second task to run after the first', timeout: 20000 });
  });

  it('filters the task list by queue', STEP_TIMEOUT, async () => {
    const filter = page.locator('#filters').getByRole('combobox', { name: /^Queue/ });
    const request = page.waitForRequest((req) => {
      const url = new URL(req.url());
      return url.pathname === '/api/tasks' && url.searchParams.get('queue') === queueB;
    });
    await filter.selectOption(queueB);
    await request;
    const shownQueues = () => page.locator('#tasks-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.queue));
    await eventually(async () => {
      const queues = await shownQueues();
      return queues.length === queueTasks[queueB].length && queues.every((q) => q === queueB);
    }, { message: `only the ${queueTasks[queueB].length} tasks of ${queueB}` });
    for (const task of queueTasks[queueB]) {
      assert.equal((await rowFor(page, task.id).locator('td.c-queue').textContent()).trim(), queueB);
    }

    // A queue's name in the queues view leads to its tasks.
    await queueRow(page, queueA).getByRole('button', { name: `Show the tasks of queue ${queueA}` }).click();
    await eventually(async () => (await filter.inputValue()) === queueA, { message: 'the queue filter to follow the URL' });
    await eventually(async () => {
      const queues = await shownQueues();
      return queues.length === queueTasks[queueA].length && queues.every((q) => q === queueA);
    }, { message: `only the tasks of ${queueA}` });
    await screenshot(page, '12-filtered-by-queue');

    await filter.selectOption('');
    await eventually(async () => new Set(await shownQueues()).size > 1, { message: 'tasks of every queue again' });
  });

  it('shows every attempt of a task with its error, live, at a URL of its own', STEP_TIMEOUT, async () => {
    const task = await createTask({
      name: `browser attempts ${RUN}`, type: 'fail', payload: { message: 'flaky upstream', n: 1 },
      max_retries: 1, backoff_seconds: 1,
    });
    // A fresh page opened on the task's URL, as a shared link would be.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE_URL });
    const shared = await context.newPage();
    shared.on('pageerror', (error) => pageErrors.push(error.message));
    try {
      await shared.goto(`${BASE_URL}/#/tasks/${task.id}`);
      if (TOKEN) {
        await shared.locator('#auth-token').fill(TOKEN);
        await shared.locator('#auth').getByRole('button', { name: 'Use token' }).click();
      }
      await shared.locator('#detail').waitFor({ state: 'visible', timeout: WAIT_MS });
      await eventually(async () => (await shared.locator('#detail-title').textContent()) === task.name,
        { message: 'the shared URL to open the task' });
      // Live: the second attempt and the final failure arrive without a reload.
      await eventually(async () => (await shared.locator('#detail-status').getAttribute('data-status')) === 'failed',
        { message: 'the task to fail for good' });
      const attempts = shared.locator('#detail-attempts tr[data-outcome]');
      await eventually(async () => (await attempts.count()) === 2, { message: 'two attempts in the table' });
      const cells = await attempts.evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));
      for (const [n, started, ended, duration, worker, outcome] of cells) {
        assert.ok(n && started !== '—' && ended !== '—' && /\d/.test(duration) && worker !== '—', `attempt ${n}: ${cells}`);
        assert.match(outcome, /failed/);
      }
      assert.match(cells[0][6], /\ds/, 'the first attempt shows its retry delay');
      assert.match(cells[1][5], /no retries left/);
      const errors = await shared.locator('#detail-attempts tr.attempt-error').allTextContents();
      assert.equal(errors.length, 2, 'every failed attempt shows its error');
      assert.ok(errors.every((e) => e.includes('flaky upstream')), `${errors}`);

      assert.deepEqual(JSON.parse(await shared.locator('#detail-payload').textContent()), task.payload);
      await shared.getByRole('button', { name: 'Copy payload' }).click();
      await eventually(async () => {
        const copied = await shared.evaluate(() => navigator.clipboard.readText());
        return JSON.stringify(JSON.parse(copied)) === JSON.stringify(task.payload);
      }, { message: 'the payload on the clipboard' });
      await screenshot(shared, '14-attempts', { fullPage: false });
      await assertAccessible(shared, 'a task opened from its URL');

      // Closing goes back to the list's URL.
      await shared.keyboard.press('Escape');
      await eventually(async () => new URL(shared.url()).hash === '#/', { message: 'the list URL after closing' });
    } finally {
      await shared.close();
    }
  });

  it('searches by id, name, payload and time, and the URL holds the search', STEP_TIMEOUT, async () => {
    const later = { type: 'noop', delay_seconds: 3600 };
    const alpha = await createTask({ ...later, name: `search alpha ${RUN}`, payload: { customer_id: 42 } });
    const beta = await createTask({ ...later, name: `search beta ${RUN}`, payload: { customer_id: 7 } });
    const form = page.locator('#filters');
    const search = async (fields) => {
      for (const [label, value] of Object.entries(fields)) await form.getByLabel(label, { exact: true }).fill(value);
      await form.getByRole('button', { name: 'Search' }).click();
    };

    await search({ 'Name contains': `SEARCH ALPHA ${RUN}` });
    await eventually(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([alpha.id]),
      { message: 'only alpha by name' });
    assert.match(new URL(page.url()).hash, /^#\/tasks\?name=/, 'the URL holds the search');

    await search({ 'Name contains': RUN, 'Payload key=value': 'customer_id=7' });
    await eventually(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([beta.id]),
      { message: 'only beta by payload' });
    const hash = new URL(page.url()).hash;
    assert.match(hash, /payload=customer_id%3D7/);

    await search({ 'Name contains': '', 'Payload key=value': '', Id: beta.id.slice(0, 23) });
    await eventually(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([beta.id]),
      { message: 'only beta by id prefix' });

    // A time range: nothing was created in the future.
    await form.getByLabel('Id', { exact: true }).fill('');
    await form.getByLabel('Created after').fill('2099-01-01T00:00');
    await form.getByRole('button', { name: 'Search' }).click();
    await page.locator('#tasks-empty').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(new URL(page.url()).hash, /created_after=2099/);
    await form.getByLabel('Created after').fill('');

    // A bad search shows the API's message, naming the key.
    await search({ 'Payload key=value': 'no equals sign' });
    await eventually(async () => /payload/.test(await page.locator('#tasks-error').textContent()),
      { message: 'the 400 naming payload' });

    // The URL of a search, opened again, shows the same list.
    await page.goto(`${BASE_URL}/${hash}`);
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: WAIT_MS });
    await eventually(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([beta.id]),
      { message: 'the search restored from its URL' });
    assert.equal(await form.getByLabel('Payload key=value').inputValue(), 'customer_id=7');
    await screenshot(page, '15-search');
    await assertAccessible(page, 'the searched list');
    await form.getByRole('button', { name: 'Clear' }).click();
    await eventually(async () => ['#/', ''].includes(new URL(page.url()).hash), { message: 'the search cleared' });
  });

  it('acts in bulk on a selection and on all matching tasks, confirming how many', STEP_TIMEOUT, async () => {
    const name = `bulk ${RUN}`;
    const made = [];
    for (let i = 0; i < 3; i += 1) made.push(await createTask({ name: `${name} ${i}`, type: 'noop', payload: {}, delay_seconds: 3600 }));
    await page.locator('#filters').getByLabel('Name contains').fill(name);
    await page.locator('#filters').getByRole('button', { name: 'Search' }).click();
    await eventually(async () => (await shownIds(page)).length === 3, { message: 'the three bulk tasks' });

    // Two selected, cancelled.
    for (const task of made.slice(0, 2)) await rowFor(page, task.id).getByRole('checkbox').check();
    assert.match(await page.locator('#bulk-selected').textContent(), /2 selected/);
    await page.getByRole('button', { name: 'Cancel selected' }).click();
    const dialog = page.locator('#bulk');
    await dialog.waitFor({ state: 'visible' });
    await eventually(async () => (await page.locator('#bulk-count').textContent()) === '2', { message: 'N = 2 in the confirmation' });
    assert.match(await page.locator('#bulk-text').textContent(), /Cancel 2 tasks selected/);
    await assertAccessible(page, 'the bulk confirmation');
    await page.locator('#bulk-confirm').click();
    await eventually(async () => /Done: 2 cancelled, 0 skipped/.test(await page.locator('#bulk-result').textContent()),
      { message: 'two cancelled' });
    await page.locator('#bulk-close').click();
    for (const task of made.slice(0, 2)) assert.equal((await api(`/api/tasks/${task.id}`)).body.status, 'cancelled');

    // Retry all matching: the server counts 3, retries the 2 cancelled, skips the queued one.
    await page.getByRole('button', { name: 'Retry all matching…' }).click();
    await dialog.waitFor({ state: 'visible' });
    await eventually(async () => (await page.locator('#bulk-count').textContent()) === '3', { message: 'N = 3 in the confirmation' });
    assert.match(await page.locator('#bulk-text').textContent(), /Retry 3 tasks matching/);
    await page.locator('#bulk-confirm').click();
    await eventually(async () => /Done: 2 queued again, 1 skipped/.test(await page.locator('#bulk-result').textContent()),
      { message: 'two retried, one skipped' });
    assert.equal(await page.locator('#bulk-progress').getAttribute('max'), '3');
    await screenshot(page, '16-bulk', { fullPage: false });
    await page.locator('#bulk-close').click();

    // Delete all matching once they are done: the two retried ones ran and succeeded.
    await eventually(async () => {
      const statuses = await Promise.all(made.slice(0, 2).map(async (t) => (await api(`/api/tasks/${t.id}`)).body.status));
      return statuses.every((s) => s === 'succeeded');
    }, { message: 'the retried tasks to succeed' });
    await page.getByRole('button', { name: 'Delete all matching…' }).click();
    await eventually(async () => (await page.locator('#bulk-count').textContent()) === '3', { message: 'N = 3 to delete' });
    await page.locator('#bulk-confirm').click();
    await eventually(async () => /Done: 2 deleted, 1 skipped/.test(await page.locator('#bulk-result').textContent()),
      { message: 'two deleted, the scheduled one skipped' });
    await page.locator('#bulk-close').click();
    assert.equal((await api(`/api/tasks/${made[0].id}`)).status, 404);
    await eventually(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([made[2].id]),
      { message: 'only the scheduled task left in the list' });
    await page.locator('#filters').getByRole('button', { name: 'Clear' }).click();
  });

  it('fits the queues view on a laptop and on a phone', STEP_TIMEOUT, async () => {
    const section = page.locator('#queues');
    for (const [name, viewport] of [['laptop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      await page.setViewportSize(viewport);
      await section.scrollIntoViewIfNeeded();
      // The page itself never scrolls sideways; a wide table scrolls inside its card.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `no sideways scrolling of the page on a ${name} (${overflow}px)`);
      await section.screenshot({ path: path.join(SCREENSHOTS, `13-queues-${name}.png`) });
      await assertAccessible(page, `the dashboard on a ${name}`);
    }
    await page.setViewportSize({ width: 1440, height: 1000 });
  });

  it('lists a schedule live, pauses and resumes it, runs it now and filters its tasks', STEP_TIMEOUT, async () => {
    const name = `tick-${RUN}`;
    const created = await api('/api/schedules', {
      method: 'POST',
      body: { name, cron: '* * * * * *', task: { type: 'noop', name: `${name} task` } },
    });
    assert.equal(created.status, 201, `POST /api/schedules answered ${created.status}: ${created.text}`);
    const row = page.locator(`#schedules-body tr[data-schedule="${name}"]`);
    await row.waitFor({ timeout: WAIT_MS });
    await eventually(async () => (await row.locator('td.last-task').textContent()).trim() !== '—',
      { message: `a tick of ${name} shown as its last task` });
    assert.match(await page.locator('#schedules-leader').textContent(), /Leader: /);
    await page.locator('#schedules').scrollIntoViewIfNeeded();
    await assertAccessible(page, 'the schedules view');

    // The rows are refreshed every 2 s while the schedule ticks every second: a
    // keyboard user's focus on a row's button survives the refreshes.
    const runNow = row.getByRole('button', { name: `Run now: schedule ${name}` });
    await runNow.focus();
    const shownTick = await row.locator('td.last-task span').getAttribute('title');
    await eventually(async () => (await row.locator('td.last-task span').getAttribute('title')) !== shownTick,
      { message: 'a refresh showed a newer tick' });
    await page.waitForTimeout(2500); // one more refresh
    assert.equal(await runNow.evaluate((el) => el === document.activeElement), true, 'the focused button kept focus');

    await row.getByRole('button', { name: `Pause schedule ${name}` }).click();
    await eventually(async () => (await api(`/api/schedules/${name}`)).body?.paused === true, { message: `${name} paused` });
    await eventually(async () => (await row.getAttribute('data-state')) === 'paused', { message: 'the row shows the pause' });
    await screenshot(page, '14-schedule-paused');
    await row.getByRole('button', { name: `Resume schedule ${name}` }).click();
    await eventually(async () => (await api(`/api/schedules/${name}`)).body?.paused === false, { message: `${name} resumed` });

    const manual = async () => ((await api(`/api/tasks?schedule=${name}&limit=500`)).body?.tasks || [])
      .filter((t) => !t.tick_at).length;
    await row.getByRole('button', { name: `Run now: schedule ${name}` }).click();
    await eventually(async () => (await manual()) === 1, { message: 'one manual run of the schedule' });

    const request = page.waitForRequest((req) => {
      const url = new URL(req.url());
      return url.pathname === '/api/tasks' && url.searchParams.get('schedule') === name;
    });
    await row.getByRole('button', { name: `Show the tasks of schedule ${name}` }).click();
    await request;
    assert.equal(await page.locator('#filter-schedule').inputValue(), name);
    await screenshot(page, '15-filtered-by-schedule');
    await page.locator('#filter-schedule').selectOption('');
    assert.equal((await api(`/api/schedules/${name}`, { method: 'DELETE' })).status, 204);
  });

  it('renders in dark mode, and the page raised no errors', STEP_TIMEOUT, async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: WAIT_MS });
    await screenshot(page, '08-dark');
    await assertAccessible(page, 'the overview in dark mode');
    await rowFor(page, failTask.id).getByRole('link').click();
    await page.locator('#detail').waitFor({ state: 'visible' });
    await assertAccessible(page, 'the task detail in dark mode');
    await page.keyboard.press('Escape');
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });
});

/* taskq dashboard: the "New task" form.
 *
 *   GET  /api/task-types  ◀─ the form's type list (and the list's type filter)
 *   POST /api/tasks       ◀─ the form
 *
 * The payload is checked here first, so a JSON syntax error shows next to the field
 * with its position; everything else is the server's to judge, and its message is
 * shown as it comes.
 */

import { $, h, showAlert, toast } from './util.js';
import { ApiError, api } from './api.js';

let taskTypes = [];
/** Told of every task the form creates, and of the type list once it is read. */
const hooks = { onCreated: () => {}, onTypes: () => {} };

/** Reads the registered task types; returns the error when it could not. */
export async function loadTypes() {
  try {
    const body = await api('/api/task-types');
    taskTypes = (Array.isArray(body) ? body : body?.types || []).map(String);
  } catch (error) {
    taskTypes = [];
    return error;
  }
  hooks.onTypes(taskTypes);
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
    hooks.onCreated(task);
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


/** onCreated(task): a task the form created; onTypes(types): the registered types. */
export function wireCreate({ onCreated, onTypes }) {
  Object.assign(hooks, { onCreated, onTypes });
  $('#open-create').addEventListener('click', openCreate);
  $('#create-cancel').addEventListener('click', () => $('#create').close());
  $('#create-form').addEventListener('submit', submitCreate);
}

/** The queue names the form suggests. */
export function setQueueSuggestions(names) {
  $('#cf-queue-list').replaceChildren(...names.map((n) => h('option', { value: n })));
}

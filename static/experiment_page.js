// /e/{slug}: the form (state in the URL), Run / Stop, and the live run.

import { ApiError, cancelRun, startRun, uploadImage } from "./api.js";
import { Charts } from "./charts.js";
import { bindClicks } from "./figure_clicks.js";
import { QueryPanel } from "./query_panel.js";
import { followRun, RunView } from "./run_view.js";
import { SchemaForm } from "./schema_form.js";
import { readQuery, writeQuery } from "./url_state.js";

const page = document.querySelector('[data-role="page"]');
const find = (role) => page.querySelector(`[data-role="${role}"]`);
const data = JSON.parse(document.getElementById("page-data").textContent);
const api = page.dataset.api;

const view = new RunView(page, { mathmlUrl: page.dataset.mathmlUrl });
const charts = new Charts(find("figures"), {
  onError: (error) => {
    console.error(error);
    view.showError(`Could not draw a chart update: ${error.message}`);
  },
});
const form = new SchemaForm(find("fields"), data.schema, {
  onChange: writeQuery,
  uploadImage: (file) => uploadImage(api, file),
});
const runButton = find("run");
const stopButton = find("stop");

form.setValues(readQuery());
writeQuery(form.values()); // drops invalid values from a pasted link, shows the defaults
charts.draw(data.figures);
bindClicks(find("figures"), data.clicks, form, writeQuery);
const querySection = find("query");
const queries = querySection
  ? new QueryPanel(querySection, { api, mathmlUrl: page.dataset.mathmlUrl })
  : null;
view.setStatus("idle");

let current = null; // {id, stream} of the run this page is showing

function setRunning(running) {
  runButton.disabled = running;
  stopButton.disabled = !running;
}

function finish(status) {
  current?.stream.close();
  view.setStatus(status);
  setRunning(false);
}

async function run() {
  if (runButton.disabled) return;
  const invalid = form.invalidFields();
  if (invalid.length) {
    view.showError(`Fix the highlighted parameters first: ${invalid.join(", ")}.`);
    return;
  }
  form.clearErrors();
  view.reset();
  queries?.attach(null);
  view.setStatus("starting");
  setRunning(true);
  let created;
  try {
    created = await startRun(api, data.slug, form.values());
  } catch (error) {
    const fieldErrors = error instanceof ApiError ? error.fieldErrors : {};
    const unknown = form.showErrors(fieldErrors);
    const extra = unknown.map((name) => `${name}: ${fieldErrors[name].join(" ")}`);
    view.showError([error.message, ...extra].join("\n"));
    current = null;
    finish("idle");
    return;
  }
  view.showRunLink(created.urls.page);
  view.setStatus(created.status);
  current = { id: created.id, stream: null };
  const thisRun = current;
  current.stream = followRun(created.urls.events, view, charts, {
    lostMessage: "Lost the connection to the server; the run page may still show the result.",
    onEnd: (status) => {
      if (current !== thisRun) return; // the page has moved on to another run
      finish(status === "lost" ? "error" : status);
      if (status === "done") {
        queries?.attach(thisRun.id);
        view.showDownloads(api, thisRun.id);
      }
    },
  });
}

async function stop() {
  if (!current) return;
  stopButton.disabled = true;
  view.setStatus("cancelling");
  try {
    await cancelRun(api, current.id);
  } catch (error) {
    view.showError(error.message);
  }
  // The stream ends with `done` {status: "cancelled"}, which re-enables Run.
}

find("form").addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});
stopButton.addEventListener("click", stop);
find("defaults").addEventListener("click", () => {
  form.setValues({});
  writeQuery(form.values());
});

// /runs/{id}: a finished run drawn from GET /api/runs/{id}, or a live one from its events.

import { eventsUrl, getRun } from "./api.js";
import { Charts } from "./charts.js";
import { subscribe } from "./event_stream.js";
import { QueryPanel } from "./query_panel.js";
import { RunView } from "./run_view.js";

const ACTIVE = ["queued", "running"];

const page = document.querySelector('[data-role="page"]');
const api = page.dataset.api;
const runId = page.dataset.runId;
const view = new RunView(page, { mathmlUrl: page.dataset.mathmlUrl });
const charts = new Charts(page.querySelector('[data-role="figures"]'), {
  onError: (error) => {
    console.error(error);
    view.showError(`Could not draw a chart update: ${error.message}`);
  },
});

const querySection = page.querySelector('[data-role="query"]');
const queries = querySection
  ? new QueryPanel(querySection, { api, mathmlUrl: page.dataset.mathmlUrl })
  : null;

for (const time of page.querySelectorAll("time[datetime]")) {
  time.textContent = new Date(time.dateTime).toLocaleString();
}

function follow() {
  subscribe(eventsUrl(api, runId), {
    status: ({ status }) => view.setStatus(status),
    frame: (frame) => charts.apply(frame),
    metrics: (metrics) => view.setMetrics(metrics),
    progress: (progress) => view.setProgress(progress),
    done: async ({ status, checks, metrics }) => {
      await charts.settled(); // done once every chart update of the run is drawn
      view.setMetrics(metrics);
      view.setChecks(checks);
      view.setStatus(status);
      if (status === "done") queries?.attach(runId);
    },
    error: ({ message }) => {
      view.showError(message);
      view.setStatus("error");
    },
    lost: () => view.showError("Lost the connection to the server; reload to try again."),
  });
}

function show(run) {
  view.setStatus(run.status);
  charts.draw(run.figures);
  view.setMetrics(run.metrics);
  view.setProgress(run.progress);
  view.setChecks(run.checks);
  if (run.error) view.showError(run.error);
  if (run.status === "done") queries?.attach(runId);
}

try {
  const run = await getRun(api, runId);
  if (ACTIVE.includes(run.status)) {
    view.setStatus(run.status);
    follow();
  } else {
    show(run);
  }
} catch (error) {
  view.showError(error.message);
}

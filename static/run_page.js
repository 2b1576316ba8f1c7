// /runs/{id}: a finished run drawn from GET /api/runs/{id}, or a live one from its events.

import { eventsUrl, getRun } from "./api.js";
import { Charts } from "./charts.js";
import { QueryPanel } from "./query_panel.js";
import { followRun, RunView } from "./run_view.js";

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
  followRun(eventsUrl(api, runId), view, charts, {
    lostMessage: "Lost the connection to the server; reload to try again.",
    onEnd: (status) => {
      if (status === "lost") return;
      view.setStatus(status);
      if (status === "done") {
        queries?.attach(runId);
        view.showDownloads(api, runId);
      }
    },
  });
}

function show(run) {
  view.setStatus(run.status);
  charts.draw(run.figures);
  view.setMetrics(run.metrics);
  view.setProgress(run.progress);
  view.setChecks(run.checks);
  if (run.error) view.showError(run.error);
  if (run.status === "done") {
    queries?.attach(runId);
    view.showDownloads(api, runId);
  }
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

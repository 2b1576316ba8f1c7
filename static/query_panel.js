// Queries on a finished run: a form from the experiment's Query schema, an Ask button, and
// the answer (a run of its own) streamed into its own charts, metrics and checks.

import { ApiError, queryRun } from "./api.js";
import { Charts } from "./charts.js";
import { followRun, RunView } from "./run_view.js";
import { SchemaForm } from "./schema_form.js";

export class QueryPanel {
  /** `section` is templates/_query.html; its data-schema is the Query JSON Schema. */
  constructor(section, { api, mathmlUrl }) {
    const find = (role) => section.querySelector(`[data-role="${role}"]`);
    this.section = section;
    this.api = api;
    this.form = new SchemaForm(find("query-fields"), JSON.parse(section.dataset.schema));
    this.view = new RunView(section, { mathmlUrl });
    this.charts = new Charts(find("query-figures"), {
      onError: (error) => {
        console.error(error);
        this.view.showError(`Could not draw a chart update: ${error.message}`);
      },
    });
    this.button = find("query-run");
    this.runId = null;
    this.stream = null;
    find("query-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.ask();
    });
  }

  /** Offer queries on the finished run `runId` (null hides the panel). */
  attach(runId) {
    this.stream?.close();
    this.runId = runId;
    this.section.hidden = runId === null;
    this.view.reset();
    this.view.setStatus("idle");
  }

  async ask() {
    if (!this.runId || this.button.disabled) return;
    const invalid = this.form.invalidFields();
    if (invalid.length) {
      this.view.showError(`Fix the highlighted fields first: ${invalid.join(", ")}.`);
      return;
    }
    this.stream?.close();
    this.form.clearErrors();
    this.view.reset();
    this.view.setStatus("starting");
    this.button.disabled = true;
    let created;
    try {
      created = await queryRun(this.api, this.runId, this.form.values());
    } catch (error) {
      const fieldErrors = error instanceof ApiError ? error.fieldErrors : {};
      const unknown = this.form.showErrors(fieldErrors);
      const extra = unknown.map((name) => `${name}: ${fieldErrors[name].join(" ")}`);
      this.view.showError([error.message, ...extra].join("\n"));
      this.view.setStatus("idle");
      this.button.disabled = false;
      return;
    }
    this.view.showRunLink(created.urls.page);
    const end = (status) => {
      this.stream?.close();
      this.view.setStatus(status);
      this.button.disabled = false;
    };
    this.stream = followRun(created.urls.events, this.view, this.charts, {
      lostMessage: "Lost the connection to the server.",
      onEnd: (status) => end(status === "lost" ? "error" : status),
    });
  }
}

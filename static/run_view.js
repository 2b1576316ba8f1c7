// The text side of a run: status badge, progress bar, error box, metrics and checks tables.
// Both the experiment page and the run page render into the same markup
// (templates/_run_state.html and _checks.html), found by data-role.

import { mathml } from "./api.js";
import { subscribe } from "./event_stream.js";

const STATUS_TEXT = {
  idle: "not run yet", starting: "starting…", queued: "queued", running: "running",
  cancelling: "stopping…", done: "done", cancelled: "cancelled", error: "error",
};

/** A number for people: integers as they are, others to 4 significant digits. */
export function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

function cell(tag, text, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class RunView {
  constructor(root, { mathmlUrl } = {}) {
    const find = (role) => root.querySelector(`[data-role="${role}"]`);
    this.status = find("status");
    this.runLink = find("run-link");
    this.progress = find("progress");
    this.progressText = find("progress-text");
    this.error = find("error");
    this.downloads = find("downloads"); // only where the experiment offers images
    this.metricsBody = find("metrics").tBodies[0];
    this.checks = find("checks");
    this.checksBody = this.checks.querySelector("tbody");
    this.checksSummary = find("checks-summary");
    this.mathmlUrl = mathmlUrl;
    this.metrics = {};
  }

  /** Back to an empty run (before a new one starts). */
  reset() {
    this.metrics = {};
    this.metricsBody.replaceChildren();
    this.setProgress(null);
    this.clearError();
    this.checks.hidden = true;
    this.checksBody.replaceChildren();
    if (this.downloads) this.downloads.hidden = true;
  }

  /** Links to the PNG images the finished run `id` offers (GET /api/runs/{id}/images/…). */
  showDownloads(api, id) {
    if (!this.downloads) return;
    for (const link of this.downloads.querySelectorAll("a[data-image]")) {
      link.href = `${api}/runs/${encodeURIComponent(id)}/images/${link.dataset.image}.png`;
    }
    this.downloads.hidden = false;
  }

  setStatus(status) {
    this.status.dataset.status = status;
    this.status.textContent = STATUS_TEXT[status] ?? status;
    // A run may finish before its budget (a perceptron that converged): done is a full bar.
    if (status === "done") this.progress.value = this.progress.max;
  }

  showRunLink(href) {
    this.runLink.href = href;
    this.runLink.hidden = false;
  }

  setProgress(progress) {
    const { step = 0, total = 0 } = progress ?? {};
    this.progress.max = Math.max(total, 1);
    this.progress.value = Math.min(step, this.progress.max);
    this.progressText.textContent = total ? `${step} / ${total}` : "";
  }

  /** Merge metrics into the table ({name: value}); rows keep their first-seen order. */
  setMetrics(metrics) {
    Object.assign(this.metrics, metrics ?? {});
    const rows = Object.entries(this.metrics).map(([name, value]) => {
      const row = document.createElement("tr");
      row.dataset.metric = name;
      row.append(cell("th", name), cell("td", formatValue(value), "num"));
      row.cells[0].scope = "row";
      return row;
    });
    this.metricsBody.replaceChildren(...rows);
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  clearError() {
    this.error.textContent = "";
    this.error.hidden = true;
  }

  /** The final checks: [{name, formula, measured, reference, relation, passed, detail}]. */
  setChecks(checks) {
    if (!checks?.length) {
      this.checks.hidden = true;
      return;
    }
    const formulaCells = [];
    const rows = checks.map((check) => {
      const row = document.createElement("tr");
      row.dataset.check = check.name;
      row.dataset.passed = String(Boolean(check.passed));
      const name = cell("th", check.name);
      name.scope = "row";
      if (check.detail) name.append(cell("p", check.detail, "detail"));
      const formula = cell("td", undefined, "formula");
      formula.append(cell("code", check.formula ?? "", "latex"));
      formulaCells.push([formula, check.formula ?? ""]);
      const badge = cell("span", check.passed ? "pass" : "fail", `badge ${check.passed ? "pass" : "fail"}`);
      const result = cell("td");
      result.append(badge);
      row.append(name, formula, cell("td", formatValue(check.measured), "num"),
        cell("td", check.relation ?? "", "rel"), cell("td", formatValue(check.reference), "num"), result);
      // Labels for the stacked layout on narrow screens (style.css), where the header is hidden.
      ["Check", "Formula", "Measured", "Relation", "Reference", "Result"]
        .forEach((label, i) => { row.cells[i].dataset.label = label; });
      return row;
    });
    this.checksBody.replaceChildren(...rows);
    const passed = checks.filter((c) => c.passed).length;
    this.checksSummary.textContent = `${passed} of ${checks.length} passed`;
    this.checksSummary.dataset.allPassed = String(passed === checks.length);
    this.checks.hidden = false;
    this.renderFormulas(formulaCells);
  }

  // Checks arrive as LaTeX; the server turns them into MathML. Until it answers (or if it
  // cannot), the LaTeX source stays in place.
  async renderFormulas(cells) {
    const wanted = cells.filter(([, latex]) => latex);
    if (!this.mathmlUrl || !wanted.length) return;
    try {
      const markup = await mathml(this.mathmlUrl, wanted.map(([, latex]) => latex));
      wanted.forEach(([node], i) => {
        // The server only returns sanitised <math> or escaped <code> (app/mathml.py).
        if (node.isConnected) node.innerHTML = markup[i];
      });
    } catch (error) {
      console.warn("formulas stay as LaTeX:", error.message);
    }
  }
}

/**
 * Stream a run's events into `view` and `charts`. `onEnd(status)` runs once: with "done",
 * "cancelled" or "error" when the run ends (after its last chart update is drawn), or with
 * "lost" when the connection drops. Status after the end is the caller's to show, so a page
 * that moved on to another run is not overwritten. Returns the stream, to close it.
 */
export function followRun(url, view, charts, { onEnd = () => {}, lostMessage }) {
  return subscribe(url, {
    status: ({ status }) => view.setStatus(status),
    frame: (frame) => charts.apply(frame),
    metrics: (metrics) => view.setMetrics(metrics),
    progress: (progress) => view.setProgress(progress),
    done: async ({ status, checks, metrics }) => {
      await charts.settled();
      view.setMetrics(metrics);
      view.setChecks(checks);
      onEnd(status);
    },
    error: ({ message }) => {
      view.showError(message);
      onEnd("error");
    },
    lost: () => {
      view.showError(lostMessage);
      onEnd("lost");
    },
  });
}

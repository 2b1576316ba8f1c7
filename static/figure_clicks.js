// Clicking a figure writes the clicked data coordinates into the form (engine.core.ClickInput):
// either two number fields are set (a start point) or "x,y" is appended to a text field
// (a shape drawn point by point). Plotly's own plotly_click fires only on data points, so the
// position comes from the mouse and the axes' pixel-to-data maps, anywhere in the plot area.

const DIGITS = 4;

function clamp(field, value) {
  let out = value;
  if (field?.min !== undefined) out = Math.max(out, field.min);
  if (field?.max !== undefined) out = Math.min(out, field.max);
  return Number(out.toPrecision(DIGITS));
}

/** The data coordinates under a mouse event, or null outside the plot area. */
export function dataPoint(div, event) {
  const layout = div._fullLayout;
  const xaxis = layout?.xaxis;
  const yaxis = layout?.yaxis;
  if (!xaxis?.p2d || !yaxis?.p2d) return null;
  // Pixels from each axis's own start: an axis need not fill the plot area (a domain, or
  // constrain: "domain" on a chart with a fixed aspect ratio).
  const box = div.getBoundingClientRect();
  const px = event.clientX - box.left - xaxis._offset;
  const py = event.clientY - box.top - yaxis._offset;
  if (px < 0 || py < 0 || px > xaxis._length || py > yaxis._length) return null;
  const x = xaxis.p2d(px);
  const y = yaxis.p2d(py);
  return Number.isFinite(x) && Number.isFinite(y) ? { x, y } : null;
}

/** Bind every click input of the page: `form` is a SchemaForm, `onChange` gets its values. */
export function bindClicks(figuresRoot, clicks, form, onChange) {
  const fields = new Map(form.fields.map((field) => [field.name, field]));
  for (const click of clicks ?? []) {
    const div = figuresRoot.querySelector(`[data-figure="${click.figure}"]`);
    if (!div) continue;
    div.classList.add("clickable");
    div.title = click.points
      ? "Click to add a point"
      : `Click to set ${click.x} and ${click.y}`;
    div.addEventListener("click", (event) => {
      const point = dataPoint(div, event);
      if (!point) return;
      const values = form.values();
      if (click.points) {
        const field = fields.get(click.points);
        const added = `${Number(point.x.toPrecision(DIGITS))},${Number(point.y.toPrecision(DIGITS))}`;
        const joined = values[click.points] ? `${values[click.points]};${added}` : added;
        if (field?.maxLength !== undefined && joined.length > field.maxLength) return;
        values[click.points] = joined;
      } else {
        values[click.x] = clamp(fields.get(click.x), point.x);
        values[click.y] = clamp(fields.get(click.y), point.y);
      }
      form.setValues(values);
      onChange(form.values());
    });
  }
}

// Plotly figures by name: draw them, and apply a run's frames to them.
//
// A frame maps one-to-one onto a Plotly.js call (extend, restyle, relayout, react). Arrays in
// figures and frames may arrive as Plotly typed-array specs {dtype, bdata, shape}; they are
// decoded here, before any Plotly call, because Plotly.extendTraces and Plotly.restyle do not
// decode them.

const TYPED_ARRAYS = {
  f8: Float64Array, f4: Float32Array,
  i4: Int32Array, i2: Int16Array, i1: Int8Array,
  u4: Uint32Array, u2: Uint16Array, u1: Uint8Array, u1c: Uint8ClampedArray,
};

const PLOT_CONFIG = { responsive: true, displaylogo: false };
// Below this width a legend beside the plot would squeeze it; it goes underneath instead,
// and the figure grows to make room.
const NARROW_PX = 520;

// The server leaves plotly.py's default template out of every figure (it is ~7 kB, the
// same in each); it is fetched once here and put back into layouts that have none.
const defaultTemplate = fetch(new URL("../vendor/plotly-template.json", import.meta.url))
  .then((response) => (response.ok ? response.json() : null))
  .catch(() => null);

async function withTemplate(layout) {
  if (layout.template) return layout;
  const template = await defaultTemplate;
  return template ? { ...layout, template } : layout;
}

// Plotly calls resolve at once, so a queue of them would run as one long task: nothing would
// be painted until a burst of frames was drawn, and an animation (a sample cloud moving with
// t) would show only its last state. After BREATHE_MS of drawing the queue yields, so the
// browser paints and handles input before it goes on.
const BREATHE_MS = 40;
let lastBreath = performance.now();

async function breathe() {
  if (performance.now() - lastBreath < BREATHE_MS) return;
  await new Promise((resolve) => setTimeout(resolve, 0));
  lastBreath = performance.now();
}

// The whole figure goes to Plotly.react so that its `frames` (the steps a slider animates
// through) come along; `frames: []` clears those of the figure it replaces.
async function reactFigure(div, figure) {
  const layout = await fitLayout(div, figure.layout ?? {});
  return Plotly.react(div, { data: figure.data ?? [], layout, frames: figure.frames ?? [], config: PLOT_CONFIG });
}

async function fitLayout(div, layout) {
  layout = await withTemplate(layout);
  if (div.clientWidth >= NARROW_PX || layout.legend?.orientation) return layout;
  return {
    ...layout,
    height: layout.height ?? 480,
    legend: { ...layout.legend, orientation: "h", x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom" },
  };
}

function isTypedArraySpec(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    && typeof value.bdata === "string" && typeof value.dtype === "string";
}

function decodeSpec({ dtype, bdata, shape }) {
  const Type = TYPED_ARRAYS[dtype];
  if (!Type) throw new Error(`unknown typed-array dtype ${JSON.stringify(dtype)}`);
  const binary = atob(bdata);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  // A fresh buffer starts at offset 0, so any element size is aligned. Data is little-endian,
  // as are the CPUs browsers run on.
  const flat = new Type(bytes.buffer, 0, bytes.byteLength / Type.BYTES_PER_ELEMENT);
  if (!shape) return flat;
  const [rows, cols] = String(shape).split(",").map(Number);
  // 2-D arrays become rows (heatmap z, image data) as Plotly expects.
  return Array.from({ length: rows }, (_, r) => Array.from(flat.subarray(r * cols, (r + 1) * cols)));
}

/** Replace every typed-array spec inside a JSON value by a TypedArray (or rows of numbers). */
export function decodeTypedArrays(value) {
  if (Array.isArray(value)) return value.map(decodeTypedArrays);
  if (value === null || typeof value !== "object") return value;
  if (isTypedArraySpec(value)) return decodeSpec(value);
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = decodeTypedArrays(item);
  return out;
}

function getPath(object, dotted) {
  return dotted.split(".").reduce((node, key) => (node == null ? undefined : node[key]), object);
}

function setPath(object, dotted, value) {
  const keys = dotted.split(".");
  const last = keys.pop();
  const parent = keys.reduce((node, key) => (node[key] ??= {}), object);
  parent[last] = value;
}

// Plotly.extendTraces refuses to join arrays of different types (an Array with a Float64Array,
// or two kinds of typed arrays), so each new chunk is made to match what the trace holds.
function matchArrayType(trace, attr, chunk) {
  const current = getPath(trace, attr);
  if (!ArrayBuffer.isView(current)) return Array.from(chunk);
  if (chunk.constructor === current.constructor) return chunk;
  if (current.constructor !== Float64Array) setPath(trace, attr, Float64Array.from(current));
  return Float64Array.from(chunk);
}

export class Charts {
  /** `container` holds one `[data-figure=name]` div per figure; missing ones are added. */
  constructor(container, { onError = (error) => console.error(error) } = {}) {
    this.container = container;
    this.onError = onError;
    // Plotly calls may finish asynchronously; each figure's calls run strictly in order.
    this.queues = new Map();
  }

  div(name) {
    let div = this.container.querySelector(`[data-figure="${CSS.escape(name)}"]`);
    if (!div) {
      const wrap = document.createElement("div");
      wrap.className = "figure";
      div = document.createElement("div");
      div.className = "plot";
      div.dataset.figure = name;
      wrap.append(div);
      this.container.append(wrap);
    }
    return div;
  }

  enqueue(name, call) {
    const previous = this.queues.get(name) ?? Promise.resolve();
    const next = previous.then(breathe).then(call).catch((error) => this.onError(error));
    this.queues.set(name, next);
    return next;
  }

  /** Draw whole figures: {name: {data, layout, frames?}}. */
  draw(figures) {
    const decoded = decodeTypedArrays(figures ?? {});
    return Promise.all(Object.entries(decoded).map(([name, figure]) => {
      const div = this.div(name);
      return this.enqueue(name, () => reactFigure(div, figure));
    }));
  }

  /** Apply one `frame` event: {figure, op, update, indices, max_points}. */
  apply({ figure, op, update, indices, max_points: maxPoints }) {
    const div = this.div(figure);
    const decoded = decodeTypedArrays(update);
    return this.enqueue(figure, async () => {
      switch (op) {
        case "extend": {
          for (const [attr, chunks] of Object.entries(decoded)) {
            decoded[attr] = chunks.map((chunk, i) => matchArrayType(div.data?.[indices[i]] ?? {}, attr, chunk));
          }
          return Plotly.extendTraces(div, decoded, indices, maxPoints ?? undefined);
        }
        case "restyle":
          return Plotly.restyle(div, decoded, indices ?? undefined);
        case "relayout":
          return Plotly.relayout(div, decoded);
        case "react":
          return reactFigure(div, decoded);
        default:
          throw new Error(`unknown frame op ${JSON.stringify(op)} for figure ${figure}`);
      }
    });
  }

  /** Resolves once every queued Plotly call has run. */
  settled() {
    return Promise.all(this.queues.values());
  }
}

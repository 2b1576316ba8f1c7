// A form generated from an experiment's Params JSON Schema (pydantic's model_json_schema()).
//
//   bounded number or integer  -> slider + number box kept in sync (log slider over decades)
//   enum / Literal / anyOf of consts -> select
//   boolean                    -> checkbox
//   string with x-images       -> select of bundled pictures + an upload button (engine/images.py)
//   anything else numeric      -> number box; strings -> text box
//
// Each field's description is its help text and its schema default its initial value.
// Values that come from outside (the URL query) are checked against the schema; an invalid
// one falls back to the default.

const SLIDER_STEPS = 1000;
// A slider over billions of integers (a seed, say) cannot pick one; such fields get a box.
const MAX_SLIDER_INTEGERS = 100_000;
// Positive ranges that span this many decades are easier to set on a log slider.
const LOG_SLIDER_RATIO = 1000;

function resolve(node, root) {
  let out = node ?? {};
  for (let depth = 0; out.$ref && depth < 32; depth += 1) {
    const { $ref, ...rest } = out;
    const target = $ref.replace(/^#\//, "").split("/").reduce((n, key) => n?.[key], root);
    out = { ...(target ?? {}), ...rest };
  }
  if (Array.isArray(out.allOf) && out.allOf.length === 1) {
    const { allOf, ...rest } = out;
    out = { ...resolve(allOf[0], root), ...rest };
  }
  return out;
}

function niceStep(span) {
  return 10 ** Math.floor(Math.log10(span / 100));
}

function decimalsOf(step) {
  return Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
}

/** Field descriptions, in schema order with the seed (shared, least interesting) last. */
export function fieldsFromSchema(schema) {
  const fields = Object.entries(schema.properties ?? {}).map(([name, prop]) => describeField(name, prop, schema));
  return [...fields.filter((f) => f.name !== "seed"), ...fields.filter((f) => f.name === "seed")];
}

// pydantic's own rule for titles: "max_epochs" -> "Max Epochs".
function titleOf(name) {
  return name.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join(" ");
}

function describeField(name, raw, root) {
  // A $ref'd Enum's title names the class, not the field: take the title before resolving.
  const prop = resolve(raw, root);
  const field = {
    name,
    title: raw.title ?? titleOf(name),
    description: prop.description ?? "",
    nullable: false,
  };
  let base = prop;
  const branches = prop.anyOf ?? prop.oneOf;
  if (Array.isArray(branches)) {
    const resolved = branches.map((b) => resolve(b, root));
    const nonNull = resolved.filter((b) => b.type !== "null");
    field.nullable = nonNull.length < resolved.length;
    if (nonNull.length && nonNull.every((b) => "const" in b || Array.isArray(b.enum))) {
      field.options = nonNull.flatMap((b) => ("const" in b ? [b.const] : b.enum));
    } else if (nonNull.length === 1) {
      const { anyOf, oneOf, ...own } = prop;
      base = { ...nonNull[0], ...own };
    }
  }
  if (!field.options && Array.isArray(base.enum)) field.options = base.enum;
  if (!field.options && "const" in base) field.options = [base.const];
  if (field.options && field.nullable && !field.options.includes(null)) field.options.push(null);

  field.type = base.type ?? (field.options ? typeof field.options[0] : "string");
  if (base["x-images"] && field.type === "string") {
    field.kind = "image";
    field.images = base["x-images"]; // bundled name -> label
    field.pattern = base.pattern;
    field.maxLength = base.maxLength;
  } else if (field.options) {
    field.kind = "select";
  } else if (field.type === "boolean") {
    field.kind = "checkbox";
  } else if (field.type === "integer" || field.type === "number") {
    Object.assign(field, numericBounds(base));
  } else if (field.type === "string") {
    field.kind = "text";
    field.minLength = base.minLength;
    field.maxLength = base.maxLength;
    field.pattern = base.pattern;
  } else {
    field.kind = "unsupported"; // arrays, objects: the API takes them, the form leaves the default
  }
  field.default = "default" in prop ? prop.default : fallbackDefault(field);
  return field;
}

function numericBounds(schema) {
  const integer = schema.type === "integer";
  const lo = schema.minimum ?? schema.exclusiveMinimum;
  const hi = schema.maximum ?? schema.exclusiveMaximum;
  const out = {
    min: lo, max: hi,
    exclusiveMin: schema.minimum === undefined && lo !== undefined,
    exclusiveMax: schema.maximum === undefined && hi !== undefined,
    multipleOf: schema.multipleOf,
    kind: "number",
  };
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) return out;
  if (integer && hi - lo > MAX_SLIDER_INTEGERS) return out;
  out.kind = "range";
  out.log = !integer && lo > 0 && hi / lo >= LOG_SLIDER_RATIO && !schema.multipleOf;
  out.step = schema.multipleOf ?? (integer ? 1 : niceStep(hi - lo));
  return out;
}

function fallbackDefault(field) {
  if (field.nullable) return null;
  if (field.kind === "select") return field.options[0];
  if (field.kind === "checkbox") return false;
  if (field.kind === "range" || field.kind === "number") return field.min ?? 0;
  return "";
}

/** `raw` (a string from the URL, or a value) as a valid value of `field`, else undefined. */
export function coerce(field, raw) {
  if (raw === undefined) return undefined;
  if (field.nullable && (raw === null || raw === "" || raw === "null")) return null;
  switch (field.kind) {
    case "select":
      return field.options.find((option) => String(option) === String(raw));
    case "checkbox": {
      if (typeof raw === "boolean") return raw;
      const text = String(raw).toLowerCase();
      if (["true", "1", "on", "yes"].includes(text)) return true;
      if (["false", "0", "off", "no"].includes(text)) return false;
      return undefined;
    }
    case "range":
    case "number": {
      if (raw === null || String(raw).trim() === "") return undefined;
      const value = Number(raw);
      if (!Number.isFinite(value)) return undefined;
      if (field.type === "integer" && !Number.isInteger(value)) return undefined;
      if (field.min !== undefined && (field.exclusiveMin ? value <= field.min : value < field.min)) return undefined;
      if (field.max !== undefined && (field.exclusiveMax ? value >= field.max : value > field.max)) return undefined;
      if (field.multipleOf) {
        const ratio = value / field.multipleOf;
        if (Math.abs(ratio - Math.round(ratio)) > 1e-9 * Math.max(1, Math.abs(ratio))) return undefined;
      }
      return value;
    }
    case "image":
    case "text": {
      if (raw === null) return undefined;
      const text = String(raw);
      if (field.minLength !== undefined && text.length < field.minLength) return undefined;
      if (field.maxLength !== undefined && text.length > field.maxLength) return undefined;
      if (field.pattern && !new RegExp(field.pattern, "u").test(text)) return undefined;
      return text;
    }
    default:
      return undefined;
  }
}

function describeBounds(field) {
  const what = field.type === "integer" ? "a whole number" : "a number";
  const lo = field.min === undefined ? "" : `${field.exclusiveMin ? "above" : "from"} ${field.min}`;
  const hi = field.max === undefined ? "" : `${field.exclusiveMax ? "below" : "to"} ${field.max}`;
  return [what, lo, hi].filter(Boolean).join(" ");
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

export class SchemaForm {
  /** Builds the fields into `container`; `onChange(values)` follows every valid edit. */
  /** `uploadImage(file)` resolves to {id, width, height} (POST /api/uploads); image fields
   * offer an upload button only when it is given. */
  constructor(container, schema, { onChange = () => {}, uploadImage = null } = {}) {
    this.container = container;
    this.onChange = onChange;
    this.uploadImage = uploadImage;
    this.fields = fieldsFromSchema(schema);
    this.values_ = {};
    this.invalid = new Set();
    this.controls = new Map(); // name -> {root, input, slider, error}
    container.replaceChildren(...this.fields.map((field) => this.build(field)));
    this.setValues({});
  }

  build(field) {
    const id = `param-${field.name}`;
    const help = field.description || field.kind === "range" || field.kind === "number"
      ? element("p", { className: "help", id: `${id}-help` }, field.description) : null;
    if (help && (field.kind === "range" || field.kind === "number") && (field.min !== undefined || field.max !== undefined)) {
      help.append(" ", element("span", { className: "bounds" }, `(${describeBounds(field)})`));
    }
    const error = element("p", { className: "field-error", id: `${id}-error`, hidden: true });
    const describedBy = [help && help.id, error.id].filter(Boolean).join(" ");
    const root = element("div", { className: `field field-${field.kind}`, "data-field": field.name });
    let input;
    let slider = null;

    if (field.kind === "checkbox") {
      input = element("input", { type: "checkbox", id, name: field.name, "aria-describedby": describedBy });
      root.append(element("label", { className: "check", for: id }, input, ` ${field.title}`));
      input.addEventListener("change", () => this.edited(field, input.checked));
    } else {
      root.append(element("label", { for: id }, field.title));
      const row = element("div", { className: "control" });
      if (field.kind === "select") {
        input = element("select", { id, name: field.name, "aria-describedby": describedBy });
        for (const option of field.options) {
          input.append(element("option", { value: String(option) }, option === null ? "none" : String(option)));
        }
        input.addEventListener("change", () => this.edited(field, coerce(field, input.value)));
      } else if (field.kind === "image") {
        input = element("select", { id, name: field.name, "aria-describedby": describedBy });
        for (const [name, label] of Object.entries(field.images)) {
          input.append(element("option", { value: name }, label));
        }
        input.addEventListener("change", () => this.edited(field, coerce(field, input.value)));
        if (this.uploadImage) row.classList.add("with-upload");
      } else if (field.kind === "range" || field.kind === "number") {
        input = element("input", {
          type: "number", id, name: field.name, inputmode: field.type === "integer" ? "numeric" : "decimal",
          min: field.min, max: field.max,
          step: field.type === "integer" ? (field.multipleOf ?? 1) : (field.multipleOf ?? "any"),
          "aria-describedby": describedBy,
        });
        if (field.kind === "range") {
          slider = element("input", { type: "range", "aria-label": field.title, tabindex: -1, ...this.sliderBounds(field) });
          slider.addEventListener("input", () => {
            const value = this.fromSlider(field, Number(slider.value));
            input.value = String(value);
            this.edited(field, value);
          });
          row.append(slider);
        }
        input.addEventListener("input", () => {
          const value = coerce(field, input.value);
          if (value !== undefined && slider) slider.value = String(this.toSlider(field, value));
          this.edited(field, value, `Enter ${describeBounds(field)}.`);
        });
      } else if (field.kind === "text") {
        input = element("input", {
          type: "text", id, name: field.name, minlength: field.minLength, maxlength: field.maxLength,
          "aria-describedby": describedBy,
        });
        input.addEventListener("input", () => this.edited(field, coerce(field, input.value), "Not a valid value."));
      } else {
        input = element("input", { type: "text", id, name: field.name, disabled: true, value: "set through the API" });
      }
      row.append(input);
      if (field.kind === "image" && this.uploadImage) row.append(this.uploadButton(field, input));
      root.append(row);
    }
    if (help) root.append(help);
    root.append(error);
    this.controls.set(field.name, { root, input, slider, error });
    return root;
  }

  /** A file picker that uploads a PNG/JPEG and selects it; the server checks the file. */
  uploadButton(field, select) {
    const file = element("input", {
      type: "file", accept: "image/png,image/jpeg", className: "upload-input",
      id: `param-${field.name}-file`, "aria-label": `Upload your own picture for ${field.title}`,
    });
    const button = element("label", { className: "button upload", for: file.id }, "Upload…");
    file.addEventListener("change", async () => {
      const chosen = file.files?.[0];
      file.value = "";
      if (!chosen) return;
      button.classList.add("busy");
      this.setFieldError(field.name, []);
      try {
        const uploaded = await this.uploadImage(chosen);
        const label = `${chosen.name} (${uploaded.width}×${uploaded.height})`;
        this.addImageOption(select, uploaded.id, label);
        select.value = uploaded.id;
        this.edited(field, uploaded.id);
      } catch (error) {
        this.setFieldError(field.name, [error.message]);
      } finally {
        button.classList.remove("busy");
      }
    });
    return element("span", { className: "upload-control" }, file, button);
  }

  addImageOption(select, value, label) {
    if (![...select.options].some((option) => option.value === value)) {
      select.append(element("option", { value }, label));
    }
  }

  sliderBounds(field) {
    if (field.log) {
      const lo = Math.log10(field.min);
      const hi = Math.log10(field.max);
      const step = (hi - lo) / SLIDER_STEPS;
      return { min: lo + (field.exclusiveMin ? step : 0), max: hi - (field.exclusiveMax ? step : 0), step };
    }
    // The slider's grid starts at its min, so with multipleOf the ends snap onto multiples.
    const m = field.multipleOf;
    let lo = m ? Math.ceil(field.min / m - 1e-9) * m : field.min;
    let hi = m ? Math.floor(field.max / m + 1e-9) * m : field.max;
    if (field.exclusiveMin && lo <= field.min) lo += field.step;
    if (field.exclusiveMax && hi >= field.max) hi -= field.step;
    return { min: lo, max: hi, step: field.step };
  }

  fromSlider(field, position) {
    if (field.log) return Number((10 ** position).toPrecision(3));
    return Number(position.toFixed(decimalsOf(field.step)));
  }

  toSlider(field, value) {
    return field.log ? Math.log10(value) : value;
  }

  edited(field, value, message = "Not a valid value.") {
    if (value === undefined) {
      this.invalid.add(field.name);
      this.setFieldError(field.name, [message]);
      return;
    }
    this.invalid.delete(field.name);
    this.setFieldError(field.name, []);
    this.values_[field.name] = value;
    this.onChange(this.values());
  }

  /** The current valid values (an invalid edit keeps the last valid value). */
  values() {
    return Object.fromEntries(this.fields.filter((f) => f.kind !== "unsupported")
      .map((f) => [f.name, this.values_[f.name]]));
  }

  /** Names of fields whose box holds something invalid. */
  invalidFields() {
    return [...this.invalid];
  }

  /** Fill the form from `raw` ({name: string or value}); missing or invalid -> the default. */
  setValues(raw) {
    this.invalid.clear();
    for (const field of this.fields) {
      const value = coerce(field, raw[field.name]);
      this.values_[field.name] = value === undefined ? field.default : value;
      this.show(field);
      this.setFieldError(field.name, []);
    }
  }

  show(field) {
    const { input, slider } = this.controls.get(field.name);
    const value = this.values_[field.name];
    if (field.kind === "checkbox") input.checked = Boolean(value);
    else if (field.kind === "select") input.value = String(value);
    else if (field.kind === "image") {
      // An upload named by a shared link is not in the list yet; the server knows it or
      // answers 422 naming the field when the run starts.
      this.addImageOption(input, value, field.images[value] ?? "uploaded picture");
      input.value = value;
    }
    else if (field.kind !== "unsupported") input.value = value === null ? "" : String(value);
    if (slider && value !== null) slider.value = String(this.toSlider(field, value));
  }

  /** Show server-side messages by field; returns the names this form does not have. */
  showErrors(fieldErrors) {
    const unknown = [];
    for (const [name, messages] of Object.entries(fieldErrors)) {
      if (this.controls.has(name)) this.setFieldError(name, messages);
      else unknown.push(name);
    }
    return unknown;
  }

  clearErrors() {
    for (const name of this.controls.keys()) {
      if (!this.invalid.has(name)) this.setFieldError(name, []);
    }
  }

  setFieldError(name, messages) {
    const { root, input, error } = this.controls.get(name);
    const text = messages.join(" ");
    error.textContent = text;
    error.hidden = !text;
    root.classList.toggle("has-error", Boolean(text));
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

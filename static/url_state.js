// The form's state in the URL query (?gamma=0.1&points=200), so a link reproduces a run's
// settings. Values are read as strings; the form decides what is valid.

/** The query of the current URL as {name: string}. */
export function readQuery() {
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

/** Replace the query with `values` without adding a history entry. */
export function writeQuery(values) {
  const url = new URL(window.location.href);
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== null && value !== undefined) query.set(name, String(value));
  }
  url.search = query.toString();
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url);
}

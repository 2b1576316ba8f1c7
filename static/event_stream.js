// A run's Server-Sent Events: status, frame, metrics, progress, then done or error.
//
// EventSource reconnects on its own, and the server resumes after the Last-Event-ID it sends,
// so network errors need nothing from us. But a finished stream would be reopened forever,
// so the source is closed on the terminal `done` / `error` events.

const LIVE_EVENTS = ["status", "frame", "metrics", "progress"];

/**
 * Subscribe to `url`. `handlers` may have status, frame, metrics, progress, done, error
 * (each gets the parsed JSON data) and lost (the browser gave up on the connection).
 * Returns {close}.
 */
export function subscribe(url, handlers) {
  const source = new EventSource(url);
  const parse = (event) => JSON.parse(event.data);

  for (const type of LIVE_EVENTS) {
    source.addEventListener(type, (event) => handlers[type]?.(parse(event)));
  }
  source.addEventListener("done", (event) => {
    source.close();
    handlers.done?.(parse(event));
  });
  // Both the server's `error` events and connection failures arrive as "error"; only the
  // former are MessageEvents with data.
  source.addEventListener("error", (event) => {
    if (event instanceof MessageEvent) {
      source.close();
      handlers.error?.(parse(event));
    } else if (source.readyState === EventSource.CLOSED) {
      handlers.lost?.();
    }
  });
  return { close: () => source.close() };
}

// A small event emitter: the page's modules say what happened (`emit`), and whoever cares listens (`on`):
// the UI renders the connection's state, and the test hooks (testhooks.js, test-only) record what they read.
// Events: see testhooks.js for the list and each one's detail.

const listeners = new Map(); // type -> Set of functions

/** Call `fn(detail)` on every `type` event; returns a function that stops it. */
export function on(type, fn) {
  let set = listeners.get(type);
  if (!set) listeners.set(type, (set = new Set()));
  set.add(fn);
  return () => set.delete(fn);
}

/** Tell every listener of `type`; a listener that throws does not stop the others, nor the page. */
export function emit(type, detail) {
  const set = listeners.get(type);
  if (!set) return;
  for (const fn of set) {
    try {
      fn(detail);
    } catch (exc) {
      console.warn(`aria: a listener of ${type} failed`, exc);
    }
  }
}

// Poller: what a view shows, asked for again every second while shown.

/** POLL_MS is how often a view on show asks the server again. */
export const POLL_MS = 1000;

/**
 * Poller calls load() now and every POLL_MS after, until stopped, and
 * hands each answer to apply, or its error (but a 401, which sends the page
 * back to the login) to report. An answer to an older poll is dropped: the
 * search may have changed meanwhile.
 */
export class Poller {
  #timer = 0;
  #running = false;
  #gen = 0;

  #load;
  #apply;
  #report;

  constructor(load, apply, report) {
    this.#load = load;
    this.#apply = apply;
    this.#report = report;
  }

  start() {
    this.#running = true;
    this.now();
  }

  stop() {
    this.#running = false;
    clearTimeout(this.#timer);
  }

  /** now polls at once. */
  async now() {
    clearTimeout(this.#timer);
    const gen = ++this.#gen;
    try {
      const data = await this.#load();
      if (gen === this.#gen && this.#running) this.#apply(data);
    } catch (err) {
      if (gen === this.#gen && this.#running && err.status !== 401) this.#report(err);
    }
    if (gen === this.#gen && this.#running) this.#timer = setTimeout(() => this.now(), POLL_MS);
  }
}

// Placeholder (issue 21): the server's alerts on the wallboard. Filled by the alerts work; see
// /work/coord/contract-21.md. Renders into #alert-banner.

export class AlertBanner {
  /** ``token()`` gives the supervisor's token or null; ``error(err)`` shows an error. */
  constructor({token, error}) {
    this.token = token;
    this.error = error;
  }

  start() {}

  stop() {}

  onEvent(_ev) {}
}

// Placeholder (issue 21): the forecast vs actual chart and the staffing need. Filled by the planning work; see
// /work/coord/contract-21.md. Renders into #forecast-card.

export class ForecastCard {
  /** ``token()`` gives the supervisor's token or null; ``error(err)`` shows an error. */
  constructor({token, error}) {
    this.token = token;
    this.error = error;
  }

  start() {}

  stop() {}

  onEvent(_ev) {}
}

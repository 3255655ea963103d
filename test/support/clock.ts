// A clock a test moves forward, for code that takes `now?: () => number` (token expiry, Core's
// access token): real time plus what the test has skipped. It keeps ticking, so timeouts and
// deadlines measured by it still pass.

export class TestClock {
  private skipped = 0;

  /** Epoch ms, as `Date.now`. */
  readonly now = (): number => Date.now() + this.skipped;

  /** Lets `ms` pass at once. */
  advance(ms: number) {
    this.skipped += ms;
  }
}

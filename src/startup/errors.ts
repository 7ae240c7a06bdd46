// A start-up failure the operator can fix: printed as its message alone (no stack), exit code 1.
export class StartupError extends Error {
  constructor(message: string) { super(message); this.name = 'StartupError'; }
}

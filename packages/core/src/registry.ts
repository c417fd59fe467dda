import { SwitchyardError } from './errors.js';

/**
 * A name → value registry. Registering a name twice is an error; asking for an unknown name is
 * an error that lists the names it knows.
 */
export class Registry<T> {
  private readonly entries = new Map<string, T>();

  constructor(readonly what: string) {}

  register(name: string, value: T, { replace = false } = {}): void {
    if (this.entries.has(name) && !replace) {
      throw new Error(`${this.what} '${name}' is already registered`);
    }
    this.entries.set(name, value);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  get(name: string): T {
    const value = this.entries.get(name);
    if (value === undefined) {
      const known = [...this.entries.keys()].sort().join(', ') || '(none registered)';
      throw new SwitchyardError(`unknown ${this.what} '${name}'; known: ${known}`, 'not_found');
    }
    return value;
  }

  names(): string[] {
    return [...this.entries.keys()].sort();
  }
}

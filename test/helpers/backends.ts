/**
 * The backends op tests run against: always 'js', plus 'native' when the
 * addon is built and registers itself. Write op tests as
 * `describe.each(backends)('%s backend', (backend) => ...)` and pass
 * `{ backend }` to every op, so native coverage appears automatically.
 */
import type { BackendName } from '../../lib/backend/backend';
import { availableBackends, getBackend } from '../../lib/backend/registry';

try {
  // Registers the native backend as a side effect when the addon loads; when it does not,
  // native.ts records the reason instead and only 'js' is tested.
  await import('../../lib/backend/native');
} catch {
  // The module itself failing to import (e.g. mid-refactor) must not take the JS tests down.
}

/** Names of the backends usable in this process ('js' first). */
export const backends: BackendName[] = availableBackends()
  .filter((name) => {
    try {
      getBackend(name);
      return true;
    } catch {
      return false;
    }
  })
  .sort((a, b) => (a === 'js' ? -1 : b === 'js' ? 1 : 0));

/**
 * Relative tolerance each backend is held to against a float64 reference.
 * JS accumulates in double; native accumulates float32 (with FMA), hence looser.
 */
export const tolerance: Record<BackendName, number> = { js: 1e-6, native: 2e-5 };

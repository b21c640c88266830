/**
 * Which backend ops run on.
 *
 * The JS backend is always registered. The native one is registered by
 * lib/backend/native.ts when the addon loads (`registerBackend`); when it
 * fails to load, that module calls `setNativeLoadError(err)` instead, and
 * everything falls back to JS with a one-time console warning saying why.
 *
 * Default resolution (no explicit `setBackend`): the `ATTNODE_BACKEND`
 * environment variable ('native' | 'js') if set, else native when
 * registered, else JS.
 */
import type { Backend, BackendName } from './backend';
import { jsBackend } from './js/index';
import { currentContext, setRootBackend } from '../context';

const BACKEND_NAMES: readonly BackendName[] = ['native', 'js'];

const registered = new Map<BackendName, Backend>([['js', jsBackend]]);
let nativeLoadError: Error | null = null;
let warned = false;

function isBackendName(value: unknown): value is BackendName {
  return typeof value === 'string' && (BACKEND_NAMES as readonly string[]).includes(value);
}

function isBackend(value: unknown): value is Backend {
  return (
    typeof value === 'object' &&
    value !== null &&
    isBackendName((value as { name?: unknown }).name) &&
    typeof (value as { gemm?: unknown }).gemm === 'function'
  );
}

/**
 * Registers a backend under its `name` (replacing any previous one of that
 * name). lib/backend/native.ts calls this with the native backend; tests
 * may register instrumented backends.
 * @throws TypeError if `backend` does not look like a {@link Backend}.
 */
export function registerBackend(backend: Backend): void {
  if (!isBackend(backend)) {
    throw new TypeError(`registerBackend: argument 'backend' must be a Backend with name 'native' or 'js'`);
  }
  registered.set(backend.name, backend);
  if (backend.name === 'native') nativeLoadError = null;
}

/**
 * Records why the native addon could not be loaded; `getBackend('native')`
 * then throws an Error carrying this reason, and the default falls back to
 * JS with a one-time warning.
 */
export function setNativeLoadError(err: Error): void {
  nativeLoadError = err;
}

/** The recorded native load failure, or null. */
export function getNativeLoadError(): Error | null {
  return nativeLoadError;
}

/** Names of the backends that can be used right now (always includes 'js'). */
export function availableBackends(): BackendName[] {
  return BACKEND_NAMES.filter((n) => registered.has(n));
}

function unavailable(name: BackendName): Error {
  const why = nativeLoadError
    ? `the native addon failed to load: ${nativeLoadError.message}`
    : 'it was not registered (lib/backend/native.ts not loaded, or the addon is not built: run `npm run build:native`)';
  return new Error(`attnode: backend '${name}' is not available: ${why}`, { cause: nativeLoadError ?? undefined });
}

function defaultBackend(): Backend {
  const env = typeof process !== 'undefined' ? process.env['ATTNODE_BACKEND'] : undefined;
  if (env !== undefined && env !== '') {
    if (!isBackendName(env)) {
      throw new RangeError(`attnode: ATTNODE_BACKEND must be 'native' or 'js', got ${JSON.stringify(env)}`);
    }
    return getBackend(env);
  }
  const native = registered.get('native');
  if (native) return native;
  if (nativeLoadError && !warned) {
    warned = true;
    const why = nativeLoadError.message.replace(/^attnode:\s*/, '');
    console.warn(`attnode: native backend unavailable, using the JS backend: ${why}`);
  }
  return jsBackend;
}

/**
 * A backend by name, or (no name) the current one: the one chosen with
 * {@link setBackend}, else the default (see module docs).
 * @throws Error naming the reason if the requested backend is not available.
 * @throws TypeError for an unknown name.
 */
export function getBackend(name?: BackendName): Backend {
  if (name === undefined) return currentContext().backend ?? defaultBackend();
  if (!isBackendName(name)) {
    throw new TypeError(`getBackend: argument 'name' must be 'native' or 'js', got ${JSON.stringify(name)}`);
  }
  const b = registered.get(name);
  if (!b) throw unavailable(name);
  return b;
}

/**
 * Makes `backend` the one ops use when they are not told otherwise: the root
 * execution context's backend (lib/context.ts).
 * Pass a name, a Backend object, or null to go back to the default.
 * @throws Error if the named backend is not available (the selection is then unchanged).
 */
export function setBackend(backend: BackendName | Backend | null): void {
  setRootBackend(backend === null ? null : resolveBackend(backend));
}

/**
 * What an op's `opts.backend` names: a name (looked up), a Backend object
 * (used as is), or undefined (the current backend).
 */
export function resolveBackend(backend?: BackendName | Backend): Backend {
  let b: Backend;
  if (backend === undefined) b = getBackend();
  else if (typeof backend === 'string') b = getBackend(backend);
  else if (!isBackend(backend)) {
    throw new TypeError(`attnode: option 'backend' must be 'native', 'js' or a Backend, got ${String(backend)}`);
  } else b = backend;
  if (b.name !== 'native' && currentContext().recording) {
    // It would run now, before the recorded native calls it may depend on.
    throw new Error(`attnode: the '${b.name}' backend cannot run inside runAsync()/forwardAsync(); only native calls are deferred`);
  }
  return b;
}

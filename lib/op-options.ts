/** The options every op of the functional API (lib/ops.ts, lib/attention.ts) accepts. */
import type { Backend, BackendName } from './backend/backend';
import type { Tensor } from './tensor';

/** Options every op accepts. */
export interface OpOptions {
  /** Backend to run on: a name, a Backend object, or omitted for the execution context's backend. */
  backend?: BackendName | Backend;
}

/** Options of ops that can write into a caller-provided output. */
export interface OutOptions extends OpOptions {
  /** Write the result here (float32, exactly the result shape) and return it. */
  out?: Tensor<'float32'>;
}

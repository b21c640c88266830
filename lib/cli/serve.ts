/**
 * `attnode serve`: the inference HTTP server (lib/serving/http.ts) for a model
 * given by `--config` (lib/cli/config.ts; README "The model config of serve and run") and `--model` (safetensors
 * weights; random with `--seed` when absent), or a text model: `--model` a
 * Hugging Face model folder, or a llama2.c `model.bin` with `--tokenizer
 * tokenizer.bin` (lib/serving/served-model.ts), served through OpenAI's routes
 * (lib/serving/openai.ts) as well.
 *
 * A causal LM's requests run on the continuous-batching GenerationEngine
 * (lib/serving/engine/; `--max-running`, `--kv-cache-mb`, `--prefill-chunk`,
 * `--max-queued`), or one at a time where it cannot (lib/serving/serving-engine.ts
 * picks, and the log says which and why).
 *
 * Prints one JSON line `{"event":"listening","url":...}` on stdout once bound
 * (so scripts can use `--port 0`), logs to stderr, and shuts down gracefully
 * on SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.
 */
import { UsageError, intFlag, parseFlags } from './args';
import { setNumThreads } from '../runtime';
import { getBackend } from '../backend/registry';
import { statSync } from 'node:fs';
import { InferenceServer, type InferenceServerOptions } from '../serving/http';
import type { BatcherOptions } from '../serving/batcher';
import { loadTextModel, type ServedGenerationModel } from '../serving/served-model';
import { requestTokenLimit } from '../serving/sequential-engine';
import { createServingEngine, type ServingEngine, type ServingEngineOptions } from '../serving/serving-engine';
import { loadServedModel } from './config';
import type { Module } from '../nn/module';

export const SERVE_USAGE = `usage: attnode serve [--model m.safetensors | <hf model folder> | model.bin --tokenizer tokenizer.bin]
                    [--config c.json] [--served-model-name NAME] [--port N] [--host H]
                    [--seed N] [--max-batch-size N] [--max-delay-ms N] [--max-queue N] [--max-inflight N]
                    [--max-queued N] [--max-running N] [--kv-cache-mb N] [--prefill-chunk N]
                    [--buckets pow2|none|16,64,256] [--no-batching] [--timeout-ms N] [--threads N]
                    [--precision float32|bfloat16|int8]
  --model          a Hugging Face model folder (encoders serve /v1/embeddings, causal LMs /v1/completions and
                   /v1/chat/completions), a llama2.c checkpoint (.bin, with --tokenizer), or a safetensors state
                   dict for --config (default: random weights from --seed)
  --tokenizer      llama2.c's tokenizer.bin
  --served-model-name  the 'model' clients send (default: the folder name)
  generation (causal LMs; continuous batching: one step decodes every running stream and reads prompt chunks):
  --max-running    sequences decoded together (default 8)
  --kv-cache-mb    the KV cache in MiB, preallocated, a hard cap: a request reserves prompt + max_tokens - 1
                   positions and waits for room; one that can never fit is refused (default: max-running full
                   contexts, at most 1024)
  --prefill-chunk  prompt tokens read per step beside the decoding streams (default 64)
  --max-queued     generation requests waiting before 429 (default 64)
  --config         model config JSON for --model m.safetensors (README: "The model config of serve and run";
                   default a small encoder)
  --seed           seed of the random weights when no --model is given (default 0)
  --port           TCP port (default 8080; 0 = any free port)
  --host           bind address (default 127.0.0.1)
  --max-batch-size requests per forward pass (default 16)
  --max-delay-ms   how long a request waits for others to batch with (default 2)
  --max-queue      waiting requests before 503 (default 256)
  --max-inflight   batches computing at once (default 2)
  --no-batching    one request per forward pass
  --buckets        length groups sharing a batch (default pow2: 1, 2, 3-4, 5-8, ...)
  --timeout-ms     a request's time limit (default 30000)
  --threads        native threads (default: the available cores)
  --precision      weight GEMMs and attention products in float32 (default) or bfloat16 (AVX512-BF16 CPUs;
                   ~1e-3 relative error); int8: int8 weight GEMMs (any CPU, fastest on AVX512-VNNI; ~3e-3
                   relative error), attention in float32`;

export { UsageError, intFlag } from './args';

/**
 * Applies `--precision float32|bfloat16|int8` to a module's weight GEMMs and attention products (int8: the weights only). @throws UsageError for another value or
 * when the native backend cannot run bfloat16 here (the message says why).
 */
export function applyPrecisionFlag(module: Module, value: string | undefined): void {
  if (value === undefined || value === 'float32') return;
  if (value !== 'bfloat16' && value !== 'int8') throw new UsageError(`--precision must be float32, bfloat16 or int8, got '${value}'`);
  try {
    if (value === 'int8') module.useWeightPrecision('int8');
    else module.useWeightPrecision('bfloat16').useAttentionPrecision('bfloat16');
  } catch (e) {
    throw new UsageError(`--precision ${value}: ${(e as Error).message}`);
  }
}

/** The flags of `attnode serve`: those taking a value, and switches. */
export const SERVE_FLAGS = {
  strings: [
    'model', 'config', 'port', 'host', 'seed', 'max-batch-size', 'max-delay-ms', 'max-queue', 'max-inflight', 'buckets',
    'timeout-ms', 'threads', 'precision', 'tokenizer', 'served-model-name', 'max-queued', 'max-running', 'kv-cache-mb',
    'prefill-chunk',
  ],
  booleans: ['no-batching'],
} as const;

/** Runs `attnode serve` with the arguments after `serve`. Resolves once the server listens. */
export async function serveMain(args: string[]): Promise<InferenceServer> {
  const flags = parseFlags(args, SERVE_FLAGS.strings, SERVE_FLAGS.booleans);
  const values = flags.values;
  const port = intFlag('port', values.port, 8080);
  if (port > 65535) throw new UsageError(`--port must be <= 65535, got ${port}`);
  const host = values.host ?? '127.0.0.1';
  const noBatching = flags.has('no-batching');
  // pow2 by default: padding a 10-token request to 60 costs more than the batching saves (see bench/results/load-latest.md).
  let buckets: BatcherOptions['buckets'] = 'pow2';
  const b = values.buckets;
  if (b !== undefined) {
    if (b === 'none' || b === 'pow2') buckets = b;
    else if (/^\d+(,\d+)*$/.test(b)) buckets = b.split(',').map(Number);
    else throw new UsageError(`--buckets must be none, pow2 or a list like 16,64,256, got '${b}'`);
  }
  const batcher: BatcherOptions = {
    maxBatchSize: noBatching ? 1 : intFlag('max-batch-size', values['max-batch-size'], 16, 1),
    maxDelayMs: noBatching ? 0 : intFlag('max-delay-ms', values['max-delay-ms'], 2),
    maxQueue: intFlag('max-queue', values['max-queue'], 256),
    maxInFlight: intFlag('max-inflight', values['max-inflight'], 2, 1),
    buckets,
  };
  const seed = intFlag('seed', values.seed, 0);
  const timeoutMs = intFlag('timeout-ms', values['timeout-ms'], 30_000, 1);
  if (values.threads !== undefined) setNumThreads(intFlag('threads', values.threads, 1, 1));

  const engineFlags = engineOptions(values);

  const common: InferenceServerOptions = { batcher, requestTimeoutMs: timeoutMs };
  let server: InferenceServer;
  let description: string;
  if (isTextModelPath(values.model, values.tokenizer)) {
    if (values.config !== undefined) throw new UsageError('--config is for token-id models; a model folder or llama2.c checkpoint brings its own config');
    const tm = await loadTextModel(values.model!, {
      ...(values.tokenizer !== undefined ? { tokenizer: values.tokenizer } : {}),
      ...(values['served-model-name'] !== undefined ? { id: values['served-model-name'] } : {}),
    });
    applyPrecisionFlag(tm.module, values.precision);
    const info = {
      model: { id: tm.id, family: tm.family, task: tm.task, source: tm.source, parameters: tm.module.numParameters() },
      backend: getBackend().name, weightPrecision: tm.module.weightPrecision, attentionPrecision: tm.module.attentionPrecision,
    };
    if (tm.task === 'embeddings') {
      if (engineFlags.given.length) throw new UsageError(`${engineFlags.given.join(', ')}: for generation models; '${tm.id}' is an embeddings model (${tm.family})`);
      // A model on the JS backend cannot run off the event loop (runAsync refuses it).
      const execution = tm.module.backend.name === 'js' ? 'sync' : 'async';
      server = new InferenceServer({ ...common, batcher: { ...batcher, execution }, openai: { model: tm }, info: { ...info, batching: batcher } });
    } else {
      const served = createEngine(tm, engineFlags);
      const engine = served.engine;
      const maxSeqLen = requestTokenLimit(engine, tm.contextLength);
      const engineInfo = served.kind === 'continuous'
        ? { kind: served.kind, ...served.engine.limits, maxRequestTokens: maxSeqLen }
        : { kind: served.kind, maxQueued: served.engine.maxQueued, reason: served.reason };
      server = new InferenceServer({
        ...common, openai: { model: tm, engine }, info: { ...info, engine: engineInfo },
        tokenLimits: { vocabSize: tm.vocabSize, maxSeqLen },
        generate: async (tokens, { maxNewTokens, signal }) => {
          const out: number[] = [];
          // Within the context (or the KV cache's per-request limit): a prompt that fills it gets no new tokens.
          const max = Math.min(maxNewTokens, maxSeqLen - tokens.length);
          for await (const t of engine.generate({ promptIds: tokens, maxNewTokens: max, eosTokenIds: tm.eosTokenIds, signal })) out.push(t.tokenId);
          return out;
        },
      });
      console.error(`attnode serve: ${served.description}`);
      const ignored = served.kind === 'sequential' ? engineFlags.given.filter((f) => f !== '--max-queued') : [];
      if (ignored.length) console.error(`attnode serve: ${ignored.join(', ')} ignored (they set continuous batching)`);
    }
    description = `${tm.family} ${tm.task} model '${tm.id}' from ${tm.source}`;
  } else {
    if (values.tokenizer !== undefined || values['served-model-name'] !== undefined) {
      throw new UsageError('--tokenizer and --served-model-name need a text model (--model <hf model folder> or model.bin)');
    }
    if (engineFlags.given.length) {
      throw new UsageError(`${engineFlags.given.join(', ')}: for generation models (--model <causal LM folder> or model.bin --tokenizer tokenizer.bin)`);
    }
    const served = await loadServedModel({ configPath: values.config, modelPath: values.model, seed });
    applyPrecisionFlag(served.module, values.precision);
    const generateUnavailableReason = 'POST /v1/generate needs a "seed" (encoder-decoder) model; this server runs an encoder-only model';
    server = new InferenceServer({
      ...common,
      encoder: served.encoder,
      generateUnavailableReason,
      ...(served.generate ? { generate: served.generate } : {}),
      info: {
        model: { kind: served.config.kind, ...served.config.options, weights: served.weights, parameters: served.module.numParameters() },
        backend: getBackend().name,
        weightPrecision: served.module.weightPrecision,
        attentionPrecision: served.module.attentionPrecision,
        batching: batcher,
      },
    });
    description = `${served.config.kind} model (${served.weights} weights)`;
  }
  const addr = await server.listen(port, host);
  const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  process.stdout.write(`${JSON.stringify({ event: 'listening', url, port: addr.port, pid: process.pid })}\n`);
  console.error(`attnode serve: ${description}, listening on ${url}`);

  const stop = (sig: NodeJS.Signals): void => {
    if (server.draining) {
      console.error(`attnode serve: ${sig} again, exiting now`);
      process.exit(1);
    }
    console.error(`attnode serve: ${sig}, finishing in-flight requests`);
    void server.shutdown().then(
      () => {
        console.error('attnode serve: shut down cleanly');
        process.exit(0);
      },
      (e: unknown) => {
        console.error(`attnode serve: shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return server;
}

/** A Hugging Face folder, a llama2.c checkpoint (.bin) or anything given with --tokenizer; else a safetensors state dict. */
function isTextModelPath(model: string | undefined, tokenizer: string | undefined): boolean {
  if (model === undefined) {
    if (tokenizer !== undefined) throw new UsageError('--tokenizer needs --model model.bin (a llama2.c checkpoint)');
    return false;
  }
  if (model.endsWith('.bin') && tokenizer === undefined) throw new UsageError(`--model ${model}: a llama2.c checkpoint needs --tokenizer tokenizer.bin`);
  if (tokenizer !== undefined || model.endsWith('.bin')) return true;
  try {
    return statSync(model).isDirectory();
  } catch {
    return false; // a missing file is reported by the loader, naming it
  }
}

/** The generation flags: engine options (MiB turned into bytes) and which flags were given, for messages. */
function engineOptions(values: Record<string, string | undefined>): ServingEngineOptions & { given: string[] } {
  const given = ['max-running', 'kv-cache-mb', 'prefill-chunk', 'max-queued'].filter((f) => values[f] !== undefined).map((f) => `--${f}`);
  const mb = values['kv-cache-mb'] !== undefined ? intFlag('kv-cache-mb', values['kv-cache-mb'], 0, 1) : undefined;
  return {
    given,
    maxQueued: intFlag('max-queued', values['max-queued'], 64),
    ...(values['max-running'] !== undefined ? { maxRunning: intFlag('max-running', values['max-running'], 0, 1) } : {}),
    ...(values['prefill-chunk'] !== undefined ? { prefillChunk: intFlag('prefill-chunk', values['prefill-chunk'], 0, 1) } : {}),
    ...(mb !== undefined ? { kvCacheBytes: mb * 1024 * 1024 } : {}),
  };
}

/**
 * The generation engine of a served causal LM: continuous batching (GenerationEngine) for the Llama family,
 * llama2.c checkpoints and GPT-2, one request at a time for a model that cannot run packed steps.
 * @throws UsageError naming --kv-cache-mb when the KV cache cannot hold one position or is too large.
 */
function createEngine(tm: ServedGenerationModel, flags: ServingEngineOptions & { given: string[] }): ServingEngine {
  const { given: _given, ...options } = flags;
  try {
    return createServingEngine(tm.model, options);
  } catch (e) {
    if (e instanceof RangeError && options.kvCacheBytes !== undefined && /kvCacheBytes/.test(e.message)) {
      throw new UsageError(`--kv-cache-mb ${options.kvCacheBytes / 1024 / 1024}: ${e.message}`);
    }
    throw e;
  }
}

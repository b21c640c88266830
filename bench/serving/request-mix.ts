/**
 * The request mix of a long-running server's memory check (bench/serving/longrun.ts, test/memory-stable-serving.test.ts):
 * request i is kind MIX[i % 10] — chat completions streamed and not, completions streamed and not, a client that
 * disconnects after the first streamed piece, embeddings of one and of three inputs, and bad requests (malformed
 * JSON, a bad parameter, an unknown model) — sent through the official `openai` client or plain HTTP.
 */
import * as http from 'node:http';
import OpenAI from 'openai';

/** The kinds of request, in the order the mix cycles through them (one cycle = 10 requests). */
export const MIX = ['chat-stream', 'embeddings', 'chat', 'completion-stream', 'abort-stream', 'embeddings-batch', 'bad-json',
  'bad-param', 'wrong-model', 'completion'] as const;
export type Kind = (typeof MIX)[number];

const WORDS = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'hello', 'world', 'node', 'server', 'memory', 'stable', 'long', 'run'];
const sentence = (i: number, n: number): string => Array.from({ length: n }, (_, j) => WORDS[(i * 7 + j * 3) % WORDS.length]).join(' ');

/** POSTs a raw body; resolves with the status (the body is read and dropped). */
function postRaw(port: number, p: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Where the mix goes: a generation server and an embeddings server (their clients, ports and model names). */
export interface MixTarget {
  genClient: OpenAI;
  embClient: OpenAI;
  genPort: number;
  embPort: number;
  genModel: string;
  embModel: string;
}

/** How long one request of the mix may take before it counts as hung (outcome 'timeout'). */
export const REQUEST_DEADLINE_MS = 60_000;

/**
 * Sends request `i` of the mix; resolves with its kind and outcome ('ok', 'aborted', the HTTP status of an error,
 * which bad requests expect, or 'timeout' past {@link REQUEST_DEADLINE_MS}) and, for an error the kind did not
 * expect, its message. Never rejects, never hangs.
 */
export async function sendMixed(i: number, t: MixTarget): Promise<{ kind: Kind; outcome: string; error?: string }> {
  const kind: Kind = MIX[i % MIX.length]!;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<{ kind: Kind; outcome: string; error: string }>((resolve) => {
    timer = setTimeout(() => resolve({ kind, outcome: 'timeout', error: `request ${i} (${kind}) took over ${REQUEST_DEADLINE_MS} ms` }), REQUEST_DEADLINE_MS);
  });
  try {
    return await Promise.race([sendOne(i, kind, t), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function sendOne(i: number, kind: Kind, t: MixTarget): Promise<{ kind: Kind; outcome: string; error?: string }> {
  const messages = [{ role: 'user' as const, content: sentence(i, 3 + (i % 5)) }];
  const model = t.genModel;
  try {
    switch (kind) {
      case 'chat-stream': {
        const s = await t.genClient.chat.completions.create({ model, messages, stream: true, max_tokens: 8 + (i % 9), temperature: 0.7, seed: i });
        for await (const c of s) void c;
        return { kind, outcome: 'ok' };
      }
      case 'chat':
        await t.genClient.chat.completions.create({ model, messages, max_tokens: 6 + (i % 7), n: 1 + (i % 2) });
        return { kind, outcome: 'ok' };
      case 'completion-stream': {
        const s = await t.genClient.completions.create({ model, prompt: sentence(i, 4), stream: true, max_tokens: 12, stream_options: { include_usage: true } });
        for await (const c of s) void c;
        return { kind, outcome: 'ok' };
      }
      case 'completion':
        await t.genClient.completions.create({ model, prompt: [sentence(i, 3), sentence(i + 1, 5)], max_tokens: 5, stop: ['mat'] });
        return { kind, outcome: 'ok' };
      case 'abort-stream': {
        // The client goes away after the first piece: the server must end the generation and free its KV rows.
        const ac = new AbortController();
        const s = await t.genClient.chat.completions.create({ model, messages, stream: true, max_tokens: 40 }, { signal: ac.signal });
        try {
          // Abort, then leave the loop at once (the iterator is closed, never read again after the abort).
          for await (const c of s) {
            void c;
            ac.abort();
            break;
          }
        } catch (e) {
          if ((e as Error).name !== 'AbortError' && !(e instanceof OpenAI.APIUserAbortError)) throw e;
        }
        return { kind, outcome: 'aborted' };
      }
      case 'embeddings':
        await t.embClient.embeddings.create({ model: t.embModel, input: sentence(i, 2 + (i % 6)) });
        return { kind, outcome: 'ok' };
      case 'embeddings-batch':
        await t.embClient.embeddings.create({ model: t.embModel, input: [sentence(i, 3), sentence(i + 2, 7), sentence(i + 5, 2)], encoding_format: 'float' });
        return { kind, outcome: 'ok' };
      case 'bad-json': {
        // Every other cycle to each server.
        const gen = Math.floor(i / MIX.length) % 2 === 1;
        return { kind, outcome: String(await postRaw(gen ? t.genPort : t.embPort, gen ? '/v1/chat/completions' : '/v1/embeddings', `{"model": "${model}", "messages": [`)) };
      }
      case 'bad-param':
        return { kind, outcome: String(await postRaw(t.genPort, '/v1/chat/completions', JSON.stringify({ model, messages, max_tokens: -3 }))) };
      case 'wrong-model':
        try {
          await t.embClient.embeddings.create({ model: 'no-such-model', input: 'x' });
          return { kind, outcome: 'accepted' };
        } catch (e) {
          return { kind, outcome: e instanceof OpenAI.APIError ? String(e.status) : 'error' };
        }
    }
  } catch (e) {
    return { kind, outcome: e instanceof OpenAI.APIError ? String(e.status) : 'error', error: (e as Error).message };
  }
}

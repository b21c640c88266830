/**
 * Example inference server: an encoder (embedding + positional encoding +
 * nn.TransformerEncoder) behind dynamic batching, over node:http.
 *
 *   npx tsx examples/server/main.ts [--model m.safetensors] [--config c.json] [--port 8080] [--no-batching] ...
 *
 * The same as `attnode serve` (lib/cli/serve.ts, which holds the flag parsing and
 * signal handling; the server itself is lib/serving/http.ts, so the published
 * CLI can start it). See README.md here for the routes and curl examples.
 */
import { wantsHelp } from '../../lib/cli/args';
import { serveMain, UsageError, SERVE_USAGE } from '../../lib/cli/serve';

const args = process.argv.slice(2);
if (wantsHelp(args)) console.log(SERVE_USAGE);
else {
  serveMain(args).catch((e: unknown) => {
    console.error(`server: ${(e as Error).message}${e instanceof UsageError ? ' (--help lists the flags)' : ''}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}

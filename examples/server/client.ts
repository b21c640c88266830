/**
 * A minimal client of the example server: encodes a few sequences concurrently
 * (so the server batches them) and prints the pooled vectors' sizes and the metrics.
 *
 *   npx tsx examples/server/client.ts [http://127.0.0.1:8080]
 */
const base = process.argv[2] ?? 'http://127.0.0.1:8080';

async function post(path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function main(): Promise<void> {
  const seqs = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11]];
  const results = await Promise.all(seqs.map((tokens) => post('/v1/encode', { tokens })));
  for (const r of results as { status: number; body: { length: number; dim: number } }[]) {
    console.log(r.status, `length ${r.body.length}, dim ${r.body.dim}`);
  }
  console.log(await post('/v1/encode', { tokens: [1, 2, 99999] }));
  const metrics = (await (await fetch(`${base}/metrics`)).json()) as { batcher: unknown };
  console.log('batcher', metrics.batcher);
}

void main();

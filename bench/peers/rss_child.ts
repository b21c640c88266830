/**
 * Peak-RSS probe: one peer, one case, in a process of its own so no other
 * peer's allocations count (bench/run.ts spawns it with its own loader flags).
 *
 *   <node + tsx> bench/peers/rss_child.ts attnode|ort CASE THREADS REPS
 *
 * Prints one JSON line: median ms, VmHWM (peak RSS) and the RSS once the
 * library was loaded but before the model was built.
 */
import * as fs from 'node:fs';
import { findCase } from '../cases/cases';
import { createAttnodePeer, loadAttnode, nativeUnavailableReason } from './attnode';
import { createOrtPeer, loadOrt, ortUnavailableReason } from './ort';
import type { Peer } from './types';

function vmKiB(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : -1;
}

async function main(): Promise<void> {
  const [peerName, caseId, threadsArg, repsArg] = process.argv.slice(2);
  const c = findCase(caseId);
  const threads = Number(threadsArg);
  const reps = Number(repsArg);
  let peer: Peer;
  let base: number;
  if (peerName === 'attnode') {
    await loadAttnode();
    const why = await nativeUnavailableReason();
    if (why) throw new Error(`attnode native backend unavailable: ${why}`);
    base = vmKiB('VmRSS');
    peer = await createAttnodePeer(c, 'native');
  } else if (peerName === 'ort') {
    if (!(await loadOrt())) throw new Error(`onnxruntime-node unavailable: ${ortUnavailableReason()}`);
    base = vmKiB('VmRSS');
    // The input is read with attnode's reader (its io module alone: no addon), as the attnode child reads it.
    const { loadSafetensors } = await import('../../lib/io/safetensors');
    const io = (await loadSafetensors(c.ioPath)).tensors;
    const inputs = Object.fromEntries(
      Object.entries(io).map(([k, t]) => [k, { data: t.data as Float32Array | Int32Array, shape: t.shape }]),
    );
    peer = await createOrtPeer(c, [threads], inputs);
  } else {
    throw new Error(`rss_child: unknown peer '${peerName}' (attnode | ort; torch has its own: torch_bench.py rss)`);
  }
  await peer.setThreads(threads);
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) ms.push(await peer.runOnce());
  ms.sort((x, y) => x - y);
  const res = {
    ok: true, peer: peerName, case: c.id, threads, medianMs: ms[Math.floor(ms.length / 2)],
    peakRssKiB: vmKiB('VmHWM'), baseRssKiB: base, maxRssKiB: process.resourceUsage().maxRSS,
  };
  await peer.close();
  process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch((e: Error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: e.message }) + '\n');
  process.exit(1);
});

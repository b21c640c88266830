/**
 * One benchmark peer in a process of its own, driven by bench/encoder.ts over JSON lines (stdin → stdout), so its
 * threads, allocations and idle spinning touch no other peer and its CPU time is its own.
 *
 *   <node + tsx> bench/peers/child.ts PEER CASE THREADS
 *
 * PEER: attnode | bf16 | attnode-int8 | ts | ort | ort-int8 | ort-int8pc. The first line it prints says whether the
 * peer could be built and how its output compares with the case's float32 reference (cosine, max relative
 * difference). Then, per request:
 *   {"cmd": "run", "reps": R}   → {"ok": true, "ms": [R], "cpuMs": C, "wallMs": W}   (C and W over the R passes)
 *   {"cmd": "quit"}
 * `attnode-int8` asks for `useWeightPrecision('int8')`; where that API does not exist (or refuses) the first line
 * says so ({"ok": false, "unavailable": REASON}), and the runner shows a "not available" cell.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { compareOutputs } from '../honest';
import { findCase, int8OnnxPath, type Case } from '../cases/cases';
import { createAttnodePeer, loadAttnode, nativeUnavailableReason } from './attnode';
import { createOrtPeer, loadOrt, ortUnavailableReason, ortVersion } from './ort';
import { CHILD_PEERS, type ChildPeer, type Peer } from './types';

function send(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function build(peer: ChildPeer, c: Case, threads: number): Promise<Peer> {
  if (peer.startsWith('ort')) {
    if (!(await loadOrt())) throw Object.assign(new Error(`onnxruntime-node not installed: ${ortUnavailableReason()}`), { unavailable: true });
    const { loadSafetensors } = await import('../../lib/io/safetensors');
    const io = (await loadSafetensors(c.ioPath)).tensors;
    const inputs = Object.fromEntries(Object.entries(io).filter(([k]) => k !== 'output')
      .map(([k, t]) => [k, { data: t.data as Float32Array | Int32Array, shape: t.shape }]));
    const file = peer === 'ort' ? c.onnxPath : int8OnnxPath(c, peer === 'ort-int8pc');
    if (!fs.existsSync(file)) {
      throw Object.assign(new Error(`${file} missing: /usr/bin/python3 scripts/quantize_onnx_dynamic.py --cases ${c.id}${peer === 'ort-int8pc' ? ' --per-channel' : ''}`), { unavailable: true });
    }
    return createOrtPeer({ ...c, onnxPath: file }, [threads], inputs);
  }
  await loadAttnode();
  if (peer !== 'ts') {
    const why = await nativeUnavailableReason();
    if (why) throw Object.assign(new Error(`attnode native backend unavailable: ${why.split('\n')[0]}`), { unavailable: true });
  }
  switch (peer) {
    case 'attnode':
      return createAttnodePeer(c, 'native');
    case 'bf16':
      return createAttnodePeer(c, 'native', 'bfloat16');
    case 'attnode-int8':
      // Behaviour, not a flag: the module either accepts int8 weights or says why not (createAttnodePeer rethrows).
      try {
        return await createAttnodePeer(c, 'native', 'int8');
      } catch (e) {
        throw Object.assign(new Error(`useWeightPrecision('int8'): ${(e as Error).message.split('\n')[0]}`), { unavailable: true });
      }
    case 'ts':
      return createAttnodePeer(c, 'js');
  }
  throw new RangeError(`child: unknown peer '${peer}'`);
}

async function main(): Promise<void> {
  const [peerArg, caseId, threadsArg] = process.argv.slice(2);
  if (!CHILD_PEERS.includes(peerArg as ChildPeer)) {
    throw new RangeError(`child: PEER must be one of ${CHILD_PEERS.join(', ')}, got '${peerArg}'`);
  }
  const peerName = peerArg as ChildPeer;
  const threads = Number(threadsArg);
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`child: THREADS must be a positive integer, got '${threadsArg}'`);
  const c = findCase(caseId!);
  let peer: Peer;
  try {
    peer = await build(peerName, c, threads);
    await peer.setThreads(threads);
  } catch (e) {
    const err = e as Error & { unavailable?: boolean };
    send(err.unavailable ? { ok: false, unavailable: err.message } : { ok: false, error: err.message });
    return;
  }
  // The output check: one pass, against the float32 reference every peer is compared with.
  const { loadSafetensors } = await import('../../lib/io/safetensors');
  const ref = (await loadSafetensors(c.ioPath)).tensors.output!.data as Float32Array;
  await peer.runOnce();
  const check = compareOutputs(await peer.output(), ref);
  const info: Record<string, unknown> = peerName.startsWith('ort')
    ? { onnxruntime: ortVersion() }
    : { attnode: (await loadAttnode()).info().native?.build.kernels ?? 'TS only', isa: (await loadAttnode()).info().native?.isa ?? null };
  send({ ok: true, ready: true, peer: peerName, case: c.id, threads, pid: process.pid, check, info });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let req: { cmd?: string; reps?: number };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      send({ ok: false, error: `not JSON: ${line.slice(0, 100)}` });
      continue;
    }
    if (req.cmd === 'quit') break;
    if (req.cmd !== 'run' || !Number.isInteger(req.reps) || req.reps! < 1) {
      send({ ok: false, error: `unknown request ${line.slice(0, 100)}` });
      continue;
    }
    const ms: number[] = [];
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < req.reps!; i++) ms.push(await peer.runOnce());
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    send({ ok: true, ms, cpuMs: (cpu.user + cpu.system) / 1000, wallMs });
  }
  await peer.close();
}

main().then(() => process.exit(0), (e: Error) => {
  send({ ok: false, error: e.message });
  process.exit(1);
});

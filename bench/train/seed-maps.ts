/**
 * `npm run train:seed:attention`: the attention maps of the seed model that `npm run train:seed` trained (the
 * article's figure), for one held-out digit string: every decoder layer's cross-attention heads (rows: the digit each
 * decoder position writes; columns: the source digits) and the encoder's self-attention heads. A model that sorts
 * has learnt to look, when it writes a digit, at where that digit stands in the source.
 *
 *   npm run train:seed:attention -- [--run runs/train-seed] [--index 0] [--results bench/results]
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadSafetensors } from '../../lib/index';
import { svgToPng } from '../png';
import { seedAttention, seedAttentionSvgs } from './seed-attention';
import { buildModel, makeBatch, RUN_FILE, WEIGHTS_FILE, type RunRecord } from './seed-task';

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      run: { type: 'string', default: 'runs/train-seed' },
      index: { type: 'string', default: '0' },
      results: { type: 'string', default: 'bench/results' },
    },
    strict: true,
  });
  const runFile = join(a.run!, RUN_FILE);
  if (!existsSync(runFile)) {
    console.error(`train:seed:attention: no ${runFile}: run \`npm run train:seed\` first (or pass --run DIR)`);
    process.exitCode = 1;
    return;
  }
  const record = JSON.parse(await readFile(runFile, 'utf8')) as RunRecord;
  const index = Number(a.index);
  if (!Number.isInteger(index) || index < 0 || index >= record.heldOut.length) {
    throw new RangeError(`--index must be an integer in [0, ${record.heldOut.length}) (a held-out string of ${runFile}), got '${a.index}'`);
  }
  const model = buildModel(record.config);
  model.loadStateDict((await loadSafetensors(join(a.run!, WEIGHTS_FILE))).tensors);
  const digits = record.heldOut[index]!;
  const batch = makeBatch([digits], record.config);
  const note = `held-out string ${index}; the run: ${(100 * record.heldOutTokenAccuracy).toFixed(2)} % held-out token accuracy`;
  const svgs = seedAttentionSvgs(seedAttention(model, batch.src, batch.tgtIn), digits, note);
  await mkdir(a.results!, { recursive: true });
  for (const [name, svg] of [['train-seed-cross-attention', svgs.cross], ['train-seed-encoder-attention', svgs.encoder]] as const) {
    await writeFile(join(a.results!, `${name}.svg`), svg);
    await writeFile(join(a.results!, `${name}.png`), svgToPng(svg));
    console.log(`${join(a.results!, name)}.svg (and .png)`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});

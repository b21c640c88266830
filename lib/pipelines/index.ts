/**
 * `pipeline(task, dir, options)`: Hugging Face's pipelines on a model folder.
 * Each task is one row of `TASKS` (a loader taking the folder and the options);
 * a new task adds its file and one line here.
 */
import { featureExtraction, type FeatureExtractionPipeline } from './feature-extraction';
import { textClassification, type TextClassificationPipeline } from './text-classification';
import { fillMask, type FillMaskPipeline } from './fill-mask';
import {
  textGenerationPipeline, type TextGenerationPipeline, type TextGenerationPipelineOptions,
} from './text-generation';
import type { PipelineOptions } from './encoder';

export type { PipelineOptions } from './encoder';
export type { FeatureExtractionPipeline, FeatureExtractionOptions, Pooling } from './feature-extraction';
export type { TextClassificationPipeline, TextClassificationResult, TextClassificationOptions } from './text-classification';
export type { FillMaskPipeline, FillMaskResult, FillMaskOptions } from './fill-mask';
export type { TextGenerationPipeline, TextGenerationPipelineOptions } from './text-generation';

/** Task name → what it builds (extend with one line per task). */
export interface PipelineTypes {
  'feature-extraction': FeatureExtractionPipeline;
  'text-classification': TextClassificationPipeline;
  'fill-mask': FillMaskPipeline;
  'text-generation': TextGenerationPipeline;
}

/** A task's pipeline options: the generator's for text-generation, the encoders' otherwise. */
export type PipelineOptionsFor<T> = T extends 'text-generation' ? TextGenerationPipelineOptions : PipelineOptions;

type Loader = (dir: string, options: never) => Promise<unknown>;

const TASKS: Record<string, Loader> = {
  'feature-extraction': featureExtraction,
  'text-classification': textClassification,
  // transformers' alias of text-classification.
  'sentiment-analysis': textClassification,
  'fill-mask': fillMask,
  'text-generation': textGenerationPipeline,
};

export type PipelineTask = keyof PipelineTypes | 'sentiment-analysis';

/**
 * Loads `dir`'s model and tokenizer for `task`. Calls return promises; the
 * model runs off the JS thread (`forwardAsync`) in batches of `batchSize`.
 * @throws (as a rejection) TypeError for an unknown task or a bad argument;
 * Error naming the file and field for a folder that does not fit.
 */
export async function pipeline<T extends PipelineTask>(
  task: T, dir: string, options: PipelineOptionsFor<T> = {} as PipelineOptionsFor<T>,
): Promise<T extends keyof PipelineTypes ? PipelineTypes[T] : TextClassificationPipeline> {
  const load = typeof task === 'string' && Object.prototype.hasOwnProperty.call(TASKS, task) ? TASKS[task] : undefined;
  if (!load) throw new TypeError(`pipeline: argument 'task' ${JSON.stringify(task)} is not a supported task (supported: ${Object.keys(TASKS).join(', ')})`);
  if (typeof dir !== 'string') throw new TypeError(`pipeline: argument 'dir' must be a string, got ${dir === null ? 'null' : typeof dir}`);
  if (options === null || typeof options !== 'object') throw new TypeError(`pipeline: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  return (await (load as (d: string, o: unknown) => Promise<unknown>)(dir, options)) as never;
}

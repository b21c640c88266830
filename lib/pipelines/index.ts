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
import { translationPipeline, type TranslationPipeline } from './translation';
import type { PipelineOptions } from './encoder';

export type { PipelineOptions } from './encoder';
export type { FeatureExtractionPipeline, FeatureExtractionOptions, Pooling } from './feature-extraction';
export type { TextClassificationPipeline, TextClassificationResult, TextClassificationOptions } from './text-classification';
export type { FillMaskPipeline, FillMaskResult, FillMaskOptions } from './fill-mask';
export type { TextGenerationPipeline, TextGenerationPipelineOptions } from './text-generation';
export type { TranslationPipeline, TranslationOptions, TranslationResult } from './translation';

/** Task name → what it builds (extend with one line per task). */
export interface PipelineTypes {
  'feature-extraction': FeatureExtractionPipeline;
  'text-classification': TextClassificationPipeline;
  'fill-mask': FillMaskPipeline;
  'text-generation': TextGenerationPipeline;
  translation: TranslationPipeline;
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
  translation: translationPipeline,
};

/** transformers' task names that pick the translation pipeline for a language pair (the model decides the languages). */
export type TranslationTask = `translation_${string}_to_${string}`;

export type PipelineTask = keyof PipelineTypes | 'sentiment-analysis' | TranslationTask;

/** The pipeline a task name builds. */
export type PipelineFor<T> = T extends keyof PipelineTypes ? PipelineTypes[T] : T extends TranslationTask ? TranslationPipeline : TextClassificationPipeline;

/**
 * Loads `dir`'s model and tokenizer for `task`. Calls return promises; the
 * model runs off the JS thread (`forwardAsync`) in batches of `batchSize`.
 * @throws (as a rejection) TypeError for an unknown task or a bad argument;
 * Error naming the file and field for a folder that does not fit.
 */
export async function pipeline<T extends PipelineTask>(
  task: T, dir: string, options: PipelineOptionsFor<T> = {} as PipelineOptionsFor<T>,
): Promise<PipelineFor<T>> {
  const load = typeof task !== 'string' ? undefined
    : Object.prototype.hasOwnProperty.call(TASKS, task) ? TASKS[task]
      : /^translation_[A-Za-z-]+_to_[A-Za-z-]+$/.test(task) ? translationPipeline : undefined;
  if (!load) throw new TypeError(`pipeline: argument 'task' ${JSON.stringify(task)} is not a supported task (supported: ${Object.keys(TASKS).join(', ')}, translation_<src>_to_<tgt>)`);
  if (typeof dir !== 'string') throw new TypeError(`pipeline: argument 'dir' must be a string, got ${dir === null ? 'null' : typeof dir}`);
  if (options === null || typeof options !== 'object') throw new TypeError(`pipeline: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  return (await (load as (d: string, o: unknown) => Promise<unknown>)(dir, options)) as never;
}

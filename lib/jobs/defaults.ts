/** The BullMQ queue runs use unless told otherwise (one queue for every run; a job's name is its run id). */
export const DEFAULT_QUEUE = 'attnode-shards';

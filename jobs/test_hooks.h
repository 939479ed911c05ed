/* Fault-injection hooks of the end-to-end tests, all in one place. Each hook is an
 * environment variable (RADBATCH_TEST_<NAME>), read once on first use; unset in production,
 * where every query is a load of a cached value. The tests that use them: convert_resume,
 * train_resume, infer_resume, infer_ranks, launcher_sigterm, sigterm_stop (tests/e2e). */
#ifndef TEST_HOOKS_H
#define TEST_HOOKS_H

typedef enum test_hook {
    HOOK_KILL_AFTER_STEPS,  /* train: SIGKILL after this global step */
    HOOK_TERM_AFTER_STEPS,  /* train: rank 0 raises SIGTERM after this global step */
    HOOK_KILL_AFTER_SHARDS, /* convert: SIGKILL after this many finished shards (per rank) */
    HOOK_TERM_AFTER_SHARDS, /* convert: SIGTERM after this many finished shards (per rank) */
    HOOK_TERM_AFTER_PASSES, /* evaluate: SIGTERM after this many forward passes (per rank) */
    HOOK_KILL_AFTER_CHUNKS, /* infer: SIGKILL after this many chunks (per rank) */
    HOOK_KILL_RANK,         /* infer: ... only on this rank */
    HOOK_OTHERS_CHUNK_MS,   /* infer: the ranks other than KILL_RANK pause this long after each
                               chunk, so that KILL_RANK surely gets its chunks */
    HOOK_TERM_AFTER_CHUNKS, /* infer: SIGTERM after this many chunks */
    HOOK_WAIT_LISTING,      /* infer: start predicting once the listing is complete */
    HOOK_KILL_IN_LISTING,   /* infer: SIGKILL once the listing has written this many chunks */
    HOOK_KILL_IN_MERGE,     /* infer: SIGKILL in the merge after this many predicted rows */
    HOOK_KILL_MERGE,        /* infer: SIGKILL at this named point of the merge ("publish") */
    HOOK__COUNT
} test_hook;

/* The hook's text, or NULL when it is not set. */
const char *test_hook_str(test_hook h);
/* Its value as an integer, or -1 when it is not set. */
long long test_hook_int(test_hook h);
/* 1 when the hook is set to exactly `point`. */
int test_hook_is(test_hook h, const char *point);

#endif

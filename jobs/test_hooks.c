#include "test_hooks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const hook_env[HOOK__COUNT] = {
    [HOOK_KILL_AFTER_STEPS] = "RADBATCH_TEST_KILL_AFTER_STEPS",
    [HOOK_TERM_AFTER_STEPS] = "RADBATCH_TEST_TERM_AFTER_STEPS",
    [HOOK_KILL_AFTER_SHARDS] = "RADBATCH_TEST_KILL_AFTER_SHARDS",
    [HOOK_TERM_AFTER_SHARDS] = "RADBATCH_TEST_TERM_AFTER_SHARDS",
    [HOOK_TERM_AFTER_PASSES] = "RADBATCH_TEST_TERM_AFTER_PASSES",
    [HOOK_KILL_AFTER_CHUNKS] = "RADBATCH_TEST_KILL_AFTER_CHUNKS",
    [HOOK_KILL_RANK] = "RADBATCH_TEST_KILL_RANK",
    [HOOK_OTHERS_CHUNK_MS] = "RADBATCH_TEST_OTHERS_CHUNK_MS",
    [HOOK_TERM_AFTER_CHUNKS] = "RADBATCH_TEST_TERM_AFTER_CHUNKS",
    [HOOK_WAIT_LISTING] = "RADBATCH_TEST_WAIT_LISTING",
    [HOOK_KILL_IN_LISTING] = "RADBATCH_TEST_KILL_IN_LISTING",
    [HOOK_KILL_IN_MERGE] = "RADBATCH_TEST_KILL_IN_MERGE",
    [HOOK_KILL_MERGE] = "RADBATCH_TEST_KILL_MERGE",
};

static const char *hook_value[HOOK__COUNT];
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void read_hooks(void)
{
    for (int h = 0; h < HOOK__COUNT; h++)
        hook_value[h] = getenv(hook_env[h]);
}

const char *test_hook_str(test_hook h)
{
    pthread_once(&hook_once, read_hooks);
    return h >= 0 && h < HOOK__COUNT ? hook_value[h] : NULL;
}

long long test_hook_int(test_hook h)
{
    const char *v = test_hook_str(h);
    return v ? atoll(v) : -1;
}

int test_hook_is(test_hook h, const char *point)
{
    const char *v = test_hook_str(h);
    return v && strcmp(v, point) == 0;
}

/* dir_stream: depth-first order with sorted names, big folders through spilled runs giving
 * the same order as in memory, loops/broken links/FIFOs as error entries, the same files as
 * fs_walk. */
#include "dir_stream.h"
#include "fsutil.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void touch(const char *root, const char *rel)
{
    char *p = fs_join(root, rel);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("x", f);
        fclose(f);
    }
    free(p);
}

static void mkd(const char *root, const char *rel)
{
    char *p = fs_join(root, rel);
    mkdir(p, 0755);
    free(p);
}

/* All entries as "F rel" / "E rel: reason" lines. */
static char *walk_all(const char *root, int max_names, const char *spill, int *nfiles)
{
    dir_stream *s;
    rb_error err;
    dir_stream_opts o = {spill, max_names};
    if (dir_stream_open(&s, root, &o, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *out = calloc(cap, 1);
    dir_stream_entry e;
    int rc;
    *nfiles = 0;
    while ((rc = dir_stream_next(s, &e, &err)) == 1) {
        if (e.kind == DIR_STREAM_FILE)
            (*nfiles)++;
        len += (size_t)snprintf(out + len, cap - len, "%s %s%s%s\n", e.kind == DIR_STREAM_FILE ? "F" : "E", e.rel,
                                e.reason ? ": " : "", e.reason ? e.reason : "");
    }
    CHECK(rc == 0, "walk ended with %d: %s", rc, err.msg);
    dir_stream_close(s);
    return out;
}

int main(void)
{
    const char *root = test_tmpdir("dir_stream");
    char *tree = fs_join(root, "tree");
    mkdir(tree, 0755);
    mkd(tree, "b");
    mkd(tree, "a");
    mkd(tree, "a/deep");
    mkd(tree, "big");
    touch(tree, "z.png");
    touch(tree, "a.b");
    touch(tree, "a/2.jpg");
    touch(tree, "a/10.jpg");
    touch(tree, "a/deep/x.jpg");
    touch(tree, ".hidden");
    touch(tree, "b/only.jpg");
    char name[64];
    for (int i = 999; i >= 0; i--) {
        snprintf(name, sizeof name, "big/f%04d.png", (i * 7919) % 1000);
        touch(tree, name);
    }
    char *p = fs_join(tree, "a/loop");
    CHECK(symlink("..", p) == 0, "symlink");
    free(p);
    p = fs_join(tree, "broken");
    CHECK(symlink("does-not-exist", p) == 0, "symlink");
    free(p);
    p = fs_join(tree, "fifo");
    CHECK(mkfifo(p, 0644) == 0, "mkfifo");
    free(p);
    p = fs_join(tree, "linkdir");
    CHECK(symlink("b", p) == 0, "symlink");
    free(p);

    int n1 = 0, n2 = 0, n3 = 0;
    char *mem = walk_all(tree, 0, root, &n1);
    char *spill = walk_all(tree, 64, root, &n2);
    char *many = walk_all(tree, 4, root, &n3); /* 250 runs: merged into one as they pile up */
    CHECK(mem && spill && many, "walks");
    if (mem && many)
        CHECK(strcmp(mem, many) == 0 && n3 == n1, "many spilled runs give another order");
    free(many);
    if (!mem || !spill)
        return TEST_DONE();
    CHECK(strcmp(mem, spill) == 0, "spilled runs give another order:\n%s\nvs\n%s", mem, spill);
    CHECK(n1 == 1006, "files %d, expected 1006", n1);
    /* order: depth-first, names sorted per folder */
    const char *want_head = "F a/10.jpg\nF a/2.jpg\nF a/deep/x.jpg\nE a/loop: folder already visited";
    CHECK(strncmp(mem, want_head, strlen(want_head)) == 0, "head:\n%.200s", mem);
    CHECK(strstr(mem, "F a.b\nF b/only.jpg\nF big/f0000.png\nF big/f0001.png\n") != NULL, "order around a.b");
    CHECK(strstr(mem, "E broken: broken symbolic link\n") != NULL, "broken link");
    CHECK(strstr(mem, "E fifo: not a regular file (FIFO), skipped\n") != NULL, "fifo");
    CHECK(strstr(mem, "E linkdir: folder already visited") != NULL, "second link to b");
    CHECK(strstr(mem, ".hidden") == NULL, "hidden file listed");
    CHECK(strstr(mem, "F big/f0999.png\nE broken") != NULL, "tail");

    /* same files as fs_walk */
    fs_list l;
    rb_error err;
    CHECK(fs_walk(tree, &l, NULL, NULL, &err) == 0, "fs_walk");
    CHECK(l.n == n1, "fs_walk found %lld, dir_stream %d", (long long)l.n, n1);
    for (int64_t i = 0; i < l.n; i++) {
        char line[512];
        snprintf(line, sizeof line, "F %s\n", l.rel[i]);
        CHECK(strstr(mem, line) != NULL, "%s missing", l.rel[i]);
    }
    fs_list_free(&l);

    /* exclusion of a folder inside the tree (the output folder) */
    dir_stream *s;
    CHECK(dir_stream_open(&s, tree, NULL, &err) == 0, "open");
    char *ex = fs_join(tree, "big");
    dir_stream_exclude(s, ex);
    free(ex);
    dir_stream_entry e;
    int nbig = 0, rc;
    while ((rc = dir_stream_next(s, &e, &err)) == 1)
        nbig += strncmp(e.rel, "big/", 4) == 0;
    CHECK(rc == 0 && nbig == 0, "excluded folder listed (%d)", nbig);
    dir_stream_close(s);

    CHECK(dir_stream_open(&s, "/nonexistent-radbatch", NULL, &err) < 0, "missing root accepted");
    free(mem);
    free(spill);
    free(tree);
    return TEST_DONE();
}

#include "inode_set.h"

#include <stdlib.h>
#include <string.h>

static uint64_t inode_hash(uint64_t d, uint64_t i)
{
    uint64_t z = d * 0x9e3779b97f4a7c15ULL ^ i;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    return z ^ (z >> 31);
}

/* Insert into a set with room to spare. */
static int insert(inode_set *v, uint64_t d, uint64_t i)
{
    uint64_t m = (uint64_t)v->cap - 1, h = inode_hash(d, i) & m;
    while (v->used[h]) {
        if (v->dev[h] == d && v->ino[h] == i)
            return 0;
        h = (h + 1) & m;
    }
    v->used[h] = 1;
    v->dev[h] = d;
    v->ino[h] = i;
    v->n++;
    return 1;
}

static int grow(inode_set *v)
{
    int64_t nc = v->cap ? v->cap * 2 : 256;
    inode_set nv = {.dev = calloc((size_t)nc, sizeof *nv.dev),
                    .ino = calloc((size_t)nc, sizeof *nv.ino),
                    .used = calloc((size_t)nc, 1),
                    .cap = nc};
    if (!nv.dev || !nv.ino || !nv.used) {
        inode_set_free(&nv);
        return -1;
    }
    for (int64_t k = 0; k < v->cap; k++)
        if (v->used[k])
            insert(&nv, v->dev[k], v->ino[k]);
    inode_set_free(v);
    *v = nv;
    return 0;
}

int inode_set_add(inode_set *v, uint64_t dev, uint64_t ino)
{
    if ((v->n + 1) * 2 > v->cap && grow(v) < 0)
        return -1;
    return insert(v, dev, ino);
}

void inode_set_free(inode_set *v)
{
    free(v->dev);
    free(v->ino);
    free(v->used);
    memset(v, 0, sizeof *v);
}

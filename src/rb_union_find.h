/* Union-find over indices 0..n-1 in a caller's array (par[i] = i to start), with path
 * halving. The smallest index of a set is its root, so roots do not depend on the order
 * of the unions. */
#ifndef RB_UNION_FIND_H
#define RB_UNION_FIND_H

#include <stdint.h>

static inline int64_t rb_uf_find(int64_t *par, int64_t x)
{
    while (par[x] != x) {
        par[x] = par[par[x]];
        x = par[x];
    }
    return x;
}

static inline void rb_uf_union(int64_t *par, int64_t a, int64_t b)
{
    a = rb_uf_find(par, a);
    b = rb_uf_find(par, b);
    if (a < b)
        par[b] = a;
    else if (b < a)
        par[a] = b;
}

#endif

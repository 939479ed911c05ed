/* Counter-based random numbers: a value is a pure function of (seed, key...), so results
 * do not depend on how work is split over ranks or threads, and a resumed run draws the
 * same numbers as an uninterrupted one. The mixer is SplitMix64's finalizer applied in a
 * chain (a keyed hash); statistically sound for shuffles, augmentation and dropout. */
#ifndef RB_RNG_H
#define RB_RNG_H

#include <stdint.h>

static inline uint64_t rb_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 64 random bits for (seed, a, b, c). */
static inline uint64_t rb_rng_u64(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = rb_mix64(seed ^ 0x5851f42d4c957f2dULL);
    h = rb_mix64(h ^ a);
    h = rb_mix64(h ^ (b + 0x632be59bd9b4e019ULL));
    h = rb_mix64(h ^ (c + 0x8cb92ba72f3d8dd7ULL));
    return h;
}

/* uniform in [0, 1) with 24 random bits (exact float) */
static inline float rb_rng_uniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    return (float)(rb_rng_u64(seed, a, b, c) >> 40) * (1.0f / 16777216.0f);
}

/* uniform integer in [0, n) without modulo bias worth caring about (n < 2^32) */
static inline uint64_t rb_rng_below(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t n)
{
    return (uint64_t)(((rb_rng_u64(seed, a, b, c) >> 32) * n) >> 32);
}

/* Deterministic Fisher-Yates shuffle of idx[0..n) keyed by (seed, stream). */
static inline void rb_shuffle_i64(int64_t *idx, int64_t n, uint64_t seed, uint64_t stream)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(((rb_rng_u64(seed, stream, (uint64_t)i, 0x5f) >> 11) %
                               (uint64_t)(i + 1)));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

#endif

/* The loop guard of the tree walks (io/inode_set.c): pairs are added once, found again after
 * the set has grown many times, and pairs that share a device or an inode stay apart. */
#include "inode_set.h"
#include "test_util.h"

int main(void)
{
    inode_set s = {0};
    const int64_t n = 100000; /* 256 doubled nine times */
    int fresh = 0, again = 0;
    for (int64_t i = 0; i < n; i++)
        fresh += inode_set_add(&s, (uint64_t)(i % 3), (uint64_t)i) == 1;
    for (int64_t i = 0; i < n; i++)
        again += inode_set_add(&s, (uint64_t)(i % 3), (uint64_t)i) == 0;
    CHECK(fresh == n && again == n && s.n == n, "fresh %d again %d n %lld", fresh, again, (long long)s.n);
    CHECK(s.cap >= 2 * s.n && (s.cap & (s.cap - 1)) == 0, "cap %lld for %lld", (long long)s.cap, (long long)s.n);
    /* the same inode on another device, the same device with another inode: new folders */
    CHECK(inode_set_add(&s, 7, 5) == 1, "(7, 5) is new");
    CHECK(inode_set_add(&s, 5 % 3 + 1, 5) == 1, "inode 5 on another device is new");
    CHECK(inode_set_add(&s, 7, 5) == 0, "(7, 5) again");
    inode_set_free(&s);
    CHECK(s.n == 0 && s.cap == 0 && !s.dev, "freed set is empty");
    CHECK(inode_set_add(&s, 1, 1) == 1, "a freed set can be used again");
    inode_set_free(&s);
    return TEST_DONE();
}

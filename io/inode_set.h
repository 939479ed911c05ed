/* A set of folders by (device, inode): the loop guard of the tree walks (fsutil.c's fs_walk,
 * dir_stream.c). Open addressing, grows at half load, so archives with millions of folders
 * stay linear. Zero-initialise, add, free. */
#ifndef RB_INODE_SET_H
#define RB_INODE_SET_H

#include <stdint.h>

typedef struct inode_set {
    uint64_t *dev, *ino;
    uint8_t *used;
    int64_t n, cap; /* cap: a power of two */
} inode_set;

/* 1: newly added, 0: already there, -1: out of memory (the set is unchanged). */
int inode_set_add(inode_set *v, uint64_t dev, uint64_t ino);
void inode_set_free(inode_set *v);

#endif

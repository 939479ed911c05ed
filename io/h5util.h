/* Small HDF5 helpers shared by the shard, model file and Keras import code. */
#ifndef H5UTIL_H
#define H5UTIL_H

#include "rb_error.h"

#include <hdf5.h>

#include <stddef.h>
#include <stdint.h>

/* HDF5 prints its error stack on stderr by default; library code must not print, and we
 * probe for optional objects, so printing is off between begin and end. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

void h5_quiet_begin(h5_quiet *q);
void h5_quiet_end(const h5_quiet *q);

/* Files we write are built in memory (HDF5's core driver without a backing store) and written
 * out by our own code (fs_write_temp / fs_write_file_atomic): HDF5 then never meets a write
 * error. (When it does, e.g. a full disk during H5Fclose, HDF5 1.10 keeps a half-closed file
 * that its exit handler later dereferences: a SIGSEGV after the error was reported.)
 * The core driver's buffer is ours (file image callbacks): H5Fclose finishes the file in it
 * and hands it over instead of freeing it, so there is no second copy.
 *
 *   h5_mem_file m = {0};
 *   hid_t fapl = h5_mem_fapl(&m);   H5Fcreate(name, ..., fapl); H5Pclose(fapl);
 *   ... write ...; H5Fclose(f);
 *   size_t len; if (h5_mem_bytes(&m, &len) == 0) write m.buf[0, len) to the file
 *   h5_mem_free(&m);                            (always, also after a failure)
 *
 * The buffer grows 4 MiB at a time, so a file takes at most that much more memory than its
 * size. m must stay in place until H5Fclose. -1 on failure. */
typedef struct h5_mem_file {
    void *buf;  /* the core driver's buffer, ours after H5Fclose */
    size_t cap; /* its allocated size */
} h5_mem_file;
hid_t h5_mem_fapl(h5_mem_file *m);
/* After H5Fclose: the file's size (the end-of-file address in its superblock). -1 when the
 * buffer holds no complete HDF5 file. */
int h5_mem_bytes(const h5_mem_file *m, size_t *len);
void h5_mem_free(h5_mem_file *m);

/* A variable-length string type in `cset` (H5T_CSET_UTF8 is what h5py writes for str;
 * HDF5 will not convert between ASCII and UTF-8, so readers pass the file type's cset).
 * -1 on failure. */
hid_t h5_vlen_str(H5T_cset_t cset);

/* Create attribute `name` on obj and write buf in `type` (file and memory type alike). 0 or -1. */
int h5_attr_write(hid_t obj, const char *name, hid_t type, hid_t space, const void *buf);
/* Scalar attribute of file_type, written from *v in mem_type. 0 or -1. */
int h5_attr_write_scalar(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v);
/* Scalar variable-length UTF-8 string (NULL writes ""). 0 or -1. */
int h5_attr_write_str(hid_t obj, const char *name, const char *value);
/* 1-D array of n variable-length UTF-8 strings (n = 0: an empty 1-D array). 0 or -1. */
int h5_attr_write_strs(hid_t obj, const char *name, const char *const *v, int n);

/* Does `path` (absolute or relative to loc) name an existing object? Checks every
 * component, since H5Lexists fails on a missing intermediate group. */
int h5_exists(hid_t loc, const char *path);

/* How h5_attr_read_strs reads a string attribute and words its errors. The Keras importer
 * and the model file reader accept different files and say different things; these fields
 * are their differences (io/keras_file.c and io/model_file.c fill them in). */
typedef struct h5_strs_spec {
    const char *file;   /* the file's path, first in every message */
    const char *object; /* the object, named in messages ("attribute A of OBJECT"), which
                         * then also tell apart opening, size and type failures; NULL: every
                         * failure after the attribute is found is "cannot read attribute A"
                         * (or "is not a string", "out of memory") */
    int64_t max_n;      /* more entries than this: an error */
    size_t max_fixed;   /* fixed-length strings of size 0 or above this: an error (0: no limit) */
    unsigned flags;     /* H5_STRS_* */
} h5_strs_spec;

enum {
    /* variable-length strings are read in the file's character set (ASCII or UTF-8); without
     * it, as UTF-8 */
    H5_STRS_FILE_CSET = 1u << 0,
    /* a non-string attribute with no entries reads as zero strings (Keras writes an empty
     * list as a float64 array of shape (0,)) */
    H5_STRS_EMPTY_NUMERIC = 1u << 1,
    /* fixed-length strings padded with spaces lose their trailing spaces */
    H5_STRS_STRIP_SPACEPAD = 1u << 2,
};

/* A string attribute (scalar or 1-D array, fixed or variable length) as a malloc'd array of
 * malloc'd strings (free with h5_strings_free; *out may be NULL when *n_out is 0). Returns 1
 * when the attribute is absent, 0 on success, -1 with err filled in. */
int h5_attr_read_strs(hid_t obj, const char *attr, const h5_strs_spec *spec, char ***out,
                      int *n_out, rb_error *err);

/* One string (a scalar or a 1-D array of one entry, fixed or variable length, read in the
 * file's character set) into out, cut to cap: h5_attr_read_strs with a spec of at most one
 * entry. -1 when the attribute is absent, not a string, holds no string or more than one,
 * or cannot be read; out is then unchanged. */
int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap);

/* Free n malloc'd strings and the array (v may be NULL). */
void h5_strings_free(char **v, int n);

/* A shape as text: "[3, 3, 32, 1]". */
void h5_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

#endif

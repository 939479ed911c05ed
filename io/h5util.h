/* Small HDF5 helpers shared by the shard, model file and Keras import code. */
#ifndef H5UTIL_H
#define H5UTIL_H

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
 * h5_mem_fapl: file access properties for H5Fcreate that grow the image by `increment`
 * bytes at a time (an estimate of the final size saves reallocations); -1 on failure. */
hid_t h5_mem_fapl(size_t increment);
/* Flush the in-memory file f and copy its image into *buf (malloc'd, *len bytes). f stays
 * open (the caller closes it). 0 or -1. */
int h5_mem_image(hid_t f, void **buf, size_t *len);

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

/* A scalar string attribute (variable or fixed length) into out, cut to cap. -1 when it
 * cannot be opened or read; out is then unchanged. */
int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap);

/* Free n malloc'd strings and the array (v may be NULL). */
void h5_strings_free(char **v, int n);

/* A shape as text: "[3, 3, 32, 1]". */
void h5_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

#endif

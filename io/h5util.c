#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>

void h5_quiet_begin(h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_quiet_end(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

hid_t h5_mem_fapl(size_t increment)
{
    hid_t p = H5Pcreate(H5P_FILE_ACCESS);
    if (p < 0)
        return -1;
    if (increment < 65536)
        increment = 65536;
    if (H5Pset_fapl_core(p, increment, 0) < 0 || H5Pset_fclose_degree(p, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

int h5_mem_image(hid_t f, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (H5Fflush(f, H5F_SCOPE_LOCAL) < 0)
        return -1;
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    if (n <= 0)
        return -1;
    void *b = malloc((size_t)n);
    if (!b)
        return -1;
    if (H5Fget_file_image(f, b, (size_t)n) != n) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = (size_t)n;
    return 0;
}

hid_t h5_vlen_str(H5T_cset_t cset)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, cset) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int h5_attr_write(hid_t obj, const char *name, hid_t type, hid_t space, const void *buf)
{
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        return -1;
    herr_t r = H5Awrite(a, type, buf);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

int h5_attr_write_scalar(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v)
{
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0)
        return -1;
    hid_t a = H5Acreate2(obj, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (a >= 0) {
        rc = H5Awrite(a, mem_type, v) < 0 ? -1 : 0;
        H5Aclose(a);
    }
    H5Sclose(s);
    return rc;
}

int h5_attr_write_str(hid_t obj, const char *name, const char *value)
{
    const char *v = value ? value : "";
    hid_t t = h5_vlen_str(H5T_CSET_UTF8), s = H5Screate(H5S_SCALAR);
    int rc = (t < 0 || s < 0) ? -1 : h5_attr_write(obj, name, t, s, &v);
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

int h5_attr_write_strs(hid_t obj, const char *name, const char *const *v, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t t = h5_vlen_str(H5T_CSET_UTF8), s = H5Screate_simple(1, &dim, NULL);
    const char *empty = NULL;
    int rc = (t < 0 || s < 0) ? -1 : h5_attr_write(obj, name, t, s, n ? (const void *)v : &empty);
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t t = h5_vlen_str(H5Tget_cset(ft));
        char *v = NULL;
        if (t >= 0 && H5Aread(a, t, &v) >= 0 && v) {
            snprintf(out, cap, "%s", v);
            H5free_memory(v);
            rc = 0;
        }
        if (t >= 0)
            H5Tclose(t);
    } else {
        size_t sz = H5Tget_size(ft);
        char *buf = calloc(1, sz + 1);
        if (buf && H5Aread(a, ft, buf) >= 0) {
            snprintf(out, cap, "%s", buf);
            rc = 0;
        }
        free(buf);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

void h5_strings_free(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void h5_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

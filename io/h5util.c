#include "h5util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void h5_quiet_begin(h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_quiet_end(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

/* One finished buffer is kept for the next file (a shard after a shard): its pages are
 * already mapped, so building the next file costs no page faults. */
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static void *spare_buf;
static size_t spare_cap;

static void *mem_alloc(h5_mem_file *m, void *ptr, size_t n)
{
    if (ptr && ptr == m->buf && n <= m->cap)
        return ptr;
    if (!ptr) {
        pthread_mutex_lock(&spare_mu);
        if (spare_buf && spare_cap >= n) {
            ptr = spare_buf;
            m->cap = spare_cap;
            spare_buf = NULL;
            spare_cap = 0;
        }
        pthread_mutex_unlock(&spare_mu);
        if (ptr) {
            m->buf = ptr;
            return ptr;
        }
    }
    void *p = realloc(ptr, n);
    if (p) {
        m->buf = p;
        m->cap = n;
    }
    return p;
}

static void *mem_malloc(size_t n, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    return mem_alloc(udata, NULL, n);
}

static void *mem_memcpy(void *dst, const void *src, size_t n, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dst, src, n);
}

static void *mem_realloc(void *ptr, size_t n, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    return mem_alloc(udata, ptr, n);
}

static herr_t mem_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    h5_mem_file *m = udata;
    if (ptr && ptr == m->buf && op == H5FD_FILE_IMAGE_OP_FILE_CLOSE)
        return 0; /* the finished file: kept for the caller */
    if (ptr == m->buf) {
        m->buf = NULL;
        m->cap = 0;
    }
    free(ptr);
    return 0;
}

static void *mem_udata_copy(void *udata) { return udata; }
static herr_t mem_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

hid_t h5_mem_fapl(h5_mem_file *m)
{
    m->buf = NULL;
    m->cap = 0;
    hid_t p = H5Pcreate(H5P_FILE_ACCESS);
    if (p < 0)
        return -1;
    /* The core driver zero-fills each increment it adds (so it is touched memory) and
     * reallocates at every one: 4 MiB keeps both small (large buffers grow by mremap). */
    const size_t increment = (size_t)4 << 20;
    H5FD_file_image_callbacks_t cb = {mem_malloc, mem_memcpy, mem_realloc, mem_free,
                                      mem_udata_copy, mem_udata_free, m};
    if (H5Pset_fapl_core(p, increment, 0) < 0 || H5Pset_file_image_callbacks(p, &cb) < 0 ||
        H5Pset_fclose_degree(p, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

int h5_mem_bytes(const h5_mem_file *m, size_t *len)
{
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const uint8_t *b = m->buf;
    *len = 0;
    if (!b || m->cap < 48 || memcmp(b, sig, 8) != 0)
        return -1;
    /* superblock versions 0/1: sizes of offsets at byte 13, end-of-file address at 40 (44
     * in version 1); versions 2/3: size of offsets at byte 9, end of file at 28 */
    int ver = b[8];
    size_t off_size = ver < 2 ? b[13] : b[9], at = ver == 0 ? 40 : ver == 1 ? 44 : 28;
    if (ver > 3 || off_size != 8)
        return -1;
    uint64_t eof = 0;
    for (int i = 7; i >= 0; i--)
        eof = eof << 8 | b[at + (size_t)i];
    if (eof < 48 || eof > m->cap)
        return -1;
    *len = (size_t)eof;
    return 0;
}

void h5_mem_free(h5_mem_file *m)
{
    if (!m->buf)
        return;
    pthread_mutex_lock(&spare_mu);
    if (m->cap > spare_cap) {
        free(spare_buf);
        spare_buf = m->buf;
        spare_cap = m->cap;
        m->buf = NULL;
    }
    pthread_mutex_unlock(&spare_mu);
    free(m->buf);
    m->buf = NULL;
    m->cap = 0;
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

int h5_exists(hid_t loc, const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return 0;
    strcpy(buf, path);
    for (char *p = buf + (buf[0] == '/'); *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        *p = '/';
        if (e <= 0)
            return 0;
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
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

/* ---------------------------------------------------------------- string attributes */

/* The messages of h5_attr_read_strs in the caller's wording (see h5_strs_spec.object). */
static const char *of_sep(const h5_strs_spec *s) { return s->object ? " of " : ""; }
static const char *of_obj(const h5_strs_spec *s) { return s->object ? s->object : ""; }

static int strs_fail_read(const h5_strs_spec *s, const char *attr, rb_error *err)
{
    return rb_fail(err, "the file may be damaged", "%s: cannot read attribute %s%s%s", s->file,
                   attr, of_sep(s), of_obj(s));
}

static int strs_fail_oom(const h5_strs_spec *s, const char *attr, rb_error *err)
{
    if (s->object)
        return rb_fail(err, NULL, "out of memory reading %s:%s", s->file, attr);
    return rb_fail(err, NULL, "%s: out of memory", s->file);
}

/* Variable-length strings into v[0..n). */
static int strs_read_vlen(hid_t a, hid_t ft, hid_t sp, hssize_t n, const char *attr,
                          const h5_strs_spec *s, char **v, rb_error *err)
{
    hid_t mt = h5_vlen_str(s->flags & H5_STRS_FILE_CSET ? H5Tget_cset(ft) : H5T_CSET_UTF8);
    if (mt < 0) {
        if (s->object)
            return rb_fail(err, NULL, "%s: HDF5 string type setup failed", s->file);
        return strs_fail_read(s, attr, err);
    }
    int rc = -1;
    char **raw = calloc((size_t)(n ? n : 1), sizeof *raw);
    if (!raw) {
        s->object ? strs_fail_oom(s, attr, err) : strs_fail_read(s, attr, err);
        goto done;
    }
    if (H5Aread(a, mt, raw) < 0) {
        strs_fail_read(s, attr, err);
        goto done;
    }
    int oom = 0;
    for (hssize_t i = 0; i < n; i++) {
        v[i] = strdup(raw[i] ? raw[i] : "");
        oom |= !v[i];
    }
    H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
    if (oom)
        strs_fail_oom(s, attr, err);
    else
        rc = 0;
done:
    free(raw);
    H5Tclose(mt);
    return rc;
}

/* Fixed-length strings into v[0..n). */
static int strs_read_fixed(hid_t a, hid_t ft, hssize_t n, const char *attr,
                           const h5_strs_spec *s, char **v, rb_error *err)
{
    size_t sz = H5Tget_size(ft);
    if (s->max_fixed && (sz == 0 || sz > s->max_fixed))
        return rb_fail(err, NULL, "%s: attribute %s%s%s has string size %zu", s->file, attr,
                       of_sep(s), of_obj(s), sz);
    int rc = -1;
    hid_t mt = H5Tcopy(ft);
    char *fixed = malloc(sz * (size_t)(n ? n : 1));
    if (mt < 0 || !fixed) {
        s->object ? strs_fail_oom(s, attr, err) : strs_fail_read(s, attr, err);
        goto done;
    }
    if (H5Aread(a, mt, fixed) < 0) {
        strs_fail_read(s, attr, err);
        goto done;
    }
    int space_pad = (s->flags & H5_STRS_STRIP_SPACEPAD) && H5Tget_strpad(ft) == H5T_STR_SPACEPAD;
    for (hssize_t i = 0; i < n; i++) {
        const char *str = fixed + (size_t)i * sz;
        size_t len = strnlen(str, sz);
        while (space_pad && len > 0 && str[len - 1] == ' ')
            len--;
        v[i] = malloc(len + 1);
        if (!v[i]) {
            strs_fail_oom(s, attr, err);
            goto done;
        }
        memcpy(v[i], str, len);
        v[i][len] = 0;
    }
    rc = 0;
done:
    free(fixed);
    if (mt >= 0)
        H5Tclose(mt);
    return rc;
}

int h5_attr_read_strs(hid_t obj, const char *attr, const h5_strs_spec *s, char ***out,
                      int *n_out, rb_error *err)
{
    *out = NULL;
    *n_out = 0;
    htri_t ex = H5Aexists(obj, attr);
    if (ex < 0)
        return rb_fail(err, NULL, "%s: cannot check attribute %s%s%s", s->file, attr, of_sep(s),
                       of_obj(s));
    if (ex == 0)
        return 1;
    int rc = -1;
    hid_t a = H5Aopen(obj, attr, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    char **v = NULL;
    if (a < 0 || ft < 0 || sp < 0 || n < 0) {
        rb_fail(err, "the file may be damaged", "%s: cannot %s attribute %s%s%s", s->file,
                s->object ? "open" : "read", attr, of_sep(s), of_obj(s));
        goto done;
    }
    if (n > s->max_n) {
        if (s->object)
            rb_fail(err, NULL, "%s: attribute %s of %s has %lld entries, too many", s->file,
                    attr, s->object, (long long)n);
        else
            strs_fail_read(s, attr, err);
        goto done;
    }
    if (H5Tget_class(ft) != H5T_STRING) {
        if (n == 0 && (s->flags & H5_STRS_EMPTY_NUMERIC)) {
            rc = 0;
            goto done;
        }
        rb_fail(err, NULL, "%s: attribute %s%s%s is not a string%s", s->file, attr, of_sep(s),
                of_obj(s), s->object ? " list" : "");
        goto done;
    }
    v = calloc((size_t)(n ? n : 1), sizeof *v);
    if (!v) {
        strs_fail_oom(s, attr, err);
        goto done;
    }
    if (H5Tis_variable_str(ft) > 0 ? strs_read_vlen(a, ft, sp, n, attr, s, v, err) < 0
                                   : strs_read_fixed(a, ft, n, attr, s, v, err) < 0)
        goto done;
    *out = v;
    *n_out = (int)n;
    v = NULL;
    rc = 0;
done:
    h5_strings_free(v, (int)(n > 0 ? n : 0));
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    const h5_strs_spec one = {.file = "", .max_n = 1, .flags = H5_STRS_FILE_CSET};
    char **v = NULL;
    int n = 0;
    if (h5_attr_read_strs(obj, name, &one, &v, &n, NULL) != 0 || n != 1) {
        h5_strings_free(v, n);
        return -1;
    }
    snprintf(out, cap, "%s", v[0]);
    h5_strings_free(v, n);
    return 0;
}

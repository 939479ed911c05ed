/* The one HDF5 string-attribute reader (h5_attr_read_strs) with the two specs its callers
 * use: the Keras importer's (the file's character set, empty numeric lists, space padding
 * stripped, entry and size limits, messages naming the object) and the model file's (UTF-8
 * variable-length or fixed-length strings only, shorter messages). Each difference of the
 * two specs is checked on an attribute that tells them apart. The single-string reader
 * (h5_attr_read_str) is the same reader limited to one entry. */
#include "h5util.h"
#include "test_util.h"

#include <stdio.h>
#include <string.h>

static const h5_strs_spec KERAS = {
    .file = "k.h5",
    .object = "/",
    .max_n = 2,
    .max_fixed = 8,
    .flags = H5_STRS_FILE_CSET | H5_STRS_EMPTY_NUMERIC | H5_STRS_STRIP_SPACEPAD,
};
static const h5_strs_spec MODEL = {.file = "m.h5", .max_n = 2};

static void write_vlen(hid_t f, const char *name, H5T_cset_t cset, const char **v, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t t = h5_vlen_str(cset);
    hid_t s = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    CHECK(h5_attr_write(f, name, t, s, v) == 0, "write %s", name);
    H5Sclose(s);
    H5Tclose(t);
}

static void write_fixed(hid_t f, const char *name, size_t size, H5T_str_t pad, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    H5Tset_strpad(t, pad);
    hid_t s = H5Screate(H5S_SCALAR);
    CHECK(h5_attr_write(f, name, t, s, v) == 0, "write %s", name);
    H5Sclose(s);
    H5Tclose(t);
}

/* Read attr with spec; rc expected; on success the strings joined by '|' in got. */
static int read_joined(hid_t f, const char *attr, const h5_strs_spec *spec, char *got,
                       size_t cap, rb_error *err)
{
    char **v;
    int n;
    memset(err, 0, sizeof *err);
    got[0] = 0;
    int rc = h5_attr_read_strs(f, attr, spec, &v, &n, err);
    if (rc != 0)
        return rc;
    size_t o = 0;
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(got + o, cap - o, "%s%s", i ? "|" : "", v[i]);
    h5_strings_free(v, n);
    return 0;
}

static void expect_ok(hid_t f, const char *attr, const h5_strs_spec *spec, const char *want)
{
    char got[256];
    rb_error err;
    int rc = read_joined(f, attr, spec, got, sizeof got, &err);
    CHECK(rc == 0 && strcmp(got, want) == 0, "%s (%s): rc %d, '%s', want '%s' (%s)", attr,
          spec->file, rc, got, want, err.msg);
}

static void expect_fail(hid_t f, const char *attr, const h5_strs_spec *spec, const char *msg)
{
    char got[256];
    rb_error err;
    int rc = read_joined(f, attr, spec, got, sizeof got, &err);
    CHECK(rc == -1 && strcmp(err.msg, msg) == 0, "%s (%s): rc %d, message '%s', want '%s'",
          attr, spec->file, rc, err.msg, msg);
}

int main(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/attrs.h5", test_tmpdir("h5util"));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0, "create %s", path);
    if (f < 0)
        return TEST_DONE();

    const char *one[] = {"conv1"}, *two[] = {"a", "bb"}, *three[] = {"a", "b", "c"};
    write_vlen(f, "utf8", H5T_CSET_UTF8, two, 2);
    write_vlen(f, "ascii", H5T_CSET_ASCII, one, 1);
    write_vlen(f, "three", H5T_CSET_UTF8, three, 3);
    write_fixed(f, "spaced", 8, H5T_STR_SPACEPAD, "ab      ");
    write_fixed(f, "long", 16, H5T_STR_NULLPAD, "0123456789abcdef");
    hsize_t zero = 0;
    hid_t s0 = H5Screate_simple(1, &zero, NULL);
    double nothing = 0;
    CHECK(h5_attr_write(f, "empty", H5T_IEEE_F64LE, s0, &nothing) == 0, "write empty");
    H5Sclose(s0);
    int seven = 7;
    CHECK(h5_attr_write_scalar(f, "number", H5T_STD_I32LE, H5T_NATIVE_INT, &seven) == 0,
          "write number");

    h5_quiet q;
    h5_quiet_begin(&q);
    /* both read UTF-8 lists; an absent attribute is 1, not an error */
    expect_ok(f, "utf8", &KERAS, "a|bb");
    expect_ok(f, "utf8", &MODEL, "a|bb");
    char **v = NULL;
    int n = -1;
    rb_error err = {0};
    CHECK(h5_attr_read_strs(f, "absent", &MODEL, &v, &n, &err) == 1 && !v && n == 0,
          "absent attribute");
    /* ASCII variable-length strings: read in the file's character set (Keras) or as UTF-8
     * (model file); the HDF5 we build with converts either way */
    expect_ok(f, "ascii", &KERAS, "conv1");
    expect_ok(f, "ascii", &MODEL, "conv1");
    /* space padding: stripped for Keras, kept for the model file */
    expect_ok(f, "spaced", &KERAS, "ab");
    expect_ok(f, "spaced", &MODEL, "ab      ");
    /* Keras' empty list (float64, shape (0,)) */
    expect_ok(f, "empty", &KERAS, "");
    expect_fail(f, "empty", &MODEL, "m.h5: attribute empty is not a string");
    expect_fail(f, "number", &KERAS, "k.h5: attribute number of / is not a string list");
    /* limits */
    expect_fail(f, "three", &KERAS, "k.h5: attribute three of / has 3 entries, too many");
    expect_fail(f, "three", &MODEL, "m.h5: cannot read attribute three");
    expect_fail(f, "long", &KERAS, "k.h5: attribute long of / has string size 16");
    expect_ok(f, "long", &MODEL, "0123456789abcdef");

    /* the single-string reader is the same reader with at most one entry: out is cut to
     * cap, and left as it was for an absent, non-string, empty or longer attribute */
    char one_str[8];
    CHECK(h5_attr_read_str(f, "ascii", one_str, sizeof one_str) == 0 && !strcmp(one_str, "conv1"),
          "read_str ascii '%s'", one_str);
    CHECK(h5_attr_read_str(f, "spaced", one_str, sizeof one_str) == 0 && !strcmp(one_str, "ab     "),
          "read_str spaced, cut to 7 '%s'", one_str);
    CHECK(h5_attr_read_str(f, "long", one_str, 5) == 0 && !strcmp(one_str, "0123"),
          "read_str long, cut to 4 '%s'", one_str);
    const char *bad[] = {"absent", "number", "empty", "utf8", "three"};
    for (int i = 0; i < 5; i++) {
        strcpy(one_str, "keep");
        CHECK(h5_attr_read_str(f, bad[i], one_str, sizeof one_str) == -1 && !strcmp(one_str, "keep"),
              "read_str %s: '%s'", bad[i], one_str);
    }
    h5_quiet_end(&q);

    H5Fclose(f);
    return TEST_DONE();
}

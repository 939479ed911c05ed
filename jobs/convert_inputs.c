#include "convert_inputs.h"
#include "job_run.h"
#include "csv.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int input_layout_parse(const char *s, input_layout *out)
{
    static const char *names[] = {"auto", "classes", "splits", "unlabelled", "csv"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (input_layout)i;
            return 0;
        }
    return -1;
}

static void on_walk_error(void *user, const char *path, const char *reason)
{
    input_set *in = user;
    rb_buf_put_str(&in->errors, path);
    rb_buf_put_str(&in->errors, reason);
    in->nerrors++;
}

static int push_entry(input_set *in, const char *rel, const char *abs, int label, int split)
{
    if (in->n == in->cap) {
        int64_t nc = in->cap ? in->cap * 2 : 1024;
        plan_entry *ne = realloc(in->e, (size_t)nc * sizeof *ne);
        if (!ne)
            return -1;
        in->e = ne;
        in->cap = nc;
    }
    plan_entry *x = &in->e[in->n];
    memset(x, 0, sizeof *x);
    x->rel = strdup(rel);
    x->abs = strdup(abs);
    if (!x->rel || !x->abs)
        return -1;
    x->label = label;
    x->given_split = (int8_t)split;
    in->n++;
    return 0;
}

/* The label class_index gives a class outside a fixed classes list. */
enum { LABEL_NOT_SELECTED = -2 };

static int class_index(input_set *in, const char *name, int fixed, int *idx)
{
    for (int i = 0; i < in->nclasses; i++)
        if (strcmp(in->class_names[i], name) == 0) {
            *idx = i;
            return 0;
        }
    if (fixed) {
        *idx = LABEL_NOT_SELECTED;
        return 0;
    }
    char **nn = realloc(in->class_names, (size_t)(in->nclasses + 1) * sizeof *nn);
    if (!nn)
        return -1;
    in->class_names = nn;
    in->class_names[in->nclasses] = strdup(name);
    *idx = in->nclasses++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the sub-folders of dir (hidden ones skipped); *nfiles counts regular
 * files directly inside. */
static int list_subdirs(const char *dir, char ***out, int *n, int *nfiles)
{
    *out = NULL;
    *n = 0;
    *nfiles = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    int cap = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *p = fs_join(dir, de->d_name);
        if (!p)
            break;
        if (fs_is_dir(p)) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nn = realloc(*out, (size_t)cap * sizeof *nn);
                if (!nn) {
                    free(p);
                    break;
                }
                *out = nn;
            }
            (*out)[(*n)++] = strdup(de->d_name);
        } else if (fs_is_file(p))
            (*nfiles)++;
        free(p);
    }
    closedir(d);
    if (*n > 1) /* an empty folder leaves *out NULL */
        qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return 0;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Every file under root/sub (sub may be ""), stored as prefix + path relative to root. */
static int add_tree(input_set *in, const char *root, const char *sub, const char *prefix, int label,
                    int split, rb_error *err)
{
    char *dir = sub[0] ? fs_join(root, sub) : strdup(root);
    fs_list l;
    if (!dir)
        return rb_fail(err, NULL, "out of memory");
    int rc = fs_walk(dir, &l, on_walk_error, in, err);
    for (int64_t i = 0; rc == 0 && i < l.n; i++) {
        char *abs = fs_join(dir, l.rel[i]);
        char *r1 = sub[0] ? fs_join(sub, l.rel[i]) : strdup(l.rel[i]);
        char *rel = (prefix && prefix[0] && r1) ? fs_join(prefix, r1) : (r1 ? strdup(r1) : NULL);
        if (!abs || !r1 || !rel || push_entry(in, rel, abs, label, split) < 0)
            rc = rb_fail(err, NULL, "out of memory listing %s", dir);
        free(abs);
        free(r1);
        free(rel);
    }
    fs_list_free(&l);
    free(dir);
    return rc;
}

static const char *base_name(const char *p)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", p);
    size_t l = strlen(buf);
    while (l > 1 && buf[l - 1] == '/')
        buf[--l] = 0;
    const char *b = strrchr(buf, '/');
    return b ? b + 1 : buf;
}

static int scan_csv(input_set *in, const char *csv, const char *prefix, int fixed, rb_error *err)
{
    FILE *f = fopen(csv, "r");
    if (!f)
        return rb_fail(err, "check the path of the CSV list", "%s: cannot open: %s", csv, strerror(errno));
    char *dir = strdup(csv);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        lineno++;
        char *fld[4];
        int nf = csv_split_line(line, fld, 4);
        if (nf == 0 || (nf == 1 && fld[0][0] == 0) || fld[0][0] == '#')
            continue;
        if (lineno == 1 && strcasecmp(fld[0], "path") == 0)
            continue; /* header */
        int label = -1, split = -1;
        if (nf >= 2 && fld[1][0]) {
            if (class_index(in, fld[1], fixed, &label) < 0)
                rc = rb_fail(err, NULL, "out of memory");
            if (label == LABEL_NOT_SELECTED) {
                char reason[300];
                snprintf(reason, sizeof reason, "%s:%ld: label '%s' is not in the classes list, skipped", csv,
                         lineno, fld[1]);
                on_walk_error(in, fld[0], reason);
                continue;
            }
        }
        if (nf >= 3 && fld[2][0]) {
            split = split_parse(fld[2]);
            if (split < 0) {
                rc = rb_fail(err, "the third column is train, val or test", "%s:%ld: unknown split '%s'", csv, lineno,
                             fld[2]);
                break;
            }
        }
        char *abs = fld[0][0] == '/' ? strdup(fld[0]) : fs_join(dir, fld[0]);
        char *rel = (prefix && prefix[0]) ? fs_join(prefix, fld[0]) : strdup(fld[0]);
        if (!abs || !rel || push_entry(in, rel, abs, label, split) < 0)
            rc = rb_fail(err, NULL, "out of memory");
        free(abs);
        free(rel);
    }
    free(line);
    free(dir);
    fclose(f);
    return rc;
}

/* classes = a,b,c: the labels in that order, fixed (other class folders are skipped). */
static int fixed_classes(input_set *in, const char *classes, rb_error *err)
{
    char *c = strdup(classes), *save = NULL;
    for (char *t = strtok_r(c, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        int idx;
        if (class_index(in, t, 0, &idx) < 0) {
            free(c);
            return rb_fail(err, NULL, "out of memory");
        }
    }
    free(c);
    return 0;
}

/* One class folder root/sub, labelled by its last name (skipped when not a fixed class). */
static int scan_class_folder(input_set *in, const char *root, const char *sub, const char *cls,
                             const char *prefix, int fixed, int split, rb_error *err)
{
    int label;
    if (class_index(in, cls, fixed, &label) < 0)
        return rb_fail(err, NULL, "out of memory");
    if (label == LABEL_NOT_SELECTED) {
        char *p = fs_join(root, sub);
        on_walk_error(in, p, "class folder not in the classes list; skipped");
        free(p);
        return 0;
    }
    return add_tree(in, root, sub, prefix, label, split, err);
}

/* LAYOUT_SPLITS: root/<split>/<class>/... */
static int scan_split_folder(input_set *in, const char *root, const char *split_dir, const char *prefix, int fixed,
                             rb_error *err)
{
    int sp = split_parse(split_dir);
    char *sdir = fs_join(root, split_dir);
    if (sp < 0 || sp == SPLIT_ALL) {
        on_walk_error(in, sdir, "not a split folder (train, val or test); skipped");
        free(sdir);
        return 0;
    }
    char **cls;
    int ncls, nf2, rc = 0;
    list_subdirs(sdir, &cls, &ncls, &nf2);
    if (nf2)
        on_walk_error(in, sdir, "files directly in a split folder are outside any class folder; skipped");
    for (int k = 0; rc == 0 && k < ncls; k++) {
        char *sub = fs_join(split_dir, cls[k]);
        rc = scan_class_folder(in, root, sub, cls[k], prefix, fixed, sp, err);
        free(sub);
    }
    free_names(cls, ncls);
    free(sdir);
    return rc;
}

/* One input folder, in the given layout (auto: splits, class folders, or unlabelled). */
static int scan_folder(input_set *in, const char *root, const char *prefix, input_layout lay, int fixed,
                       rb_error *err)
{
    if (!fs_is_dir(root))
        return rb_fail(err, "check the input path", "%s: %s", root,
                       fs_is_file(root) ? "not a folder (a CSV list must end in .csv)" : "no such folder");
    char **subs;
    int nsubs, nfiles;
    if (list_subdirs(root, &subs, &nsubs, &nfiles) < 0)
        return rb_fail(err, NULL, "%s: cannot list: %s", root, strerror(errno));
    if (lay == LAYOUT_AUTO) {
        int splits = 0;
        for (int i = 0; i < nsubs; i++)
            splits += split_parse(subs[i]) >= 0 && split_parse(subs[i]) != SPLIT_ALL;
        lay = splits ? LAYOUT_SPLITS : (nsubs ? LAYOUT_CLASSES : LAYOUT_UNLABELLED);
    }
    int rc = 0;
    if (lay == LAYOUT_UNLABELLED) {
        rc = add_tree(in, root, "", prefix, -1, -1, err);
    } else {
        if (nfiles)
            on_walk_error(in, root, "files directly in the input root are outside any class folder; skipped");
        for (int i = 0; rc == 0 && i < nsubs; i++)
            rc = lay == LAYOUT_CLASSES ? scan_class_folder(in, root, subs[i], subs[i], prefix, fixed, -1, err)
                                       : scan_split_folder(in, root, subs[i], prefix, fixed, err);
    }
    free_names(subs, nsubs);
    return rc < 0 ? -1 : 0;
}

/* Without a fixed list, classes are the sorted folder names (as Keras does): remap. */
static int sort_classes(input_set *in, rb_error *err)
{
    int *map = malloc((size_t)in->nclasses * sizeof *map);
    char **sorted = malloc((size_t)in->nclasses * sizeof *sorted);
    if (!map || !sorted) {
        free(map);
        free(sorted);
        return rb_fail(err, NULL, "out of memory");
    }
    memcpy(sorted, in->class_names, (size_t)in->nclasses * sizeof *sorted);
    qsort(sorted, (size_t)in->nclasses, sizeof *sorted, cmp_str);
    for (int i = 0; i < in->nclasses; i++)
        for (int j = 0; j < in->nclasses; j++)
            if (in->class_names[i] == sorted[j])
                map[i] = j;
    for (int64_t i = 0; i < in->n; i++)
        if (in->e[i].label >= 0)
            in->e[i].label = map[in->e[i].label];
    free(in->class_names);
    in->class_names = sorted;
    free(map);
    return 0;
}

int inputs_scan(input_set *in, char *const *roots, int nroots, input_layout layout,
                const char *classes, rb_error *err)
{
    memset(in, 0, sizeof *in);
    int fixed = classes && *classes;
    if (fixed && fixed_classes(in, classes, err) < 0)
        return -1;
    if (nroots == 0)
        return rb_fail(err, "give input folders as arguments or with inputs = a,b", "convert: no inputs given");
    in->roots = calloc((size_t)nroots, sizeof *in->roots);
    in->nroots = nroots;
    for (int r = 0; r < nroots; r++) {
        const char *root = roots[r];
        in->roots[r] = strdup(root);
        const char *prefix = nroots > 1 ? base_name(root) : "";
        char prefix_copy[4096];
        snprintf(prefix_copy, sizeof prefix_copy, "%s", prefix);
        input_layout lay = layout;
        size_t rl = strlen(root);
        if (lay == LAYOUT_AUTO && rl > 4 && strcasecmp(root + rl - 4, ".csv") == 0)
            lay = LAYOUT_CSV;
        int rc = lay == LAYOUT_CSV ? scan_csv(in, root, prefix_copy, fixed, err)
                                   : scan_folder(in, root, prefix_copy, lay, fixed, err);
        if (rc < 0)
            return -1;
    }
    if (!fixed && in->nclasses > 1)
        return sort_classes(in, err);
    return 0;
}

void inputs_free(input_set *in)
{
    for (int64_t i = 0; i < in->n; i++) {
        free(in->e[i].rel);
        free(in->e[i].abs);
    }
    free(in->e);
    free_names(in->class_names, in->nclasses);
    free_names(in->roots, in->nroots);
    rb_buf_free(&in->errors);
    memset(in, 0, sizeof *in);
}

int inputs_pack(const input_set *in, rb_buf *b)
{
    int32_t nc = in->nclasses, nr = in->nroots;
    int64_t n = in->n;
    rb_buf_put(b, &nc, sizeof nc);
    for (int i = 0; i < nc; i++)
        rb_buf_put_str(b, in->class_names[i]);
    rb_buf_put(b, &nr, sizeof nr);
    for (int i = 0; i < nr; i++)
        rb_buf_put_str(b, in->roots[i]);
    rb_buf_put(b, &n, sizeof n);
    for (int64_t i = 0; i < n; i++) {
        rb_buf_put_str(b, in->e[i].rel);
        rb_buf_put_str(b, in->e[i].abs);
        rb_buf_put(b, &in->e[i].label, sizeof in->e[i].label);
        rb_buf_put(b, &in->e[i].given_split, 1);
    }
    return b->failed ? -1 : 0;
}

int inputs_unpack(input_set *in, const uint8_t *data, size_t len, rb_error *err)
{
    memset(in, 0, sizeof *in);
    rb_buf b = rb_buf_reader(data, len);
    int32_t nc, nr;
    int64_t n;
    if (rb_buf_get(&b, &nc, sizeof nc) < 0 || nc < 0 || nc > 1000000)
        goto bad;
    in->class_names = calloc((size_t)nc + 1, sizeof *in->class_names);
    for (int i = 0; i < nc; i++) {
        const char *s = rb_buf_get_str(&b);
        if (!s)
            goto bad;
        in->class_names[i] = strdup(s);
        in->nclasses++;
    }
    if (rb_buf_get(&b, &nr, sizeof nr) < 0 || nr < 0 || nr > 100000)
        goto bad;
    in->roots = calloc((size_t)nr + 1, sizeof *in->roots);
    for (int i = 0; i < nr; i++) {
        const char *s = rb_buf_get_str(&b);
        if (!s)
            goto bad;
        in->roots[i] = strdup(s);
        in->nroots++;
    }
    if (rb_buf_get(&b, &n, sizeof n) < 0 || n < 0)
        goto bad;
    for (int64_t i = 0; i < n; i++) {
        const char *rel = rb_buf_get_str(&b), *abs = rb_buf_get_str(&b);
        int32_t label;
        int8_t split;
        if (!rel || !abs || rb_buf_get(&b, &label, sizeof label) < 0 || rb_buf_get(&b, &split, 1) < 0)
            goto bad;
        if (push_entry(in, rel, abs, label, split) < 0)
            return rb_fail(err, NULL, "out of memory");
    }
    return 0;
bad:
    return rb_fail(err, NULL, "internal error: malformed input list from rank 0");
}

int inputs_share(input_set *in, rb_buf *packed, int rank, rb_error *err)
{
    void *data = packed->data;
    size_t len = packed->len;
    if (rb_mpi_bcast_bytes(&data, &len, err) < 0) {
        rb_buf_free(packed);
        return JOB_FAILED;
    }
    int ok = 1;
    if (rank != 0) {
        ok = inputs_unpack(in, data, len, err) == 0;
        free(data);
    }
    rb_buf_free(packed);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}

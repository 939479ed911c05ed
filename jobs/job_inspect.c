/* radbatch inspect: describe a shards folder, one shard, a radbatch model file, a Keras
 * weight file or a DICOM image (the tags the decoder uses and the decoded size). --verify recomputes every record checksum; --export_image N writes record N
 * of a shard (or of the first shard of a folder's split) as PNG. */
#include "commands.h"
#include "dicom.h"
#include "inspect_keys.h"
#include "fsutil.h"
#include "h5util.h"
#include "image.h"
#include "job_run.h"
#include "keras_import.h"
#include "model.h"
#include "model_file.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "shard.h"
#include "shard_dataset.h"
#include "shard_index.h"
#include "threshold.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INSPECT_SPEC_ROW(...) OPT_SPEC_ROW(inspect_keys, __VA_ARGS__)
static const opt_spec inspect_opts[] = {INSPECT_KEYS(INSPECT_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

static void print_shard(const shard_reader *r, const char *name)
{
    printf("  %-28s split %-5s %6lld records  %dx%dx%d\n", name, r->split, (long long)r->n, r->height, r->width,
           r->channels);
}

static int export_record(shard_reader *r, int64_t i, const char *out, rb_error *err)
{
    size_t rec = (size_t)r->height * r->width * r->channels;
    uint8_t *px = malloc(rec);
    int32_t label;
    char *path = NULL;
    if (!px)
        return rb_fail(err, NULL, "out of memory");
    int rc = shard_read(r, i, 1, px, &label, err);
    if (rc == 0)
        rc = image_write_png(out, px, r->height, r->width, r->channels, err);
    if (rc == 0 && shard_read_path(r, i, &path, err) == 0)
        printf("record %lld of %s: %s, label %d (%s) -> %s\n", (long long)i, r->path, path, label,
               label >= 0 && label < r->nclasses ? r->class_names[label] : "unlabelled", out);
    free(path);
    free(px);
    return rc;
}

/* one line per record: split shard row label path */
static int list_records(shard_reader *r, const char *name, rb_error *err)
{
    int32_t *labels = malloc((size_t)(r->n + 1) * sizeof *labels);
    if (!labels)
        return rb_fail(err, NULL, "out of memory");
    int rc = shard_read_labels(r, labels, err);
    for (int64_t i = 0; rc == 0 && i < r->n; i++) {
        char *p = NULL;
        rc = shard_read_path(r, i, &p, err);
        if (rc == 0)
            printf("record\t%s\t%s\t%lld\t%d\t%s\n", r->split, name, (long long)i, labels[i], p);
        free(p);
    }
    free(labels);
    return rc;
}

static int verify_shard(shard_reader *r, int64_t *bad_total, rb_error *err)
{
    int64_t bad = 0, which[10];
    if (shard_verify_list(r, &bad, which, 10, err) < 0)
        return -1;
    for (int64_t i = 0; i < bad && i < 10; i++)
        printf("  %s: record %lld fails its CRC-32 check\n", r->path, (long long)which[i]);
    if (bad)
        printf("  %s: %lld record(s) with a wrong checksum\n", r->path, (long long)bad);
    *bad_total += bad;
    return 0;
}

static int inspect_dir(const inspect_keys *k, const char *dir, rb_error *err)
{
    shard_index idx;
    if (shard_index_read(dir, &idx, err) < 0)
        return -1;
    printf("shards folder %s\n", dir);
    printf("  images %dx%dx%d, resize %s%s\n", idx.height, idx.width, idx.channels, idx.resize,
           idx.dct_scaling ? " (DCT scaling)" : "");
    printf("  classes:");
    for (int i = 0; i < idx.nclasses; i++)
        printf(" %d=%s", i, idx.class_names[i]);
    printf("\n  split: val_fraction %g, test_fraction %g, seed %lld\n", idx.val_fraction, idx.test_fraction,
           (long long)idx.seed);
    /* what the regex really did: a regex that matched nothing groups nothing */
    if (!idx.group_regex || !*idx.group_regex)
        printf("  groups: no group_regex, every file its own group\n");
    else if (idx.group_files < 0)
        printf("  groups: group_regex %s (files matched not recorded by this older conversion)\n", idx.group_regex);
    else
        printf("  groups: group_regex %s matched %lld of %lld files, %lld patient group(s)\n", idx.group_regex,
               (long long)idx.group_matched, (long long)idx.group_files, (long long)idx.groups);
    if (idx.group_warning)
        printf("  warning: %s\n", idx.group_warning);
    printf("  %-6s %8s", "split", "records");
    for (int i = 0; i < idx.nclasses; i++)
        printf(" %12s", idx.class_names[i]);
    printf("\n");
    for (int s = 0; s < SHARD_INDEX_SPLITS; s++) {
        if (!idx.split_records[s])
            continue;
        static const char *nm[] = {"train", "val", "test", "all"};
        printf("  %-6s %8lld", nm[s], (long long)idx.split_records[s]);
        for (int i = 0; i < idx.nclasses; i++)
            printf(" %12lld", (long long)idx.split_class[s * idx.nclasses + i]);
        printf("\n");
    }
    printf("  inputs %lld files, %lld unusable (errors.csv), %lld groups of identical files (duplicates.csv)\n",
           (long long)idx.input_files, (long long)idx.errors, (long long)idx.duplicate_groups);
    printf("  %d shards:\n", idx.nshards);
    int rc = 0;
    int64_t bad = 0, want = k->export_image;
    int export_split = shard_index_split_id(k->split);
    for (int s = 0; s < idx.nshards && rc == 0; s++) {
        char *p = fs_join(dir, idx.shards[s].file);
        shard_reader r;
        rb_error e;
        /* a shard that does not open (damaged, edited, missing) is one problem; go on with the rest */
        if (shard_open(&r, p, &e) < 0) {
            printf("  %s\n  problem: %s\n", idx.shards[s].file, e.msg);
            bad++;
        } else {
            print_shard(&r, idx.shards[s].file);
            if (shard_check_index(&r, dir, &idx, &idx.shards[s], &e) < 0) {
                printf("  problem: %s\n", e.msg);
                bad++;
            }
            if (k->list)
                rc = list_records(&r, idx.shards[s].file, err);
            if (rc == 0 && k->verify)
                rc = verify_shard(&r, &bad, err);
            if (rc == 0 && want >= 0 && idx.shards[s].split == export_split) {
                if (want < r.n) {
                    rc = export_record(&r, want, k->image_out, err);
                    want = -1;
                } else
                    want -= r.n;
            }
            shard_close(&r);
        }
        free(p);
    }
    if (rc == 0 && want >= 0 && k->export_image >= 0)
        rc = rb_fail(err, NULL, "export_image %lld: the %s split has fewer records",
                     (long long)k->export_image, k->split);
    if (rc == 0 && bad)
        rc = rb_fail(err, "rerun convert: damaged shards are rebuilt", "%s: %s found %lld problem(s) (listed above)",
                     dir, k->verify ? "verification" : "the check of the shards against index.json",
                     (long long)bad);
    else if (rc == 0 && k->verify)
        printf("verified: every record checksum matches; so do index.json's own checksum and its agreement with "
               "every shard\n");
    shard_index_free(&idx);
    return rc;
}

static int inspect_shard(const inspect_keys *k, const char *path, rb_error *err)
{
    shard_reader r;
    if (shard_open(&r, path, err) < 0)
        return -1;
    printf("shard %s\n", path);
    print_shard(&r, "");
    printf("  shard %d of %d, classes:", r.shard_index, r.shard_count);
    for (int i = 0; i < r.nclasses; i++)
        printf(" %d=%s", i, r.class_names[i]);
    printf("\n  plan hash %s, %lld images per chunk\n", r.plan_hash, (long long)r.chunk_rows);
    int rc = 0;
    int64_t bad = 0;
    if (k->list)
        rc = list_records(&r, path, err);
    if (rc == 0 && k->verify) {
        rc = verify_shard(&r, &bad, err);
        if (rc == 0 && bad)
            rc = rb_fail(err, "rerun convert: damaged shards are rebuilt", "%s: %lld record(s) with a wrong checksum",
                         path, (long long)bad);
        else if (rc == 0)
            printf("verified: every record checksum matches\n");
    }
    int64_t want = k->export_image;
    if (rc == 0 && want >= 0) {
        if (want >= r.n)
            rc = rb_fail(err, NULL, "export_image %lld: the shard has %lld records", (long long)want, (long long)r.n);
        else
            rc = export_record(&r, want, k->image_out, err);
    }
    shard_close(&r);
    return rc;
}

/* Largest differences between the tensors of two model files of the same architecture.
 * A diagnostic: tensors failing their checksum are listed and NaN and Inf values counted
 * per tensor, rather than stopping the load; either makes the diff fail after printing. */
static int diff_models(const char *a, const char *b, rb_error *err)
{
    model_file_header h;
    if (model_file_read_header(a, &h, err) < 0)
        return -1;
    rb_model *ma = NULL, *mb = NULL;
    int rc = rb_model_from_desc(&ma, h.architecture, err);
    if (rc == 0)
        rc = rb_model_from_desc(&mb, h.architecture, err);
    model_file_header_free(&h);
    int na, nb;
    const rb_param_view *va = rc == 0 ? rb_model_params(ma, &na) : NULL;
    const rb_param_view *vb = rc == 0 ? rb_model_params(mb, &nb) : NULL;
    int8_t *ok[2] = {NULL, NULL};
    if (rc == 0) {
        ok[0] = malloc((size_t)na + 1);
        ok[1] = malloc((size_t)nb + 1);
        if (!ok[0] || !ok[1])
            rc = rb_fail(err, NULL, "out of memory");
    }
    if (rc == 0)
        rc = model_file_load_weights_opt(a, va, na, MODEL_FILE_ALLOW_NONFINITE, ok[0], err);
    if (rc == 0 && (rc = model_file_load_weights_opt(b, vb, nb, MODEL_FILE_ALLOW_NONFINITE, ok[1], err)) < 0)
        rb_error_prefix(err, "diff: ");
    if (rc == 0) {
        int64_t sum_bad[2] = {0, 0};
        for (int i = 0; i < na; i++)
            for (int s = 0; s < 2; s++)
                if (!ok[s][i]) {
                    printf("checksum mismatch: %s/%s in %s\n", va[i].layer, va[i].weight, s ? b : a);
                    sum_bad[s]++;
                }

        double max_abs = 0, max_ref = 0;
        int64_t differ = 0, total = 0, bad[2] = {0, 0};
        int bad_tensors[2] = {0, 0};
        const char *worst = "";
        for (int i = 0; i < na; i++) {
            int64_t n = 1;
            for (int d = 0; d < va[i].ndim; d++)
                n *= va[i].shape[d];
            int64_t nan[2] = {0, 0}, inf[2] = {0, 0};
            for (int64_t j = 0; j < n; j++) {
                float x = va[i].data[j], y = vb[i].data[j];
                nan[0] += isnan(x) != 0;
                inf[0] += isinf(x) != 0;
                nan[1] += isnan(y) != 0;
                inf[1] += isinf(y) != 0;
                if (!isfinite(x) || !isfinite(y)) {
                    differ += !(x == y || (isnan(x) && isnan(y)));
                    continue;
                }
                double d = fabs((double)x - (double)y);
                if (fabs(x) > max_ref)
                    max_ref = fabs(x);
                differ += x != y;
                if (d > max_abs) {
                    max_abs = d;
                    worst = va[i].layer;
                }
            }
            total += n;
            if (nan[0] + inf[0] + nan[1] + inf[1])
                printf("non-finite: %s/%s: a %lld NaN %lld Inf, b %lld NaN %lld Inf (of %lld values)\n", va[i].layer,
                       va[i].weight, (long long)nan[0], (long long)inf[0], (long long)nan[1], (long long)inf[1],
                       (long long)n);
            for (int s = 0; s < 2; s++) {
                bad[s] += nan[s] + inf[s];
                bad_tensors[s] += nan[s] + inf[s] > 0;
            }
        }
        printf("diff: %lld of %lld values differ; max |a-b| %.3g (in %s); max |a| %.3g; relative %.3g%s\n",
               (long long)differ, (long long)total, max_abs, worst[0] ? worst : "-", max_ref,
               max_ref > 0 ? max_abs / max_ref : 0.0, bad[0] + bad[1] ? " (finite values only)" : "");
        char what[2][512] = {"", ""};
        if (sum_bad[0] + sum_bad[1])
            snprintf(what[0], sizeof what[0], "; tensors failing their checksum: %s %lld, %s %lld", a,
                     (long long)sum_bad[0], b, (long long)sum_bad[1]);
        if (bad[0] + bad[1])
            snprintf(what[1], sizeof what[1], "; non-finite values: %s %lld in %d tensor(s), %s %lld in %d tensor(s)", a,
                     (long long)bad[0], bad_tensors[0], b, (long long)bad[1], bad_tensors[1]);
        if (what[0][0] || what[1][0])
            rc = rb_fail(err,
                         "a tensor failing its checksum was changed after it was written (the file is damaged); "
                         "NaN or Inf weights make a model unusable: use another copy or an earlier checkpoint",
                         "diff: the models cannot be compared value for value%s%s", what[0], what[1]);
    }
    free(ok[0]);
    free(ok[1]);
    if (ma)
        rb_model_free(ma);
    if (mb)
        rb_model_free(mb);
    return rc;
}

static int inspect_model(const char *path, rb_error *err)
{
    model_file_header h;
    if (model_file_read_header(path, &h, err) < 0)
        return -1;
    printf("radbatch model %s (written by radbatch %s)\n", path, h.radbatch_version);
    printf("  classes:");
    for (int i = 0; i < h.n_classes; i++)
        printf(" %d=%s", i, h.class_names[i]);
    printf("\n");
    card_threshold op;
    card_threshold_read(&op, h.model_card);
    if (op.present) {
        char desc[1200];
        card_threshold_describe(&op, desc, sizeof desc);
        printf("  operating point: threshold %.4f on %s (%s", op.value, *op.positive_class ? op.positive_class : "?", desc);
        if (isfinite(op.sensitivity) && isfinite(op.specificity))
            printf("; sensitivity %.4f, specificity %.4f there", op.sensitivity, op.specificity);
        printf("; set by %s)\n", op.set_by);
    } else
        printf("  operating point: none stored (readers use 0.5)\n");
    if (h.has_optimizer)
        printf("  checkpoint: optimizer %s at step %lld\n", h.optimizer_kind, (long long)h.optimizer_step);
    rb_model *m = NULL;
    int rc = rb_model_from_desc(&m, h.architecture, err);
    if (rc == 0) {
        rb_model_summary(m, stdout);
        /* a full load: every checksum and every value is checked */
        int nv;
        const rb_param_view *views = rb_model_params(m, &nv);
        rc = model_file_load_weights(path, views, nv, err);
        if (rc == 0 && h.has_optimizer) {
            float *st = malloc((size_t)(h.optimizer_state_len + 1) * sizeof *st);
            rc = st ? model_file_load_optimizer(path, st, h.optimizer_state_len, err)
                    : rb_fail(err, NULL, "out of memory");
            free(st);
        }
        if (rc == 0)
            printf("  integrity: %s\n",
                   h.has_checksums ? "every checksum matches (tensors, architecture, model card, class names); "
                                     "no NaN or Inf weights"
                                   : "no checksums in this format_version 1 file; no NaN or Inf weights");
        rb_model_free(m);
    }
    if (rc == 0 && h.model_card)
        printf("model card:\n%s\n", h.model_card);
    model_file_header_free(&h);
    return rc;
}

static int inspect_keras(const char *path, rb_error *err)
{
    keras_file *kf;
    if (keras_file_open(path, &kf, err) < 0)
        return -1;
    int64_t total = 0;
    printf("Keras weights %s (%s%s%s), %d layers\n", path, keras_format_name(kf->format),
           kf->keras_version[0] ? ", Keras " : "", kf->keras_version, kf->n_layers);
    printf("  %-40s %-22s %s\n", "layer", "class", "weights");
    for (int i = 0; i < kf->n_layers; i++) {
        const keras_layer_info *l = &kf->layers[i];
        printf("  %-40s %-22s", l->name, l->klass ? l->klass : "");
        for (int k = 0; k < l->n; k++) {
            int64_t cnt = 1;
            printf(" %s[", l->t[k].name ? l->t[k].name : "?");
            for (int d = 0; d < l->t[k].ndim; d++) {
                printf("%s%lld", d ? "," : "", (long long)l->t[k].shape[d]);
                cnt *= l->t[k].shape[d];
            }
            printf("]");
            if (l->t[k].is_float)
                total += cnt;
        }
        printf("\n");
    }
    printf("total values: %lld\n", (long long)total);
    keras_file_close(kf);
    return 0;
}

/* A DICOM image: the tags the decoder reads, how it maps them to 8 bits, the decoded size. */
static int inspect_dicom(const inspect_keys *k, const char *path, const uint8_t *buf, size_t len, rb_error *err)
{
    image_limits lim;
    image_limits_default(&lim);
    dicom_header h;
    dicom_pixels px;
    if (dicom_scan(buf, len, &lim, &h, path, err) < 0 || dicom_gdcm_read(buf, len, &h, &px, path, err) < 0)
        return -1;
    image_u8 im;
    dicom_voi voi;
    double lo = 0, hi = 0;
    int rc = dicom_to_u8(&px, 0, &im, &voi, &lo, &hi, path, err);
    printf("DICOM %s\n", path);
    printf("  (0002,0010) TransferSyntaxUID          %s (%s)\n", h.transfer_syntax, dicom_ts_name(h.transfer_syntax));
    printf("  (0028,0002) SamplesPerPixel            %d\n", px.samples);
    printf("  (0028,0004) PhotometricInterpretation  %s\n", px.photometric);
    if (px.samples == 3)
        printf("  (0028,0006) PlanarConfiguration        %d\n", px.planar);
    printf("  (0028,0008) NumberOfFrames             %d%s\n", px.frames, px.frames > 1 ? " (first frame decoded)" : "");
    printf("  (0028,0010) Rows                       %d\n", px.rows);
    printf("  (0028,0011) Columns                    %d\n", px.columns);
    printf("  (0028,0100) BitsAllocated              %d\n", px.bits_allocated);
    printf("  (0028,0101) BitsStored                 %d\n", px.bits_stored);
    printf("  (0028,0102) HighBit                    %d\n", px.high_bit);
    printf("  (0028,0103) PixelRepresentation        %d (%s)\n", px.pixel_representation,
           px.pixel_representation ? "signed" : "unsigned");
    printf("  (0028,1052) RescaleIntercept           %g\n", px.intercept);
    printf("  (0028,1053) RescaleSlope               %g\n", px.slope);
    if (px.has_window)
        printf("  (0028,1050) WindowCenter               %g\n  (0028,1051) WindowWidth                %g\n"
               "  (0028,1056) VOILUTFunction             %s\n",
               px.window_center, px.window_width, px.voi_function);
    else
        printf("  (0028,1050) WindowCenter               absent\n");
    if (px.has_voi_lut)
        printf("  (0028,3010) VOILUTSequence             %d entries from %lld, %d bits\n", px.voi_lut_n,
               (long long)px.voi_lut_first, px.voi_lut_bits);
    else
        printf("  (0028,3010) VOILUTSequence             absent\n");
    if (rc == 0) {
        printf("  to 8 bits: %s", dicom_voi_name(voi));
        if (voi == DICOM_VOI_PERCENTILE || voi == DICOM_VOI_WINDOW)
            printf(" [%g, %g]", lo, hi);
        if (px.samples == 1 && strcmp(px.photometric, "MONOCHROME1") == 0)
            printf(", inverted (MONOCHROME1)");
        printf("\n  decoded: %dx%dx%d (height x width x channels), 8 bits\n", im.height, im.width, im.channels);
        int64_t n = k->export_image;
        if (n >= 0) {
            rc = image_write_png(k->image_out, im.data, im.height, im.width, im.channels, err);
            if (rc == 0)
                printf("  decoded image -> %s\n", k->image_out);
        }
        image_u8_free(&im);
    }
    dicom_pixels_free(&px);
    return rc;
}

/* What is it? A folder, a shard, a radbatch model, a Keras file or a DICOM image (by content). */
static int inspect_one(const inspect_keys *k, const char *path, rb_error *err)
{
    if (fs_is_dir(path))
        return inspect_dir(k, path, err);
    if (!fs_is_file(path))
        return rb_fail(err, NULL, "%s: no such file or folder", path);
    {
        uint8_t head[132];
        size_t got = 0;
        FILE *fp = fopen(path, "rb");
        if (fp) {
            got = fread(head, 1, sizeof head, fp);
            fclose(fp);
        }
        if (dicom_sniff(head, got)) {
            image_limits lim;
            image_limits_default(&lim);
            uint8_t *buf = NULL;
            size_t len = 0;
            if (fs_read_file(path, lim.max_file_bytes, &buf, &len, err) < 0)
                return -1;
            int rc = inspect_dicom(k, path, buf, len, err);
            free(buf);
            return rc;
        }
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    size_t l = strlen(path);
    if (l > 6 && strcmp(path + l - 6, ".keras") == 0)
        return inspect_keras(path, err);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return rb_fail(err, "inspect takes a shards folder, a shard, a model file, a Keras weight file or a DICOM file",
                       "%s: not an HDF5 file", path);
    char fmt[64] = "";
    if (H5Aexists(f, "format") > 0)
        h5_attr_read_str(f, "format", fmt, sizeof fmt);
    H5Fclose(f);
    if (strcmp(fmt, SHARD_FORMAT) == 0)
        return inspect_shard(k, path, err);
    if (strcmp(fmt, "radbatch-model") == 0)
        return *k->diff ? diff_models(path, k->diff, err) : inspect_model(path, err);
    return inspect_keras(path, err);
}

typedef struct inspect_ctx {
    rb_world w;
    job_config cfg;
    inspect_keys keys;
} inspect_ctx;

static int inspect_main(void *ctx, rb_error *err)
{
    inspect_ctx *x = ctx;
    if (x->cfg.npositional == 0) {
        /* printed as "error: <msg>" followed by the usage line */
        snprintf(err->msg, sizeof err->msg, "inspect needs a shards folder, shard, model, Keras or DICOM file\n%s",
                 command_inspect.usage);
        return JOB_BAD_CONFIG;
    }
    if (x->w.rank != 0) /* inspect is a small serial job: rank 0 does it */
        return 0;
    for (int i = 0; i < x->cfg.npositional; i++)
        if (inspect_one(&x->keys, x->cfg.positional[i], err) < 0)
            return JOB_FAILED;
    return 0;
}

static int run_inspect(int argc, char **argv)
{
    inspect_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_inspect, .ctx = &x, .cfg = &x.cfg, .keys = &x.keys, .world = &x.w,
                    .main = inspect_main};
    return job_run(&d, argc, argv);
}

const command_spec command_inspect = {
    "inspect",
    "describe a shards folder, a shard, a model file, a Keras weight file or a DICOM file; --verify checksums",
    "usage: radbatch inspect <shards folder | shard.h5 | model.h5 | keras.h5 | file.dcm> [--verify] [--export_image N]",
    inspect_opts,
    run_inspect,
};

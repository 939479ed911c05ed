/* Optimizers: hand-computed steps, a double-precision reference of Keras' formulas, the
 * golden trajectories written by tf.keras (tests/golden/optim_golden.txt), ranges, state
 * sizes, L2 regularization; initializers: Keras fans and limits, rank independence. */
#include "init.h"
#include "optim.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int close_rel(double a, double b, double rel, double floor_)
{
    double scale = fabs(b) > floor_ ? fabs(b) : floor_;
    return fabs(a - b) <= rel * scale;
}

/* ---------------------------------------------------------------- hand-computed */

static void hand_computed(void)
{
    rb_error err = {0};
    optim o;
    optim_config c;
    float p[1], g[1] = {0.5f};
    optim_range all = {0, 1};

    /* Adam, lr 0.001, p 1, g 0.5: m 0.05, v 0.00025, alpha = 0.001 sqrt(0.001) / 0.1
     * (with Keras' float32 powers), p = 1 - alpha * m / (sqrt(v) + 1e-7) */
    optim_config_default(&c, OPTIM_ADAM);
    CHECK(optim_init(&o, &c, 1, &err) == 0, "%s", err.msg);
    p[0] = 1.0f;
    optim_step(&o, p, g, &all, 1, -1.0f);
    double b2 = (double)0.999f, alpha = (double)0.001f * sqrt(1.0 - b2) / (1.0 - (double)0.9f);
    double m = 0.5 * (double)(1.0f - 0.9f), v = 0.25 * (double)(1.0f - 0.999f);
    double want = 1.0 - alpha * m / (sqrt(v) + 1e-7);
    CHECK(close_rel(p[0], want, 1e-7, 1.0), "adam step 1: %.9g vs %.9g", p[0], want);
    CHECK(fabs(p[0] - 0.999) < 2e-8 * 1e3, "adam's first step is about lr: %.9g", p[0]);
    CHECK(o.step == 1, "step counter");
    optim_free(&o);

    /* SGD momentum 0.9, lr 0.1, g 0.5 twice: m -0.05 -> p 0.95; m -0.095 -> p 0.855 */
    optim_config_default(&c, OPTIM_SGD);
    c.learning_rate = 0.1f;
    c.momentum = 0.9f;
    CHECK(optim_init(&o, &c, 1, &err) == 0, "%s", err.msg);
    p[0] = 1.0f;
    optim_step(&o, p, g, &all, 1, -1.0f);
    CHECK(close_rel(p[0], 0.95, 1e-6, 1.0), "sgd momentum step 1: %.9g", p[0]);
    optim_step(&o, p, g, &all, 1, -1.0f);
    CHECK(close_rel(p[0], 0.855, 1e-6, 1.0), "sgd momentum step 2: %.9g", p[0]);
    optim_free(&o);
    /* Nesterov: p += mu m - lr g: 1 - 0.095 = 0.905, then 0.905 - 0.1355 = 0.7695 */
    c.nesterov = 1;
    CHECK(optim_init(&o, &c, 1, &err) == 0, "%s", err.msg);
    p[0] = 1.0f;
    optim_step(&o, p, g, &all, 1, -1.0f);
    CHECK(close_rel(p[0], 0.905, 1e-6, 1.0), "nesterov step 1: %.9g", p[0]);
    optim_step(&o, p, g, &all, 1, -1.0f);
    CHECK(close_rel(p[0], 0.7695, 1e-6, 1.0), "nesterov step 2: %.9g", p[0]);
    optim_free(&o);
    /* plain SGD, lr from the call (a schedule): p -= 0.2 * 0.5 */
    optim_config_default(&c, OPTIM_SGD);
    CHECK(optim_init(&o, &c, 1, &err) == 0 && optim_state_size(&c, 1) == 0, "sgd stateless");
    p[0] = 1.0f;
    optim_step(&o, p, g, &all, 1, 0.2f);
    CHECK(close_rel(p[0], 0.9, 1e-7, 1.0), "sgd explicit lr: %.9g", p[0]);
    optim_free(&o);

    /* RMSprop defaults: v = 0.1 * 0.25; p = 1 - 0.001 * 0.5 / sqrt(0.025 + 1e-7) */
    optim_config_default(&c, OPTIM_RMSPROP);
    CHECK(optim_init(&o, &c, 1, &err) == 0, "%s", err.msg);
    p[0] = 1.0f;
    optim_step(&o, p, g, &all, 1, -1.0f);
    want = 1.0 - 0.001 * 0.5 / sqrt(0.025 + 1e-7);
    CHECK(close_rel(p[0], want, 1e-6, 1.0), "rmsprop step 1: %.9g vs %.9g (0.99683773)", p[0],
          want);
    CHECK(fabs(want - 0.99683773) < 1e-8, "hand value");
    optim_free(&o);
}

/* ---------------------------------------------------------------- double reference */

/* Keras' formulas in double, with the hyperparameters' float32 values (Keras' variables are
 * float32). */
static void ref_step(const optim_config *c, double *p, const double *g, double *s0, double *s1,
                     double *s2, int n, long t)
{
    const double lr = c->learning_rate, b1 = c->beta_1, b2 = c->beta_2, eps = c->epsilon;
    for (int i = 0; i < n; i++) {
        switch (c->kind) {
        case OPTIM_ADAM: {
            double alpha = lr * sqrt(1.0 - pow(b2, (double)t)) / (1.0 - pow(b1, (double)t));
            s0[i] += (g[i] - s0[i]) * (1.0 - b1);
            s1[i] += (g[i] * g[i] - s1[i]) * (1.0 - b2);
            p[i] -= s0[i] * alpha / (sqrt(s1[i]) + eps);
            break;
        }
        case OPTIM_SGD:
            if (c->momentum == 0.0f) {
                p[i] -= lr * g[i];
            } else {
                s0[i] = c->momentum * s0[i] - lr * g[i];
                p[i] += c->nesterov ? c->momentum * s0[i] - lr * g[i] : s0[i];
            }
            break;
        case OPTIM_RMSPROP: {
            double rho = c->rho;
            s0[i] = rho * s0[i] + (1.0 - rho) * g[i] * g[i];
            double d = s0[i] + eps;
            if (c->centered) {
                s2[i] = rho * s2[i] + (1.0 - rho) * g[i];
                d = s0[i] - s2[i] * s2[i] + eps;
            }
            double inc = lr * g[i] / sqrt(d);
            if (c->momentum > 0.0f) {
                s1[i] = c->momentum * s1[i] + inc;
                p[i] -= s1[i];
            } else {
                p[i] -= inc;
            }
            break;
        }
        }
    }
}

static void double_reference(void)
{
    enum { N = 16, STEPS = 25 };
    optim_config cases[6];
    optim_config_default(&cases[0], OPTIM_ADAM);
    optim_config_default(&cases[1], OPTIM_ADAM);
    cases[1].learning_rate = 1e-4f;
    cases[1].beta_1 = 0.8f;
    optim_config_default(&cases[2], OPTIM_SGD);
    cases[2].momentum = 0.9f;
    optim_config_default(&cases[3], OPTIM_SGD);
    cases[3].momentum = 0.5f;
    cases[3].nesterov = 1;
    optim_config_default(&cases[4], OPTIM_RMSPROP);
    optim_config_default(&cases[5], OPTIM_RMSPROP);
    cases[5].momentum = 0.3f;
    cases[5].centered = 1;
    for (int k = 0; k < 6; k++) {
        const optim_config *c = &cases[k];
        rb_error err = {0};
        optim o;
        CHECK(optim_init(&o, c, N, &err) == 0, "%s", err.msg);
        float p[N], g[N];
        double pd[N], gd[N], s0[N] = {0}, s1[N] = {0}, s2[N] = {0};
        for (int i = 0; i < N; i++)
            pd[i] = p[i] = (float)sin(1.0 + i);
        optim_range all = {0, N};
        double worst = 0.0;
        for (int t = 1; t <= STEPS; t++) {
            for (int i = 0; i < N; i++)
                gd[i] = g[i] = (float)(cos(0.7 * i * t) * (i % 3 ? 1.0 : 0.01));
            optim_step(&o, p, g, &all, 1, -1.0f);
            ref_step(c, pd, gd, s0, s1, s2, N, t);
            for (int i = 0; i < N; i++) {
                double d = fabs(p[i] - pd[i]) / (fabs(pd[i]) > 0.1 ? fabs(pd[i]) : 0.1);
                worst = d > worst ? d : worst;
            }
        }
        CHECK(worst < 1e-6, "%s case %d: float vs double reference %.3g", optim_kind_name(c->kind),
              k, worst);
        optim_free(&o);
    }
}

/* ---------------------------------------------------------------- the Keras golden file */

static int read_floats(char *s, float *v, int cap)
{
    int n = 0;
    for (char *tok = strtok(s, " \n"); tok && n < cap; tok = strtok(NULL, " \n"))
        v[n++] = strtof(tok, NULL);
    return n;
}

static void golden(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/optim_golden.txt", test_srcdir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (set RADBATCH_SRC)", path);
    if (!f)
        return;
    enum { MAXV = 64, MAXS = 16 };
    float init[MAXV], grads[MAXS][MAXV], p[MAXV];
    int nv = 0, ns = 0, cases = 0, compared = 0;
    optim o = {0};
    int active = 0;
    char line[8192], name[64] = "";
    double worst_all = 0.0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "init ", 5)) {
            nv = read_floats(line + 5, init, MAXV);
        } else if (!strncmp(line, "grad ", 5)) {
            char *rest;
            long s = strtol(line + 5, &rest, 10);
            if (s >= 1 && s <= MAXS) {
                read_floats(rest, grads[s - 1], MAXV);
                ns = s > ns ? (int)s : ns;
            }
        } else if (!strncmp(line, "opt ", 4)) {
            if (active)
                optim_free(&o);
            active = 0;
            char *tok = strtok(line + 4, " \n");
            snprintf(name, sizeof name, "%s", tok ? tok : "?");
            optim_config c;
            optim_kind kind = !strncmp(name, "adam", 4) ? OPTIM_ADAM
                              : !strncmp(name, "sgd", 3) ? OPTIM_SGD
                                                         : OPTIM_RMSPROP;
            optim_config_default(&c, kind);
            while ((tok = strtok(NULL, " \n"))) {
                char *eq = strchr(tok, '=');
                if (!eq)
                    continue;
                *eq = 0;
                float v = strtof(eq + 1, NULL);
                if (!strcmp(tok, "learning_rate")) c.learning_rate = v;
                else if (!strcmp(tok, "beta_1")) c.beta_1 = v;
                else if (!strcmp(tok, "beta_2")) c.beta_2 = v;
                else if (!strcmp(tok, "epsilon")) c.epsilon = v;
                else if (!strcmp(tok, "momentum")) c.momentum = v;
                else if (!strcmp(tok, "nesterov")) c.nesterov = v != 0.0f;
                else if (!strcmp(tok, "rho")) c.rho = v;
                else if (!strcmp(tok, "centered")) c.centered = v != 0.0f;
            }
            rb_error err = {0};
            CHECK(optim_init(&o, &c, nv, &err) == 0, "%s: %s", name, err.msg);
            memcpy(p, init, sizeof init);
            active = 1;
            cases++;
        } else if (!strncmp(line, "after ", 6) && active) {
            char *rest;
            long s = strtol(line + 6, &rest, 10);
            float want[MAXV];
            int n = read_floats(rest, want, MAXV);
            CHECK(n == nv && s == o.step + 1 && s <= ns, "%s: golden step %ld", name, s);
            optim_range all = {0, nv};
            optim_step(&o, p, grads[s - 1], &all, 1, -1.0f);
            double worst = 0.0;
            for (int i = 0; i < nv; i++) {
                double d = fabs((double)p[i] - want[i]) / (fabs(want[i]) > 0.1 ? fabs(want[i]) : 0.1);
                worst = d > worst ? d : worst;
            }
            CHECK(worst <= 1e-6, "%s step %ld: relative difference to tf.keras %.3g", name, s,
                  worst);
            worst_all = worst > worst_all ? worst : worst_all;
            compared++;
        }
    }
    if (active)
        optim_free(&o);
    fclose(f);
    CHECK(cases == 7 && compared == 7 * 6, "golden cases %d, steps %d", cases, compared);
    printf("ok %d optimizer cases vs tf.keras, %d steps, worst relative difference %.3g\n", cases,
           compared, worst_all);
}

/* ---------------------------------------------------------------- ranges, L2, sizes */

static void ranges_and_l2(void)
{
    rb_error err = {0};
    optim_config c;
    optim_config_default(&c, OPTIM_ADAM);
    CHECK(optim_state_size(&c, 10) == 20, "adam state 2n");
    optim_config_default(&c, OPTIM_RMSPROP);
    CHECK(optim_state_size(&c, 10) == 10, "rmsprop state n");
    c.momentum = 0.5f;
    c.centered = 1;
    CHECK(optim_state_size(&c, 10) == 30, "rmsprop momentum+centered 3n");
    optim_config_default(&c, OPTIM_SGD);
    c.momentum = 0.9f;
    CHECK(optim_state_size(&c, 10) == 10, "sgd momentum n");

    optim o;
    optim_config_default(&c, OPTIM_ADAM);
    CHECK(optim_init(&o, &c, 10, &err) == 0, "%s", err.msg);
    float p[10], g[10];
    for (int i = 0; i < 10; i++) {
        p[i] = (float)i;
        g[i] = 1.0f;
    }
    optim_range r[2] = {{1, 2}, {6, 3}}; /* 1,2 and 6,7,8 trainable */
    optim_step(&o, p, g, r, 2, -1.0f);
    for (int i = 0; i < 10; i++) {
        int trained = (i >= 1 && i <= 2) || (i >= 6 && i <= 8);
        CHECK(trained ? p[i] < (float)i : p[i] == (float)i, "param %d %s", i,
              trained ? "moved" : "frozen");
        CHECK(trained ? o.state[i] != 0.0f : o.state[i] == 0.0f, "state %d", i);
    }
    optim_free(&o);

    /* L2: the penalty l2 * sum(w^2) over the regularized ranges, its gradient 2 l2 w */
    float w[6] = {0.5f, -1.0f, 2.0f, 3.0f, -0.25f, 4.0f}, gr[6] = {0};
    optim_range k[2] = {{0, 2}, {4, 1}};
    double pen = optim_l2_penalty(w, k, 2, 0.01f);
    CHECK(close_rel(pen, (double)0.01f * (0.25 + 1.0 + 0.0625), 1e-12, 1e-3), "l2 penalty %.9g",
          pen);
    optim_l2_grad(gr, w, k, 2, 0.01f);
    for (int i = 0; i < 6; i++) {
        int in = i < 2 || i == 4;
        /* finite difference of the penalty */
        float wp[6], wm[6];
        memcpy(wp, w, sizeof w);
        memcpy(wm, w, sizeof w);
        wp[i] += 1e-2f;
        wm[i] -= 1e-2f;
        double fd = (optim_l2_penalty(wp, k, 2, 0.01f) - optim_l2_penalty(wm, k, 2, 0.01f)) /
                    ((double)wp[i] - (double)wm[i]);
        CHECK(fabs(gr[i] - fd) < 1e-6, "l2 grad %d: %g vs fd %g", i, gr[i], fd);
        CHECK(in ? gr[i] != 0.0f : gr[i] == 0.0f, "l2 only on kernels %d", i);
    }

    c.learning_rate = -1.0f;
    CHECK(optim_init(&o, &c, 4, &err) < 0 && strstr(err.msg, "learning rate"),
          "bad learning rate refused");
    optim_kind kk;
    CHECK(optim_kind_parse("rmsprop", &kk) == 0 && kk == OPTIM_RMSPROP &&
              optim_kind_parse("adagrad", &kk) < 0,
          "kind names");
}

/* ---------------------------------------------------------------- initializers */

static void initializers(void)
{
    double fi, fo;
    int64_t conv[4] = {3, 3, 32, 64}, dw[4] = {3, 3, 96, 1}, dense[2] = {1280, 128}, b[1] = {7};
    init_fans(4, conv, &fi, &fo);
    CHECK(fi == 288 && fo == 576, "conv fans %g %g", fi, fo);
    init_fans(4, dw, &fi, &fo);
    CHECK(fi == 864 && fo == 9, "depthwise fans %g %g", fi, fo);
    init_fans(2, dense, &fi, &fo);
    CHECK(fi == 1280 && fo == 128, "dense fans");
    init_fans(1, b, &fi, &fo);
    CHECK(fi == 7 && fo == 7, "1-D fans");

    enum { N = 3 * 3 * 32 * 64 };
    float *a = malloc(N * sizeof(float)), *a2 = malloc(N * sizeof(float));
    uint64_t id = init_tensor_id("Conv1", "kernel");
    init_fill(a, 4, conv, INIT_GLOROT_UNIFORM, 1234, id);
    double limit = sqrt(6.0 / (288 + 576)), mean = 0, var = 0, mx = 0;
    for (int i = 0; i < N; i++) {
        mean += a[i];
        var += (double)a[i] * a[i];
        mx = fabs(a[i]) > mx ? fabs(a[i]) : mx;
    }
    mean /= N;
    var = var / N - mean * mean;
    CHECK(mx <= limit && mx > 0.99 * limit, "glorot within limit %g (max %g)", limit, mx);
    CHECK(fabs(mean) < 0.01 * limit && fabs(var - limit * limit / 3) < 0.03 * limit * limit / 3,
          "glorot moments mean %g var %g (want %g)", mean, var, limit * limit / 3);
    /* the same value for an element whatever else is initialized, and per-tensor streams */
    init_fill(a2, 4, conv, INIT_GLOROT_UNIFORM, 1234, id);
    CHECK(memcmp(a, a2, N * sizeof(float)) == 0, "deterministic");
    init_fill(a2, 4, conv, INIT_GLOROT_UNIFORM, 1234, init_tensor_id("Conv1", "bias"));
    CHECK(memcmp(a, a2, N * sizeof(float)) != 0, "another tensor id, other values");
    init_fill(a2, 4, conv, INIT_GLOROT_UNIFORM, 1235, id);
    CHECK(memcmp(a, a2, N * sizeof(float)) != 0, "another seed, other values");

    init_fill(a, 4, conv, INIT_HE_NORMAL, 9, id);
    double sd = sqrt(2.0 / 288) / 0.87962566103423978;
    mean = var = mx = 0;
    for (int i = 0; i < N; i++) {
        mean += a[i];
        var += (double)a[i] * a[i];
        mx = fabs(a[i]) > mx ? fabs(a[i]) : mx;
    }
    mean /= N;
    var = var / N - mean * mean;
    CHECK(mx <= 2 * sd * 1.000001, "he_normal truncated at 2 sd");
    CHECK(fabs(var - 2.0 / 288) < 0.04 * 2.0 / 288, "he_normal variance %g, want %g", var,
          2.0 / 288);

    float ones[7];
    init_fill(ones, 1, b, init_default_for("moving_variance"), 1, 2);
    CHECK(ones[0] == 1.0f && ones[6] == 1.0f, "moving_variance ones");
    CHECK(init_default_for("depthwise_kernel") == INIT_GLOROT_UNIFORM &&
              init_default_for("beta") == INIT_ZEROS && init_default_for("gamma") == INIT_ONES,
          "Keras defaults by weight name");
    init_kind k;
    CHECK(init_kind_parse("he_normal", &k) == 0 && k == INIT_HE_NORMAL, "init names");
    free(a);
    free(a2);
}

int main(void)
{
    hand_computed();
    double_reference();
    golden();
    ranges_and_l2();
    initializers();
    return TEST_DONE();
}

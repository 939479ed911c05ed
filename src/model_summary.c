/* rb_model_summary: a table like Keras model.summary(). */
#include <string.h>

#include "model.h"

/* 1234567 -> "1,234,567" */
static void commas(char *out, size_t n, int64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(tmp), k = 0;
    if (v < 0 && k + 1 < n)
        out[k++] = '-';
    for (size_t i = 0; i < len && k + 2 < n; i++) {
        out[k++] = tmp[i];
        size_t rest = len - i - 1;
        if (rest && rest % 3 == 0)
            out[k++] = ',';
    }
    out[k] = 0;
}

static void rule(FILE *f, char ch, int n)
{
    for (int i = 0; i < n; i++)
        fputc(ch, f);
    fputc('\n', f);
}

void rb_model_summary(const rb_model *m, FILE *f)
{
    const int W = 118;
    fprintf(f, "Model: \"%s\"\n", m->name);
    rule(f, '_', W);
    fprintf(f, " %-50s %-22s %12s  %-9s  %s\n", "Layer (type)", "Output Shape", "Param #",
            "Trainable", "Connected to");
    rule(f, '=', W);
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        char lt[RB_NAME_MAX + 40], shape[48], params[32], conn[RB_NAME_MAX * 2 + 8];
        snprintf(lt, sizeof lt, "%s (%s)", n->name, rb_op_class(n->op));
        if (n->rank == 3)
            snprintf(shape, sizeof shape, "(None, %d, %d, %d)", n->h, n->w, n->c);
        else
            snprintf(shape, sizeof shape, "(None, %d)", n->c);
        commas(params, sizeof params, n->nparams);
        conn[0] = 0;
        for (int k = 0; k < n->ninputs; k++) {
            size_t l = strlen(conn);
            if (k == 2) {
                snprintf(conn + l, sizeof conn - l, ", +%d", n->ninputs - 2);
                break;
            }
            snprintf(conn + l, sizeof conn - l, "%s%s", k ? ", " : "", m->nodes[n->inputs[k]].name);
        }
        const char *tr = n->nweights == 0 ? "" : (n->trainable ? "yes" : "no");
        fprintf(f, " %-50s %-22s %12s  %-9s  %s\n", lt, shape, params, tr, conn);
    }
    rule(f, '=', W);
    int64_t total, trainable, frozen;
    rb_model_count(m, &total, &trainable, &frozen);
    char a[32], b[32], c[32];
    commas(a, sizeof a, total);
    commas(b, sizeof b, trainable);
    commas(c, sizeof c, frozen);
    fprintf(f, "Total params: %s (%.2f MB)\n", a, (double)total * 4.0 / (1024.0 * 1024.0));
    fprintf(f, "Trainable params: %s\n", b);
    fprintf(f, "Non-trainable params: %s\n", c);
    rule(f, '_', W);
}

void rb_model_summary_short(const rb_model *m, FILE *f)
{
    int64_t total, trainable, frozen;
    rb_model_count(m, &total, &trainable, &frozen);
    int with_weights = 0, trainable_layers = 0;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].nweights) {
            with_weights++;
            trainable_layers += m->nodes[i].trainable != 0;
        }
    char a[32], b[32], c[32];
    commas(a, sizeof a, total);
    commas(b, sizeof b, trainable);
    commas(c, sizeof c, frozen);
    fprintf(f, "Model \"%s\": %d layers (%d with weights, %d of them trainable); params %s (%.2f MB), trainable %s, "
               "non-trainable %s\n",
            m->name, m->nnodes, with_weights, trainable_layers, a, (double)total * 4.0 / (1024.0 * 1024.0), b, c);
}

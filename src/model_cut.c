/* Parts of a model: the head a frozen base feeds through one tensor, a model cut out of
 * another by node range, and moving weights and optimizer state between them by name. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rb_buf.h"

int rb_model_head_start(const rb_model *m)
{
    int f = -1;
    for (int i = 1; i < m->nnodes && f < 0; i++) {
        const rb_node *nd = &m->nodes[i];
        if ((nd->nweights > 0 && nd->trainable) || nd->op == RB_OP_DROPOUT)
            f = i;
    }
    if (f < 2)
        return -1;
    for (int j = f; j < m->nnodes; j++)
        for (int q = 0; q < m->nodes[j].ninputs; q++)
            if (m->nodes[j].inputs[q] < f - 1)
                return -1; /* the head reads more than one base tensor */
    return f;
}

int rb_model_cut(rb_model **out, const rb_model *m, int lo, int hi, rb_error *err)
{
    *out = NULL;
    if (lo < 0 || hi > m->nnodes || lo >= hi || (lo == 0 && hi < 1))
        return rb_fail(err, NULL, "model %s: no nodes [%d, %d) to cut out", m->name, lo, hi);
    char *full = rb_model_desc(m);
    if (!full)
        return rb_fail(err, NULL, "out of memory describing model %s", m->name);
    rb_buf b = {0};
    const rb_node *cut = lo > 0 ? &m->nodes[lo - 1] : NULL;
    /* base membership decides BatchNorm's mode (base_training): keep it for every node */
    int base_layers = lo ? m->base_layers - lo + 1 : (hi < m->base_layers ? hi : m->base_layers);
    if (base_layers < 1)
        base_layers = 1;
    rb_buf_printf(&b, "[model] name=%s_%s backbone=custom base_layers=%d base_training=%s\n",
                  m->name, lo ? "head" : "base", base_layers, m->base_training ? "true" : "false");
    if (cut && cut->rank == 3)
        rb_buf_printf(&b, "[InputLayer] name=%s shape=%d,%d,%d preprocess=none\n", cut->name,
                      cut->h, cut->w, cut->c);
    else if (cut)
        rb_buf_printf(&b, "[InputLayer] name=%s shape=%d preprocess=none\n", cut->name, cut->c);
    /* the description has one "[Class] ..." line per node, in node order */
    int node = -1;
    char *save = NULL;
    for (char *line = strtok_r(full, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '[' || strncmp(line, "[model]", 7) == 0)
            continue;
        node++;
        if (node >= lo && node < hi)
            rb_buf_printf(&b, "%s\n", line);
    }
    free(full);
    rb_buf_put(&b, "", 1);
    if (b.failed) {
        rb_buf_free(&b);
        return rb_fail(err, NULL, "out of memory cutting model %s", m->name);
    }
    int rc = rb_model_from_desc(out, (const char *)b.data, err);
    rb_buf_free(&b);
    return rc;
}

/* the view of src with the same layer and weight name as v, or NULL */
static const rb_param_view *namesake(const rb_param_view *v, const rb_param_view *vs, int ns)
{
    for (int j = 0; j < ns; j++)
        if (!strcmp(v->layer, vs[j].layer) && !strcmp(v->weight, vs[j].weight))
            return &vs[j];
    return NULL;
}

static int64_t view_count(const rb_param_view *v)
{
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++)
        n *= v->shape[d];
    return n;
}

int rb_model_copy_weights(rb_model *dst, const rb_model *src)
{
    int nd, ns, copied = 0;
    const rb_param_view *vd = rb_model_params(dst, &nd), *vs = rb_model_params(src, &ns);
    for (int i = 0; i < nd; i++) {
        const rb_param_view *s = namesake(&vd[i], vs, ns);
        if (s && view_count(s) == view_count(&vd[i])) {
            memcpy(vd[i].data, s->data, (size_t)view_count(s) * sizeof(float));
            copied++;
        }
    }
    return copied;
}

void rb_model_copy_optim(optim *dst, const rb_model *dm, const optim *src, const rb_model *sm)
{
    int nd, ns;
    const rb_param_view *vd = rb_model_params(dm, &nd), *vs = rb_model_params(sm, &ns);
    for (int i = 0; i < nd; i++) {
        if (vd[i].is_state)
            continue;
        const rb_param_view *s = namesake(&vd[i], vs, ns);
        if (s && view_count(s) == view_count(&vd[i]))
            optim_state_copy_range(dst, vd[i].offset, src, s->offset, view_count(s));
    }
    dst->step = src->step;
}

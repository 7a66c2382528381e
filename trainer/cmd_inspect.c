/* trainer/cmd_inspect.c: `rft inspect FILE`: what a model file holds. Detects
 * the file type and hands it to that type's inspector (today: rft HDF5
 * checkpoints; GGUF and Hugging Face directories plug into the same table).
 * For a checkpoint: config, parameter count, tensor table (name, shape, dtype,
 * numel, RMS), optimizer / trainer / tokenizer groups. The whole model is
 * loaded and checked (shapes, dtypes, finiteness) on the way: a bad file
 * exits 2 with one line on stderr. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "cli.h"
#include "convert.h"
#include "model.h"
#include "util.h"

/* 134515008 -> "134,515,008" */
static const char *grouped(uint64_t v, char *buf, size_t cap) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

static void print_config(const model_config *c) {
    printf("config:\n");
    printf("  vocab %d  d_model %d  n_layer %d  n_head %d  n_kv_head %d  head_dim %d  d_ff %d\n", c->vocab, c->d_model,
           c->n_layer, c->n_head, c->n_kv_head, c->head_dim, c->d_ff);
    printf("  rope_theta %g  rms_eps %g  tie_embeddings %d  qkv_bias %d  max_seq %d\n", c->rope_theta, c->rms_eps,
           c->tie_embeddings, c->qkv_bias, c->max_seq);
}

static void print_tensors(const model *m) {
    size_t mx = 1;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > mx) mx = m->tensors[i].numel;
    float *host = malloc(mx * sizeof(float));
    printf("tensors (%d):\n", m->n_tensors);
    printf("  %-48s %-14s %-8s %12s %12s\n", "name", "shape", "dtype", "numel", "rms");
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        char shape[48], num[32];
        if (t->ndim == 2) snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
        else snprintf(shape, sizeof shape, "[%lld]", (long long)t->shape[0]);
        double ss = 0;
        if (host) {
            m->be->copy_d2h(m->be, host, m->params + t->offset, t->numel * sizeof(float));
            for (size_t j = 0; j < t->numel; j++) ss += (double)host[j] * host[j];
        }
        printf("  %-48s %-14s %-8s %12s %12.6g\n", t->name, shape, "float32", grouped(t->numel, num, sizeof num),
               host ? sqrt(ss / (double)t->numel) : NAN);
    }
    if (m->cfg.tie_embeddings) printf("  %-48s (tied to model.embed_tokens.weight, not stored)\n", "lm_head.weight");
    free(host);
}

static const char *sched_str(lr_schedule s) {
    return s == LR_CONSTANT ? "constant" : s == LR_LINEAR ? "linear" : s == LR_COSINE ? "cosine" : "?";
}

/* members of the tokenizer group, generically (its layout belongs to the tokenizer code) */
static herr_t tok_member(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    int *n = data;
    printf("%s%s", (*n)++ ? ", " : "  members: ", name);
    return 0;
}

static int inspect_h5(const char *path) {
    char err[1024];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    if (!f) {
        fprintf(stderr, "%s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    const model_config *c = ckpt_config(f);
    backend *be = backend_cpu_create(1);
    if (!be) {
        ckpt_close(f);
        fprintf(stderr, "rft inspect: cannot create the CPU backend\n");
        return RFT_EXIT_RUNTIME;
    }
    model m;
    if (model_create(&m, c, be, 1, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        ckpt_close(f);
        be->destroy(be);
        return RFT_EXIT_RUNTIME;
    }
    int rc = RFT_EXIT_BADINPUT;
    ckpt_train_state ts;
    int have_ts = 0, step = 0;
    optim_config oc;
    /* check everything before printing anything, so a bad file gives one line */
    if (ckpt_load_model(f, &m, err, sizeof err) != 0) goto fail;
    if (ckpt_has_optim(f) &&
        (ckpt_check_optim(f, &m, &step, err, sizeof err) != 0 || ckpt_read_optim_config(f, &oc, err, sizeof err) != 0))
        goto fail;
    if (ckpt_has_train_state(f)) {
        if (ckpt_load_train_state(f, &ts, err, sizeof err) != 0) goto fail;
        have_ts = 1;
    }

    struct stat st;
    char num[32];
    stat(path, &st);
    printf("file: %s (%s v%d, %s bytes)\n", path, CKPT_FORMAT_NAME, CKPT_FORMAT_VERSION,
           grouped((uint64_t)st.st_size, num, sizeof num));
    print_config(c);
    printf("parameters: %s (%.3f M)%s\n", grouped(m.n_params, num, sizeof num), m.n_params / 1e6,
           c->tie_embeddings ? ", embeddings tied" : "");
    print_tensors(&m);
    if (ckpt_has_optim(f))
        printf("optimizer: step %d, lr %g, betas (%g, %g), eps %g, weight_decay %g, grad_clip %g, schedule %s, "
               "warmup_steps %d, total_steps %d, min_lr_ratio %g (m, v: float32, all tensors)\n",
               step, oc.lr, oc.beta1, oc.beta2, oc.eps, oc.weight_decay, oc.grad_clip, sched_str(oc.schedule),
               oc.warmup_steps, oc.total_steps, oc.min_lr_ratio);
    else
        printf("optimizer: absent\n");
    if (have_ts) {
        printf("trainer: step %lld, epoch %lld, cursor %lld, seed %llu, rng_counter %llu, best_valid_reward %g "
               "(step %lld), wall_seconds %.1f\n",
               (long long)ts.step, (long long)ts.epoch, (long long)ts.cursor, (unsigned long long)ts.seed,
               (unsigned long long)ts.rng_counter, ts.best_valid_reward, (long long)ts.best_step, ts.wall_seconds);
        printf("  config_text: %s bytes, data_order: %lld entries\n",
               ts.config_text ? grouped(strlen(ts.config_text), num, sizeof num) : "absent,", (long long)ts.n_order);
        for (int i = 0; i < ts.n_scalars; i++) printf("  %s = %g\n", ts.scalars[i].name, ts.scalars[i].value);
        ckpt_train_state_free(&ts);
    } else {
        printf("trainer: absent\n");
    }
    if (ckpt_has_tokenizer(f)) {
        printf("tokenizer: present\n");
        hid_t g = H5Gopen2(ckpt_hid(f), "tokenizer", H5P_DEFAULT);
        int n = 0;
        hsize_t idx = 0;
        if (g >= 0) {
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, tok_member, &n);
            H5Gclose(g);
        }
        if (n) printf("\n");
    } else {
        printf("tokenizer: absent\n");
    }
    rc = RFT_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "%s\n", err);
done:
    model_free(&m);
    ckpt_close(f);
    be->destroy(be);
    return rc;
}

/* file types inspect understands, tried in order */
typedef struct inspector {
    const char *what;
    int (*detect)(const char *path);
    int (*run)(const char *path);
} inspector;

static const inspector inspectors[] = {
    {"rft checkpoint (HDF5)", ckpt_is_hdf5, inspect_h5},
    {"GGUF", gguf_is_file, inspect_gguf},                      /* convert.h */
    {"Hugging Face directory", hf_is_dir, inspect_hf},          /* convert.h */
};

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        FILE *o = argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? stdout : stderr;
        fprintf(o, "usage: rft inspect FILE\n  prints the config, parameter count and tensors of a model file\n");
        return o == stdout ? RFT_EXIT_OK : RFT_EXIT_BADINPUT;
    }
    const char *path = argv[1];
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %m\n", path);
        return RFT_EXIT_BADINPUT;
    }
    for (size_t i = 0; i < sizeof inspectors / sizeof inspectors[0]; i++)
        if (inspectors[i].detect(path)) return inspectors[i].run(path);
    fprintf(stderr, "%s: unknown file type (rft inspect reads:", path);
    for (size_t i = 0; i < sizeof inspectors / sizeof inspectors[0]; i++) fprintf(stderr, "%s %s", i ? "," : "", inspectors[i].what);
    fprintf(stderr, ")\n");
    return RFT_EXIT_BADINPUT;
}

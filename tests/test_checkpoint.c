/* tests/test_checkpoint.c: HDF5 checkpoints. Round trips (tied/untied, with and
 * without q/k/v bias) are bitwise; optimizer state and train state round trip
 * and an optimizer step after resume equals one without stopping; a failing or
 * crashing save leaves the previous checkpoint intact; every corruption case
 * (truncation, wrong shape/dtype, missing tensor or attribute, unknown
 * version, absurd values, unknown tensors, garbage) is rejected with one line
 * naming the file and the tensor/attribute; `rft inspect` exits 0 on a good
 * file and 2 with one stderr line on a bad one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "util.h"

static int failures = 0;
static char dir[256];
static backend *be;

#define CHECK(cond, ...)                              \
    do {                                              \
        if (cond) {                                   \
            printf("ok   ");                          \
        } else {                                      \
            printf("FAIL ");                          \
            failures++;                               \
        }                                             \
        printf(__VA_ARGS__);                          \
        printf("\n");                                 \
    } while (0)

static model_config tiny(int tie, int bias) {
    model_config c = {.vocab = 61, .d_model = 24, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .head_dim = 6,
                      .d_ff = 40, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = tie,
                      .qkv_bias = bias, .max_seq = 32};
    return c;
}

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static float *host_params(const model *m) {
    float *h = malloc(m->n_params * sizeof(float));
    be->copy_d2h(be, h, m->params, m->n_params * sizeof(float));
    return h;
}

static int same_params(const model *a, const model *b) {
    if (a->n_params != b->n_params) return 0;
    float *x = host_params(a), *y = host_params(b);
    int same = !memcmp(x, y, a->n_params * sizeof(float));
    free(x);
    free(y);
    return same;
}

static int make_model(model *m, const model_config *c, uint64_t seed) {
    char err[512];
    if (model_create(m, c, be, 4, err, sizeof err)) {
        printf("FAIL model_create: %s\n", err);
        failures++;
        return -1;
    }
    if (seed) model_init_weights(m, seed);
    /* biases are 0 after init: make them nonzero so their round trip means something */
    for (int i = 0; i < m->n_tensors; i++)
        if (strstr(m->tensors[i].name, ".bias") || strstr(m->tensors[i].name, "norm")) {
            size_t n = m->tensors[i].numel;
            float *h = malloc(n * sizeof(float));
            for (size_t j = 0; j < n; j++) h[j] = (float)(0.5 + rng_uniform(rng_key(seed, 7, i, 0), j));
            be->copy_h2d(be, m->params + m->tensors[i].offset, h, n * sizeof(float));
            free(h);
        }
    return 0;
}

/* saves a tiny model (seed 11) to path; returns 0 */
static int save_tiny(const char *path, int tie, int bias, const ckpt_parts *parts) {
    model_config c = tiny(tie, bias);
    model m;
    if (make_model(&m, &c, 11)) return -1;
    char err[512];
    int rc = ckpt_save(path, &m, parts, err, sizeof err);
    if (rc) printf("     save %s: %s\n", path, err);
    model_free(&m);
    return rc;
}

/* 1 if path loads into a fresh model bitwise equal to ref */
static int loads_equal(const char *path, const model *ref) {
    char err[512];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    if (!f) {
        printf("     open: %s\n", err);
        return 0;
    }
    model m;
    int ok = 0;
    if (model_create(&m, ckpt_config(f), be, 4, err, sizeof err) == 0) {
        if (ckpt_load_model(f, &m, err, sizeof err) == 0) ok = same_params(&m, ref);
        else printf("     load: %s\n", err);
        model_free(&m);
    }
    ckpt_close(f);
    return ok;
}

static int count_tmp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int copy_file(const char *from, const char *to, long truncate_to) {
    size_t len;
    char err[256];
    char *buf = read_file(from, &len, err, sizeof err);
    if (!buf) return -1;
    if (truncate_to >= 0 && (size_t)truncate_to < len) len = (size_t)truncate_to;
    FILE *f = fopen(to, "wb");
    int rc = f && fwrite(buf, 1, len, f) == len ? 0 : -1;
    if (f) fclose(f);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ round trips */

static void test_roundtrip(void) {
    for (int tie = 0; tie < 2; tie++)
        for (int bias = 0; bias < 2; bias++) {
            model_config c = tiny(tie, bias);
            model a, b;
            if (make_model(&a, &c, 1234 + tie * 2 + bias)) return;
            char path[512], err[512];
            snprintf(path, sizeof path, "%s/rt_tie%d_bias%d.h5", dir, tie, bias);
            int rc = ckpt_save(path, &a, NULL, err, sizeof err);
            CHECK(rc == 0, "save tie=%d bias=%d %s", tie, bias, rc ? err : "");
            model_config rc_cfg;
            rc = ckpt_read_config(path, &rc_cfg, err, sizeof err);
            CHECK(rc == 0 && !memcmp(&rc_cfg, &c, sizeof c), "config round trip tie=%d bias=%d %s", tie, bias,
                  rc ? err : "");
            make_model(&b, &c, 0);
            CHECK(!same_params(&a, &b), "fresh model differs before load");
            ckpt_file *f = ckpt_open(path, err, sizeof err);
            rc = f ? ckpt_load_model(f, &b, err, sizeof err) : -1;
            CHECK(rc == 0 && same_params(&a, &b), "load tie=%d bias=%d: bitwise equal %s", tie, bias, rc ? err : "");
            CHECK(f && !ckpt_has_optim(f) && !ckpt_has_train_state(f) && !ckpt_has_tokenizer(f),
                  "model-only file has no optimizer/trainer/tokenizer groups");
            ckpt_close(f);
            /* the layout itself, read with plain HDF5 */
            hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t g = H5Gopen2(fid, "model", H5P_DEFAULT);
            H5G_info_t gi;
            H5Gget_info(g, &gi);
            int expect = a.n_tensors;
            CHECK((int)gi.nlinks == expect, "/model holds %d datasets (expected %d)", (int)gi.nlinks, expect);
            CHECK(H5Lexists(g, "lm_head.weight", H5P_DEFAULT) == !tie, "lm_head.weight stored iff untied");
            CHECK(H5Lexists(g, "model.layers.1.self_attn.q_proj.bias", H5P_DEFAULT) == bias, "q_proj.bias stored iff qkv_bias");
            hid_t d = H5Dopen2(g, "model.layers.0.mlp.up_proj.weight", H5P_DEFAULT);
            hid_t s = H5Dget_space(d);
            hsize_t dims[2] = {0, 0};
            H5Sget_simple_extent_dims(s, dims, NULL);
            CHECK(dims[0] == (hsize_t)c.d_ff && dims[1] == (hsize_t)c.d_model, "up_proj stored [out, in] = [%d, %d]",
                  (int)dims[0], (int)dims[1]);
            H5Sclose(s);
            H5Dclose(d);
            int64_t dm = 0;
            hid_t at = H5Aopen(fid, "d_model", H5P_DEFAULT);
            H5Aread(at, H5T_NATIVE_INT64, &dm);
            H5Aclose(at);
            CHECK(dm == c.d_model, "root attribute d_model = %lld", (long long)dm);
            H5Gclose(g);
            H5Fclose(fid);
            model_free(&a);
            model_free(&b);
        }
}

static void random_grads(model *m, uint64_t key) {
    float *h = malloc(m->n_params * sizeof(float));
    for (size_t i = 0; i < m->n_params; i++) h[i] = (float)rng_normal(key, i);
    be->copy_h2d(be, m->grads, h, m->n_params * sizeof(float));
    free(h);
}

static void test_optimizer(void) {
    model_config c = tiny(0, 1);
    model a, b;
    optim oa, ob;
    char err[512], path[512];
    optim_config oc = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_clip = 1.0f, .schedule = LR_COSINE, .warmup_steps = 2, .total_steps = 10,
                       .min_lr_ratio = 0.1f};
    if (make_model(&a, &c, 77) || optim_create(&oa, &a, &oc, err, sizeof err)) {
        printf("FAIL setup: %s\n", err);
        failures++;
        return;
    }
    for (int s = 0; s < 3; s++) {
        random_grads(&a, 100 + s);
        optim_step(&oa);
    }
    path_in(path, sizeof path, "optim.h5");
    ckpt_parts parts = {.opt = &oa};
    int rc = ckpt_save(path, &a, &parts, err, sizeof err);
    CHECK(rc == 0, "save with optimizer %s", rc ? err : "");

    optim_config other = oc;
    other.lr = 5e-3f; /* the resumed run's own config is kept */
    make_model(&b, &c, 0);
    optim_create(&ob, &b, &other, err, sizeof err);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    rc = f ? ckpt_load_model(f, &b, err, sizeof err) : -1;
    if (!rc) rc = ckpt_load_optim(f, &ob, err, sizeof err);
    CHECK(rc == 0 && f && ckpt_has_optim(f), "load model + optimizer %s", rc ? err : "");
    CHECK(ob.step == 3 && ob.cfg.lr == other.lr, "step restored (%d), caller's config kept", ob.step);
    optim_config back;
    rc = f ? ckpt_read_optim_config(f, &back, err, sizeof err) : -1;
    CHECK(rc == 0 && back.lr == oc.lr && back.beta1 == oc.beta1 && back.beta2 == oc.beta2 && back.eps == oc.eps &&
              back.weight_decay == oc.weight_decay && back.grad_clip == oc.grad_clip && back.schedule == oc.schedule &&
              back.warmup_steps == oc.warmup_steps && back.total_steps == oc.total_steps &&
              back.min_lr_ratio == oc.min_lr_ratio,
          "stored optim_config round trips %s", rc ? err : "");
    ckpt_close(f);
    float *ma = malloc(a.n_params * 4), *mb = malloc(a.n_params * 4);
    be->copy_d2h(be, ma, oa.mom, a.n_params * 4);
    be->copy_d2h(be, mb, ob.mom, a.n_params * 4);
    int mom_same = !memcmp(ma, mb, a.n_params * 4);
    be->copy_d2h(be, ma, oa.var, a.n_params * 4);
    be->copy_d2h(be, mb, ob.var, a.n_params * 4);
    int var_same = !memcmp(ma, mb, a.n_params * 4);
    CHECK(mom_same && var_same, "first and second moments bitwise equal");
    /* the next steps after resume equal the next steps without stopping:
     * real SFT steps (forward, backward, AdamW) on a fixed batch */
    ob.cfg = oc;
    int32_t tok[4] = {3, 17, 42, 5}, tgt[4] = {17, 42, 5, 60}, cu[2] = {0, 4};
    model_batch batch = {.T = 4, .n_seq = 1, .tokens = tok, .targets = tgt, .cu_seqlens = cu};
    float w[4] = {0.25f, 0.25f, 0.25f, 0.25f}, la[4], lb[4];
    int same_loss = 1;
    for (int s = 0; s < 2; s++) {
        model_zero_grads(&a);
        model_zero_grads(&b);
        int e = model_forward(&a, &batch, la, NULL, err, sizeof err) || model_backward(&a, &batch, w, NULL, err, sizeof err) ||
                model_forward(&b, &batch, lb, NULL, err, sizeof err) || model_backward(&b, &batch, w, NULL, err, sizeof err);
        if (e) printf("     train step: %s\n", err);
        same_loss &= !e && !memcmp(la, lb, sizeof la);
        optim_step(&oa);
        optim_step(&ob);
    }
    CHECK(same_loss && same_params(&a, &b), "2 SFT steps after resume bitwise equal to never stopping");
    free(ma);
    free(mb);

    /* optimizer state that is not finite is refused at save: old file kept */
    float nan = NAN;
    be->copy_h2d(be, oa.var + 5, &nan, sizeof nan);
    rc = ckpt_save(path, &a, &parts, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "non-finite") && strstr(err, "optimizer v"), "NaN in optimizer v refused: %s", err);
    ckpt_file *f2 = ckpt_open(path, err, sizeof err);
    int st = -1;
    rc = f2 ? ckpt_check_optim(f2, &a, &st, err, sizeof err) : -1;
    CHECK(rc == 0 && st == 3, "the step-3 checkpoint is still in place (step %d)", st);
    ckpt_close(f2);
    optim_free(&oa);
    optim_free(&ob);
    model_free(&a);
    model_free(&b);
}

static void test_train_state(void) {
    char path[512], err[512];
    path_in(path, sizeof path, "train.h5");
    size_t big = 100000; /* beyond HDF5's 64 KiB attribute limit */
    char *text = malloc(big + 1);
    const char *line = "model: smol # \xc3\xa9t\xc3\xa9\nlr: 1e-5\n";
    for (size_t i = 0; i < big; i++) text[i] = line[i % strlen(line)];
    text[big] = 0;
    int32_t order[7] = {3, 0, 6, 1, 5, 2, 4};
    ckpt_train_state ts = {.step = 123, .epoch = 2, .cursor = 5, .seed = 0xFEDCBA9876543210ull,
                           .rng_counter = 987654321012ull, .best_valid_reward = 0.625, .best_step = 100,
                           .wall_seconds = 3600.5, .config_text = text, .data_order = order, .n_order = 7,
                           .n_scalars = 2};
    snprintf(ts.scalars[0].name, sizeof ts.scalars[0].name, "kl_coef");
    ts.scalars[0].value = 0.0123;
    snprintf(ts.scalars[1].name, sizeof ts.scalars[1].name, "ema.reward");
    ts.scalars[1].value = -1.5;
    ckpt_parts parts = {.train = &ts};
    int rc = save_tiny(path, 1, 0, &parts);
    CHECK(rc == 0, "save with train state");
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    ckpt_train_state r;
    rc = f ? ckpt_load_train_state(f, &r, err, sizeof err) : -1;
    CHECK(rc == 0, "load train state %s", rc ? err : "");
    if (rc == 0) {
        CHECK(r.step == 123 && r.epoch == 2 && r.cursor == 5 && r.seed == ts.seed && r.rng_counter == ts.rng_counter &&
                  r.best_valid_reward == 0.625 && r.best_step == 100 && r.wall_seconds == 3600.5,
              "scalar fields round trip (seed 0x%llx)", (unsigned long long)r.seed);
        CHECK(r.config_text && strlen(r.config_text) == big && !strcmp(r.config_text, text),
              "config text (%zu bytes, UTF-8) round trips", big);
        CHECK(r.n_order == 7 && !memcmp(r.data_order, order, sizeof order), "data order round trips");
        int sc = r.n_scalars == 2;
        for (int i = 0; sc && i < 2; i++) {
            int found = 0;
            for (int j = 0; j < 2; j++)
                found |= !strcmp(r.scalars[j].name, ts.scalars[i].name) && r.scalars[j].value == ts.scalars[i].value;
            sc = found;
        }
        CHECK(sc, "named scalars round trip");
        ckpt_train_state_free(&r);
    }
    ckpt_close(f);
    /* NaN best reward (no validation yet), no text, no order */
    ckpt_train_state t2 = {.step = 1, .best_valid_reward = NAN, .best_step = -1};
    parts.train = &t2;
    rc = save_tiny(path, 1, 0, &parts);
    f = ckpt_open(path, err, sizeof err);
    rc = f ? ckpt_load_train_state(f, &r, err, sizeof err) : -1;
    CHECK(rc == 0 && isnan(r.best_valid_reward) && r.best_step == -1 && !r.config_text && !r.data_order && r.n_order == 0,
          "empty train state round trips (NaN best reward) %s", rc ? err : "");
    if (!rc) ckpt_train_state_free(&r);
    ckpt_close(f);
    free(text);
}

/* tokenizer hooks: a tiny stand-in tokenizer (a list of strings) */
static int tok_save(hid_t g, const void *tok, char *err, size_t cap) {
    const char *s = tok;
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = i * 3;
    int64_t shape[1] = {300};
    if (ckpt_write_dataset(g, "ids", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, shape, ids) < 0)
        return errf(err, cap, "cannot write ids");
    hid_t sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    hid_t a = H5Acreate2(g, "probe", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, t, s) >= 0 ? 0 : errf(err, cap, "cannot write probe");
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(sp);
    return rc;
}
static int tok_load(hid_t g, void *tok, char *err, size_t cap) {
    int32_t ids[300];
    hid_t d = H5Dopen2(g, "ids", H5P_DEFAULT);
    herr_t r = d < 0 ? -1 : H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids);
    if (d >= 0) H5Dclose(d);
    if (r < 0) return errf(err, cap, "cannot read ids");
    for (int i = 0; i < 300; i++)
        if (ids[i] != i * 3) return errf(err, cap, "ids[%d] = %d", i, ids[i]);
    hid_t a = H5Aopen(g, "probe", H5P_DEFAULT);
    if (a < 0) return errf(err, cap, "no probe attribute");
    hid_t t = H5Aget_type(a);
    int rc = H5Tget_size(t) < 64 && H5Aread(a, t, tok) >= 0 ? 0 : errf(err, cap, "cannot read probe");
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}
static int tok_save_fail(hid_t g, const void *tok, char *err, size_t cap) {
    tok_save(g, tok, err, cap);
    return errf(err, cap, "merges table is corrupt");
}
static int tok_save_crash(hid_t g, const void *tok, char *err, size_t cap) { _exit(3); }

static void test_tokenizer_hook(void) {
    char path[512], err[512], got[64] = "";
    path_in(path, sizeof path, "tok.h5");
    ckpt_parts parts = {.tokenizer = "hello tokenizer", .tokenizer_save = tok_save};
    int rc = save_tiny(path, 0, 0, &parts);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    CHECK(rc == 0 && f && ckpt_has_tokenizer(f), "tokenizer group written through the save hook");
    rc = f ? ckpt_load_tokenizer(f, tok_load, got, err, sizeof err) : -1;
    CHECK(rc == 0 && !strcmp(got, "hello tokenizer"), "tokenizer hook reads it back ('%s')", got);
    ckpt_close(f);
    /* a flipped byte inside the hook's checksummed dataset is a read error */
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(fid, "tokenizer/ids", H5P_DEFAULT);
    haddr_t off = 0;
    hsize_t sz = 0;
    hid_t sp = H5Dget_space(d);
    H5Dget_chunk_info(d, sp, 0, NULL, NULL, &off, &sz);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(fid);
    FILE *fp = fopen(path, "r+b");
    int flipped = fp && off && fseek(fp, (long)off + 40, SEEK_SET) == 0 && fputc(0x7f, fp) != EOF;
    if (fp) fclose(fp);
    f = ckpt_open(path, err, sizeof err);
    rc = f ? ckpt_load_tokenizer(f, tok_load, got, err, sizeof err) : -1;
    CHECK(flipped && rc != 0 && strstr(err, "tokenizer: cannot read ids"), "damaged ckpt_write_dataset data is a read error: %s", err);
    ckpt_close(f);
}

/* ------------------------------------------------------------ h5py fixture */

/* tests/fixtures/ckpt_h5py.h5 (tools/make_ckpt_fixture.py): written by h5py
 * with variable-length strings, int32/uint16 attributes, an integer
 * rope_theta and an int64 data order; values ((7 i + 13 k) % 101 - 50) / 64 */
static float fixture_value(int k, size_t i) { return (float)((double)((long)((7 * i + 13 * (size_t)k) % 101) - 50) / 64.0); }

static void test_h5py_fixture(void) {
    const char *path = "tests/fixtures/ckpt_h5py.h5";
    char err[512];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    CHECK(f != NULL, "open h5py-written checkpoint %s", f ? "" : err);
    if (!f) return;
    model_config want = {.vocab = 16, .d_model = 8, .n_layer = 1, .n_head = 2, .n_kv_head = 1, .head_dim = 4,
                         .d_ff = 12, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1,
                         .max_seq = 64};
    CHECK(!memcmp(ckpt_config(f), &want, sizeof want), "h5py config read (int32/uint16/int64/float64 attributes)");
    model m;
    optim o;
    optim_config oc = {.lr = 1, .beta1 = 0.5f, .beta2 = 0.5f, .eps = 1e-6f};
    int rc = model_create(&m, ckpt_config(f), be, 4, err, sizeof err);
    if (!rc) rc = ckpt_load_model(f, &m, err, sizeof err);
    if (!rc) rc = optim_create(&o, &m, &oc, err, sizeof err);
    if (!rc) rc = ckpt_load_optim(f, &o, err, sizeof err);
    CHECK(rc == 0, "h5py model + optimizer load %s", rc ? err : "");
    if (rc) {
        ckpt_close(f);
        return;
    }
    float *p = host_params(&m), *mo = malloc(m.n_params * 4), *va = malloc(m.n_params * 4);
    be->copy_d2h(be, mo, o.mom, m.n_params * 4);
    be->copy_d2h(be, va, o.var, m.n_params * 4);
    int bad = 0;
    for (int k = 0; k < m.n_tensors; k++)
        for (size_t i = 0; i < m.tensors[k].numel; i++) {
            size_t j = m.tensors[k].offset + i;
            float x = fixture_value(k, i);
            if (p[j] != x || mo[j] != x / 2 || va[j] != fabsf(x)) bad++;
        }
    CHECK(bad == 0 && m.n_tensors == 15, "h5py tensors (%d, names spelled by Python) bitwise as written (%d bad)",
          m.n_tensors, bad);
    optim_config sc;
    rc = ckpt_read_optim_config(f, &sc, err, sizeof err);
    CHECK(rc == 0 && o.step == 5 && sc.lr == 0.001f && sc.beta2 == 0.95f && sc.schedule == LR_LINEAR &&
              sc.warmup_steps == 2 && sc.total_steps == 50,
          "h5py optimizer attributes (float64, VL string schedule)");
    ckpt_train_state ts;
    rc = ckpt_load_train_state(f, &ts, err, sizeof err);
    CHECK(rc == 0 && ts.step == 5 && ts.epoch == 1 && ts.cursor == 3 && ts.seed == 9223372036854775813ull &&
              ts.rng_counter == 77 && ts.best_valid_reward == 0.5 && ts.best_step == 4 && ts.wall_seconds == 1.25 &&
              ts.config_text && !strcmp(ts.config_text, "model: tiny\nlr: 1e-3  # caf\xc3\xa9\n") && ts.n_order == 4 &&
              ts.data_order[0] == 2 && ts.data_order[3] == 1 && ts.n_scalars == 1 && ts.scalars[0].value == 0.25,
          "h5py train state (VL UTF-8 config text, int64 data order, uint64 seed) %s", rc ? err : "");
    if (!rc) ckpt_train_state_free(&ts);
    free(p);
    free(mo);
    free(va);
    optim_free(&o);
    model_free(&m);
    ckpt_close(f);
}

/* ------------------------------------------------------------ device pointers */

/* A "guarded" backend: the CPU backend whose device pointers are host
 * pointers moved into non-canonical address space, so any host dereference
 * of a device pointer faults. Only the memory ops translate; saving and
 * loading must go through them (as on a GPU). */
#define GUARD_OFFSET ((uintptr_t)0x4000000000000000ull)
static backend *guard_inner;
static void *dev(const void *p) { return p ? (void *)((uintptr_t)p + GUARD_OFFSET) : NULL; }
static void *host(const void *p) { return p ? (void *)((uintptr_t)p - GUARD_OFFSET) : NULL; }
static void *g_alloc(backend *b, size_t n) { return dev(guard_inner->alloc(guard_inner, n)); }
static void g_free(backend *b, void *p) { guard_inner->free(guard_inner, host(p)); }
static void g_h2d(backend *b, void *d, const void *s, size_t n) { memcpy(host(d), s, n); }
static void g_d2h(backend *b, void *d, const void *s, size_t n) { memcpy(d, host(s), n); }
static void g_d2d(backend *b, void *d, const void *s, size_t n) { memmove(host(d), host(s), n); }
static void g_zero(backend *b, void *p, size_t n) { memset(host(p), 0, n); }
static int g_sync(backend *b) { return b->err[0] ? -1 : 0; }

static void test_device_pointers(void) {
    backend gb = {0};
    guard_inner = be;
    gb.name = "guarded";
    gb.alloc = g_alloc, gb.free = g_free, gb.copy_h2d = g_h2d, gb.copy_d2h = g_d2h, gb.copy_d2d = g_d2d;
    gb.zero = g_zero, gb.sync = g_sync;
    model_config c = tiny(0, 1);
    model gm, gm2, ref;
    char err[512], path[512];
    path_in(path, sizeof path, "guarded.h5");
    int rc = model_create(&gm, &c, &gb, 4, err, sizeof err);
    if (rc) {
        printf("FAIL guarded model_create: %s\n", err);
        failures++;
        return;
    }
    model_init_weights(&gm, 31);
    model_alloc_grads(&gm, err, sizeof err);
    /* a stand-in optimizer: moments on the guarded device, written through copies */
    optim go = {.cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}, .m = &gm, .step = 9};
    go.mom = g_alloc(&gb, gm.n_params * sizeof(float));
    go.var = g_alloc(&gb, gm.n_params * sizeof(float));
    float *h = malloc(gm.n_params * sizeof(float));
    for (size_t i = 0; i < gm.n_params; i++) h[i] = (float)(i % 13) * 0.125f;
    g_h2d(&gb, go.mom, h, gm.n_params * sizeof(float));
    g_h2d(&gb, go.var, h, gm.n_params * sizeof(float));
    ckpt_parts parts = {.opt = &go};
    rc = ckpt_save(path, &gm, &parts, err, sizeof err);
    CHECK(rc == 0, "save from a backend whose device pointers fault on host access %s", rc ? err : "");
    make_model(&ref, &c, 0);
    model_init_weights(&ref, 31);
    CHECK(loads_equal(path, &ref), "its file equals the CPU model with the same seed");
    model_create(&gm2, &c, &gb, 4, err, sizeof err);
    model_alloc_grads(&gm2, err, sizeof err);
    optim go2 = go;
    go2.m = &gm2;
    go2.step = 0;
    go2.mom = g_alloc(&gb, gm.n_params * sizeof(float));
    go2.var = g_alloc(&gb, gm.n_params * sizeof(float));
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    rc = f ? ckpt_load_model(f, &gm2, err, sizeof err) || ckpt_load_optim(f, &go2, err, sizeof err) : -1;
    ckpt_close(f);
    float *h2 = malloc(gm.n_params * sizeof(float)), *h3 = malloc(gm.n_params * sizeof(float));
    g_d2h(&gb, h2, gm2.params, gm.n_params * sizeof(float));
    g_d2h(&gb, h3, gm.params, gm.n_params * sizeof(float));
    int same = rc == 0 && !memcmp(h2, h3, gm.n_params * sizeof(float));
    g_d2h(&gb, h2, go2.var, gm.n_params * sizeof(float));
    same &= !memcmp(h2, h, gm.n_params * sizeof(float)) && go2.step == 9;
    CHECK(same, "load into the guarded backend: parameters and moments bitwise %s", rc ? err : "");
    free(h);
    free(h2);
    free(h3);
    g_free(&gb, go.mom), g_free(&gb, go.var), g_free(&gb, go2.mom), g_free(&gb, go2.var);
    model_free(&gm);
    model_free(&gm2);
    model_free(&ref);
}

/* ------------------------------------------------------------ atomicity */

static void test_atomic(void) {
    char path[512], err[512];
    path_in(path, sizeof path, "atomic.h5");
    model_config c = tiny(0, 0);
    model good, bad;
    make_model(&good, &c, 5);
    make_model(&bad, &c, 6);
    int rc = ckpt_save(path, &good, NULL, err, sizeof err);
    CHECK(rc == 0 && loads_equal(path, &good), "first checkpoint written");

    /* failure mid-write: a NaN in the last tensor (after all others were written) */
    int last = bad.n_tensors - 1;
    float nan = NAN;
    be->copy_h2d(be, bad.params + bad.tensors[last].offset + 3, &nan, sizeof nan);
    rc = ckpt_save(path, &bad, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, bad.tensors[last].name) && strstr(err, path), "NaN tensor refused: %s", err);
    CHECK(loads_equal(path, &good), "old checkpoint intact after failed save");
    CHECK(count_tmp_files() == 0, "no temporary file left after failed save");

    /* failure at the end: tokenizer hook fails after the model was written */
    model_free(&bad);
    make_model(&bad, &c, 6);
    ckpt_parts parts = {.tokenizer = "x", .tokenizer_save = tok_save_fail};
    rc = ckpt_save(path, &bad, &parts, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "merges table is corrupt") && strstr(err, path), "failing tokenizer hook: %s", err);
    CHECK(loads_equal(path, &good), "old checkpoint intact after failed tokenizer save");
    CHECK(count_tmp_files() == 0, "no temporary file left");

    /* crash mid-write: the process dies inside the save */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ckpt_parts p2 = {.tokenizer = "x", .tokenizer_save = tok_save_crash};
        ckpt_save(path, &bad, &p2, err, sizeof err);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "child died inside ckpt_save");
    CHECK(loads_equal(path, &good), "old checkpoint intact after a crash mid-write");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
    CHECK(access(tmp, F_OK) == 0, "the crash left only its temporary file (%s)", tmp);
    unlink(tmp);

    /* successful save replaces the file */
    rc = ckpt_save(path, &bad, NULL, err, sizeof err);
    CHECK(rc == 0 && loads_equal(path, &bad), "a good save replaces the old checkpoint");

    /* unwritable target directory */
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.h5", dir);
    rc = ckpt_save(nodir, &good, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, nodir), "save into a missing directory fails: %s", err);
    model_free(&good);
    model_free(&bad);
}

/* ------------------------------------------------------------ corruption */

typedef void (*mutate_fn)(hid_t fid);

static hid_t open_rw(const char *p) { return H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT); }

static void put_dataset(hid_t fid, const char *gname, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1) {
    hid_t g = H5Gopen2(fid, gname, H5P_DEFAULT);
    if (H5Lexists(g, name, H5P_DEFAULT) > 0) H5Ldelete(g, name, H5P_DEFAULT);
    hsize_t dims[2] = {d0, d1};
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(g, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n = (size_t)d0 * (rank == 2 ? d1 : 1);
    double *zeros = calloc(n, sizeof(double));
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros);
    free(zeros);
    H5Dclose(d);
    H5Sclose(s);
    H5Gclose(g);
}

static void put_attr_i64(hid_t obj, const char *name, int64_t v) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

static void put_attr_str(hid_t obj, const char *name, const char *v) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t s = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
}

/* the tiny untied no-bias config: D 24, F 40, kv dim 12 */
static void m_shape(hid_t f) { put_dataset(f, "model", "model.layers.1.mlp.up_proj.weight", H5T_IEEE_F32LE, 2, 64, 24); }
static void m_rank(hid_t f) { put_dataset(f, "model", "model.norm.weight", H5T_IEEE_F32LE, 2, 24, 1); }
static void m_missing(hid_t f) {
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    H5Ldelete(g, "model.layers.1.self_attn.k_proj.weight", H5P_DEFAULT);
    H5Gclose(g);
}
static void m_f64(hid_t f) { put_dataset(f, "model", "model.layers.0.self_attn.v_proj.weight", H5T_IEEE_F64LE, 2, 12, 24); }
static void m_i32(hid_t f) { put_dataset(f, "model", "model.embed_tokens.weight", H5T_STD_I32LE, 2, 61, 24); }
static void m_f16(hid_t f) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    put_dataset(f, "model", "model.layers.0.input_layernorm.weight", t, 1, 24, 0);
    H5Tclose(t);
}
static void m_extra(hid_t f) { put_dataset(f, "model", "model.layers.7.mlp.extra.weight", H5T_IEEE_F32LE, 1, 3, 0); }
static void m_version(hid_t f) { put_attr_i64(f, "format_version", 2); }
static void m_format(hid_t f) { put_attr_str(f, "format", "safetensors"); }
static void m_no_dff(hid_t f) { H5Adelete(f, "d_ff"); }
static void m_str_layers(hid_t f) { put_attr_str(f, "n_layer", "two"); }
static void m_neg_head(hid_t f) { put_attr_i64(f, "n_head", -3); }
static void m_huge_vocab(hid_t f) { put_attr_i64(f, "vocab", 1000000000000LL); }
static void m_kv_div(hid_t f) { put_attr_i64(f, "n_kv_head", 3); }
static void m_tie_bad(hid_t f) { put_attr_i64(f, "tie_embeddings", 2); }
static void m_nan(hid_t f) {
    hid_t d = H5Dopen2(f, "model/model.layers.0.mlp.down_proj.weight", H5P_DEFAULT);
    float *buf = calloc(24 * 40, sizeof(float));
    buf[17] = INFINITY;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
    H5Dclose(d);
}
static void m_no_model(hid_t f) { H5Ldelete(f, "model", H5P_DEFAULT); }
static void m_tied_head(hid_t f) {
    put_attr_i64(f, "tie_embeddings", 1); /* now lm_head.weight is unexpected */
}
static void m_opt_neg_v(hid_t f) {
    hid_t d = H5Dopen2(f, "optimizer/v/model.norm.weight", H5P_DEFAULT);
    float buf[24] = {0};
    buf[4] = -1.0f;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
}
static void m_opt_missing(hid_t f) { H5Ldelete(f, "optimizer/m/lm_head.weight", H5P_DEFAULT); }
static void m_opt_step(hid_t f) {
    hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
    put_attr_str(g, "step", "3");
    H5Gclose(g);
}
static void m_opt_sched(hid_t f) {
    hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
    put_attr_str(g, "schedule", "exponential");
    H5Gclose(g);
}
static void m_train_order(hid_t f) { put_dataset(f, "trainer", "data_order", H5T_IEEE_F32LE, 1, 5, 0); }
static void m_train_cursor(hid_t f) {
    hid_t g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    H5Adelete(g, "cursor");
    H5Gclose(g);
}

typedef struct corrupt_case {
    const char *what;
    mutate_fn fn;
    const char *expect[3]; /* substrings the one-line error must contain */
} corrupt_case;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* opens + loads model, optimizer and train state; returns the first error.
 * digest (if not NULL): a hash of everything loaded */
static int full_load_digest(const char *path, char *err, size_t cap, uint64_t *digest) {
    uint64_t h = 0xcbf29ce484222325ull;
    ckpt_file *f = ckpt_open(path, err, cap);
    if (!f) return -1;
    h = fnv(h, ckpt_config(f), sizeof(model_config));
    model m;
    optim o;
    int rc = model_create(&m, ckpt_config(f), be, 4, err, cap);
    if (!rc) {
        rc = ckpt_load_model(f, &m, err, cap);
        float *buf = malloc(m.n_params * sizeof(float));
        if (!rc) {
            be->copy_d2h(be, buf, m.params, m.n_params * sizeof(float));
            h = fnv(h, buf, m.n_params * sizeof(float));
        }
        if (!rc && ckpt_has_optim(f)) {
            optim_config oc;
            rc = ckpt_read_optim_config(f, &oc, err, cap);
            if (!rc) rc = optim_create(&o, &m, &oc, err, cap);
            if (!rc) {
                rc = ckpt_load_optim(f, &o, err, cap);
                h = fnv(h, &oc, sizeof oc);
                h = fnv(h, &o.step, sizeof o.step);
                be->copy_d2h(be, buf, o.mom, m.n_params * sizeof(float));
                h = fnv(h, buf, m.n_params * sizeof(float));
                be->copy_d2h(be, buf, o.var, m.n_params * sizeof(float));
                h = fnv(h, buf, m.n_params * sizeof(float));
                optim_free(&o);
            }
        }
        free(buf);
        if (!rc && ckpt_has_train_state(f)) {
            ckpt_train_state ts;
            rc = ckpt_load_train_state(f, &ts, err, cap);
            if (!rc) {
                h = fnv(h, &ts.step, offsetof(ckpt_train_state, config_text) - offsetof(ckpt_train_state, step));
                if (ts.config_text) h = fnv(h, ts.config_text, strlen(ts.config_text));
                h = fnv(h, ts.data_order, (size_t)ts.n_order * sizeof(int32_t));
                h = fnv(h, ts.scalars, (size_t)ts.n_scalars * sizeof(ckpt_scalar));
                ckpt_train_state_free(&ts);
            }
        }
        model_free(&m);
    }
    ckpt_close(f);
    if (digest) *digest = h;
    return rc;
}

static int full_load(const char *path, char *err, size_t cap) { return full_load_digest(path, err, cap, NULL); }

static int one_line_with(const char *err, const char *path, const char *const *expect) {
    if (strchr(err, '\n') || !strstr(err, path)) return 0;
    for (int i = 0; i < 3 && expect[i]; i++)
        if (!strstr(err, expect[i])) return 0;
    return 1;
}

static void test_corruption(const char *full) {
    static const corrupt_case cases[] = {
        {"wrong shape", m_shape, {"tensor model.layers.1.mlp.up_proj.weight has shape [64, 24], expected [40, 24]"}},
        {"wrong rank", m_rank, {"tensor model.norm.weight has shape [24, 1], expected [24]"}},
        {"missing tensor", m_missing, {"tensor model.layers.1.self_attn.k_proj.weight is missing"}},
        {"float64 tensor", m_f64, {"model.layers.0.self_attn.v_proj.weight", "dtype float64, expected float32"}},
        {"int32 tensor", m_i32, {"model.embed_tokens.weight", "dtype int32"}},
        {"float16 tensor", m_f16, {"model.layers.0.input_layernorm.weight", "dtype float16"}},
        {"unknown tensor", m_extra, {"unexpected", "model.layers.7.mlp.extra.weight"}},
        {"unknown version", m_version, {"format_version", "2"}},
        {"wrong format name", m_format, {"'format'", "safetensors"}},
        {"missing attribute", m_no_dff, {"'d_ff'", "missing"}},
        {"string attribute", m_str_layers, {"'n_layer'", "type string"}},
        {"negative heads", m_neg_head, {"'n_head'", "out of range"}},
        {"absurd vocab", m_huge_vocab, {"'vocab'", "out of range"}},
        {"kv heads not dividing", m_kv_div, {"n_kv_head", "divide"}},
        {"bool out of range", m_tie_bad, {"'tie_embeddings'", "out of range"}},
        {"non-finite weight", m_nan, {"model.layers.0.mlp.down_proj.weight", "non-finite"}},
        {"no /model", m_no_model, {"/model", "missing"}},
        {"lm_head in a tied file", m_tied_head, {"unexpected", "lm_head.weight"}},
        {"negative second moment", m_opt_neg_v, {"optimizer v of model.norm.weight", "negative"}},
        {"missing optimizer tensor", m_opt_missing, {"optimizer m of lm_head.weight is missing"}},
        {"optimizer step as string", m_opt_step, {"'step' of /optimizer", "type string"}},
        {"unknown schedule", m_opt_sched, {"'schedule'", "exponential"}},
        {"float data order", m_train_order, {"data_order", "float32"}},
        {"missing cursor", m_train_cursor, {"'cursor' of /trainer", "missing"}},
    };
    char err[512], path[512];
    path_in(path, sizeof path, "corrupt.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        copy_file(full, path, -1);
        hid_t f = open_rw(path);
        cases[i].fn(f);
        H5Fclose(f);
        err[0] = 0;
        int rc = full_load(path, err, sizeof err);
        CHECK(rc != 0 && one_line_with(err, path, cases[i].expect), "%-26s -> %s", cases[i].what, err);
    }

    /* truncation at many points: always rejected, never a crash */
    struct stat st;
    stat(full, &st);
    long sizes[] = {0, 7, 100, 1000, 4000, st.st_size / 3, st.st_size / 2, st.st_size - 100, st.st_size - 1};
    int all = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        copy_file(full, path, sizes[i]);
        int rc = full_load(path, err, sizeof err);
        if (rc == 0 || !strstr(err, path) || strchr(err, '\n')) {
            printf("     truncated to %ld: rc %d '%s'\n", sizes[i], rc, err);
            all = 0;
        }
    }
    copy_file(full, path, st.st_size / 2);
    full_load(path, err, sizeof err);
    CHECK(all, "truncated copies (%zu sizes) all rejected, e.g. %s", sizeof sizes / sizeof sizes[0], err);

    /* garbage bytes, and garbage behind a valid HDF5 signature */
    FILE *g = fopen(path, "wb");
    for (int i = 0; i < 5000; i++) fputc((int)(rng_u64(99, i) & 255), g);
    fclose(g);
    int rc = full_load(path, err, sizeof err);
    CHECK(rc != 0 && one_line_with(err, path, (const char *const[]){"not an HDF5 file", 0, 0}), "garbage -> %s", err);
    g = fopen(path, "wb");
    fwrite("\x89HDF\r\n\x1a\n", 1, 8, g);
    for (int i = 0; i < 5000; i++) fputc((int)(rng_u64(98, i) & 255), g);
    fclose(g);
    rc = full_load(path, err, sizeof err);
    CHECK(rc != 0 && one_line_with(err, path, (const char *const[]){"HDF5", 0, 0}), "signature + garbage -> %s", err);
    /* an HDF5 file that is not a checkpoint */
    hid_t fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(fid);
    rc = full_load(path, err, sizeof err);
    CHECK(rc != 0 && one_line_with(err, path, (const char *const[]){"'format'", "missing", 0}), "empty HDF5 -> %s", err);
    path_in(path, sizeof path, "does-not-exist.h5");
    rc = full_load(path, err, sizeof err);
    CHECK(rc != 0 && one_line_with(err, path, (const char *const[]){"No such file", 0, 0}), "missing file -> %s", err);

    /* a model whose config differs from the file's */
    model_config c = tiny(0, 0);
    c.d_ff = 48;
    model m;
    make_model(&m, &c, 3);
    ckpt_file *f = ckpt_open(full, err, sizeof err);
    rc = f ? ckpt_load_model(f, &m, err, sizeof err) : 0;
    CHECK(rc != 0 && strstr(err, "d_ff") && strstr(err, full), "config mismatch -> %s", err);
    ckpt_close(f);
    model_free(&m);
    /* max_seq is a usage limit, not architecture: a longer context may load */
    c = tiny(0, 0);
    c.max_seq = 4096;
    make_model(&m, &c, 3);
    f = ckpt_open(full, err, sizeof err);
    rc = f ? ckpt_load_model(f, &m, err, sizeof err) : -1;
    CHECK(rc == 0, "a model with another max_seq loads the weights %s", rc ? err : "");
    ckpt_close(f);
    model_free(&m);
}

/* Deterministic byte mutations of a training checkpoint, half of them in
 * the HDF5 metadata near the start: each load runs in a child process and
 * must either fail with one line naming the file or load exactly what was
 * saved (the byte was unused space); never crash, hang or load altered
 * values (metadata and every dataset carry checksums). */
static void test_mutations(const char *full) {
    size_t len;
    char err[512], path[512];
    char *src = read_file(full, &len, err, sizeof err);
    if (!src) return;
    path_in(path, sizeof path, "mutated.h5");
    uint64_t want = 0;
    if (full_load_digest(full, err, sizeof err, &want) != 0) return;
    enum { TRIALS = 300 };
    int n_ok = 0, n_rejected = 0, n_bad = 0;
    for (int t = 0; t < TRIALS; t++) {
        uint64_t key = rng_key(2024, (uint64_t)t, 0, 0);
        int flips = 1 + (int)(rng_u64(key, 0) % 4);
        for (int k = 0; k < flips; k++) {
            uint64_t r = rng_u64(key, 1 + k);
            size_t pos = (r & 1) ? (size_t)(r >> 8) % len : (size_t)(r >> 8) % (len < 6000 ? len : 6000);
            src[pos] ^= (char)(1 + (rng_u64(key, 100 + k) % 255));
        }
        FILE *f = fopen(path, "wb");
        fwrite(src, 1, len, f);
        fclose(f);
        /* restore for the next trial */
        char e2[64];
        size_t l2;
        char *orig = read_file(full, &l2, e2, sizeof e2);
        memcpy(src, orig, len);
        free(orig);
        fflush(stdout);
        int pfd[2];
        if (pipe(pfd) != 0) break;
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            alarm(10);
            char e[512] = "";
            uint64_t got = 0;
            int rc = full_load_digest(path, e, sizeof e, &got);
            if (rc && write(pfd[1], e, strlen(e)) < 0) _exit(4);
            _exit(rc ? 2 : got == want ? 0 : 3);
        }
        close(pfd[1]);
        char msg[512] = "";
        ssize_t n = read(pfd[0], msg, sizeof msg - 1);
        msg[n > 0 ? n : 0] = 0;
        close(pfd[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) n_ok++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 2 && strstr(msg, path) && !strchr(msg, '\n')) n_rejected++;
        else {
            if (!n_bad) printf("     trial %d: status 0x%x, message '%s'\n", t, st, msg);
            n_bad++;
        }
    }
    free(src);
    CHECK(n_bad == 0 && n_rejected > TRIALS / 10,
          "%d mutated files: %d loaded unchanged, %d rejected with one line, %d crashed/hung/altered",
          TRIALS, n_ok, n_rejected, n_bad);
}

/* ------------------------------------------------------------ rft inspect */

static int run_capture(const char *bin, const char *arg, char *out, size_t ocap, char *errbuf, size_t ecap) {
    char op[600], ep[600];
    path_in(op, sizeof op, "inspect.out");
    path_in(ep, sizeof ep, "inspect.err");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fo, 1);
        dup2(fe, 2);
        execl(bin, bin, "inspect", arg, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    size_t n;
    char e2[256];
    char *o = read_file(op, &n, e2, sizeof e2), *e = read_file(ep, &n, e2, sizeof e2);
    snprintf(out, ocap, "%s", o ? o : "");
    snprintf(errbuf, ecap, "%s", e ? e : "");
    free(o);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_cli(const char *full) {
    const char *bin = getenv("RFT_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        printf("skip rft inspect tests (RFT_BIN not set or not executable)\n");
        return;
    }
    static char out[1 << 16], errb[4096];
    int rc = run_capture(bin, full, out, sizeof out, errb, sizeof errb);
    CHECK(rc == 0 && strstr(out, "model.layers.1.mlp.down_proj.weight") && strstr(out, "[24, 40]") &&
              strstr(out, "optimizer") && strstr(out, "trainer"),
          "rft inspect good file exits 0 and lists tensors (rc %d)", rc);
    if (rc != 0) printf("     stderr: %s\n", errb);
    char path[512];
    path_in(path, sizeof path, "cli-bad.h5");
    copy_file(full, path, -1);
    hid_t f = open_rw(path);
    m_shape(f);
    H5Fclose(f);
    rc = run_capture(bin, path, out, sizeof out, errb, sizeof errb);
    char *nl = strchr(errb, '\n');
    CHECK(rc == 2 && nl && nl[1] == 0 && strstr(errb, path) && strstr(errb, "up_proj"),
          "rft inspect bad file exits 2 with one stderr line (rc %d): %s", rc, errb);
    copy_file(full, path, 3000);
    rc = run_capture(bin, path, out, sizeof out, errb, sizeof errb);
    nl = strchr(errb, '\n');
    CHECK(rc == 2 && nl && nl[1] == 0 && strstr(errb, path), "rft inspect truncated file exits 2 (rc %d): %s", rc, errb);
    copy_file(full, path, -1);
    f = open_rw(path);
    m_opt_neg_v(f);
    H5Fclose(f);
    rc = run_capture(bin, path, out, sizeof out, errb, sizeof errb);
    nl = strchr(errb, '\n');
    CHECK(rc == 2 && nl && nl[1] == 0 && strstr(errb, "optimizer v of model.norm.weight") && !out[0],
          "rft inspect checks optimizer values, exits 2 and prints nothing else (rc %d): %s", rc, errb);
    FILE *g = fopen(path, "wb");
    fputs("just some text, not a model\n", g);
    fclose(g);
    rc = run_capture(bin, path, out, sizeof out, errb, sizeof errb);
    nl = strchr(errb, '\n');
    CHECK(rc == 2 && nl && nl[1] == 0 && strstr(errb, path), "rft inspect on a text file exits 2 (rc %d): %s", rc, errb);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/rft_ckpt_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    be = backend_cpu_create(1);

    test_roundtrip();
    test_optimizer();
    test_train_state();
    test_tokenizer_hook();
    test_h5py_fixture();
    test_device_pointers();
    test_atomic();

    /* a full training checkpoint (untied, no bias) to corrupt */
    char full[512], err[512];
    path_in(full, sizeof full, "full.h5");
    {
        model_config c = tiny(0, 0);
        model m;
        optim o;
        optim_config oc = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .schedule = LR_CONSTANT};
        make_model(&m, &c, 9);
        optim_create(&o, &m, &oc, err, sizeof err);
        random_grads(&m, 5);
        optim_step(&o);
        int32_t order[5] = {4, 3, 2, 1, 0};
        ckpt_train_state ts = {.step = 1, .best_valid_reward = NAN, .best_step = -1, .config_text = "a: 1\n",
                               .data_order = order, .n_order = 5};
        ckpt_parts parts = {.opt = &o, .train = &ts};
        int rc = ckpt_save(full, &m, &parts, err, sizeof err);
        CHECK(rc == 0 && full_load(full, err, sizeof err) == 0, "full training checkpoint loads %s", rc ? err : "");
        optim_free(&o);
        model_free(&m);
    }
    test_corruption(full);
    test_mutations(full);
    test_cli(full);

    /* clean up */
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
    be->destroy(be);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}

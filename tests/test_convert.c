/* tests/test_convert.c: model import and export. The tiny llama / qwen2
 * fixtures of tools/ref_gguf.py hold the same model twice: as GGUF (mixed
 * quantisations, llama Q/K rows permuted by convert_hf_to_gguf.py's rule) and
 * as a Hugging Face directory holding gguf-py's dequantised, un-permuted
 * weights. Both imports must give bitwise-identical parameters. Then the round
 * trips: HF -> h5 -> HF, h5 -> GGUF (F32) -> h5 identical, F16/BF16 exports
 * within rounding, tokenizer metadata through GGUF, and bad inputs (an OUT
 * named like a weights file, .safetensors / .bin / .pt / .pth, is refused:
 * a Hugging Face export is a directory). */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "convert.h"
#include "gguf.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"

#include "check.h"

static backend *be;
static char tmp[256];

static float *params_host(const model *m) {
    float *h = malloc(m->n_params * sizeof(float));
    m->be->copy_d2h(m->be, h, m->params, m->n_params * sizeof(float));
    return h;
}

/* max |a-b| / max(|b|, tiny) over all parameters, -1 if the tables differ */
static double compare(const model *a, const model *b) {
    if (memcmp(&a->cfg, &b->cfg, sizeof a->cfg) || a->n_params != b->n_params || a->n_tensors != b->n_tensors) return -1;
    for (int i = 0; i < a->n_tensors; i++)
        if (strcmp(a->tensors[i].name, b->tensors[i].name)) return -1;
    float *x = params_host(a), *y = params_host(b);
    double mx = 0;
    for (size_t i = 0; i < a->n_params; i++) {
        double d = fabs((double)x[i] - y[i]) / fmax(fabs((double)y[i]), 1e-30);
        if (x[i] != y[i] && d > mx) mx = d;
    }
    free(x);
    free(y);
    return mx;
}

static int load(const char *path, model *m, tokenizer **tok) {
    char err[512];
    int r = model_import(path, be, 8, m, tok, err, sizeof err);
    CHECK(r == 0, "import %s: %s", path, err);
    return r;
}

static void test_tiny(const char *arch) {
    char gpath[256], hdir[256], err[512];
    snprintf(gpath, sizeof gpath, "tests/fixtures/gguf_tiny_%s.gguf", arch);
    snprintf(hdir, sizeof hdir, "tests/fixtures/hf_tiny_%s", arch);
    model g, h;
    tokenizer *tok = NULL;
    CHECK(model_source_kind(gpath) == MODEL_SRC_GGUF && model_source_kind(hdir) == MODEL_SRC_HF, "source kinds");
    if (load(gpath, &g, &tok)) return;
    if (load(hdir, &h, NULL)) {
        model_free(&g);
        return;
    }
    int llama = !strcmp(arch, "llama");
    const model_config *c = &g.cfg;
    CHECK(c->vocab == 272 && c->d_model == 64 && c->n_layer == (llama ? 2 : 1) && c->n_head == 4 && c->n_kv_head == 2 &&
              c->head_dim == 16 && c->d_ff == 96 && c->max_seq == 2048 && c->tie_embeddings == !llama &&
              c->qkv_bias == !llama && c->rope_theta == (llama ? 10000.0f : 1000000.0f) && c->rms_eps == (llama ? 1e-5f : 1e-6f),
          "%s config from GGUF", arch);
    double d = compare(&g, &h);
    CHECK(d == 0, "%s: GGUF import differs from the HF reference (max rel diff %g, -1 = table)", arch, d);
    printf("%s: GGUF import == HF reference (gguf-py dequantised, un-permuted): %s\n", arch, d == 0 ? "bitwise" : "NO");

    /* tokenizer from GGUF metadata */
    CHECK(tok != NULL, "%s: tokenizer from GGUF", arch);
    if (tok) {
        CHECK(tokenizer_vocab_size(tok) == 272 && tokenizer_n_merges(tok) == 13, "tokenizer sizes");
        CHECK(tokenizer_bos_id(tok) == 270 && tokenizer_eos_id(tok) == 271 && tokenizer_unk_id(tok) == 269, "special ids");
        CHECK(tokenizer_chat_template_text(tok) && strstr(tokenizer_chat_template_text(tok), "<|im_start|>"), "chat template");
        CHECK(!strcmp(tokenizer_pretokenizer(tok), llama ? "smollm" : "qwen2"), "pre-tokenizer %s", tokenizer_pretokenizer(tok));
    }

    /* h5 round trip */
    char p5[300], p6[300], pg[300], dh[300];
    snprintf(p5, sizeof p5, "%s/%s.h5", tmp, arch);
    CHECK(ckpt_save(p5, &h, NULL, err, sizeof err) == 0, "%s", err);
    model h5;
    if (!load(p5, &h5, NULL)) {
        CHECK(compare(&h5, &h) == 0, "%s: HF -> h5 changed tensors", arch);
        /* h5 -> HF (F32) -> identical tensors, and identical safetensors bytes per tensor */
        snprintf(dh, sizeof dh, "%s/%s_hf", tmp, arch);
        CHECK(hf_model_save(&h5, tok, dh, ST_F32, 0, err, sizeof err) == 0, "%s", err);
        model h2;
        if (!load(dh, &h2, NULL)) {
            CHECK(compare(&h2, &h) == 0, "%s: HF -> h5 -> HF changed tensors", arch);
            model_config c2;
            CHECK(hf_model_config(dh, &c2, err, sizeof err) == 0 && !memcmp(&c2, &h.cfg, sizeof c2), "config.json round trip");
            model_free(&h2);
        }
        /* h5 -> GGUF F32 -> h5: identical */
        snprintf(pg, sizeof pg, "%s/%s.gguf", tmp, arch);
        CHECK(gguf_model_save(&h5, tok, pg, GGML_TYPE_F32, err, sizeof err) == 0, "%s", err);
        model g2;
        tokenizer *t2 = NULL;
        if (!load(pg, &g2, &t2)) {
            CHECK(compare(&g2, &h) == 0, "%s: h5 -> GGUF -> model changed tensors", arch);
            snprintf(p6, sizeof p6, "%s/%s_2.h5", tmp, arch);
            CHECK(ckpt_save(p6, &g2, NULL, err, sizeof err) == 0, "%s", err);
            model g3;
            if (!load(p6, &g3, NULL)) {
                CHECK(compare(&g3, &h5) == 0, "%s: h5 -> GGUF -> h5 changed tensors", arch);
                model_free(&g3);
            }
            unlink(p6);
            /* the exported GGUF's Q/K rows are permuted exactly like the fixture's (llama) */
            gguf_file a, b;
            if (!gguf_open(&a, pg, err, sizeof err) && !gguf_open(&b, gpath, err, sizeof err)) {
                const gguf_tensor *ta = gguf_find_tensor(&a, "blk.0.attn_q.weight"), *tb = gguf_find_tensor(&b, "blk.0.attn_q.weight");
                float *x = malloc(ta->n_elems * 4), *y = malloc(tb->n_elems * 4);
                gguf_tensor_to_f32(&a, ta, x, err, sizeof err);
                gguf_tensor_to_f32(&b, tb, y, err, sizeof err);
                CHECK(ta->n_elems == tb->n_elems && !memcmp(x, y, ta->n_elems * 4), "%s: exported attn_q rows differ from convert_hf_to_gguf's", arch);
                free(x);
                free(y);
                CHECK(!strcmp(gguf_get_str(&a, "general.architecture"), arch), "exported arch");
                CHECK((gguf_find_tensor(&a, "output.weight") == NULL) == !llama, "tied head omitted");
                gguf_close(&a);
                gguf_close(&b);
            }
            /* tokenizer through GGUF export */
            CHECK(t2 && tokenizer_vocab_size(t2) == 272 && tokenizer_n_merges(t2) == 13 && tokenizer_eos_id(t2) == 271 &&
                      !strcmp(tokenizer_pretokenizer(t2), tokenizer_pretokenizer(tok)) &&
                      !strcmp(tokenizer_chat_template_text(t2), tokenizer_chat_template_text(tok)),
                  "tokenizer through GGUF export");
            if (t2) {
                for (int32_t i = 0; i < 272; i++) {
                    size_t l1, l2;
                    const char *s1 = tokenizer_id_to_token(tok, i, &l1), *s2 = tokenizer_id_to_token(t2, i, &l2);
                    CHECK(l1 == l2 && !memcmp(s1, s2, l1) && tokenizer_token_type(tok, i) == tokenizer_token_type(t2, i), "token %d", i);
                }
                for (int32_t i = 0; i < 13; i++) {
                    int32_t a1, b1, a2, b2;
                    tokenizer_merge(tok, i, &a1, &b1);
                    tokenizer_merge(t2, i, &a2, &b2);
                    CHECK(a1 == a2 && b1 == b2, "merge %d", i);
                }
                tokenizer_free(t2);
            }
            model_free(&g2);
        }
        /* F16 / BF16 exports: every value is the rounded fp32 value */
        int types[2] = {GGML_TYPE_F16, GGML_TYPE_BF16};
        for (int k = 0; k < 2; k++) {
            CHECK(gguf_model_save(&h5, NULL, pg, types[k], err, sizeof err) == 0, "%s", err);
            snprintf(dh, sizeof dh, "%s/%s_hf%d", tmp, arch, k);
            CHECK(hf_model_save(&h5, NULL, dh, k ? ST_BF16 : ST_F16, 20000, err, sizeof err) == 0, "%s", err);
            const char *srcs[2] = {pg, dh};
            for (int s = 0; s < 2; s++) {
                model r;
                if (load(srcs[s], &r, NULL)) continue;
                float *x = params_host(&r), *y = params_host(&h5);
                int bad = 0;
                for (int i = 0; i < r.n_tensors; i++) {
                    const model_tensor *t = &r.tensors[i];
                    int narrow = s == 1 || t->ndim == 2;  /* GGUF keeps norms and biases F32 */
                    for (size_t j = 0; j < t->numel; j++) {
                        float v = y[t->offset + j];
                        float want = !narrow ? v : k ? bf16_to_fp32(fp32_to_bf16(v)) : fp16_to_fp32(fp32_to_fp16(v));
                        bad += x[t->offset + j] != want;
                    }
                }
                CHECK(bad == 0, "%s: %s %s export: %d values not the rounded originals", arch, s ? "HF" : "GGUF", k ? "BF16" : "F16", bad);
                free(x);
                free(y);
                model_free(&r);
            }
        }
        model_free(&h5);
    }
    unlink(p5);
    if (tok) tokenizer_free(tok);
    model_free(&g);
    model_free(&h);
}

/* GGUF import -> our forward == transformers on the HF fixture (two sequences packed in one batch) */
static void test_logits(void) {
    json_error_t je;
    json_t *ref = json_load_file("tests/fixtures/gguf_tiny_logits.json", 0, &je);
    CHECK(ref != NULL, "gguf_tiny_logits.json: %s", je.text);
    if (!ref) return;
    const char *arches[2] = {"llama", "qwen2"};
    json_t *seqs = json_object_get(ref, "seqs");
    int32_t tokens[64], targets[64], cu[3] = {0, 0, 0};
    int T = 0;
    for (int q = 0; q < 2; q++) {
        json_t *sq = json_array_get(seqs, q);
        for (size_t j = 0; j < json_array_size(sq); j++) tokens[T] = (int32_t)json_integer_value(json_array_get(sq, j)), targets[T++] = -1;
        cu[q + 1] = T;
    }
    for (int a = 0; a < 2; a++) {
        char path[256], err[512];
        snprintf(path, sizeof path, "tests/fixtures/gguf_tiny_%s.gguf", arches[a]);
        model m;
        if (model_import(path, be, 64, &m, NULL, err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        model_batch b = {.T = T, .n_seq = 2, .tokens = tokens, .targets = targets, .cu_seqlens = cu, .pos = NULL};
        float logp[64], *lg = malloc((size_t)T * m.cfg.vocab * sizeof(float));
        CHECK(model_forward(&m, &b, logp, NULL, err, sizeof err) == 0, "%s", err);
        CHECK(model_logits(&m, 0, T, lg, err, sizeof err) == 0, "%s", err);
        double maxd = 0, maxr = 0;
        json_t *ra = json_object_get(ref, arches[a]);
        for (int q = 0, t = 0; q < 2; q++) {
            json_t *rows = json_array_get(ra, q);
            for (size_t r = 0; r < json_array_size(rows); r++, t++) {
                json_t *row = json_array_get(rows, r);
                for (int v = 0; v < m.cfg.vocab; v++) {
                    double x = json_real_value(json_array_get(row, v));
                    maxd = fmax(maxd, fabs(x - lg[(size_t)t * m.cfg.vocab + v]));
                    maxr = fmax(maxr, fabs(x));
                }
            }
        }
        CHECK(maxd <= 1e-5 * maxr + 1e-6, "%s: logits differ from transformers by %g (max |logit| %g)", arches[a], maxd, maxr);
        printf("%s: GGUF import -> forward logits vs transformers on the HF fixture: max |diff| %.3g (max |logit| %.3g)\n",
               arches[a], maxd, maxr);
        free(lg);
        model_free(&m);
    }
    json_decref(ref);
}

static void test_permute(void) {
    /* permute(unpermute(x)) == x and the rule itself on a 1-head, hd = 4 example:
       HF rows [r0 r1 r2 r3] -> GGUF rows [r0 r2 r1 r3] */
    float src[4 * 2] = {0, 0, 1, 1, 2, 2, 3, 3}, dst[8], back[8];
    qk_permute(dst, src, 1, 4, 2);
    CHECK(dst[0] == 0 && dst[2] == 2 && dst[4] == 1 && dst[6] == 3, "permute rule");
    qk_unpermute(back, dst, 1, 4, 2);
    CHECK(!memcmp(back, src, sizeof src), "unpermute inverts permute");
}

/* writes a copy of the tiny llama GGUF with one change made through a callback on the parsed file */
static int write_variant(const char *out, const char *drop_tensor, const char *arch, const char *bad_shape_tensor, int q3k_tensor) {
    char err[512];
    gguf_file g;
    if (gguf_open(&g, "tests/fixtures/gguf_tiny_llama.gguf", err, sizeof err)) return -1;
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        if (kv->type == GGUF_TYPE_STRING) {
            gguf_set_str(w, kv->key, arch && !strcmp(kv->key, "general.architecture") ? arch : kv->str);
        } else if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING) {
            gguf_set_arr_str(w, kv->key, (const char *const *)kv->strs, kv->str_lens, kv->n);
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            gguf_set_arr(w, kv->key, kv->arr_type, kv->arr, kv->n);
        } else if (kv->type == GGUF_TYPE_FLOAT32) {
            gguf_set_f32(w, kv->key, (float)kv->v.f);
        } else if (kv->type == GGUF_TYPE_BOOL) {
            gguf_set_bool(w, kv->key, (int)kv->v.u);
        } else {
            gguf_set_u32(w, kv->key, (uint32_t)kv->v.u);
        }
    }
    static uint8_t q3[40 * 2];
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (drop_tensor && !strcmp(t->name, drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        int ty = t->type;
        const void *data = t->data;
        if (bad_shape_tensor && !strcmp(t->name, bad_shape_tensor)) ne[1] /= 2;
        if (q3k_tensor && !strcmp(t->name, "blk.0.ffn_norm.weight")) { /* right shape, type rft cannot dequantise */
            ty = GGML_TYPE_Q8_1;
            data = q3;
        }
        gguf_add_tensor(w, t->name, t->n_dims, ne, ty, data, err, sizeof err);
    }
    int r = gguf_writer_write(w, out, err, sizeof err);
    gguf_writer_free(w);
    gguf_close(&g);
    return r;
}

static void expect_fail(const char *path, const char *want) {
    char err[512] = "";
    model m;
    int r = model_import(path, be, 8, &m, NULL, err, sizeof err);
    if (r == 0) model_free(&m);
    CHECK(r == -1 && strstr(err, want) && !strchr(err, '\n'), "%s: expected an error with '%s', got: %s", path, want,
          r ? err : "success");
    if (r == -1) printf("  rejected: %s\n", err);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_bad(void) {
    char p[600], d[300], src[600];
    printf("bad inputs:\n");
    snprintf(p, sizeof p, "%s/bad.gguf", tmp);
    write_variant(p, NULL, "gpt2", NULL, 0);
    expect_fail(p, "unsupported architecture 'gpt2'");
    write_variant(p, "blk.1.ffn_up.weight", NULL, NULL, 0);
    expect_fail(p, "missing tensor blk.1.ffn_up.weight");
    write_variant(p, NULL, NULL, "blk.0.attn_k.weight", 0);
    expect_fail(p, "blk.0.attn_k.weight has shape [16, 64]");
    write_variant(p, NULL, NULL, NULL, 1);
    expect_fail(p, "blk.0.ffn_norm.weight has type Q8_1");
    /* truncated GGUF */
    size_t n;
    char err[512];
    char *buf = read_file("tests/fixtures/gguf_tiny_llama.gguf", &n, err, sizeof err);
    FILE *f = fopen(p, "wb");
    fwrite(buf, 1, n - 100, f);
    fclose(f);
    expect_fail(p, "past the end of the file");
    free(buf);
    /* HF directories */
    snprintf(d, sizeof d, "%s/badhf", tmp);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\"model_type\": \"bert\", \"vocab_size\": 10}");
    expect_fail(d, "model_type \"bert\" is not supported");
    write_text(p, "{\"model_type\": \"llama\", \"vocab_size\": 16777216, \"hidden_size\": 65536, \"num_hidden_layers\": 1000,"
                  " \"num_attention_heads\": 512, \"intermediate_size\": 1000000}");
    snprintf(src, sizeof src, "%s/model.safetensors", d);
    buf = read_file("tests/fixtures/hf_tiny_qwen2/model.safetensors", &n, err, sizeof err);
    f = fopen(src, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    expect_fail(d, "config.json implies");
    write_text(p, "{\"model_type\": \"llama\", \"vocab_size\": 272, \"hidden_size\": 64, \"num_hidden_layers\": 1,"
                  " \"num_attention_heads\": \"four\", \"intermediate_size\": 96}");
    expect_fail(d, "num_attention_heads");
    write_text(p, "{\"model_type\": \"qwen2\", \"vocab_size\": 272, \"hidden_size\": 64, \"num_hidden_layers\": 1,"
                  " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 96,"
                  " \"tie_word_embeddings\": true, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}");
    expect_fail(d, "rope_scaling (yarn)");
    write_text(p, "{\"model_type\": \"qwen2\", \"vocab_size\": 272, \"hidden_size\": 64, \"num_hidden_layers\": 1,"
                  " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 96,"
                  " \"tie_word_embeddings\": true, \"use_sliding_window\": true}");
    expect_fail(d, "use_sliding_window");
    write_text(p, "{\"model_type\": \"qwen2\", \"vocab_size\": 272, \"hidden_size\": 64, \"num_hidden_layers\": 1,"
                  " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 96,"
                  " \"tie_word_embeddings\": true}");
    f = fopen(src, "wb");
    fwrite(buf, 1, n / 2, f);  /* truncated safetensors */
    fclose(f);
    expect_fail(d, "model.safetensors");
    f = fopen(src, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    model m;
    CHECK(model_import(d, be, 8, &m, NULL, err, sizeof err) == 0, "restored dir loads: %s", err);
    if (!err[0] || 1) model_free(&m);
    free(buf);
    unlink(src);
    unlink(p);
    rmdir(d);
    expect_fail("tests/fixtures", "directory without config.json");
    expect_fail("tests/fixtures/hf_tiny_llama/config.json", "not a GGUF file");
}

/* the rft program: exit statuses of convert and inspect */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *bin = getenv("RFT_BIN");
    if (!bin || access(bin, X_OK)) {
        printf("RFT_BIN not set: CLI checks skipped\n");
        return;
    }
    const char *q = ">/dev/null 2>&1";
    CHECK(run("%s convert tests/fixtures/gguf_tiny_llama.gguf %s/c.h5 %s", bin, tmp, q) == 0, "gguf -> h5");
    CHECK(run("%s convert %s/c.h5 %s/c_hf --dtype bf16 %s", bin, tmp, tmp, q) == 0, "h5 -> hf bf16");
    CHECK(run("%s convert %s/c_hf %s/c.gguf --dtype f16 %s", bin, tmp, tmp, q) == 0, "hf -> gguf f16");
    CHECK(run("%s convert %s/c.gguf %s/c2.h5 %s", bin, tmp, tmp, q) == 0, "gguf -> h5 again");
    CHECK(run("%s inspect %s/c.gguf %s", bin, tmp, q) == 0, "inspect gguf");
    CHECK(run("%s inspect %s/c_hf %s", bin, tmp, q) == 0, "inspect hf");
    char tj[400];
    snprintf(tj, sizeof tj, "%s/c_hf/tokenizer.json", tmp);
    CHECK(access(tj, F_OK) == 0, "tokenizer.json exported");
    model a, b;
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/c.h5", tmp);
    snprintf(p2, sizeof p2, "%s/c2.h5", tmp);
    if (!load(p1, &a, NULL)) {
        if (!load(p2, &b, NULL)) {
            /* bf16 then f16: every value is the bf16 rounding, then exactly representable or rounded to f16 */
            float *x = params_host(&a), *y = params_host(&b);
            int bad = 0;
            for (size_t i = 0; i < a.n_params; i++) {
                float want = bf16_to_fp32(fp32_to_bf16(x[i]));
                int is_matrix = 0;
                for (int k = 0; k < a.n_tensors; k++)
                    if (i >= a.tensors[k].offset && i < a.tensors[k].offset + a.tensors[k].numel) is_matrix = a.tensors[k].ndim == 2;
                if (is_matrix) want = fp16_to_fp32(fp32_to_fp16(want));
                bad += y[i] != want;
            }
            CHECK(bad == 0, "CLI chain gguf -> h5 -> hf(bf16) -> gguf(f16) -> h5: %d values off", bad);
            free(x);
            free(y);
            model_free(&b);
        }
        model_free(&a);
    }
    CHECK(run("%s convert tests/fixtures/gguf_types.gguf %s/x.h5 %s", bin, tmp, q) == 2, "unsupported arch exits 2");
    CHECK(run("%s convert tests/fixtures/nope.gguf %s/x.h5 %s", bin, tmp, q) == 2, "missing file exits 2");
    CHECK(run("%s convert %s/c.h5 %s/x.gguf --dtype q4 %s", bin, tmp, tmp, q) == 2, "bad dtype exits 2");
    CHECK(run("%s convert %s/c.h5 %s %s", bin, tmp, q, "") == 2, "missing OUT exits 2");
    /* a Hugging Face export is a directory: OUT named like a weights file is refused, nothing created */
    const char *weight_names[] = {"x.safetensors", "x.bin", "x.pt", "x.pth", "X.SafeTensors"};
    for (int i = 0; i < 5; i++) {
        char outp[400], errp[400], e2[256];
        snprintf(outp, sizeof outp, "%s/%s", tmp, weight_names[i]);
        snprintf(errp, sizeof errp, "%s/convert_err.txt", tmp);
        int rc = run("%s convert %s/c.h5 %s >/dev/null 2>%s", bin, tmp, outp, errp);
        size_t n = 0;
        char *msg = read_file(errp, &n, e2, sizeof e2);
        int one_line = msg && n > 0 && memchr(msg, '\n', n) == msg + n - 1;
        CHECK(rc == 2 && access(outp, F_OK) != 0 && one_line && strstr(msg, outp) && strstr(msg, "directory") &&
                  strstr(msg, ".h5") && strstr(msg, ".gguf"),
              "convert to %s: exit 2 (got %d), nothing created, one line naming OUT and the accepted outputs: %s",
              weight_names[i], rc, msg ? msg : "");
        free(msg);
    }
    CHECK(run("%s convert %s/c.h5 /nonexistent-dir/x.gguf %s", bin, tmp, q) == 1, "unwritable output exits 1");
    CHECK(run("%s inspect tests/fixtures/gguf_tiny_qwen2.gguf %s", bin, q) == 0, "inspect fixture");
    CHECK(run("head -c 5000 tests/fixtures/gguf_tiny_qwen2.gguf > %s/trunc.gguf", tmp) == 0, "truncate");
    CHECK(run("%s inspect %s/trunc.gguf %s", bin, tmp, q) == 2, "inspect of a truncated GGUF exits 2");
    CHECK(run("%s convert %s/trunc.gguf %s/t.h5 %s", bin, tmp, tmp, q) == 2, "convert of a truncated GGUF exits 2");
}

static void rm_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "warning: could not remove %s\n", dir);
}

int main(void) {
    be = backend_cpu_create(1);
    snprintf(tmp, sizeof tmp, "%s/rft_test_convert_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", getpid());
    mkdir(tmp, 0755);
    test_permute();
    test_logits();
    test_tiny("llama");
    test_tiny("qwen2");
    test_bad();
    test_cli();
    rm_tree(tmp);
    be->destroy(be);
    if (fails) {
        fprintf(stderr, "%d checks failed\n", fails);
        return 1;
    }
    printf("test_convert: all checks passed\n");
    return 0;
}

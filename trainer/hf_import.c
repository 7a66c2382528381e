/* trainer/hf_import.c: Hugging Face model directories in and out:
 * config.json (model_type llama or qwen2) <-> model_config, safetensors
 * (single or sharded, F32/F16/BF16) <-> the model's parameters, and on export
 * config.json + model.safetensors (+ tokenizer files) that transformers
 * loads. Tensor names are already the model's (HF) names. */
#include "convert.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "safetensors.h"
#include "util.h"

/* integer field: 1 found, 0 absent or null, -1 wrong type / range (err set) */
static int jint(json_t *o, const char *key, int *out, long long lo, long long hi, const char *path, char *err, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        errf(err, cap, "%s: field \"%s\" must be an integer in [%lld, %lld]", path, key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 1;
}

static int jnum(json_t *o, const char *key, double *out, const char *path, char *err, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        errf(err, cap, "%s: field \"%s\" must be a number", path, key);
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

static int jbool(json_t *o, const char *key, int *out, const char *path, char *err, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        errf(err, cap, "%s: field \"%s\" must be true or false", path, key);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

int hf_model_config(const char *dir, model_config *c, char *err, size_t cap) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o) return errf(err, cap, "%s:%d: %s", path, je.line, je.text);
    int r = -1;
    if (!json_is_object(o)) {
        errf(err, cap, "%s: not a JSON object", path);
        goto done;
    }
    const char *mt = json_string_value(json_object_get(o, "model_type"));
    if (!mt) {
        errf(err, cap, "%s: field \"model_type\" missing", path);
        goto done;
    }
    int qwen2 = !strcmp(mt, "qwen2");
    if (!qwen2 && strcmp(mt, "llama")) {
        errf(err, cap, "%s: model_type \"%s\" is not supported (rft imports llama and qwen2)", path, mt);
        goto done;
    }
    struct {
        const char *key;
        int *dst;
        int required;
    } ints[] = {
        {"vocab_size", &c->vocab, 1}, {"hidden_size", &c->d_model, 1}, {"num_hidden_layers", &c->n_layer, 1},
        {"num_attention_heads", &c->n_head, 1}, {"intermediate_size", &c->d_ff, 1},
        {"num_key_value_heads", &c->n_kv_head, 0}, {"head_dim", &c->head_dim, 0},
        {"max_position_embeddings", &c->max_seq, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int g = jint(o, ints[i].key, ints[i].dst, 1, 1 << 24, path, err, cap);
        if (g < 0) goto done;
        if (g == 0 && ints[i].required) {
            errf(err, cap, "%s: field \"%s\" missing", path, ints[i].key);
            goto done;
        }
    }
    if (!c->n_kv_head) c->n_kv_head = c->n_head;
    if (!c->max_seq) c->max_seq = 2048;
    if (!c->head_dim) {
        if (c->d_model % c->n_head) {
            errf(err, cap, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->d_model, c->n_head);
            goto done;
        }
        c->head_dim = c->d_model / c->n_head;
    }
    double d = 10000.0;
    if (jnum(o, "rope_theta", &d, path, err, cap) < 0) goto done;
    c->rope_theta = (float)d;
    d = 1e-6;
    if (jnum(o, "rms_norm_eps", &d, path, err, cap) < 0) goto done;
    c->rms_eps = (float)d;
    int tie = 0, bias = 0, mlp_bias = 0;
    if (jbool(o, "tie_word_embeddings", &tie, path, err, cap) < 0) goto done;
    if (jbool(o, "attention_bias", &bias, path, err, cap) < 0) goto done;
    if (jbool(o, "mlp_bias", &mlp_bias, path, err, cap) < 0) goto done;
    c->tie_embeddings = tie;
    c->qkv_bias = qwen2 ? 1 : bias;
    if (mlp_bias) {
        errf(err, cap, "%s: mlp_bias = true is not supported", path);
        goto done;
    }
    json_t *rs = json_object_get(o, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const char *ty = json_string_value(json_object_get(rs, "rope_type"));
        if (!ty) ty = json_string_value(json_object_get(rs, "type"));
        if (!ty || strcmp(ty, "default")) {
            errf(err, cap, "%s: rope_scaling (%s) is not supported by rft's model", path, ty ? ty : "?");
            goto done;
        }
    }
    int sliding = 0;
    if (jbool(o, "use_sliding_window", &sliding, path, err, cap) < 0) goto done;
    if (sliding) {
        errf(err, cap, "%s: use_sliding_window = true is not supported (rft attends over the whole sequence)", path);
        goto done;
    }
    const char *act = json_string_value(json_object_get(o, "hidden_act"));
    if (act && strcmp(act, "silu")) {
        errf(err, cap, "%s: hidden_act \"%s\" is not supported (silu only)", path, act);
        goto done;
    }
    if (!qwen2 && bias) {
        /* llama with attention_bias also has an o_proj bias, which the model lacks */
        errf(err, cap, "%s: llama with attention_bias = true (o_proj bias) is not supported", path);
        goto done;
    }
    r = 0;
done:
    json_decref(o);
    return r;
}

/* checks shape and dtype of every tensor the config implies; no unknown tensors */
static int check_tensors(const st_set *s, const model *m, const char *dir, char *err, size_t cap) {
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *mt = &m->tensors[i];
        const st_file *f;
        const st_tensor *t = st_set_find(s, mt->name, &f);
        if (!t) return errf(err, cap, "%s: missing tensor %s", dir, mt->name);
        int ok = t->ndim == mt->ndim && t->shape[0] == mt->shape[0] && (mt->ndim == 1 || t->shape[1] == mt->shape[1]);
        if (!ok)
            return errf(err, cap, "%s: tensor %s has shape [%lld%s%lld] (%d dims), config.json implies [%lld, %lld]", f->path,
                        mt->name, (long long)t->shape[0], ", ", t->ndim > 1 ? (long long)t->shape[1] : 1LL, t->ndim,
                        (long long)mt->shape[0], (long long)mt->shape[1]);
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return errf(err, cap, "%s: tensor %s has dtype %s (rft reads F32, F16, BF16)", f->path, mt->name, st_dtype_name(t->dtype));
    }
    for (int k = 0; k < s->n_files; k++)
        for (int j = 0; j < s->files[k].n; j++) {
            const char *nm = s->files[k].t[j].name;
            if (model_find_tensor(m, nm) >= 0) continue;
            if (strstr(nm, "rotary_emb.inv_freq")) continue;                      /* old checkpoints: recomputed */
            if (m->cfg.tie_embeddings && !strcmp(nm, "lm_head.weight")) continue; /* saved copy of a tied head */
            return errf(err, cap, "%s: tensor %s is not part of the model described by config.json", s->files[k].path, nm);
        }
    return 0;
}

/* Before any big allocation: the weights config.json implies (a lower bound:
   matrices only) must be present in the safetensors, whose sizes are bounded
   by the files, so an absurd config cannot ask for terabytes. */
static int size_check(const st_set *s, const model_config *c, const char *dir, char *err, size_t cap) {
    double D = c->d_model, want = (double)c->vocab * D * (c->tie_embeddings ? 1 : 2) +
                               (double)c->n_layer * (D * c->head_dim * (2.0 * c->n_head + 2.0 * c->n_kv_head) + 3.0 * D * c->d_ff);
    double have = 0;
    for (int k = 0; k < s->n_files; k++)
        for (int j = 0; j < s->files[k].n; j++) have += (double)s->files[k].t[j].n_elems;
    if (want > have)
        return errf(err, cap, "%s: config.json implies %.0f weights but the safetensors hold %.0f", dir, want, have);
    return 0;
}

int hf_model_load(const char *dir, backend *be, int max_tokens, model *m, char *err, size_t cap) {
    model_config c;
    memset(m, 0, sizeof *m);
    if (hf_model_config(dir, &c, err, cap)) return -1;
    st_set s;
    if (st_set_open(&s, dir, err, cap)) return -1;
    char e2[512];
    if (size_check(&s, &c, dir, err, cap)) goto fail_set;
    if (model_create(m, &c, be, max_tokens, e2, sizeof e2)) {
        errf(err, cap, "%s: %s", dir, e2);
        goto fail_set;
    }
    if (check_tensors(&s, m, dir, err, cap)) goto fail_model;
    /* host staging one tensor at a time (peak host memory: the largest tensor) */
    size_t mx = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > mx) mx = m->tensors[i].numel;
    float *host = xmalloc(mx * sizeof(float), e2, sizeof e2);
    if (!host) {
        errf(err, cap, "%s: %s", dir, e2);
        goto fail_model;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *mt = &m->tensors[i];
        const st_file *f;
        const st_tensor *t = st_set_find(&s, mt->name, &f);
        if (st_tensor_to_f32(f, t, host, err, cap)) {
            free(host);
            goto fail_model;
        }
        for (size_t j = 0; j < mt->numel; j++)
            if (!isfinite(host[j])) {
                errf(err, cap, "%s: tensor %s has a non-finite value at element %zu", f->path, mt->name, j);
                free(host);
                goto fail_model;
            }
        be->copy_h2d(be, m->params + mt->offset, host, mt->numel * sizeof(float));
        if (be->sync(be)) {
            errf(err, cap, "%s: copying %s to the device: %s", dir, mt->name, be->err);
            free(host);
            goto fail_model;
        }
    }
    free(host);
    st_set_close(&s);
    return 0;
fail_model:
    model_free(m);
    memset(m, 0, sizeof *m);
fail_set:
    st_set_close(&s);
    return -1;
}

/* shortest %g text that reads back as the same float */
static void fmt_float(char *buf, size_t cap, float f) {
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, cap, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    if (!strpbrk(buf, ".en")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

static int write_config(const model *m, const tokenizer *tok, const char *dir, int st_dtype, char *err, size_t cap) {
    const model_config *c = &m->cfg;
    char path[1100], tmp[1200], theta[32], eps[32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return errf(err, cap, "%s: %s", tmp, strerror(errno));
    int qwen2 = c->qkv_bias;
    fmt_float(theta, sizeof theta, c->rope_theta);
    fmt_float(eps, sizeof eps, c->rms_eps);
    const char *dt = st_dtype == ST_F16 ? "float16" : st_dtype == ST_BF16 ? "bfloat16" : "float32";
    fprintf(fp, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM",
            qwen2 ? "qwen2" : "llama");
    fprintf(fp, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n",
            c->vocab, c->d_model, c->d_ff, c->n_layer);
    fprintf(fp, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", c->n_head, c->n_kv_head,
            c->head_dim);
    fprintf(fp, "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %s,\n  \"rope_theta\": %s,\n  \"rope_scaling\": null,\n",
            c->max_seq, eps, theta);
    fprintf(fp, "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n  \"initializer_range\": 0.02,\n",
            c->tie_embeddings ? "true" : "false");
    if (qwen2)
        fprintf(fp, "  \"use_sliding_window\": false,\n  \"sliding_window\": null,\n  \"max_window_layers\": %d,\n", c->n_layer);
    else
        fprintf(fp, "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"pretraining_tp\": 1,\n");
    if (tok && tokenizer_bos_id(tok) >= 0) fprintf(fp, "  \"bos_token_id\": %d,\n", tokenizer_bos_id(tok));
    if (tok && tokenizer_eos_id(tok) >= 0) fprintf(fp, "  \"eos_token_id\": %d,\n", tokenizer_eos_id(tok));
    fprintf(fp, "  \"attention_dropout\": 0.0,\n  \"use_cache\": true,\n  \"torch_dtype\": \"%s\"\n}\n", dt);
    int bad = ferror(fp);
    if (fclose(fp) || bad) {
        unlink(tmp);
        return errf(err, cap, "%s: write failed", tmp);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return errf(err, cap, "%s: rename: %s", path, strerror(errno));
    }
    return 0;
}

int hf_model_save(const model *m, const tokenizer *tok, const char *dir, int st_dtype, unsigned long long max_shard,
                  char *err, size_t cap) {
    if (st_dtype != ST_F32 && st_dtype != ST_F16 && st_dtype != ST_BF16)
        return errf(err, cap, "%s: export dtype must be F32, F16 or BF16", dir);
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return errf(err, cap, "%s: exists and is not a directory", dir);
    } else if (mkdir(dir, 0755)) {
        return errf(err, cap, "%s: mkdir: %s", dir, strerror(errno));
    }
    char e2[256];
    size_t es = st_dtype == ST_F32 ? 4 : 2;
    float *host = xmalloc(m->n_params * sizeof(float), e2, sizeof e2);
    if (!host) return errf(err, cap, "%s: %s", dir, e2);
    m->be->copy_d2h(m->be, host, m->params, m->n_params * sizeof(float));
    if (m->be->sync(m->be)) {
        free(host);
        return errf(err, cap, "%s: reading weights from the device: %s", dir, m->be->err);
    }
    if (es == 2) {  /* narrow in place: element j (bytes 4j..4j+3) is read before bytes 2j..2j+1 are written */
        uint16_t *h = (uint16_t *)(void *)host;
        for (size_t j = 0; j < m->n_params; j++) {
            float v = host[j];
            h[j] = st_dtype == ST_F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
        }
    }
    st_wtensor *w = calloc((size_t)m->n_tensors, sizeof *w);
    if (!w) {
        free(host);
        return errf(err, cap, "%s: out of memory", dir);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *mt = &m->tensors[i];
        w[i].name = mt->name;
        w[i].dtype = st_dtype;
        w[i].ndim = mt->ndim;
        w[i].shape[0] = mt->shape[0];
        w[i].shape[1] = mt->shape[1];
        w[i].data = (const uint8_t *)host + mt->offset * es;
    }
    int r = st_write_dir(dir, w, m->n_tensors, max_shard, err, cap);
    free(w);
    free(host);
    if (!r) r = write_config(m, tok, dir, st_dtype, err, cap);
    if (!r && tok) {
        char tj[1100], tc[1100];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
        snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
        r = tokenizer_save_json(tok, tj, tc, err, cap);
    }
    return r;
}

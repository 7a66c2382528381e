/* trainer/convert.c: model import/export glue (see convert.h): source
 * detection and dispatch, the parameter table a config implies, and the GGUF
 * side: llama/qwen2 metadata <-> model_config, GGUF tensor names <-> Hugging
 * Face names, Q/K row (un)permutation, tokenizer.ggml.* <-> tokenizer. */
#include "convert.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "checkpoint.h"
#include "quant.h"
#include "tokenizer_h5.h"
#include "util.h"

/* ---- source detection ---- */

int gguf_is_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, fp);
    fclose(fp);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

int hf_is_dir(const char *path) {
    struct stat st;
    char p[1100];
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return 0;
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

model_src model_source_kind(const char *path) {
    if (hf_is_dir(path)) return MODEL_SRC_HF;
    if (gguf_is_file(path)) return MODEL_SRC_GGUF;
    if (ckpt_is_hdf5(path)) return MODEL_SRC_H5;
    return MODEL_SRC_UNKNOWN;
}

static int unknown_source(const char *path, char *err, size_t cap) {
    struct stat st;
    if (stat(path, &st)) return errf(err, cap, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return errf(err, cap, "%s: directory without config.json (not a Hugging Face model)", path);
    return errf(err, cap, "%s: not a GGUF file, rft checkpoint (HDF5) or Hugging Face directory", path);
}

int model_source_config(const char *path, model_config *cfg, char *err, size_t cap) {
    switch (model_source_kind(path)) {
    case MODEL_SRC_HF: return hf_model_config(path, cfg, err, cap);
    case MODEL_SRC_H5: return ckpt_read_config(path, cfg, err, cap);
    case MODEL_SRC_GGUF: {
        gguf_file g;
        if (gguf_open(&g, path, err, cap)) return -1;
        char arch[64];
        int r = gguf_model_config(&g, cfg, arch, sizeof arch, err, cap);
        gguf_close(&g);
        return r;
    }
    default: return unknown_source(path, err, cap);
    }
}

int model_import(const char *path, backend *be, int max_tokens, model *m, tokenizer **tok, char *err, size_t cap) {
    if (tok) *tok = NULL;
    memset(m, 0, sizeof *m);
    switch (model_source_kind(path)) {
    case MODEL_SRC_GGUF: {
        gguf_file g;
        if (gguf_open(&g, path, err, cap)) return -1;
        int r = gguf_model_load(&g, be, max_tokens, m, err, cap);
        if (!r && tok && gguf_get(&g, "tokenizer.ggml.tokens")) {
            *tok = gguf_tokenizer_load(&g, err, cap);
            if (!*tok) {
                model_free(m);
                r = -1;
            }
        }
        gguf_close(&g);
        return r;
    }
    case MODEL_SRC_HF: {
        if (hf_model_load(path, be, max_tokens, m, err, cap)) return -1;
        char tj[1100], tc[1100];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
        snprintf(tc, sizeof tc, "%s/tokenizer_config.json", path);
        if (tok && access(tj, F_OK) == 0) {
            *tok = tokenizer_load_json(tj, access(tc, F_OK) == 0 ? tc : NULL, err, cap);
            if (!*tok) {
                model_free(m);
                return -1;
            }
        }
        return 0;
    }
    case MODEL_SRC_H5: {
        ckpt_file *f = ckpt_open(path, err, cap);
        if (!f) return -1;
        char e2[512];
        int r = model_create(m, ckpt_config(f), be, max_tokens, e2, sizeof e2);
        if (r) errf(err, cap, "%s: %s", path, e2);
        if (!r && ckpt_load_model(f, m, err, cap)) {
            model_free(m);
            r = -1;
        }
        if (!r && tok && ckpt_has_tokenizer(f) && ckpt_load_tokenizer(f, tokenizer_h5_load, tok, err, cap)) {
            model_free(m);
            r = -1;
        }
        ckpt_close(f);
        return r;
    }
    default: return unknown_source(path, err, cap);
    }
}

/* ---- Q/K permutation ---- */

/* convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2):
   permuted row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i */
void qk_permute(float *dst, const float *src, int n_head, int hd, int cols) {
    int half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + 2 * i + j) * cols, src + ((size_t)h * hd + j * half + i) * cols,
                       (size_t)cols * sizeof(float));
}

void qk_unpermute(float *dst, const float *src, int n_head, int hd, int cols) {
    int half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + j * half + i) * cols, src + ((size_t)h * hd + 2 * i + j) * cols,
                       (size_t)cols * sizeof(float));
}

/* ---- GGUF <-> HF names ---- */

/* HF name -> GGUF name; *perm_heads > 0 when the GGUF rows are permuted
   (llama q_proj: n_head, k_proj: n_kv_head). 0 on success, -1 unknown. */
static int gguf_name_of(const char *hf, const model_config *c, int permuted, char *out, size_t cap, int *perm_heads) {
    static const struct {
        const char *hf, *gg;
    } per_layer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    *perm_heads = 0;
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight"), 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight"), 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight"), 0;
    int l, k;
    if (sscanf(hf, "model.layers.%d.%n", &l, &k) == 1) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++)
            if (!strcmp(hf + k, per_layer[i].hf)) {
                snprintf(out, cap, "blk.%d.%s", l, per_layer[i].gg);
                if (permuted && !strcmp(per_layer[i].gg, "attn_q.weight")) *perm_heads = c->n_head;
                if (permuted && !strcmp(per_layer[i].gg, "attn_k.weight")) *perm_heads = c->n_kv_head;
                return 0;
            }
    }
    return -1;
}

/* the model's parameter table for cfg (same names/shapes/order as model.c) */
typedef struct spec {
    char name[96];
    int ndim;
    int64_t shape[2];
} spec;

static int specs_build(const model_config *c, spec **out) {
    int n = 1 + c->n_layer * (9 + 3 * (c->qkv_bias != 0)) + 1 + !c->tie_embeddings, k = 0;
    spec *s = calloc((size_t)n, sizeof *s);
    if (!s) return -1;
    int64_t D = c->d_model, F = c->d_ff, qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_kv_head * c->head_dim;
#define S(nd, a, b, ...)                                                \
    do {                                                                \
        snprintf(s[k].name, sizeof s[k].name, __VA_ARGS__);             \
        s[k].ndim = nd, s[k].shape[0] = a, s[k].shape[1] = nd == 2 ? b : 1; \
        k++;                                                            \
    } while (0)
    S(2, c->vocab, D, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layer; l++) {
        S(1, D, 0, "model.layers.%d.input_layernorm.weight", l);
        S(2, qd, D, "model.layers.%d.self_attn.q_proj.weight", l);
        if (c->qkv_bias) S(1, qd, 0, "model.layers.%d.self_attn.q_proj.bias", l);
        S(2, kvd, D, "model.layers.%d.self_attn.k_proj.weight", l);
        if (c->qkv_bias) S(1, kvd, 0, "model.layers.%d.self_attn.k_proj.bias", l);
        S(2, kvd, D, "model.layers.%d.self_attn.v_proj.weight", l);
        if (c->qkv_bias) S(1, kvd, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        S(2, D, qd, "model.layers.%d.self_attn.o_proj.weight", l);
        S(1, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        S(2, F, D, "model.layers.%d.mlp.gate_proj.weight", l);
        S(2, F, D, "model.layers.%d.mlp.up_proj.weight", l);
        S(2, D, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
    S(1, D, 0, "model.norm.weight");
    if (!c->tie_embeddings) S(2, c->vocab, D, "lm_head.weight");
#undef S
    *out = s;
    return k;
}

/* ---- GGUF import ---- */

static int is_permuted_arch(const char *arch) { return !strcmp(arch, "llama"); }

int gguf_model_config(const gguf_file *g, model_config *c, char *arch, size_t arch_cap, char *err, size_t cap) {
    const char *p = g->path;
    memset(c, 0, sizeof *c);
    const char *a = gguf_get_str(g, "general.architecture");
    if (!a) return errf(err, cap, "%s: no general.architecture string", p);
    snprintf(arch, arch_cap, "%s", a);
    if (strcmp(a, "llama") && strcmp(a, "qwen2"))
        return errf(err, cap, "%s: unsupported architecture '%s' (rft imports llama and qwen2)", p, a);
    char key[128];
    int64_t v;
    double d;
    struct {
        const char *suffix;
        int *dst;
        int required;
    } ints[] = {
        {"embedding_length", &c->d_model, 1}, {"block_count", &c->n_layer, 1},
        {"attention.head_count", &c->n_head, 1}, {"feed_forward_length", &c->d_ff, 1},
        {"attention.head_count_kv", &c->n_kv_head, 0}, {"context_length", &c->max_seq, 0},
        {"attention.key_length", &c->head_dim, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", a, ints[i].suffix);
        int r = gguf_get_int(g, key, &v, err, cap);
        if (r < 0) return -1;
        if (r == 0) {
            if (ints[i].required) return errf(err, cap, "%s: missing metadata key %s", p, key);
            continue;
        }
        if (v <= 0 || v > (1 << 24)) return errf(err, cap, "%s: metadata key %s has invalid value %lld", p, key, (long long)v);
        *ints[i].dst = (int)v;
    }
    if (!c->n_kv_head) c->n_kv_head = c->n_head;
    if (!c->max_seq) c->max_seq = 2048;
    if (!c->head_dim) {
        if (c->d_model % c->n_head) return errf(err, cap, "%s: embedding_length %d is not a multiple of head_count %d", p, c->d_model, c->n_head);
        c->head_dim = c->d_model / c->n_head;
    }
    snprintf(key, sizeof key, "%s.attention.value_length", a);
    int r = gguf_get_int(g, key, &v, err, cap);
    if (r < 0) return -1;
    if (r == 1 && v != c->head_dim)
        return errf(err, cap, "%s: %s = %lld differs from the key length %d (unsupported)", p, key, (long long)v, c->head_dim);
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    c->rope_theta = 10000.0f;
    if ((r = gguf_get_float(g, key, &d, err, cap)) < 0) return -1;
    if (r == 1) c->rope_theta = (float)d;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((r = gguf_get_float(g, key, &d, err, cap)) < 0) return -1;
    if (r == 0) return errf(err, cap, "%s: missing metadata key %s", p, key);
    c->rms_eps = (float)d;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    const char *scal = gguf_get_str(g, key);
    if (scal && strcmp(scal, "none"))
        return errf(err, cap, "%s: RoPE scaling '%s' (%s) is not supported by rft's model", p, scal, key);
    if (gguf_find_tensor(g, "rope_freqs.weight"))
        return errf(err, cap, "%s: tensor rope_freqs.weight (Llama 3.1 RoPE scaling) is not supported by rft's model", p);
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if ((r = gguf_get_int(g, key, &v, err, cap)) < 0) return -1;
    if (r == 1 && v != c->head_dim)
        return errf(err, cap, "%s: %s = %lld: partial RoPE (head size %d) is not supported", p, key, (long long)v, c->head_dim);

    if ((uint64_t)c->n_layer * 9 > g->n_tensors)
        return errf(err, cap, "%s: %s.block_count = %d but the file holds only %llu tensors", p, a, c->n_layer,
                    (unsigned long long)g->n_tensors);
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return errf(err, cap, "%s: missing tensor token_embd.weight", p);
    if (emb->n_dims != 2 || emb->ne[0] != c->d_model || emb->ne[1] <= 0 || emb->ne[1] > (1 << 24))
        return errf(err, cap, "%s: tensor token_embd.weight has shape [%lld, %lld], expected [vocab, %d]", p,
                    (long long)emb->ne[1], (long long)emb->ne[0], c->d_model);
    c->vocab = (int)emb->ne[1];
    c->tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;

    /* every tensor the config implies, with its shape; and no tensor we would ignore */
    spec *s;
    int n = specs_build(c, &s);
    if (n < 0) return errf(err, cap, "%s: out of memory", p);
    int bad = 0;
    char gname[128];
    for (int i = 0; i < n && !bad; i++) {
        int ph;
        gguf_name_of(s[i].name, c, 0, gname, sizeof gname, &ph);
        const gguf_tensor *t = gguf_find_tensor(g, gname);
        if (!t) {
            bad = errf(err, cap, "%s: missing tensor %s (for %s)", p, gname, s[i].name);
            break;
        }
        int ok = t->n_dims == s[i].ndim &&
                 (s[i].ndim == 1 ? t->ne[0] == s[i].shape[0] : t->ne[0] == s[i].shape[1] && t->ne[1] == s[i].shape[0]);
        if (!ok) {
            char got[96], want[64];
            int o = 0;
            for (int d = t->n_dims - 1; d >= 0; d--) o += snprintf(got + o, sizeof got - o, d ? "%lld, " : "%lld", (long long)t->ne[d]);
            if (s[i].ndim == 2) snprintf(want, sizeof want, "%lld, %lld", (long long)s[i].shape[0], (long long)s[i].shape[1]);
            else snprintf(want, sizeof want, "%lld", (long long)s[i].shape[0]);
            bad = errf(err, cap, "%s: tensor %s has shape [%s], expected [%s] from the metadata", p, gname, got, want);
        } else if (!ggml_type_can_dequantize(t->type)) {
            bad = errf(err, cap, "%s: tensor %s has type %s; rft reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K",
                       p, gname, ggml_type_name(t->type) ? ggml_type_name(t->type) : "unknown");
        }
    }
    if (!bad && (uint64_t)n != g->n_tensors) {
        /* find the tensor no parameter maps to */
        for (uint64_t k = 0; k < g->n_tensors && !bad; k++) {
            int used = 0;
            for (int i = 0; i < n && !used; i++) {
                int ph;
                gguf_name_of(s[i].name, c, 0, gname, sizeof gname, &ph);
                used = !strcmp(gname, g->tensors[k].name);
            }
            if (!used)
                bad = errf(err, cap, "%s: tensor %s is not part of a %s model with %d layers (unsupported variant)", p,
                           g->tensors[k].name, a, c->n_layer);
        }
    }
    free(s);
    return bad ? -1 : 0;
}

int gguf_model_load(const gguf_file *g, backend *be, int max_tokens, model *m, char *err, size_t cap) {
    model_config c;
    char arch[64];
    memset(m, 0, sizeof *m);
    if (gguf_model_config(g, &c, arch, sizeof arch, err, cap)) return -1;
    char e2[512];
    if (model_create(m, &c, be, max_tokens, e2, sizeof e2)) return errf(err, cap, "%s: %s", g->path, e2);
    int permuted = is_permuted_arch(arch);
    size_t mx = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > mx) mx = m->tensors[i].numel;
    /* host staging, one tensor at a time (peak host memory: two of the largest tensor) */
    float *host = xmalloc(2 * mx * sizeof(float), e2, sizeof e2);
    if (!host) {
        model_free(m);
        return errf(err, cap, "%s: %s", g->path, e2);
    }
    float *scratch = host + mx;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *mt = &m->tensors[i];
        char gname[128];
        int ph;
        if (gguf_name_of(mt->name, &c, permuted, gname, sizeof gname, &ph)) {
            errf(err, cap, "%s: model tensor %s has no GGUF name", g->path, mt->name);
            goto fail;
        }
        const gguf_tensor *t = gguf_find_tensor(g, gname);
        if (!t || t->n_elems != mt->numel) {
            errf(err, cap, "%s: tensor %s missing or of the wrong size", g->path, gname);
            goto fail;
        }
        float *dst = host;
        if (gguf_tensor_to_f32(g, t, ph ? scratch : dst, err, cap)) goto fail;
        if (ph) qk_unpermute(dst, scratch, ph, c.head_dim, (int)mt->shape[1]);
        for (size_t j = 0; j < mt->numel; j++)
            if (!isfinite(dst[j])) {
                errf(err, cap, "%s: tensor %s has a non-finite value at element %zu", g->path, gname, j);
                goto fail;
            }
        be->copy_h2d(be, m->params + mt->offset, dst, mt->numel * sizeof(float));
        if (be->sync(be)) {
            errf(err, cap, "%s: copying %s to the device: %s", g->path, gname, be->err);
            goto fail;
        }
    }
    free(host);
    if (be->sync(be)) return errf(err, cap, "%s: copying weights to the device: %s", g->path, be->err);
    return 0;
fail:
    free(host);
    model_free(m);
    memset(m, 0, sizeof *m);
    return -1;
}

/* ---- GGUF tokenizer ---- */

tokenizer *gguf_tokenizer_load(const gguf_file *g, char *err, size_t cap) {
    const char *p = g->path;
    const char *model_name = gguf_get_str(g, "tokenizer.ggml.model");
    if (!model_name) return errf(err, cap, "%s: no tokenizer.ggml.model", p), NULL;
    if (strcmp(model_name, "gpt2"))
        return errf(err, cap, "%s: tokenizer.ggml.model '%s' is not supported (rft reads byte-level BPE, 'gpt2')", p, model_name),
               NULL;
    const gguf_kv *tk = gguf_get(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GGUF_TYPE_ARRAY || tk->arr_type != GGUF_TYPE_STRING || tk->n == 0 || tk->n > (1u << 24))
        return errf(err, cap, "%s: tokenizer.ggml.tokens must be a non-empty array of strings", p), NULL;
    const gguf_kv *ty = gguf_get(g, "tokenizer.ggml.token_type");
    const gguf_kv *mg = gguf_get(g, "tokenizer.ggml.merges");
    if (ty && (ty->type != GGUF_TYPE_ARRAY || ty->n != tk->n || !gguf_type_size(ty->arr_type) || ty->arr_type == GGUF_TYPE_FLOAT32 ||
               ty->arr_type == GGUF_TYPE_FLOAT64))
        return errf(err, cap, "%s: tokenizer.ggml.token_type must be an integer array as long as tokenizer.ggml.tokens", p), NULL;
    if (mg && (mg->type != GGUF_TYPE_ARRAY || mg->arr_type != GGUF_TYPE_STRING || mg->n > (1u << 24)))
        return errf(err, cap, "%s: tokenizer.ggml.merges must be an array of strings", p), NULL;
    tokenizer_spec s;
    tokenizer_spec_init(&s);
    s.n_vocab = (int32_t)tk->n;
    s.tokens = (const char *const *)tk->strs;
    size_t *lens = malloc(tk->n * sizeof(size_t));
    int32_t *types = ty ? malloc(tk->n * sizeof(int32_t)) : NULL;
    if (!lens || (ty && !types)) {
        free(lens);
        free(types);
        return errf(err, cap, "%s: out of memory", p), NULL;
    }
    for (uint64_t i = 0; i < tk->n; i++) lens[i] = (size_t)tk->str_lens[i];
    if (ty)
        for (uint64_t i = 0; i < tk->n; i++) types[i] = (int32_t)gguf_arr_i64(ty, i);
    s.token_lens = lens;
    s.token_types = types;
    if (mg) {
        s.n_merges = (int32_t)mg->n;
        s.merges = (const char *const *)mg->strs;
    }
    const char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
    int ignore = 0;
    s.pretokenizer = tokenizer_pre_from_gguf(pre ? pre : "default", &ignore);
    if (!s.pretokenizer) {
        free(lens);
        free(types);
        return errf(err, cap, "%s: tokenizer.ggml.pre '%s' is not a supported pre-tokenizer", p, pre), NULL;
    }
    s.ignore_merges = ignore;
    struct {
        const char *key;
        int32_t *dst;
    } ids[] = {{"tokenizer.ggml.bos_token_id", &s.bos_id}, {"tokenizer.ggml.eos_token_id", &s.eos_id},
               {"tokenizer.ggml.padding_token_id", &s.pad_id}, {"tokenizer.ggml.unknown_token_id", &s.unk_id}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int64_t v;
        int r = gguf_get_int(g, ids[i].key, &v, err, cap);
        if (r < 0 || (r == 1 && (v < 0 || (uint64_t)v >= tk->n))) {
            free(lens);
            free(types);
            if (r == 1) errf(err, cap, "%s: %s = %lld is outside the vocabulary", p, ids[i].key, (long long)v);
            return NULL;
        }
        if (r == 1) *ids[i].dst = (int32_t)v;
    }
    int b = 0;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err, cap) < 0) {
        free(lens);
        free(types);
        return NULL;
    }
    s.add_bos = b;
    s.chat_template = gguf_get_str(g, "tokenizer.chat_template");
    char e2[512];
    tokenizer *t = tokenizer_create(&s, e2, sizeof e2);
    free(lens);
    free(types);
    if (!t) errf(err, cap, "%s: tokenizer: %s", p, e2);
    return t;
}

/* ---- GGUF export ---- */

static const char *gguf_pre_name(const tokenizer *t) {
    const char *n = tokenizer_pretokenizer(t);
    if (!strcmp(n, "llama3")) return "llama-bpe";
    if (!strcmp(n, "gpt2")) return "gpt-2";
    return n; /* smollm, qwen2 */
}

static void gguf_put_tokenizer(gguf_writer *w, const tokenizer *t, int *oom) {
    int32_t V = tokenizer_vocab_size(t), nm = tokenizer_n_merges(t);
    const char **toks = malloc((size_t)V * sizeof *toks);
    uint64_t *lens = malloc((size_t)V * sizeof *lens);
    int32_t *types = malloc((size_t)V * sizeof *types);
    char **merges = calloc((size_t)nm + 1, sizeof *merges);
    if (!toks || !lens || !types || !merges) {
        *oom = 1;
        goto done;
    }
    for (int32_t i = 0; i < V; i++) {
        size_t len = 0;
        toks[i] = tokenizer_id_to_token(t, i, &len);
        if (!toks[i]) toks[i] = "", len = 0;
        lens[i] = len;
        int ty = tokenizer_token_type(t, i);
        types[i] = ty > 0 ? ty : TOK_TYPE_NORMAL;
    }
    for (int32_t i = 0; i < nm; i++) {
        int32_t l, r;
        size_t ll, rl;
        tokenizer_merge(t, i, &l, &r);
        const char *ls = tokenizer_id_to_token(t, l, &ll), *rs = tokenizer_id_to_token(t, r, &rl);
        merges[i] = malloc(ll + rl + 2);
        if (!merges[i] || !ls || !rs) {
            *oom = 1;
            goto done;
        }
        memcpy(merges[i], ls, ll);
        merges[i][ll] = ' ';
        memcpy(merges[i] + ll + 1, rs, rl);
        merges[i][ll + 1 + rl] = 0;
    }
    gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_set_str(w, "tokenizer.ggml.pre", gguf_pre_name(t));
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, (uint64_t)V);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)V);
    gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, (uint64_t)nm);
    if (tokenizer_bos_id(t) >= 0) gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tokenizer_bos_id(t));
    if (tokenizer_eos_id(t) >= 0) gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)tokenizer_eos_id(t));
    if (tokenizer_unk_id(t) >= 0) gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tokenizer_unk_id(t));
    if (tokenizer_pad_id(t) >= 0) gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)tokenizer_pad_id(t));
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", tokenizer_add_bos(t));
    if (tokenizer_chat_template_text(t)) gguf_set_str(w, "tokenizer.chat_template", tokenizer_chat_template_text(t));
done:
    if (merges)
        for (int32_t i = 0; i < nm; i++) free(merges[i]);
    free(merges);
    free(toks);
    free(lens);
    free(types);
}

int gguf_model_save(const model *m, const tokenizer *tok, const char *path, int type, char *err, size_t cap) {
    const model_config *c = &m->cfg;
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16)
        return errf(err, cap, "%s: GGUF export writes F32, F16 or BF16 (not %s)", path, ggml_type_name(type));
    if (tok && tokenizer_vocab_size(tok) > c->vocab)
        return errf(err, cap, "%s: tokenizer has %d tokens, more than the model's vocab %d", path, tokenizer_vocab_size(tok), c->vocab);
    const char *arch = c->qkv_bias ? "qwen2" : "llama";
    int permuted = is_permuted_arch(arch);
    /* host copy of all parameters, then each 2-D tensor encoded into one output buffer */
    size_t enc_bytes = 0, mx = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        enc_bytes += m->tensors[i].numel * (m->tensors[i].ndim == 2 && type != GGML_TYPE_F32 ? 2 : 4);
        if (m->tensors[i].numel > mx) mx = m->tensors[i].numel;
    }
    char e2[256];
    /* host: all parameters, then one tensor of scratch for the permutation */
    float *host = xmalloc((m->n_params + mx) * sizeof(float), e2, sizeof e2);
    uint8_t *enc = host ? xmalloc(enc_bytes, e2, sizeof e2) : NULL;
    if (!host || !enc) {
        free(host);
        return errf(err, cap, "%s: %s", path, e2);
    }
    m->be->copy_d2h(m->be, host, m->params, m->n_params * sizeof(float));
    if (m->be->sync(m->be)) {
        free(host);
        free(enc);
        return errf(err, cap, "%s: reading weights from the device: %s", path, m->be->err);
    }
    gguf_writer *w = gguf_writer_new();
    if (!w) {
        free(host);
        free(enc);
        return errf(err, cap, "%s: out of memory", path);
    }
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    gguf_set_str(w, "general.architecture", arch);
    gguf_set_str(w, "general.name", "rft model");
    gguf_set_u32(w, "general.file_type", type == GGML_TYPE_F32 ? 0 : type == GGML_TYPE_F16 ? 1 : 32);
    gguf_set_u32(w, K("block_count"), (uint32_t)c->n_layer);
    gguf_set_u32(w, K("context_length"), (uint32_t)c->max_seq);
    gguf_set_u32(w, K("embedding_length"), (uint32_t)c->d_model);
    gguf_set_u32(w, K("feed_forward_length"), (uint32_t)c->d_ff);
    gguf_set_u32(w, K("attention.head_count"), (uint32_t)c->n_head);
    gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_head);
    gguf_set_f32(w, K("rope.freq_base"), c->rope_theta);
    gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps);
    if (c->head_dim * c->n_head != c->d_model) {
        gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
        gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
    }
    if (permuted) {
        gguf_set_u32(w, K("vocab_size"), (uint32_t)c->vocab);
        gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim);
    }
#undef K
    int oom = 0;
    if (tok) gguf_put_tokenizer(w, tok, &oom);
    int r = oom ? errf(err, cap, "%s: out of memory writing tokenizer metadata", path) : 0;
    size_t eo = 0;
    for (int i = 0; i < m->n_tensors && !r; i++) {
        const model_tensor *mt = &m->tensors[i];
        char gname[128];
        int ph;
        gguf_name_of(mt->name, c, permuted, gname, sizeof gname, &ph);
        const float *src = host + mt->offset;
        int ty = mt->ndim == 2 ? type : GGML_TYPE_F32;
        uint8_t *dst = enc + eo;
        if (ph) {  /* llama.cpp's row order for Q and K */
            qk_permute(host + m->n_params, src, ph, c->head_dim, (int)mt->shape[1]);
            src = host + m->n_params;
        }
        if (ty == GGML_TYPE_F32) {
            memcpy(dst, src, mt->numel * 4);
            eo += mt->numel * 4;
        } else {
            uint16_t *h = (uint16_t *)(void *)dst;
            for (size_t j = 0; j < mt->numel; j++) {
                float v = src[j];
                h[j] = ty == GGML_TYPE_F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
            }
            eo += mt->numel * 2;
        }
        int64_t ne[2] = {mt->ndim == 2 ? mt->shape[1] : mt->shape[0], mt->shape[0]};
        r = gguf_add_tensor(w, gname, mt->ndim, ne, ty, dst, err, cap);
    }
    if (!r) r = gguf_writer_write(w, path, err, cap);
    gguf_writer_free(w);
    free(host);
    free(enc);
    return r;
}

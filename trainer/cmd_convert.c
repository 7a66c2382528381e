/* trainer/cmd_convert.c: `rft convert IN OUT` (GGUF | HF dir | .h5 ->
 * .h5 | HF dir | .gguf) and the GGUF / Hugging Face inspectors that
 * `rft inspect` dispatches to. Bad input exits 2, write failures 1. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "checkpoint.h"
#include "cli.h"
#include "convert.h"
#include "gguf.h"
#include "quant.h"
#include "safetensors.h"
#include "tokenizer_h5.h"
#include "util.h"

static const char *src_name(model_src s) {
    return s == MODEL_SRC_GGUF ? "gguf" : s == MODEL_SRC_HF ? "hf" : s == MODEL_SRC_H5 ? "h5" : "?";
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: rft convert IN OUT [--dtype f32|f16|bf16] [--shard-mb N]\n"
            "  IN:  a .gguf file, a Hugging Face directory (config.json + safetensors) or an rft .h5 checkpoint\n"
            "  OUT: NAME.h5 (rft checkpoint, fp32), NAME.gguf (llama.cpp; --dtype, default f32) or a directory\n"
            "       (Hugging Face: config.json, safetensors, tokenizer files; --dtype, default f32;\n"
            "       --shard-mb splits the safetensors into shards of at most N MB); an OUT ending in .safetensors,\n"
            "       .bin, .pt or .pth is refused (give the directory's name)\n");
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype = "f32";
    double shard_mb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return RFT_EXIT_OK;
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            dtype = argv[++i];
        } else if (!strcmp(argv[i], "--shard-mb") && i + 1 < argc) {
            char *end;
            shard_mb = strtod(argv[++i], &end);
            if (*end || !(shard_mb > 0)) {
                fprintf(stderr, "rft convert: --shard-mb needs a positive number (got '%s')\n", argv[i]);
                return RFT_EXIT_BADINPUT;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "rft convert: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return RFT_EXIT_BADINPUT;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            fprintf(stderr, "rft convert: unexpected argument '%s'\n", argv[i]);
            return RFT_EXIT_BADINPUT;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return RFT_EXIT_BADINPUT;
    }
    /* a Hugging Face export is a directory: an OUT named like one of its weight files would become a directory */
    static const char *const weight_ext[] = {".safetensors", ".bin", ".pt", ".pth"};
    for (size_t i = 0; i < sizeof weight_ext / sizeof weight_ext[0]; i++)
        if (ends_with(out, weight_ext[i])) {
            fprintf(stderr,
                    "rft convert: %s: a Hugging Face export is a directory (give a directory name, e.g. %.*s); OUT is "
                    "NAME.h5, NAME.gguf or a directory\n",
                    out, (int)(strlen(out) - strlen(weight_ext[i])), out);
            return RFT_EXIT_BADINPUT;
        }
    int is_f32 = !strcasecmp(dtype, "f32") || !strcasecmp(dtype, "float32");
    int is_f16 = !strcasecmp(dtype, "f16") || !strcasecmp(dtype, "float16");
    int is_bf16 = !strcasecmp(dtype, "bf16") || !strcasecmp(dtype, "bfloat16");
    if (!is_f32 && !is_f16 && !is_bf16) {
        fprintf(stderr, "rft convert: --dtype must be f32, f16 or bf16 (got '%s')\n", dtype);
        return RFT_EXIT_BADINPUT;
    }
    int to_h5 = ends_with(out, ".h5"), to_gguf = ends_with(out, ".gguf");
    if (to_h5 && !is_f32) {
        fprintf(stderr, "rft convert: %s: rft checkpoints hold fp32 weights (--dtype %s does not apply)\n", out, dtype);
        return RFT_EXIT_BADINPUT;
    }
    model_src src = model_source_kind(in);
    char err[1024];
    double t0 = now_seconds();
    backend *be = backend_cpu_create(2);
    if (!be) {
        fprintf(stderr, "rft convert: cannot create the CPU backend\n");
        return RFT_EXIT_RUNTIME;
    }
    model m;
    tokenizer *tok = NULL;
    if (model_import(in, be, 1, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        be->destroy(be);
        return RFT_EXIT_BADINPUT;
    }
    int rc = 0;
    const char *kind;
    if (to_h5) {
        ckpt_parts parts = {0};
        parts.tokenizer = tok;
        parts.tokenizer_save = tok ? tokenizer_h5_save : NULL;
        rc = ckpt_save(out, &m, &parts, err, sizeof err);
        kind = "h5";
    } else if (to_gguf) {
        rc = gguf_model_save(&m, tok, out, is_f32 ? GGML_TYPE_F32 : is_f16 ? GGML_TYPE_F16 : GGML_TYPE_BF16, err, sizeof err);
        kind = "gguf";
    } else {
        rc = hf_model_save(&m, tok, out, is_f32 ? ST_F32 : is_f16 ? ST_F16 : ST_BF16,
                           (unsigned long long)(shard_mb * 1e6), err, sizeof err);
        kind = "hf";
    }
    if (rc) fprintf(stderr, "%s\n", err);
    else
        printf("converted %s (%s, %zu parameters%s) -> %s (%s, %s) in %.1f s\n", in, src_name(src), m.n_params,
               tok ? ", tokenizer" : ", no tokenizer", out, kind, to_h5 ? "f32" : dtype, now_seconds() - t0);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    be->destroy(be);
    return rc ? RFT_EXIT_RUNTIME : RFT_EXIT_OK;
}

/* ---- inspect ---- */

static void print_config(const model_config *c) {
    printf("  vocab %d  d_model %d  n_layer %d  n_head %d  n_kv_head %d  head_dim %d  d_ff %d\n", c->vocab, c->d_model,
           c->n_layer, c->n_head, c->n_kv_head, c->head_dim, c->d_ff);
    printf("  rope_theta %g  rms_eps %g  tie_embeddings %d  qkv_bias %d  max_seq %d\n", c->rope_theta, c->rms_eps,
           c->tie_embeddings, c->qkv_bias, c->max_seq);
}

static void print_value(const gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        int n = kv->str_len > 60 ? 60 : (int)kv->str_len;
        printf("\"");
        for (int i = 0; i < n; i++) putchar(kv->str[i] == '\n' ? ' ' : kv->str[i]);
        printf(kv->str_len > 60 ? "...\" (%llu bytes)" : "\"", (unsigned long long)kv->str_len);
        break;
    }
    case GGUF_TYPE_ARRAY:
        printf("[%s x %llu]", gguf_type_name(kv->arr_type), (unsigned long long)kv->n);
        if (kv->arr_type == GGUF_TYPE_STRING)
            for (uint64_t i = 0; i < kv->n && i < 3; i++) printf(" \"%.20s\"", kv->strs[i]);
        else
            for (uint64_t i = 0; i < kv->n && i < 4; i++) printf(" %g", gguf_arr_f64(kv, i));
        if (kv->n > 4) printf(" ...");
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: printf("%g", kv->v.f); break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: printf("%lld", (long long)kv->v.i); break;
    case GGUF_TYPE_BOOL: printf(kv->v.u ? "true" : "false"); break;
    default: printf("%llu", (unsigned long long)kv->v.u);
    }
}

int inspect_gguf(const char *path) {
    gguf_file g;
    char err[1024];
    if (gguf_open(&g, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    printf("%s: GGUF v%u, %llu metadata keys, %llu tensors, alignment %llu, data at byte %llu\n", path, g.version,
           (unsigned long long)g.n_kv, (unsigned long long)g.n_tensors, (unsigned long long)g.alignment,
           (unsigned long long)g.data_offset);
    printf("metadata:\n");
    for (uint64_t i = 0; i < g.n_kv; i++) {
        printf("  %-44s %-4s ", g.kv[i].key, gguf_type_name(g.kv[i].type));
        print_value(&g.kv[i]);
        printf("\n");
    }
    uint64_t bytes = 0, elems = 0;
    printf("tensors (%llu):\n  %-36s %-6s %-20s %12s\n", (unsigned long long)g.n_tensors, "name", "type", "ne (ggml order)", "bytes");
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char ne[64];
        int o = 0;
        for (int d = 0; d < t->n_dims; d++) o += snprintf(ne + o, sizeof ne - o, d ? ", %lld" : "%lld", (long long)t->ne[d]);
        const char *tn = ggml_type_name(t->type);
        printf("  %-36s %-6s [%-18s] %12llu\n", t->name, tn ? tn : "?", ne, (unsigned long long)t->nbytes);
        bytes += t->nbytes;
        elems += t->n_elems;
    }
    printf("total: %llu elements, %llu bytes (%.2f bits per weight)\n", (unsigned long long)elems, (unsigned long long)bytes,
           elems ? 8.0 * (double)bytes / (double)elems : 0.0);
    model_config c;
    char arch[64];
    if (gguf_model_config(&g, &c, arch, sizeof arch, err, sizeof err)) {
        printf("rft import: not possible: %s\n", err);
    } else {
        printf("rft model config (%s%s):\n", arch, !strcmp(arch, "llama") ? ", Q/K rows un-permuted on import" : "");
        print_config(&c);
        if (gguf_get(&g, "tokenizer.ggml.tokens")) {
            tokenizer *t = gguf_tokenizer_load(&g, err, sizeof err);
            if (t) {
                printf("tokenizer: %d tokens, %d merges, pre-tokenizer %s, bos %d eos %d, chat template %s\n",
                       tokenizer_vocab_size(t), tokenizer_n_merges(t), tokenizer_pretokenizer(t), tokenizer_bos_id(t),
                       tokenizer_eos_id(t), tokenizer_chat_template_name(t) ? tokenizer_chat_template_name(t) : "none");
                tokenizer_free(t);
            } else {
                printf("tokenizer: not usable: %s\n", err);
            }
        }
    }
    gguf_close(&g);
    return RFT_EXIT_OK;
}

int inspect_hf(const char *path) {
    char err[1024];
    model_config c;
    int cfg_ok = hf_model_config(path, &c, err, sizeof err) == 0;
    st_set s;
    if (st_set_open(&s, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    printf("%s: Hugging Face directory, %d safetensors file%s\n", path, s.n_files, s.n_files == 1 ? "" : "s");
    uint64_t elems = 0, bytes = 0;
    for (int k = 0; k < s.n_files; k++) {
        printf("%s (%d tensors):\n", s.files[k].path, s.files[k].n);
        for (int i = 0; i < s.files[k].n; i++) {
            const st_tensor *t = &s.files[k].t[i];
            char sh[96];
            int o = 0;
            for (int d = 0; d < t->ndim; d++) o += snprintf(sh + o, sizeof sh - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
            printf("  %-52s %-5s [%s]\n", t->name, st_dtype_name(t->dtype), sh);
            elems += t->n_elems;
            bytes += t->nbytes;
        }
    }
    printf("total: %llu elements, %llu bytes\n", (unsigned long long)elems, (unsigned long long)bytes);
    st_set_close(&s);
    if (!cfg_ok) {
        printf("rft import: not possible: %s\n", err);
        return RFT_EXIT_OK;
    }
    printf("rft model config:\n");
    print_config(&c);
    char tj[1100], tc[1100];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", path);
    FILE *f = fopen(tj, "rb");
    if (f) {
        fclose(f);
        FILE *g = fopen(tc, "rb");
        if (g) fclose(g);
        tokenizer *t = tokenizer_load_json(tj, g ? tc : NULL, err, sizeof err);
        if (t) {
            printf("tokenizer: %d tokens, %d merges, pre-tokenizer %s, bos %d eos %d, chat template %s\n",
                   tokenizer_vocab_size(t), tokenizer_n_merges(t), tokenizer_pretokenizer(t), tokenizer_bos_id(t),
                   tokenizer_eos_id(t), tokenizer_chat_template_name(t) ? tokenizer_chat_template_name(t) : "none");
            tokenizer_free(t);
        } else {
            printf("tokenizer: not usable: %s\n", err);
        }
    } else {
        printf("tokenizer: none (no tokenizer.json)\n");
    }
    return RFT_EXIT_OK;
}

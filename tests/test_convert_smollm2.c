/* tests/test_convert_smollm2.c: the real SmolLM2-135M-Instruct Q4_1 GGUF
 * (tools/fetch_smollm2.sh; set RFT_SMOLLM2_GGUF, else skipped). Checks the
 * imported config, tensor values against gguf-py's dequantisation
 * (tests/fixtures/gguf_smollm2_ref.json, made by tools/ref_gguf.py --smollm2,
 * Q/K un-permuted like the original HF checkpoint: this is what catches a
 * wrong row order), that the imported model and tokenizer run end to end
 * ("The capital of France is" -> " Paris" as the top next token; note the
 * answer survives a wrong Q/K order, since q.k is invariant to a shared row
 * permutation and only RoPE's pairing changes), against transformers on the
 * same GGUF (tests/fixtures/gguf_smollm2_hf.json: its own GGUF loader; logits
 * of 5 prompts within 1e-3 relative, chat-template ids, 32 greedy tokens with
 * the KV cache), and a BF16 Hugging Face export that re-imports as the
 * rounded weights. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat_template.h"
#include "convert.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"

#include "check.h"

int main(void) {
    const char *path = getenv("RFT_SMOLLM2_GGUF");
    if (!path || !*path || access(path, R_OK)) {
        printf("skipped: set RFT_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (export RFT_SMOLLM2_GGUF=$(tools/fetch_smollm2.sh))\n");
        return 77;
    }
    char err[1024];
    backend *be = backend_cpu_create(2);
    model m;
    tokenizer *tok = NULL;
    double t0 = now_seconds();
    if (model_import(path, be, 64, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "FAIL import: %s\n", err);
        return 1;
    }
    printf("imported %s in %.2f s\n", path, now_seconds() - t0);
    const model_config *c = &m.cfg;
    CHECK(c->vocab == 49152 && c->d_model == 576 && c->n_layer == 30 && c->n_head == 9 && c->n_kv_head == 3 &&
              c->head_dim == 64 && c->d_ff == 1536 && c->rope_theta == 100000.0f && c->rms_eps == 1e-5f &&
              c->tie_embeddings == 1 && c->qkv_bias == 0 && c->max_seq == 8192,
          "SmolLM2-135M config");
    CHECK(m.n_params == 134515008, "parameters %zu", m.n_params);
    CHECK(m.n_tensors == 272, "tensors %d", m.n_tensors);
    CHECK(tok && tokenizer_vocab_size(tok) == 49152 && tokenizer_n_merges(tok) == 48900 && tokenizer_eos_id(tok) == 2,
          "tokenizer");

    float *host = malloc(m.n_params * sizeof(float));
    be->copy_d2h(be, host, m.params, m.n_params * sizeof(float));
    json_error_t je;
    json_t *ref = json_load_file("tests/fixtures/gguf_smollm2_ref.json", 0, &je);
    CHECK(ref != NULL, "reference: %s", je.text);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(ref, "tensors"), i, t) {
        const char *hf = json_string_value(json_object_get(t, "hf"));
        int k = model_find_tensor(&m, hf);
        CHECK(k >= 0, "tensor %s", hf);
        if (k < 0) continue;
        const model_tensor *mt = &m.tensors[k];
        json_t *shape = json_object_get(t, "shape");
        CHECK(json_integer_value(json_array_get(shape, 0)) == mt->shape[0] &&
                  (mt->ndim == 1 || json_integer_value(json_array_get(shape, 1)) == mt->shape[1]),
              "%s shape", hf);
        const float *x = host + mt->offset;
        double s = 0, ss = 0;
        for (size_t j = 0; j < mt->numel; j++) s += x[j], ss += (double)x[j] * x[j];
        double rs = json_real_value(json_object_get(t, "sum")), rss = json_real_value(json_object_get(t, "sumsq"));
        CHECK(fabs(s - rs) <= 1e-6 * fmax(1, fabs(rs)) && fabs(ss - rss) <= 1e-6 * rss, "%s: sum %.9g vs %.9g, sumsq %.9g vs %.9g", hf, s, rs, ss, rss);
        json_t *idx = json_object_get(t, "index"), *val = json_object_get(t, "values");
        int bad = 0;
        for (size_t j = 0; j < json_array_size(idx); j++)
            bad += x[json_integer_value(json_array_get(idx, j))] != (float)json_real_value(json_array_get(val, j));
        CHECK(bad == 0, "%s (%s): %d of %zu sampled values differ from gguf-py", hf, json_string_value(json_object_get(t, "type")),
              bad, json_array_size(idx));
        printf("  %-48s %-5s matches gguf-py (sum %.6g)\n", hf, json_string_value(json_object_get(t, "type")), s);
    }
    json_decref(ref);

    /* a fact the model knows: needs the right Q/K row order */
    if (tok) {
        const char *prompt = "The capital of France is";
        tok_ids ids = {0};
        CHECK(tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, err, sizeof err) == 0, "%s", err);
        tok_ids paris = {0};
        tokenizer_encode(tok, " Paris", 6, 0, &paris, err, sizeof err);
        int T = (int)ids.n;
        int32_t *targets = malloc(T * sizeof(int32_t)), cu[2] = {0, T};
        for (int j = 0; j < T; j++) targets[j] = j + 1 < T ? ids.ids[j + 1] : (int32_t)paris.ids[0];
        model_batch b = {.T = T, .n_seq = 1, .tokens = ids.ids, .targets = targets, .cu_seqlens = cu, .pos = NULL};
        float *logp = malloc(T * sizeof(float)), *logits = malloc((size_t)c->vocab * sizeof(float));
        CHECK(model_forward(&m, &b, logp, NULL, err, sizeof err) == 0, "%s", err);
        CHECK(model_logits(&m, T - 1, 1, logits, err, sizeof err) == 0, "%s", err);
        int best = 0;
        for (int v = 1; v < c->vocab; v++)
            if (logits[v] > logits[best]) best = v;
        size_t bl;
        const char *bs = tokenizer_id_to_token(tok, best, &bl);
        printf("  \"%s\" -> top next token %d \"%.*s\", log p(\" Paris\") = %.3f\n", prompt, best, (int)bl, bs, logp[T - 1]);
        CHECK(paris.n == 1 && best == paris.ids[0], "top next token is %d, not \" Paris\" (%d)", best, paris.n ? paris.ids[0] : -1);
        free(targets);
        free(logp);
        free(logits);
        free(ids.ids);
        free(paris.ids);
    }

    /* against transformers on the same GGUF (tests/fixtures/gguf_smollm2_hf.json): logits of 5
       prompts, the chat-formatted prompt's ids, 32 greedy tokens with the KV cache */
    json_t *hr = json_load_file("tests/fixtures/gguf_smollm2_hf.json", 0, &je);
    CHECK(hr != NULL, "gguf_smollm2_hf.json: %s", je.text);
    if (hr && tok) {
        float *lg = malloc((size_t)c->vocab * sizeof(float));
        json_t *pr;
        double worst = 0;
        json_array_foreach(json_object_get(hr, "prompts"), i, pr) {
            const char *text = json_string_value(json_object_get(pr, "text"));
            json_t *rid = json_object_get(pr, "ids");
            tok_ids ids = {0};
            tokenizer_encode(tok, text, strlen(text), 0, &ids, err, sizeof err);
            int same = ids.n == json_array_size(rid);
            for (size_t j = 0; same && j < ids.n; j++) same = ids.ids[j] == json_integer_value(json_array_get(rid, j));
            CHECK(same, "\"%s\": token ids differ from transformers'", text);
            int T = (int)ids.n, cu[2] = {0, T};
            int32_t tg[64];
            for (int j = 0; j < T; j++) tg[j] = -1;
            model_batch b = {.T = T, .n_seq = 1, .tokens = ids.ids, .targets = tg, .cu_seqlens = cu, .pos = NULL};
            float lp[64];
            CHECK(model_forward(&m, &b, lp, NULL, err, sizeof err) == 0 && model_logits(&m, T - 1, 1, lg, err, sizeof err) == 0, "%s", err);
            json_t *idx = json_object_get(pr, "index"), *val = json_object_get(pr, "logits");
            double mx = json_real_value(json_object_get(pr, "max_abs_logit")), d = 0;
            for (size_t j = 0; j < json_array_size(idx); j++)
                d = fmax(d, fabs(lg[json_integer_value(json_array_get(idx, j))] - json_real_value(json_array_get(val, j))));
            int best = 0;
            for (int v = 1; v < c->vocab; v++)
                if (lg[v] > lg[best]) best = v;
            CHECK(d <= 1e-3 * mx, "\"%s\": logits differ from transformers by %g (max |logit| %g)", text, d, mx);
            CHECK(best == json_integer_value(json_array_get(idx, 0)), "\"%s\": top token %d, transformers %lld", text, best,
                  (long long)json_integer_value(json_array_get(idx, 0)));
            worst = fmax(worst, d / mx);
            free(ids.ids);
        }
        printf("  5 prompts: ids equal, next-token logits vs transformers max rel diff %.2g, top tokens equal\n", worst);
        /* chat prompt */
        json_t *cm = json_array_get(json_object_get(hr, "chat"), 0), *cid = json_object_get(hr, "chat_ids");
        chat_msg msg = {json_string_value(json_object_get(cm, "role")), json_string_value(json_object_get(cm, "content"))};
        char *text = NULL;
        size_t tlen = 0;
        tok_ids ids = {0};
        CHECK(chat_format(tok, &msg, 1, 1, &text, &tlen, err, sizeof err) == 0, "%s", err);
        if (text) tokenizer_encode(tok, text, tlen, TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &ids, err, sizeof err);
        int same = ids.n == json_array_size(cid);
        for (size_t j = 0; same && j < ids.n; j++) same = ids.ids[j] == json_integer_value(json_array_get(cid, j));
        CHECK(same, "chat prompt ids differ from apply_chat_template (%zu vs %zu tokens)", ids.n, json_array_size(cid));
        /* greedy decoding with the KV cache */
        json_t *gr = json_object_get(hr, "greedy");
        int n_gen = (int)json_array_size(gr), P = (int)ids.n, match = 0;
        kv_cache kc;
        if (same && kv_cache_create(&kc, &m, 1, P + n_gen + 1, err, sizeof err) == 0) {
            int32_t slot[64], pos[64], row;
            for (int j = 0; j < P; j++) slot[j] = 0, pos[j] = j;
            row = P - 1;
            int rc = model_step_cached(&m, &kc, P, ids.ids, slot, pos, 1, &row, lg, err, sizeof err);
            for (int k = 0; k < n_gen && rc == 0; k++) {
                int32_t best = 0;
                for (int v = 1; v < c->vocab; v++)
                    if (lg[v] > lg[best]) best = v;
                if (best != json_integer_value(json_array_get(gr, k))) break;
                match++;
                int32_t p1 = P + k, r0 = 0, s0 = 0;
                rc = model_step_cached(&m, &kc, 1, &best, &s0, &p1, 1, &r0, lg, err, sizeof err);
            }
            CHECK(rc == 0, "%s", err);
            kv_cache_free(&kc, be);
        } else if (same) {
            CHECK(0, "%s", err);
        }
        CHECK(match == n_gen, "greedy generation: first %d of %d tokens equal transformers'", match, n_gen);
        printf("  chat prompt: %zu ids equal apply_chat_template; greedy %d/%d tokens equal transformers' (\"%.40s...\")\n", ids.n,
               match, n_gen, json_string_value(json_object_get(hr, "greedy_text")));
        free(text);
        free(ids.ids);
        free(lg);
    }
    json_decref(hr);

    /* BF16 Hugging Face export of the real model re-imports as the rounded weights */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rft_test_smollm2_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", getpid());
    t0 = now_seconds();
    CHECK(hf_model_save(&m, tok, dir, ST_BF16, 0, err, sizeof err) == 0, "%s", err);
    double t_save = now_seconds() - t0;
    model r;
    tokenizer *rt = NULL;
    if (model_import(dir, be, 1, &r, &rt, err, sizeof err) == 0) {
        float *y = malloc(r.n_params * sizeof(float));
        be->copy_d2h(be, y, r.params, r.n_params * sizeof(float));
        size_t bad = 0;
        for (size_t j = 0; j < m.n_params; j++) bad += y[j] != bf16_to_fp32(fp32_to_bf16(host[j]));
        CHECK(r.n_params == m.n_params && bad == 0, "HF bf16 export: %zu values off", bad);
        CHECK(rt && tokenizer_vocab_size(rt) == 49152 && tokenizer_n_merges(rt) == 48900, "tokenizer.json export");
        printf("  HF bf16 export (%.2f s) re-imports as the rounded weights; tokenizer.json re-imports\n", t_save);
        free(y);
        if (rt) tokenizer_free(rt);
        model_free(&r);
    } else {
        CHECK(0, "re-import: %s", err);
    }
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (int k = 0; k < 4; k++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, files[k]);
        unlink(p);
    }
    rmdir(dir);
    free(host);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    be->destroy(be);
    if (fails) {
        fprintf(stderr, "%d checks failed\n", fails);
        return 1;
    }
    printf("test_convert_smollm2: all checks passed\n");
    return 0;
}

/* trainer/cmd_init.c: `rft init OUT.h5 --tokenizer tokenizer.json
 * [--tokenizer-config tokenizer_config.json] [--chat-template chatml|llama3|raw]
 * --d-model D --n-layer L --n-head H [--n-kv-head K] [--head-dim E] --d-ff F
 * [--max-seq S] [--rope-theta T] [--untied] [--qkv-bias] [--seed N]`:
 * a freshly initialised model (model_init_weights) with the given
 * tokenizer, written as a checkpoint — the start of training from scratch
 * (the bundled quickstart policy is made this way, then trained with sft). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "tokenizer.h"
#include "tokenizer_h5.h"
#include "util.h"

static int usage(void) {
    fprintf(stderr, "usage: rft init OUT.h5 --tokenizer tokenizer.json [--tokenizer-config FILE] [--chat-template NAME] "
                    "--d-model D --n-layer L --n-head H [--n-kv-head K] [--head-dim E] --d-ff F [--max-seq S] "
                    "[--rope-theta T] [--untied] [--qkv-bias] [--seed N]\n");
    return RFT_EXIT_BADINPUT;
}

int cmd_init(int argc, char **argv) {
    const char *out = NULL, *tokp = NULL, *tokcfg = NULL, *tmpl = NULL;
    model_config c = {.rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .max_seq = 512};
    long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int *iv = NULL;
        if (!strcmp(a, "--tokenizer") && has) tokp = argv[++i];
        else if (!strcmp(a, "--tokenizer-config") && has) tokcfg = argv[++i];
        else if (!strcmp(a, "--chat-template") && has) tmpl = argv[++i];
        else if (!strcmp(a, "--untied")) c.tie_embeddings = 0;
        else if (!strcmp(a, "--qkv-bias")) c.qkv_bias = 1;
        else if (!strcmp(a, "--rope-theta") && has) c.rope_theta = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--seed") && has) seed = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--d-model")) iv = &c.d_model;
        else if (!strcmp(a, "--n-layer")) iv = &c.n_layer;
        else if (!strcmp(a, "--n-head")) iv = &c.n_head;
        else if (!strcmp(a, "--n-kv-head")) iv = &c.n_kv_head;
        else if (!strcmp(a, "--head-dim")) iv = &c.head_dim;
        else if (!strcmp(a, "--d-ff")) iv = &c.d_ff;
        else if (!strcmp(a, "--max-seq")) iv = &c.max_seq;
        else if (a[0] != '-' && !out) out = a;
        else return usage();
        if (iv) {
            char *end;
            if (!has) return usage();
            long v = strtol(argv[++i], &end, 10);
            if (*end || v <= 0 || v > 1 << 24) {
                fprintf(stderr, "rft init: %s: '%s' is not a positive integer\n", a, argv[i]);
                return RFT_EXIT_BADINPUT;
            }
            *iv = (int)v;
        }
    }
    if (!out || !tokp || !c.d_model || !c.n_layer || !c.n_head || !c.d_ff) return usage();
    if (!c.n_kv_head) c.n_kv_head = c.n_head;
    if (!c.head_dim) c.head_dim = c.d_model / c.n_head;
    char err[1024];
    tokenizer *tok = tokenizer_load_json(tokp, tokcfg, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "rft init: %s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    if (tmpl && tokenizer_set_chat_template(tok, tmpl, err, sizeof err)) {
        fprintf(stderr, "rft init: --chat-template: %s\n", err);
        tokenizer_free(tok);
        return RFT_EXIT_BADINPUT;
    }
    c.vocab = tokenizer_vocab_size(tok);
    backend *be = backend_cpu_create(0);
    model m;
    int rc = RFT_EXIT_BADINPUT;
    if (model_create(&m, &c, be, 16, err, sizeof err)) {
        fprintf(stderr, "rft init: %s\n", err);
        goto done_tok;
    }
    model_init_weights(&m, (uint64_t)seed);
    ckpt_parts parts = {.tokenizer = tok, .tokenizer_save = tokenizer_h5_save};
    if (ckpt_save(out, &m, &parts, err, sizeof err)) {
        fprintf(stderr, "rft init: %s\n", err);
        rc = RFT_EXIT_RUNTIME;
    } else {
        printf("%s: %zu parameters, vocab %d, d_model %d, %d layers, %d/%d heads, d_ff %d, chat template %s\n", out,
               m.n_params, c.vocab, c.d_model, c.n_layer, c.n_head, c.n_kv_head, c.d_ff, tokenizer_chat_template_name(tok));
        rc = RFT_EXIT_OK;
    }
    model_free(&m);
done_tok:
    be->destroy(be);
    tokenizer_free(tok);
    return rc;
}

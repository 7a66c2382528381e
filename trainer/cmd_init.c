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

#define USAGE                                                                                                          \
    "usage: rft init OUT.h5 --tokenizer tokenizer.json [--tokenizer-config FILE] [--chat-template NAME] "              \
    "--d-model D --n-layer L --n-head H [--n-kv-head K] [--head-dim E] --d-ff F [--max-seq S] "                        \
    "[--rope-theta T] [--untied] [--qkv-bias] [--seed N]\n"

static int usage(void) {
    fprintf(stderr, USAGE);
    return RFT_EXIT_BADINPUT;
}

int cmd_init(int argc, char **argv) {
    const char *out = NULL, *tokp = NULL, *tokcfg = NULL, *tmpl = NULL, *v;
    model_config c = {.rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .max_seq = 512};
    uint64_t seed = 0;
    double rope_theta = c.rope_theta;
    char e1[256];
    struct {
        const char *flag;
        int *v;
    } dims[] = {{"--d-model", &c.d_model},     {"--n-layer", &c.n_layer}, {"--n-head", &c.n_head},
                {"--n-kv-head", &c.n_kv_head}, {"--head-dim", &c.head_dim}, {"--d-ff", &c.d_ff},
                {"--max-seq", &c.max_seq}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            printf(USAGE);
            return RFT_EXIT_OK;
        }
        /* r: 1 the option was taken, 0 not an option of init, -1 a bad or missing value (e1) */
        int r = cli_option(argc, argv, &i, "--tokenizer", &tokp, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--tokenizer-config", &tokcfg, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--chat-template", &tmpl, e1, sizeof e1);
        if (!r) r = cli_double_option(argc, argv, &i, "--rope-theta", 1e-3, 1e12, NULL, &rope_theta, e1, sizeof e1);
        if (!r && (r = cli_option(argc, argv, &i, "--seed", &v, e1, sizeof e1)) > 0 &&
            cli_parse_seed("--seed", v, &seed, e1, sizeof e1))
            r = -1;
        for (size_t d = 0; !r && d < sizeof dims / sizeof dims[0]; d++)
            r = cli_int_option(argc, argv, &i, dims[d].flag, 1, 1 << 24, NULL, dims[d].v, e1, sizeof e1);
        if (!r && !strcmp(a, "--untied")) c.tie_embeddings = 0, r = 1;
        if (!r && !strcmp(a, "--qkv-bias")) c.qkv_bias = 1, r = 1;
        if (!r && a[0] != '-' && !out) out = a, r = 1;
        if (r < 0) {
            fprintf(stderr, "rft init: %s\n", e1);
            return RFT_EXIT_BADINPUT;
        }
        if (!r) return usage();
    }
    c.rope_theta = (float)rope_theta;
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
    model_init_weights(&m, seed);
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

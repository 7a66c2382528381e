/* trainer/cmd_sample.c: `rft sample --model M --prompt TEXT [--n N]
 * [--temperature T] [--top-p P] [--top-k K] [--min-p P] [--max-new-tokens K]
 * [--seed S] [--dtype fp32|bf16] [--device cpu|cuda] [--raw] [--json] [--threads N]`: completions from any model
 * source (.h5 checkpoint, .gguf, Hugging Face directory) through the rollout
 * engine. The model's chat template is applied unless it is raw or --raw is
 * given. One completion per line (newlines escaped as \n), or with --json
 * one JSON object per completion: text, token ids, log-probs, finish reason. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "cli.h"
#include "convert.h"
#include "evaluate.h"
#include "rollout.h"
#include "util.h"
#include "../kernels/cpu/cpu_setup.h"

#define USAGE                                                                                                          \
    "usage: rft sample --model M --prompt TEXT [--n N] [--temperature T] [--top-p P] [--top-k K] [--min-p P] "         \
    "[--max-new-tokens K] [--seed S] [--dtype fp32|bf16] [--device cpu|cuda] [--raw] [--json] [--threads N]\n"

static int usage(void) {
    fprintf(stderr, USAGE);
    return RFT_EXIT_BADINPUT;
}

int cmd_sample(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *device = "cpu", *dtype = "fp32", *v;
    double temp = 1.0, top_p = 1.0, min_p = 0;
    int n = 1, top_k = 0, max_new = 128, threads = 0, json = 0, raw = 0;
    uint64_t seed = 0;
    char e1[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            printf(USAGE);
            return RFT_EXIT_OK;
        }
        /* r: 1 the option was taken, 0 not an option of sample, -1 a bad or missing value (e1) */
        int r = cli_option(argc, argv, &i, "--model", &model_path, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--prompt", &prompt, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--device", &device, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--dtype", &dtype, e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--n", 1, 4096, NULL, &n, e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--top-k", 0, 1 << 24, NULL, &top_k, e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--max-new-tokens", 1, 1 << 20, NULL, &max_new, e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--threads", 0, 4096, NULL, &threads, e1, sizeof e1);
        if (!r) r = cli_double_option(argc, argv, &i, "--temperature", 0, 100, NULL, &temp, e1, sizeof e1);
        if (!r) r = cli_double_option(argc, argv, &i, "--top-p", 1e-6, 1, NULL, &top_p, e1, sizeof e1);
        if (!r) r = cli_double_option(argc, argv, &i, "--min-p", 0, 1, NULL, &min_p, e1, sizeof e1);
        if (!r && (r = cli_option(argc, argv, &i, "--seed", &v, e1, sizeof e1)) > 0 &&
            cli_parse_seed("--seed", v, &seed, e1, sizeof e1))
            r = -1;
        if (!r && !strcmp(a, "--json")) json = 1, r = 1;
        if (!r && !strcmp(a, "--raw")) raw = 1, r = 1;
        if (r < 0) {
            fprintf(stderr, "rft sample: %s\n", e1);
            return RFT_EXIT_BADINPUT;
        }
        if (!r) return usage();
    }
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
        fprintf(stderr, "rft sample: --device: '%s' is not cpu or cuda\n", device);
        return RFT_EXIT_BADINPUT;
    }
    if (strcmp(dtype, "fp32") && strcmp(dtype, "bf16")) {
        fprintf(stderr, "rft sample: --dtype: '%s' is not fp32 or bf16\n", dtype);
        return RFT_EXIT_BADINPUT;
    }
    int bf16 = !strcmp(dtype, "bf16");
    if (!model_path || !prompt) return usage();
    if (!prompt[0]) {
        fprintf(stderr, "rft sample: --prompt is empty\n");
        return RFT_EXIT_BADINPUT;
    }
    char err[1024];
    model_config cfg;
    if (model_source_config(model_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "rft sample: %s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    int G = n;
    int slots = G < 64 ? G : 64;
    int max_tokens = 512 > slots ? 512 : slots;
    backend *be = backend_for_device(device, 0, threads, err, sizeof err);
    if (!be) {
        fprintf(stderr, "rft sample: %s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    model m;
    tokenizer *tok = NULL;
    int rc = RFT_EXIT_BADINPUT;
    if (model_import(model_path, be, max_tokens, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "rft sample: %s\n", err);
        be->destroy(be);
        return RFT_EXIT_BADINPUT;
    }
    tok_ids ids = {0};
    rollout_engine r = {0};
    completion *out = NULL;
    if (!tok) {
        fprintf(stderr, "rft sample: %s has no tokenizer\n", model_path);
        goto done;
    }
    chat_msg msg = {"user", prompt};
    int use_chat = !raw && strcmp(tokenizer_chat_template_name(tok), "raw") != 0;
    if (use_chat ? chat_encode(tok, &msg, 1, 1, &ids, err, sizeof err)
                 : tokenizer_encode(tok, prompt, strlen(prompt), TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &ids, err, sizeof err)) {
        fprintf(stderr, "rft sample: %s\n", err);
        goto done;
    }
    /* stop at the end-of-sequence token and the chat templates' end-of-turn tokens */
    int32_t stop[8];
    int n_stop = chat_stop_tokens(tok, stop, 8);
    int ctx = (int)ids.n + max_new;
    if (ctx > cfg.max_seq) ctx = cfg.max_seq;
    if (rollout_create(&r, &m, tok, slots, ctx, err, sizeof err)) {
        fprintf(stderr, "rft sample: %s\n", err);
        rc = RFT_EXIT_RUNTIME;
        goto done;
    }
    rollout_config rc_cfg = {.sampler = {.temperature = (float)temp, .top_k = top_k, .top_p = (float)top_p,
                                         .min_p = (float)min_p},
                             .max_new_tokens = max_new, .stop_ids = stop, .n_stop_ids = n_stop,
                             .seed = seed, .bf16 = bf16};
    if (bf16 && !strcmp(be->name, "cpu") && !cpu_has_bf16_kernel())
        fprintf(stderr, "rft sample: note: this CPU has neither AVX512_BF16 nor AVX2: --dtype bf16 runs a portable "
                        "loop, slower than fp32\n");
    rollout_prompt p = {.ids = ids.ids, .n = (int)ids.n, .id = 0};
    out = calloc(G, sizeof *out);
    if (!out || rollout_generate(&r, &p, 1, G, &rc_cfg, out, err, sizeof err)) {
        fprintf(stderr, "rft sample: %s\n", out ? err : "out of memory");
        rc = strstr(err, "prompt") ? RFT_EXIT_BADINPUT : RFT_EXIT_RUNTIME;
        free(out);
        out = NULL;
        goto done;
    }
    for (int i = 0; i < G; i++) {
        completion *c = &out[i];
        if (json) {
            json_t *o = json_object(), *t = json_array(), *l = json_array();
            for (int k = 0; k < c->n_tokens; k++) {
                json_array_append_new(t, json_integer(c->tokens[k]));
                json_array_append_new(l, json_real(c->logprobs[k]));
            }
            json_object_set_new(o, "index", json_integer(i));
            size_t tn;
            char *txt = utf8_sanitize(c->text, c->text_len, &tn); /* a completion may end inside a character */
            json_object_set_new(o, "text", txt ? json_stringn(txt, tn) : json_null());
            free(txt);
            json_object_set_new(o, "tokens", t);
            json_object_set_new(o, "logprobs", l);
            json_object_set_new(o, "finish_reason", json_string(c->finish == ROLLOUT_STOP ? "stop" : "length"));
            char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
            if (s) puts(s);
            free(s);
            json_decref(o);
        } else {
            for (size_t k = 0; k < c->text_len; k++) {
                char ch = c->text[k];
                if (ch == '\n') fputs("\\n", stdout);
                else if (ch == '\\') fputs("\\\\", stdout);
                else putchar(ch);
            }
            putchar('\n');
        }
    }
    rc = RFT_EXIT_OK;
done:
    if (out)
        for (int i = 0; i < G; i++) completion_free(&out[i]);
    free(out);
    free(ids.ids);
    rollout_free(&r);
    tokenizer_free(tok);
    model_free(&m);
    be->destroy(be);
    return rc;
}

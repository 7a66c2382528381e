/* tests/test_tokenizer_smollm2.c: the real SmolLM2-135M-Instruct tokenizer,
 * read from its GGUF metadata (tokenizer.ggml.*, through
 * gguf_tokenizer_load), against ids from the HF `tokenizers` library with
 * SmolLM2's tokenizer.json configuration and transformers'
 * apply_chat_template (tests/fixtures/tok_smollm2_real.jsonl, made by
 * tools/ref_tokenizer.py --gguf). Also the HDF5 and tokenizer.json round
 * trips of the full vocabulary. Skipped (77) unless RFT_SMOLLM2_GGUF points
 * at the GGUF (tools/fetch_smollm2.sh fetches it). */
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "convert.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_h5.h"
#include "util.h"

#include "check.h"

static int ids_eq(const tok_ids *a, json_t *ref) {
    if (a->n != json_array_size(ref)) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != json_integer_value(json_array_get(ref, i))) return 0;
    return 1;
}

/* every row of the fixture: encode (special split and plain) or chat */
static int run_fixture(const tokenizer *t, json_t **rows, size_t n, const char *label, int *n_text, int *n_chat) {
    char err[256];
    int bad = 0;
    *n_text = *n_chat = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *r = rows[i];
        if (json_is_true(json_object_get(r, "chat"))) {
            json_t *ms = json_object_get(r, "messages");
            size_t nm = json_array_size(ms);
            chat_msg msgs[8];
            for (size_t k = 0; k < nm && k < 8; k++) {
                msgs[k].role = json_string_value(json_object_get(json_array_get(ms, k), "role"));
                msgs[k].content = json_string_value(json_object_get(json_array_get(ms, k), "content"));
            }
            int gen = json_is_true(json_object_get(r, "add_generation_prompt"));
            char *text;
            size_t tl;
            CHECK(chat_format(t, msgs, nm, gen, &text, &tl, err, sizeof err) == 0, "chat_format: %s", err);
            if (strcmp(text, json_string_value(json_object_get(r, "text")))) {
                bad++;
                fprintf(stderr, "FAIL %s chat row %zu text:\n%s\n--ref--\n%s\n", label, i, text,
                        json_string_value(json_object_get(r, "text")));
            }
            free(text);
            tok_ids o = {0};
            CHECK(chat_encode(t, msgs, nm, gen, &o, err, sizeof err) == 0, "chat_encode: %s", err);
            if (!ids_eq(&o, json_object_get(r, "ids"))) { bad++; fprintf(stderr, "FAIL %s chat row %zu ids\n", label, i); }
            free(o.ids);
            (*n_chat)++;
            continue;
        }
        const char *text = json_string_value(json_object_get(r, "text"));
        size_t tl = json_string_length(json_object_get(r, "text"));
        for (int plain = 0; plain < 2; plain++) {
            tok_ids o = {0};
            CHECK(tokenizer_encode(t, text, tl, plain ? 0 : TOK_ALLOW_SPECIAL, &o, err, sizeof err) == 0, "encode: %s", err);
            if (!ids_eq(&o, json_object_get(r, plain ? "plain" : "ids"))) {
                if (bad++ < 5) fprintf(stderr, "FAIL %s row %zu (%s): \"%.60s\"\n", label, i, plain ? "plain" : "special", text);
            } else {
                char *d = malloc(tl + 1);
                size_t dl = tokenizer_decode(t, o.ids, o.n, 0, d, tl + 1);
                CHECK(dl == tl && !memcmp(d, text, tl), "%s row %zu: decode round trip", label, i);
                free(d);
            }
            free(o.ids);
        }
        (*n_text)++;
    }
    if (bad) { fails++; fprintf(stderr, "%s: %d mismatches\n", label, bad); }
    return bad;
}

int main(void) {
    const char *path = getenv("RFT_SMOLLM2_GGUF");
    if (!path || !*path || access(path, R_OK) != 0) {
        printf("SKIP: set RFT_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf "
               "(export RFT_SMOLLM2_GGUF=$(tools/fetch_smollm2.sh))\n");
        return 77;
    }
    char err[512];
    gguf_file g;
    if (gguf_open(&g, path, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    double t0 = now_seconds();
    tokenizer *t = gguf_tokenizer_load(&g, err, sizeof err);
    double tl = now_seconds() - t0;
    gguf_close(&g);
    if (!t) { fprintf(stderr, "%s\n", err); return 1; }
    printf("SmolLM2 tokenizer from GGUF: vocab %d, %d merges, pre %s, built in %.3f s\n", tokenizer_vocab_size(t),
           tokenizer_n_merges(t), tokenizer_pretokenizer(t), tl);
    CHECK(tokenizer_vocab_size(t) == 49152 && tokenizer_n_merges(t) == 48900, "vocab/merges size");
    CHECK(!strcmp(tokenizer_pretokenizer(t), "smollm"), "pre-tokenizer %s", tokenizer_pretokenizer(t));
    CHECK(tokenizer_bos_id(t) == 1 && tokenizer_eos_id(t) == 2, "bos %d eos %d", tokenizer_bos_id(t), tokenizer_eos_id(t));
    CHECK(!strcmp(tokenizer_chat_template_name(t), "chatml"), "chat template %s", tokenizer_chat_template_name(t));
    char *sys = chat_template_default_system(tokenizer_chat_template_text(t));
    CHECK(sys && !strcmp(sys, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"), "default system");
    free(sys);
    for (int32_t id = 0; id < 17; id++) CHECK(tokenizer_is_special(t, id), "token %d is a control token", id);

    size_t len;
    char *s = read_file("tests/fixtures/tok_smollm2_real.jsonl", &len, err, sizeof err);
    if (!s) { fprintf(stderr, "%s\n", err); return 1; }
    json_t **rows = NULL;
    size_t n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        rows = realloc(rows, (n + 1) * sizeof *rows);
        if (!(rows[n++] = json_loads(line, 0, &je))) { fprintf(stderr, "fixture line %zu: %s\n", n, je.text); return 1; }
    }
    free(s);
    int nt, nc;
    run_fixture(t, rows, n, "gguf", &nt, &nc);
    printf("%d strings x 2 and %d chat conversations: %s\n", nt, nc, fails ? "MISMATCH" : "identical to HF");

    /* full-vocabulary round trips */
    char h5[64], js[64], jc[64];
    snprintf(h5, sizeof h5, "/tmp/rft_tok_smol_%d.h5", (int)getpid());
    snprintf(js, sizeof js, "/tmp/rft_tok_smol_%d.json", (int)getpid());
    snprintf(jc, sizeof jc, "/tmp/rft_tok_smolcfg_%d.json", (int)getpid());
    hid_t f = H5Fcreate(h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t grp = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(tokenizer_h5_save(grp, t, err, sizeof err) == 0, "h5 save: %s", err);
    H5Gclose(grp); H5Fclose(f);
    f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    grp = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    tokenizer *th = NULL;
    CHECK(tokenizer_h5_load(grp, &th, err, sizeof err) == 0, "h5 load: %s", err);
    H5Gclose(grp); H5Fclose(f);
    unlink(h5);
    if (th) { run_fixture(th, rows, n, "h5", &nt, &nc); tokenizer_free(th); }
    CHECK(tokenizer_save_json(t, js, jc, err, sizeof err) == 0, "save json: %s", err);
    tokenizer *tj = tokenizer_load_json(js, jc, err, sizeof err);
    CHECK(tj != NULL, "reload json: %s", err);
    unlink(js); unlink(jc);
    if (tj) {
        CHECK(tokenizer_bos_id(tj) == 1 && tokenizer_eos_id(tj) == 2, "json: bos/eos");
        run_fixture(tj, rows, n, "json", &nt, &nc);
        tokenizer_free(tj);
    }
    for (size_t i = 0; i < n; i++) json_decref(rows[i]);
    free(rows);
    tokenizer_free(t);
    if (fails) { fprintf(stderr, "%d failures\n", fails); return 1; }
    printf("test_tokenizer_smollm2: all passed\n");
    return 0;
}

/* tests/fuzz/fuzz_inputs.c: libFuzzer target for the two files every run
 * reads from its user: the run configuration (YAML: trainer/config.c with the
 * graders and reward sections of grader_config.c and reward.c) and the
 * dataset (JSONL rows: trainer/dataset.c, tokenized with the SmolLM2-style
 * fixture tokenizer through its chat template). The first input byte picks:
 *   even: the rest is a config file, loaded as `rft train` loads it;
 *   odd:  the rest is a dataset file, loaded with configs/quickstart.yaml's
 *         graders (so {{item.x}} templates are checked against each row),
 *         as RFT rows (bit 1 clear) or SFT rows that need an answer (set).
 * Accepted inputs must be freed without leaks; a rejected one must come with
 * one non-empty line that names the file (rft's exit-2 message). The readers take paths: each input is written to one
 * scratch file first. Built by tests/fuzz_inputs.cmake with clang
 * -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "tokenizer.h"

static char path[64];
static tokenizer *tok;
static rft_config quick;

static void scratch_remove(void) { unlink(path); }

static void setup(void) {
    char err[1024];
    atexit(scratch_remove);
    snprintf(path, sizeof path, "/tmp/rft_fuzz_inputs_%d", (int)getpid());
    setenv("RFT_GRADER_PATH", RFT_BINARY_DIR "/graders", 0); /* the built-in graders' plugins: found, never loaded */
    tok = tokenizer_load_json(RFT_SOURCE_DIR "/tests/fixtures/tok_smollm.json",
                              RFT_SOURCE_DIR "/tests/fixtures/tok_smollm_config.json", err, sizeof err);
    if (!tok || config_load(RFT_SOURCE_DIR "/configs/quickstart.yaml", NULL, 0, &quick, err, sizeof err)) {
        fprintf(stderr, "fuzz_inputs: %s\n", err);
        abort();
    }
}

/* a rejected input's message: one non-empty line that names the file */
static void check_message(const char *err) {
    if (!err[0] || strchr(err, '\n') || !strstr(err, path)) {
        fprintf(stderr, "fuzz_inputs: bad error message: \"%s\"\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) setup();
    if (size < 1) return 0;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    char err[1024];
    if (!(data[0] & 1)) {
        rft_config c;
        err[0] = 0;
        if (config_load(path, NULL, 0, &c, err, sizeof err) == 0) config_free(&c);
        else check_message(err);
        return 0;
    }
    dataset_opts o = {.need_answer = (data[0] >> 1) & 1, .max_prompt_tokens = 64, .max_seq = 128,
                      .graders = quick.graders.graders, .n_graders = quick.graders.n_graders,
                      .end_of_turn = tokenizer_eos_id(tok)};
    dataset d;
    err[0] = 0;
    if (dataset_load(path, tok, &o, &d, err, sizeof err) == 0) dataset_free(&d);
    else check_message(err);
    return 0;
}

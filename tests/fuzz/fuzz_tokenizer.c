/* tests/fuzz/fuzz_tokenizer.c: libFuzzer target for the tokenizer. The first
 * input byte picks what the rest is fed to:
 *   0: text encoded by the SmolLM2-style fixture tokenizer (special tokens on
 *      or off), then decoded: the bytes must come back exactly
 *   1: a tokenizer.json document (parsed; if accepted, it encodes and decodes
 *      a fixed text and must round-trip it)
 *   2: int32 ids decoded (any values), decode size independent of the buffer
 *   3: a jinja chat template (detection, default system prompt, rendering)
 *   4: Unicode NFC, which must be idempotent
 * Built by tests/fuzz_tokenizer.cmake with clang -fsanitize=fuzzer,address. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "tokenizer.h"

static tokenizer *fixture(void) {
    static tokenizer *t;
    if (!t) {
        char err[512];
        t = tokenizer_load_json(RFT_SOURCE_DIR "/tests/fixtures/tok_smollm.json",
                                RFT_SOURCE_DIR "/tests/fixtures/tok_smollm_config.json", err, sizeof err);
        if (!t) { fprintf(stderr, "fuzz_tokenizer: %s\n", err); abort(); }
    }
    return t;
}

static void roundtrip(const tokenizer *t, const char *s, size_t n, int flags) {
    char err[256];
    tok_ids o = {0};
    if (tokenizer_encode(t, s, n, flags, &o, err, sizeof err)) abort();
    char *d = malloc(n + 1);
    size_t dl = tokenizer_decode(t, o.ids, o.n, 0, d, n + 1);
    /* bytes without a token are dropped (no unk): only a full vocabulary must round-trip */
    if (t == fixture() && (dl != n || memcmp(d, s, n))) abort();
    free(d);
    free(o.ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    char err[256];
    switch (data[0] % 5) {
    case 0:
        roundtrip(fixture(), s, n, (data[0] >> 2) & 1 ? TOK_ALLOW_SPECIAL : 0);
        break;
    case 1: {
        tokenizer *t = tokenizer_parse_json(s, n, "fuzz.json", NULL, 0, err, sizeof err);
        if (t) {
            const char *txt = "Hello world 123 <|im_start|> café 中文 👍\n\n  x";
            roundtrip(t, txt, strlen(txt), TOK_ALLOW_SPECIAL);
            tokenizer_free(t);
        }
        break;
    }
    case 2: {
        const tokenizer *t = fixture();
        size_t m = n / 4;
        int32_t *ids = malloc(m * 4 + 4);
        memcpy(ids, s, m * 4);
        char small[5];
        size_t a = tokenizer_decode(t, ids, m, data[0] & 4, small, sizeof small);
        char *big = malloc(a + 1);
        size_t b = tokenizer_decode(t, ids, m, data[0] & 4, big, a + 1);
        if (a != b || memcmp(small, big, a < 5 ? a : 5)) abort();
        free(big);
        free(ids);
        break;
    }
    case 3: {
        char *j = malloc(n + 1);
        memcpy(j, s, n);
        j[n] = 0;
        chat_template_detect(j);
        free(chat_template_default_system(j));
        chat_msg m[2] = {{"user", j}, {"assistant", "ok"}};
        char *text = NULL;
        size_t tl;
        if (chat_format(fixture(), m, 2, 1, &text, &tl, err, sizeof err) == 0) free(text);
        free(j);
        break;
    }
    case 4: {
        char *a, *b;
        size_t al, bl;
        if (tokenizer_nfc(s, n, &a, &al)) abort();
        if (a) {
            if (tokenizer_nfc(a, al, &b, &bl)) abort();
            if (b && (bl != al || memcmp(a, b, al))) abort();
            free(b);
            free(a);
        }
        break;
    }
    }
    return 0;
}

/* tools/bench/bench_tokenizer.c: tokenizer encode/decode throughput (MB/s)
 * on a few MB of mixed text: rft's own C sources and docs (English + code)
 * interleaved with the conformance strings (numbers, whitespace runs,
 * accents, CJK, emoji, special tokens).
 *
 *   bench_tokenizer [--json tokenizer.json [--config tokenizer_config.json]]
 *                   [--mb N] [--reps R]
 * Default tokenizer: tests/fixtures/tok_smollm.json (run from the source root).
 * For the real SmolLM2 vocabulary pass its tokenizer.json. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

static void append(char **buf, size_t *n, size_t *cap, const char *s, size_t l) {
    if (*n + l + 1 > *cap) {
        while (*n + l + 1 > *cap) *cap = *cap ? *cap * 2 : 1 << 20;
        *buf = realloc(*buf, *cap);
        if (!*buf) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    memcpy(*buf + *n, s, l);
    *n += l;
}

/* the "text" fields of tests/fixtures/tok_cases.jsonl, unescaped crudely:
   JSON escapes \n \t \" \\ and \uXXXX (BMP) are decoded */
static void add_cases(char **buf, size_t *n, size_t *cap) {
    char err[256];
    size_t len;
    char *s = read_file("tests/fixtures/tok_cases.jsonl", &len, err, sizeof err);
    if (!s) return;
    for (char *p = strstr(s, "{\"text\": \""); p; p = strstr(p, "{\"text\": \"")) {
        p += 10;
        while (*p && *p != '"') {
            char c = *p++;
            if (c != '\\') { append(buf, n, cap, &c, 1); continue; }
            char d = *p++;
            if (d == 'n') append(buf, n, cap, "\n", 1);
            else if (d == 't') append(buf, n, cap, "\t", 1);
            else if (d == 'u') {
                unsigned cp = (unsigned)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
                p += 4;
                char u[3];
                if (cp < 0x80) append(buf, n, cap, (char[]){(char)cp}, 1);
                else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 63)); append(buf, n, cap, u, 2); }
                else { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 63)); u[2] = (char)(0x80 | (cp & 63)); append(buf, n, cap, u, 3); }
            } else append(buf, n, cap, &d, 1);
        }
        append(buf, n, cap, "\n", 1);
    }
    free(s);
}

static void add_dir(char **buf, size_t *n, size_t *cap, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024], err[256];
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 3 || (strcmp(e->d_name + l - 2, ".c") && strcmp(e->d_name + l - 2, ".h") &&
                      (l < 4 || strcmp(e->d_name + l - 3, ".md"))))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t fl;
        char *s = read_file(path, &fl, err, sizeof err);
        if (s) { append(buf, n, cap, s, fl); free(s); }
    }
    closedir(d);
}

int main(int argc, char **argv) {
    const char *json = "tests/fixtures/tok_smollm.json", *cfg = NULL;
    double mb = 4;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) cfg = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_tokenizer [--json tokenizer.json [--config tokenizer_config.json]] [--mb N] [--reps R]\n");
            return 2;
        }
    }
    char err[512];
    double t0 = now_seconds();
    tokenizer *t = tokenizer_load_json(json, cfg, err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); return 2; }
    double tload = now_seconds() - t0;

    char *src = NULL;
    size_t n = 0, cap = 0;
    add_dir(&src, &n, &cap, "trainer");
    add_dir(&src, &n, &cap, "kernels/cpu");
    add_dir(&src, &n, &cap, "docs");
    add_cases(&src, &n, &cap);
    if (n == 0) { fprintf(stderr, "no text found (run from the source root)\n"); return 2; }
    size_t want = (size_t)(mb * 1e6), base = n;
    char *text = NULL;
    size_t tn = 0, tc = 0;
    while (tn < want) append(&text, &tn, &tc, src, base < want - tn ? base : want - tn);
    /* cut back to a UTF-8 boundary */
    while (tn > 0 && ((unsigned char)text[tn - 1] & 0xC0) == 0x80) tn--;
    if (tn > 0 && (unsigned char)text[tn - 1] >= 0xC0) tn--;

    printf("tokenizer %s: vocab %d, %d merges, pre-tokenizer %s (load %.3f s)\n", json, tokenizer_vocab_size(t),
           tokenizer_n_merges(t), tokenizer_pretokenizer(t), tload);
    printf("text: %.2f MB (%zu distinct bytes of sources/docs/test strings, repeated)\n", tn / 1e6, base);
    tok_ids ids = {0};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        ids.n = 0;
        t0 = now_seconds();
        if (tokenizer_encode(t, text, tn, TOK_ALLOW_SPECIAL, &ids, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        double dt = now_seconds() - t0;
        printf("encode rep %d: %.3f s, %.2f MB/s, %zu tokens (%.2f bytes/token)\n", r, dt, tn / 1e6 / dt, ids.n,
               (double)tn / (double)ids.n);
        if (dt < best) best = dt;
    }
    /* short strings: per-call overhead (prompts, completions) */
    size_t nshort = 0, bytes_short = 0;
    t0 = now_seconds();
    for (size_t off = 0; off + 200 < tn && nshort < 20000; off += 200, nshort++) {
        ids.n = 0;
        tokenizer_encode(t, text + off, 200, TOK_ALLOW_SPECIAL, &ids, err, sizeof err);
        bytes_short += 200;
    }
    double dts = now_seconds() - t0;
    ids.n = 0;
    tokenizer_encode(t, text, tn, TOK_ALLOW_SPECIAL, &ids, err, sizeof err);
    char *out = malloc(tn + 16);
    t0 = now_seconds();
    size_t dl = tokenizer_decode(t, ids.ids, ids.n, 0, out, tn + 16);
    double dtd = now_seconds() - t0;
    if (dl != tn || memcmp(out, text, tn)) { fprintf(stderr, "decode did not give the text back\n"); return 1; }
    printf("encode best: %.2f MB/s (%.0f tokens/s)\n", tn / 1e6 / best, ids.n / best);
    printf("encode 200-byte calls: %.2f MB/s (%.1f us/call, %zu calls)\n", bytes_short / 1e6 / dts, dts / nshort * 1e6,
           nshort);
    printf("decode: %.2f MB/s\n", tn / 1e6 / dtd);
    free(out); free(ids.ids); free(text); free(src);
    tokenizer_free(t);
    return 0;
}

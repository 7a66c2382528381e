/* tests/test_tokenizer.c: byte-level BPE conformance against the HF
 * `tokenizers` library (fixtures from tools/ref_tokenizer.py): the ids of 370
 * strings for four tokenizers (smollm, gpt2, llama3, qwen2 pre-tokenizers),
 * with special tokens split and read as text; decode round trips; chat
 * formatting against transformers' apply_chat_template; the array (GGUF-style)
 * constructor, HDF5 and tokenizer.json round trips giving the same ids; raw
 * bytes (invalid UTF-8, cut characters) and arbitrary id sequences; bad input. */
#include <hdf5.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "tokenizer.h"
#include "tokenizer_h5.h"
#include "util.h"

#include "check.h"

#define NPRE 5
static const char *PRES[NPRE] = {"smollm", "gpt2", "llama3", "qwen2", "custom"};

static tokenizer *load_fixture(const char *pre) {
    char p[256], c[256], err[512];
    snprintf(p, sizeof p, "tests/fixtures/tok_%s.json", pre);
    snprintf(c, sizeof c, "tests/fixtures/tok_%s_config.json", pre);
    tokenizer *t = tokenizer_load_json(p, access(c, R_OK) == 0 ? c : NULL, err, sizeof err);
    if (!t) { fprintf(stderr, "load %s: %s\n", p, err); exit(1); }
    return t;
}

static int ids_eq(const tok_ids *a, json_t *ref) {
    if (a->n != json_array_size(ref)) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != json_integer_value(json_array_get(ref, i))) return 0;
    return 1;
}

static void show(const char *what, const tok_ids *a, json_t *ref) {
    fprintf(stderr, "  %s ours:", what);
    for (size_t i = 0; i < a->n && i < 40; i++) fprintf(stderr, " %d", a->ids[i]);
    fprintf(stderr, "\n  %s ref: ", what);
    for (size_t i = 0; i < json_array_size(ref) && i < 40; i++)
        fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(ref, i)));
    fprintf(stderr, "\n");
}

static json_t **read_jsonl(const char *path, size_t *n) {
    char err[256];
    size_t len;
    char *s = read_file(path, &len, err, sizeof err);
    if (!s) { fprintf(stderr, "%s\n", err); exit(1); }
    json_t **rows = NULL;
    *n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) { fprintf(stderr, "%s: line %zu: %s\n", path, *n + 1, je.text); exit(1); }
        rows = realloc(rows, (*n + 1) * sizeof *rows);
        rows[(*n)++] = j;
    }
    free(s);
    return rows;
}

/* encodes every case with t (name pre) and compares to the fixture's ids */
static int check_cases(tokenizer *t, const char *pre, json_t **rows, size_t n, const char *label) {
    char err[256];
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *r = rows[i];
        const char *text = json_string_value(json_object_get(r, "text"));
        size_t tl = json_string_length(json_object_get(r, "text"));
        for (int plain = 0; plain < 2; plain++) {
            json_t *ref = json_object_get(json_object_get(r, plain ? "plain" : "ids"), pre);
            tok_ids o = {0};
            int rc = tokenizer_encode(t, text, tl, plain ? 0 : TOK_ALLOW_SPECIAL, &o, err, sizeof err);
            CHECK(rc == 0, "%s encode: %s", pre, err);
            if (!ids_eq(&o, ref)) {
                if (bad++ < 5) {
                    fprintf(stderr, "FAIL %s[%s] case %zu (%s) \"%.80s\"\n", label, pre, i, plain ? "plain" : "special",
                            text);
                    show("ids", &o, ref);
                }
            } else {
                /* decode gives the text back (its NFC for an NFC tokenizer) */
                char *nfc = NULL;
                size_t nl = 0;
                if (!strcmp(tokenizer_normalizer(t), "nfc")) tokenizer_nfc(text, tl, &nfc, &nl);
                const char *want = nfc ? nfc : text;
                if (!nfc) nl = tl;
                char *d = malloc(nl + 1);
                size_t dl = tokenizer_decode(t, o.ids, o.n, 0, d, nl + 1);
                CHECK(dl == nl && memcmp(d, want, nl) == 0, "%s case %zu: decode does not give the text back", pre, i);
                free(d);
                free(nfc);
            }
            free(o.ids);
        }
    }
    if (bad) { fails++; fprintf(stderr, "%s[%s]: %d of %zu encodings differ\n", label, pre, bad, 2 * n); }
    return bad;
}

/* the GGUF path: rebuild from arrays of strings, types and "a b" merges */
static tokenizer *rebuild_from_arrays(const tokenizer *t, const char *gguf_pre) {
    int32_t nv = tokenizer_vocab_size(t), nm = tokenizer_n_merges(t);
    const char **toks = malloc(nv * sizeof *toks);
    int32_t *types = malloc(nv * sizeof *types);
    char **merges = malloc((nm + 1) * sizeof *merges);
    for (int32_t i = 0; i < nv; i++) { toks[i] = tokenizer_id_to_token(t, i, NULL); types[i] = tokenizer_token_type(t, i); }
    for (int32_t i = 0; i < nm; i++) {
        int32_t a, b;
        tokenizer_merge(t, i, &a, &b);
        const char *sa = tokenizer_id_to_token(t, a, NULL), *sb = tokenizer_id_to_token(t, b, NULL);
        merges[i] = malloc(strlen(sa) + strlen(sb) + 2);
        sprintf(merges[i], "%s %s", sa, sb);
    }
    tokenizer_spec sp;
    tokenizer_spec_init(&sp);
    sp.n_vocab = nv; sp.tokens = toks; sp.token_types = types;
    sp.n_merges = nm; sp.merges = (const char *const *)merges;
    if (gguf_pre) {
        sp.pretokenizer = tokenizer_pre_from_gguf(gguf_pre, &sp.ignore_merges);
    } else {   /* not expressible in GGUF: the custom regexes */
        sp.pretokenizer = tokenizer_pretokenizer(t);
        sp.n_pre_regex = tokenizer_pre_regex(t, &sp.pre_regex);
    }
    sp.bos_id = tokenizer_bos_id(t); sp.eos_id = tokenizer_eos_id(t);
    sp.chat_template = tokenizer_chat_template_text(t);
    char err[256];
    tokenizer *r = tokenizer_create(&sp, err, sizeof err);
    CHECK(r != NULL, "array constructor: %s", err);
    for (int32_t i = 0; i < nm; i++) free(merges[i]);
    free(merges); free(toks); free(types);
    return r;
}

static tokenizer *h5_roundtrip(const tokenizer *t) {
    char path[64], err[256];
    snprintf(path, sizeof path, "/tmp/rft_test_tok_%d.h5", (int)getpid());
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = tokenizer_h5_save(g, t, err, sizeof err);
    CHECK(rc == 0, "h5 save: %s", err);
    H5Gclose(g); H5Fclose(f);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    tokenizer *r = NULL;
    rc = tokenizer_h5_load(g, &r, err, sizeof err);
    CHECK(rc == 0 && r, "h5 load: %s", err);
    H5Gclose(g); H5Fclose(f);
    unlink(path);
    return r;
}

static tokenizer *json_roundtrip(const tokenizer *t) {
    char p[64], c[64], err[256];
    snprintf(p, sizeof p, "/tmp/rft_test_tok_%d.json", (int)getpid());
    snprintf(c, sizeof c, "/tmp/rft_test_tokcfg_%d.json", (int)getpid());
    int rc = tokenizer_save_json(t, p, c, err, sizeof err);
    CHECK(rc == 0, "save json: %s", err);
    tokenizer *r = tokenizer_load_json(p, c, err, sizeof err);
    CHECK(r != NULL, "reload json: %s", err);
    unlink(p); unlink(c);
    return r;
}

static void check_same_meta(const tokenizer *a, const tokenizer *b, const char *what) {
    CHECK(tokenizer_vocab_size(a) == tokenizer_vocab_size(b), "%s: vocab size", what);
    CHECK(tokenizer_bos_id(a) == tokenizer_bos_id(b) && tokenizer_eos_id(a) == tokenizer_eos_id(b), "%s: bos/eos", what);
    CHECK(!strcmp(tokenizer_normalizer(a), tokenizer_normalizer(b)), "%s: normalizer", what);
    CHECK(!strcmp(tokenizer_chat_template_name(a), tokenizer_chat_template_name(b)), "%s: chat template name %s vs %s",
          what, tokenizer_chat_template_name(a), tokenizer_chat_template_name(b));
    const char *ta = tokenizer_chat_template_text(a), *tb = tokenizer_chat_template_text(b);
    CHECK((!ta && !tb) || (ta && tb && !strcmp(ta, tb)) || !strcmp(what, "json"), "%s: chat template text", what);
}

static void check_chat(tokenizer **toks, json_t **rows, size_t n) {
    char err[256];
    int cnt = 0;
    /* Llama 3.1's template over the llama3 fixture vocabulary */
    tokenizer *l31 = tokenizer_load_json("tests/fixtures/tok_llama3.json", "tests/fixtures/tok_llama31_config.json", err,
                                         sizeof err);
    CHECK(l31 != NULL, "llama31: %s", err);
    if (!l31) return;
    CHECK(!strcmp(tokenizer_chat_template_name(l31), "llama3"), "llama 3.1 template detected as llama3");
    for (size_t i = 0; i < n; i++) {
        json_t *r = rows[i];
        const char *pre = json_string_value(json_object_get(r, "tokenizer"));
        tokenizer *t = !strcmp(pre, "llama31") ? l31 : NULL;
        for (int k = 0; k < NPRE; k++)
            if (!strcmp(pre, PRES[k])) t = toks[k];
        json_t *ms = json_object_get(r, "messages");
        size_t nm = json_array_size(ms);
        chat_msg msgs[8];
        for (size_t k = 0; k < nm; k++) {
            msgs[k].role = json_string_value(json_object_get(json_array_get(ms, k), "role"));
            msgs[k].content = json_string_value(json_object_get(json_array_get(ms, k), "content"));
        }
        int gen = json_is_true(json_object_get(r, "add_generation_prompt"));
        char *text;
        size_t tl;
        CHECK(chat_format(t, msgs, nm, gen, &text, &tl, err, sizeof err) == 0, "chat_format: %s", err);
        const char *ref = json_string_value(json_object_get(r, "text"));
        CHECK(!strcmp(text, ref), "chat %zu (%s) text differs:\n--ours--\n%s\n--ref--\n%s", i, pre, text, ref);
        free(text);
        tok_ids o = {0};
        CHECK(chat_encode(t, msgs, nm, gen, &o, err, sizeof err) == 0, "chat_encode: %s", err);
        if (!ids_eq(&o, json_object_get(r, "ids"))) {
            fails++;
            fprintf(stderr, "FAIL chat %zu (%s) ids differ\n", i, pre);
            show("chat", &o, json_object_get(r, "ids"));
        }
        free(o.ids);
        cnt++;
    }
    tokenizer_free(l31);
    printf("chat: %d conversations checked against apply_chat_template\n", cnt);
}

/* raw bytes, cut characters and arbitrary id sequences */
static void check_bytes(tokenizer *t) {
    char err[256];
    uint64_t key = rng_key(7, 1, 2, 3);
    uint64_t ctr = 0;
    for (int it = 0; it < 300; it++) {
        size_t n = 1 + (size_t)(rng_u64(key, ctr++) % 200);
        char buf[256];
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng_u64(key, ctr++);
            /* mostly ASCII and UTF-8 lead/continuation bytes, sometimes anything */
            buf[i] = (char)(r % 4 == 0 ? (r >> 8) & 0xFF : r % 4 == 1 ? 0x80 + ((r >> 8) & 0x7F) : 32 + ((r >> 8) % 95));
        }
        tok_ids o = {0};
        CHECK(tokenizer_encode(t, buf, n, TOK_ALLOW_SPECIAL, &o, err, sizeof err) == 0, "encode bytes: %s", err);
        char d[1024], *nfc = NULL;
        size_t dl = tokenizer_decode(t, o.ids, o.n, 0, d, sizeof d), nl = 0;
        if (!strcmp(tokenizer_normalizer(t), "nfc")) tokenizer_nfc(buf, n, &nfc, &nl);
        if (nfc) CHECK(dl == nl && memcmp(d, nfc, nl) == 0, "raw bytes round trip, NFC (iteration %d)", it);
        else CHECK(dl == n && memcmp(d, buf, n) == 0, "raw bytes round trip (iteration %d, %zu bytes)", it, n);
        free(nfc);
        free(o.ids);
    }
    /* a character cut across tokens: decode of a prefix gives its bytes */
    const char *s = "€😀中";
    tok_ids o = {0};
    tokenizer_encode(t, s, strlen(s), 0, &o, err, sizeof err);
    size_t total = 0;
    for (size_t k = 0; k <= o.n; k++) {
        char d[64];
        size_t dl = tokenizer_decode(t, o.ids, k, 0, d, sizeof d);
        CHECK(dl <= strlen(s) && memcmp(d, s, dl) == 0, "prefix %zu of a cut character sequence", k);
        total = dl;
    }
    CHECK(total == strlen(s), "cut characters: full decode");
    free(o.ids);
    /* any id sequence decodes without crashing; out-of-range ids give nothing;
       the size returned does not depend on the buffer */
    int32_t nv = tokenizer_vocab_size(t);
    for (int it = 0; it < 200; it++) {
        int32_t ids[64];
        size_t n = (size_t)(rng_u64(key, ctr++) % 64), want = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng_u64(key, ctr++);
            ids[i] = r % 10 == 0 ? (int32_t)(r >> 32) : (int32_t)((r >> 8) % (uint64_t)nv);
            size_t l = 0;
            if (tokenizer_token_bytes(t, ids[i], &l)) want += l;
        }
        char small[7], big[4096];
        size_t a = tokenizer_decode(t, ids, n, 0, small, sizeof small), b = tokenizer_decode(t, ids, n, 0, big, sizeof big);
        CHECK(a == want && b == want && memcmp(small, big, want < 7 ? want : 7) == 0, "decode of arbitrary ids");
    }
    /* skip_special */
    int32_t sp[3] = {tokenizer_token_to_id(t, "<|im_start|>", 12), tokenizer_token_to_id(t, "hi", 2), -1};
    if (sp[0] >= 0 && sp[1] >= 0) {
        char d[32];
        size_t dl = tokenizer_decode(t, sp, 3, 1, d, sizeof d);
        CHECK(dl == 2 && !memcmp(d, "hi", 2), "skip_special");
    }
}

/* tokenizer_nfc against Python's unicodedata.normalize("NFC") */
static void check_nfc(void) {
    size_t n;
    json_t **rows = read_jsonl("tests/fixtures/tok_nfc.jsonl", &n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_object_get(rows[i], "text"));
        size_t sl = json_string_length(json_object_get(rows[i], "text"));
        const char *want = json_string_value(json_object_get(rows[i], "nfc"));
        size_t wl = json_string_length(json_object_get(rows[i], "nfc"));
        char *o;
        size_t ol;
        CHECK(tokenizer_nfc(s, sl, &o, &ol) == 0, "nfc: out of memory");
        const char *got = o ? o : s;
        size_t gl = o ? ol : sl;
        if (gl != wl || memcmp(got, want, wl)) {
            if (bad++ < 3) fprintf(stderr, "FAIL nfc row %zu: \"%s\" -> \"%.*s\", want \"%s\"\n", i, s, (int)gl, got, want);
        }
        free(o);
        json_decref(rows[i]);
    }
    free(rows);
    if (bad) fails++;
    printf("nfc: %zu strings against unicodedata: %s\n", n, bad ? "MISMATCH" : "identical");
}

/* concurrent encodes on one tokenizer (shared cache) give the fixture ids */
typedef struct thr_arg {
    tokenizer *t;
    const char *pre;
    json_t **rows;
    size_t n;
    int offset, bad;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    char err[256];
    for (size_t r = 0; r < 3 * a->n; r++) {
        json_t *row = a->rows[(r * 7 + (size_t)a->offset) % a->n];
        const char *text = json_string_value(json_object_get(row, "text"));
        tok_ids o = {0};
        if (tokenizer_encode(a->t, text, json_string_length(json_object_get(row, "text")), TOK_ALLOW_SPECIAL, &o, err,
                             sizeof err) ||
            !ids_eq(&o, json_object_get(json_object_get(row, "ids"), a->pre)))
            a->bad++;
        free(o.ids);
    }
    return NULL;
}

static void check_threads(tokenizer *t, const char *pre, json_t **rows, size_t n) {
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){t, pre, rows, n, i * 13, 0};
        pthread_create(&th[i], NULL, thr_main, &a[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); bad += a[i].bad; }
    CHECK(bad == 0, "%s: %d wrong encodings from 4 concurrent threads", pre, bad);
    printf("threads: 4 x %zu concurrent encodes (%s): %s\n", 3 * n, pre, bad ? "MISMATCH" : "identical");
}

/* a /tokenizer group damaged in one place: one clear error, no tokenizer */
static void h5_damaged(const tokenizer *t, const char *what, const char *dset, int64_t idx, int64_t val,
                       const char *expect) {
    char path[64], err[256];
    snprintf(path, sizeof path, "/tmp/rft_test_tokbad_%d.h5", (int)getpid());
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    tokenizer_h5_save(g, t, err, sizeof err);
    if (dset && idx >= 0) {   /* overwrite one element */
        hid_t d = H5Dopen2(g, dset, H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        hsize_t start[2] = {(hsize_t)idx, 0}, cnt[2] = {1, 1};
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
        hid_t ms = H5Screate_simple(1, cnt, NULL);
        H5Dwrite(d, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, &val);
        H5Sclose(ms); H5Sclose(fs); H5Dclose(d);
    } else if (dset) {        /* remove it */
        H5Ldelete(g, dset, H5P_DEFAULT);
    }
    H5Gclose(g);
    H5Fclose(f);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    tokenizer *r = NULL;
    err[0] = 0;
    int rc = tokenizer_h5_load(g, &r, err, sizeof err);
    CHECK(rc == -1 && !r && strstr(err, expect), "damaged h5 (%s): rc %d, \"%s\"", what, rc, err);
    tokenizer_free(r);
    H5Gclose(g);
    H5Fclose(f);
    unlink(path);
}

static void check_bad_input(void) {
    char err[256];
    tokenizer *t;
    t = tokenizer_parse_json("{\"model\": ", 10, "x.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "x.json:"), "truncated JSON: %s", err);
    const char *j1 = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]},"
                     "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}";
    t = tokenizer_parse_json(j1, strlen(j1), "y.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "merge 0"), "merge with unknown token: %s", err);
    const char *j2 = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":null}";
    t = tokenizer_parse_json(j2, strlen(j2), "z.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "WordPiece"), "wrong model type: %s", err);
    const char *j3 = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-5}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}";
    t = tokenizer_parse_json(j3, strlen(j3), "w.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "vocab"), "negative id: %s", err);
    const char *j5 = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":16000000}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}";
    t = tokenizer_parse_json(j5, strlen(j5), "s.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "dense"), "sparse huge id: %s", err);
    const char *j4 = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}";
    t = tokenizer_parse_json(j4, strlen(j4), "m.json", NULL, 0, err, sizeof err);
    CHECK(!t && strstr(err, "Metaspace"), "unsupported pre-tokenizer: %s", err);
    tokenizer *ok = load_fixture("smollm");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5_damaged(ok, "offset decreases", "vocab_offsets", 100, 3, "decrease");
    h5_damaged(ok, "offset past the bytes", "vocab_offsets", 2000, 1 << 30, "span");
    h5_damaged(ok, "merge id out of range", "merges", 5, 99999, "out of range");
    h5_damaged(ok, "merge id negative", "merges", 7, -3, "out of range");
    h5_damaged(ok, "unknown token type", "token_types", 9, 42, "unknown type");
    h5_damaged(ok, "missing merges", "merges", -1, 0, "missing dataset merges");
    h5_damaged(ok, "missing attribute", "token_types", -1, 0, "missing dataset token_types");
    tokenizer_free(ok);
    tokenizer_spec sp;
    tokenizer_spec_init(&sp);
    const char *toks[2] = {"a", "b"};
    sp.n_vocab = 2; sp.tokens = toks; sp.pretokenizer = "nonsense";
    t = tokenizer_create(&sp, err, sizeof err);
    CHECK(!t && strstr(err, "nonsense"), "unknown pre-tokenizer name: %s", err);
    sp.pretokenizer = "gpt2"; sp.eos_id = 5;
    t = tokenizer_create(&sp, err, sizeof err);
    CHECK(!t && strstr(err, "eos"), "eos out of range: %s", err);
}

int main(void) {
    size_t nrows, nchat;
    json_t **rows = read_jsonl("tests/fixtures/tok_cases.jsonl", &nrows);
    json_t **chat = read_jsonl("tests/fixtures/tok_chat.jsonl", &nchat);
    CHECK(nrows >= 300, "fixture has %zu strings", nrows);
    tokenizer *toks[NPRE];
    for (int k = 0; k < NPRE; k++) {
        toks[k] = load_fixture(PRES[k]);
        CHECK(!strcmp(tokenizer_pretokenizer(toks[k]), PRES[k]), "tokenizer.json pre-tokenizer detected as %s, want %s",
              tokenizer_pretokenizer(toks[k]), PRES[k]);
        int bad = check_cases(toks[k], PRES[k], rows, nrows, "tokenizer.json");
        printf("%-7s %zu strings x 2 (special split / plain): %s\n", PRES[k], nrows, bad ? "MISMATCH" : "identical");
    }
    CHECK(tokenizer_ignore_merges(toks[2]) == 1, "llama3 fixture has ignore_merges");
    /* add_bos from a TemplateProcessing post-processor (llama3) or add_bos_token (smollm: false) */
    CHECK(tokenizer_add_bos(toks[2]) == 1 && tokenizer_bos_id(toks[2]) == 0, "llama3: add_bos with bos 0");
    CHECK(tokenizer_add_bos(toks[0]) == 0, "smollm: no add_bos");
    for (int k = 0; k < 4; k += 2) {
        char err[256];
        tok_ids a = {0}, b = {0};
        tokenizer_encode(toks[k], "Hello world", 11, TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &a, err, sizeof err);
        tokenizer_encode(toks[k], "Hello world", 11, TOK_ALLOW_SPECIAL, &b, err, sizeof err);
        int with_bos = k == 2;
        CHECK(a.n == b.n + (size_t)with_bos && (!with_bos || a.ids[0] == 0) &&
              !memcmp(a.ids + with_bos, b.ids, b.n * sizeof(int32_t)), "%s: TOK_ADD_SPECIAL", PRES[k]);
        free(a.ids); free(b.ids);
    }
    CHECK(!strcmp(tokenizer_chat_template_name(toks[0]), "chatml"), "smollm template detected as chatml");
    CHECK(!strcmp(tokenizer_chat_template_name(toks[2]), "llama3"), "llama3 template detected");
    char *sys = chat_template_default_system(tokenizer_chat_template_text(toks[0]));
    CHECK(sys && !strcmp(sys, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
          "SmolLM2 default system prompt: %s", sys ? sys : "(none)");
    free(sys);
    sys = chat_template_default_system(tokenizer_chat_template_text(toks[3]));
    CHECK(sys && !strcmp(sys, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
          "Qwen2.5 default system prompt: %s", sys ? sys : "(none)");
    free(sys);
    check_chat(toks, chat, nchat);
    {
        int32_t st[8];
        int ns = chat_stop_tokens(toks[0], st, 8);   /* smollm: eos <|im_end|> = 2, <|endoftext|> = 0 */
        CHECK(ns == 2 && st[0] == 2 && st[1] == 0, "smollm stop tokens (%d)", ns);
        ns = chat_stop_tokens(toks[2], st, 8);       /* llama3: eos <|eot_id|> = 4, <|end_of_text|> = 1 */
        CHECK(ns == 2 && st[0] == 4 && st[1] == 1, "llama3 stop tokens (%d)", ns);
        ns = chat_stop_tokens(toks[1], st, 1);
        CHECK(ns == 1 && st[0] == 0, "gpt2 stop tokens, cap 1 (%d)", ns);
    }

    /* array constructor (GGUF path), HDF5 and tokenizer.json round trips */
    const char *gguf_pre[NPRE] = {"smollm", "gpt2", "llama-bpe", "qwen2", NULL};
    for (int k = 0; k < NPRE; k++) {
        tokenizer *a = rebuild_from_arrays(toks[k], gguf_pre[k]);
        if (a) { check_same_meta(toks[k], a, "arrays"); check_cases(a, PRES[k], rows, nrows, "arrays"); tokenizer_free(a); }
        tokenizer *h = h5_roundtrip(toks[k]);
        if (h) { check_same_meta(toks[k], h, "h5"); check_cases(h, PRES[k], rows, nrows, "h5"); tokenizer_free(h); }
        tokenizer *j = json_roundtrip(toks[k]);
        if (j) {
            check_same_meta(toks[k], j, "json");
            check_cases(j, PRES[k], rows, nrows, "json");
            CHECK(tokenizer_ignore_merges(j) == tokenizer_ignore_merges(toks[k]), "json: ignore_merges");
            CHECK(tokenizer_add_bos(j) == tokenizer_add_bos(toks[k]), "json: add_bos");
            tokenizer_free(j);
        }
    }
    printf("array constructor, HDF5 and tokenizer.json round trips: same ids\n");
    /* a custom pre-tokenizer through HDF5 */
    {
        tokenizer_spec sp;
        tokenizer_spec_init(&sp);
        const char *tk[4] = {"a", "b", "Ġ", "ab"}, *mg[1] = {"a b"}, *rx[1] = {"\\s+|[^\\s]+"};
        sp.n_vocab = 4; sp.tokens = tk; sp.n_merges = 1; sp.merges = mg;
        sp.pretokenizer = "custom"; sp.pre_regex = rx; sp.n_pre_regex = 1;
        char err[256];
        tokenizer *c = tokenizer_create(&sp, err, sizeof err);
        CHECK(c != NULL, "custom: %s", err);
        tokenizer *h = c ? h5_roundtrip(c) : NULL;
        if (h) {
            tok_ids o = {0};
            tokenizer_encode(h, "ab ba", 5, 0, &o, err, sizeof err);
            CHECK(o.n == 4 && o.ids[0] == 3 && o.ids[1] == 2 && o.ids[2] == 1 && o.ids[3] == 0, "custom regex after h5");
            free(o.ids);
            CHECK(!strcmp(tokenizer_pretokenizer(h), "custom"), "custom name");
            tokenizer_free(h);
        }
        tokenizer_free(c);
    }
    CHECK(!strcmp(tokenizer_normalizer(toks[3]), "nfc") && !strcmp(tokenizer_normalizer(toks[0]), "none"),
          "normalizer from tokenizer.json");
    check_nfc();
    check_threads(toks[0], PRES[0], rows, nrows);
    check_threads(toks[3], PRES[3], rows, nrows);
    check_bytes(toks[0]);
    check_bytes(toks[3]);
    check_bad_input();
    for (int k = 0; k < NPRE; k++) tokenizer_free(toks[k]);
    for (size_t i = 0; i < nrows; i++) json_decref(rows[i]);
    for (size_t i = 0; i < nchat; i++) json_decref(chat[i]);
    free(rows); free(chat);
    if (fails) { fprintf(stderr, "%d failures\n", fails); return 1; }
    printf("test_tokenizer: all passed\n");
    return 0;
}

/* trainer/tokenizer.c: byte-level BPE: vocabulary and merge hash tables,
 * added-token splitting (leftmost-longest), PCRE2 pre-tokenizers, the merge
 * loop (naive for short pre-tokens, a heap over a symbol list for long ones),
 * a cache of encoded pre-tokens, and decode to raw bytes. */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "util.h"

/* ---------------------------------------------------------------- tables */

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

typedef struct merge_slot {
    uint64_t key;       /* left << 32 | right; UINT64_MAX empty */
    int32_t rank;
    int32_t result;
} merge_slot;

typedef struct pre_step {
    pcre2_code *code;
    int jit;        /* JIT-compiled: matched through pcre2_jit_match */
    int digits;     /* the pattern is \p{N} (isolate every number character): ASCII fast path */
} pre_step;

#define CACHE_SLOTS 65536
#define CACHE_MAX_KEY 64
#define CACHE_ARENA (4u << 20)

typedef struct cache_slot {
    uint64_t hash;      /* 0: empty */
    uint32_t key_off, key_len, ids_off, ids_len;
} cache_slot;

struct tokenizer {
    int32_t n_vocab;
    /* vocabulary strings (NUL-terminated) and decoded bytes, in two arenas */
    char *str_arena;  size_t *str_off;  uint32_t *str_len;
    char *dec_arena;  size_t *dec_off;  uint32_t *dec_len;
    int8_t *type;                       /* [n_vocab] TOK_TYPE_* */
    int32_t *vocab_tab; uint32_t vocab_mask;   /* open addressing: id or -1 */
    int32_t byte_id[256];               /* token of each single byte, -1 none */
    int32_t n_merges;
    int32_t *merge_l, *merge_r;         /* [n_merges] */
    merge_slot *merge_tab; uint32_t merge_mask;
    /* added tokens, grouped by first byte, longest first */
    int32_t n_added;
    int32_t *added_ids;                 /* [n_added], sorted by first byte then length desc */
    int32_t added_start[257];           /* per first byte: range in added_ids */
    /* pre-tokenizer */
    char pre_name[16];
    int n_steps;
    pre_step steps[TOK_MAX_PRE_STEPS];
    char *pre_regex[TOK_MAX_PRE_STEPS]; /* custom patterns as given */
    int n_pre_regex;
    int ignore_merges;
    int nfc;                            /* normalizer: NFC */
    int32_t bos, eos, pad, unk;
    int add_bos;
    char *chat_text;
    char chat_name[16];
    /* encoded pre-token cache */
    pthread_mutex_t cache_mu;
    cache_slot *cache;
    uint8_t *cache_keys; int32_t *cache_ids;
    uint32_t cache_keys_used, cache_ids_used, cache_count;
};

/* GPT-2 byte <-> unicode mapping: printable latin-1 bytes map to themselves,
   the others to U+0100 upward in byte order. */
static int byte_to_cp[256];
static int16_t cp_to_byte[324];   /* code points < 324 */
static pthread_once_t map_once = PTHREAD_ONCE_INIT;

static void map_init(void) {
    int n = 0;
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = keep ? b : 256 + n++;
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

static int utf8_put(char *o, int cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* strict UTF-8 decode of one code point; -1 if malformed */
static int utf8_get(const uint8_t *s, size_t n, size_t *adv) {
    if (n == 0) return -1;
    uint8_t c = s[0];
    if (c < 0x80) { *adv = 1; return c; }
    int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || (size_t)len > n) return -1;
    int cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *adv = (size_t)len;
    return cp;
}

/* ---------------------------------------------------------------- lookup */

static const char *tok_str(const tokenizer *t, int32_t id) { return t->str_arena + t->str_off[id]; }

static int32_t vocab_find(const tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_tab[i];
        if (id < 0) return -1;
        if (t->str_len[id] == n && memcmp(tok_str(t, id), s, n) == 0) return id;
        i = (i + 1) & t->vocab_mask;
    }
}

static inline const merge_slot *merge_find(const tokenizer *t, int32_t l, int32_t r) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint32_t i = (uint32_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        const merge_slot *s = &t->merge_tab[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------------- pre-tokenizers */

/* HF's regexes run on Oniguruma, where \s is the Unicode White_Space
   property (it includes U+0085); PCRE2's UCP \s does not match U+0085.
   Rewrite \s and \S to explicit classes so both engines agree. */
#define WS_CLASS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static char *regex_translate(const char *p, char *err, size_t cap) {
    size_t n = strlen(p), o = 0;
    char *out = xmalloc(n * (sizeof WS_CLASS + 4) + 1, err, cap);
    if (!out) return NULL;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || (d == 'S' && !in_class)) {
                if (in_class) o += (size_t)sprintf(out + o, "%s", WS_CLASS);
                else o += (size_t)sprintf(out + o, d == 's' ? "[%s]" : "[^%s]", WS_CLASS);
            } else {
                out[o++] = c; out[o++] = d;
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            out[o++] = c;
            if (i + 1 < n && p[i + 1] == '^') out[o++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') out[o++] = p[++i];   /* literal ] first */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {  /* POSIX [:name:] */
            const char *e = strstr(p + i + 2, ":]");
            if (e) {
                size_t m = (size_t)(e + 2 - (p + i));
                memcpy(out + o, p + i, m); o += m; i += m - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_DIGIT[] = "\\p{N}";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *tokenizer_pre_from_gguf(const char *p, int *ignore_merges) {
    int im = 0;
    const char *r = NULL;
    if (!p) return NULL;
    if (!strcmp(p, "gpt2") || !strcmp(p, "default") || !strcmp(p, "gpt-2")) r = "gpt2";
    else if (!strcmp(p, "smollm")) r = "smollm";
    else if (!strcmp(p, "llama-bpe") || !strcmp(p, "llama3")) { r = "llama3"; im = 1; }
    else if (!strcmp(p, "qwen2")) r = "qwen2";
    if (r && ignore_merges) *ignore_merges = im;
    return r;
}

static int compile_step(pre_step *s, const char *pattern, char *err, size_t cap) {
    char *tr = regex_translate(pattern, err, cap);
    if (!tr) return -1;
    int ec;
    PCRE2_SIZE eo;
    s->code = pcre2_compile((PCRE2_SPTR)tr, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                            &ec, &eo, NULL);
    free(tr);
    if (!s->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return errf(err, cap, "pre-tokenizer regex /%s/: %s at offset %zu", pattern, (char *)msg, (size_t)eo);
    }
    /* JIT is an accelerator: when unavailable, the interpreter gives the same matches */
    s->jit = pcre2_jit_compile(s->code, PCRE2_JIT_COMPLETE) == 0;
    s->digits = !strcmp(pattern, RE_DIGIT);
    return 0;
}

static int pre_init(tokenizer *t, const tokenizer_spec *sp, char *err, size_t cap) {
    const char *name = sp->pretokenizer ? sp->pretokenizer : "gpt2";
    const char *pats[TOK_MAX_PRE_STEPS];
    int n = 0;
    if (!strcmp(name, "gpt2")) pats[n++] = RE_GPT2;
    else if (!strcmp(name, "smollm")) { pats[n++] = RE_DIGIT; pats[n++] = RE_GPT2; }
    else if (!strcmp(name, "llama3")) pats[n++] = RE_LLAMA3;
    else if (!strcmp(name, "qwen2")) pats[n++] = RE_QWEN2;
    else if (!strcmp(name, "custom")) {
        if (sp->n_pre_regex < 1 || sp->n_pre_regex > TOK_MAX_PRE_STEPS || !sp->pre_regex)
            return errf(err, cap, "pre-tokenizer \"custom\" needs 1..%d regexes (got %d)", TOK_MAX_PRE_STEPS,
                        sp->n_pre_regex);
        for (int i = 0; i < sp->n_pre_regex; i++) {
            pats[n++] = sp->pre_regex[i];
            if (!(t->pre_regex[i] = strdup(sp->pre_regex[i]))) return errf(err, cap, "out of memory");
        }
        t->n_pre_regex = sp->n_pre_regex;
    } else {
        return errf(err, cap, "unknown pre-tokenizer \"%s\" (gpt2, smollm, llama3, qwen2, custom)", name);
    }
    snprintf(t->pre_name, sizeof t->pre_name, "%s", name);
    for (int i = 0; i < n; i++) {
        if (compile_step(&t->steps[i], pats[i], err, cap)) return -1;
        t->n_steps = i + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- create */

void tokenizer_spec_init(tokenizer_spec *s) {
    memset(s, 0, sizeof *s);
    s->pretokenizer = "gpt2";
    s->bos_id = s->eos_id = s->pad_id = s->unk_id = -1;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->str_arena); free(t->str_off); free(t->str_len);
    free(t->dec_arena); free(t->dec_off); free(t->dec_len);
    free(t->type); free(t->vocab_tab);
    free(t->merge_l); free(t->merge_r); free(t->merge_tab);
    free(t->added_ids);
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].code);
    for (int i = 0; i < t->n_pre_regex; i++) free(t->pre_regex[i]);
    free(t->chat_text);
    free(t->cache); free(t->cache_keys); free(t->cache_ids);
    pthread_mutex_destroy(&t->cache_mu);
    free(t);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* decoded bytes of a byte-level token: every char through the inverse map;
   if any char is outside it, the token's UTF-8 as is (HF ByteLevel decoder) */
static size_t token_decode_bytes(const char *s, size_t n, char *out) {
    size_t i = 0, o = 0, adv;
    while (i < n) {
        int cp = utf8_get((const uint8_t *)s + i, n - i, &adv);
        if (cp < 0 || cp >= 324 || cp_to_byte[cp] < 0) { memcpy(out, s, n); return n; }
        out[o++] = (char)cp_to_byte[cp];
        i += adv;
    }
    return o;
}

static int cmp_added(const void *a, const void *b, void *ctx) {
    const tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint8_t fx = (uint8_t)tok_str(t, x)[0], fy = (uint8_t)tok_str(t, y)[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (t->str_len[x] != t->str_len[y]) return t->str_len[x] > t->str_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

tokenizer *tokenizer_create(const tokenizer_spec *sp, char *err, size_t cap) {
    pthread_once(&map_once, map_init);
    if (sp->n_vocab < 1 || sp->n_vocab > (1 << 24) || !sp->tokens)
        return errf(err, cap, "tokenizer: vocabulary size %d out of range [1, %d]", sp->n_vocab, 1 << 24), NULL;
    if (sp->n_merges < 0 || (sp->n_merges > 0 && !sp->merges && !sp->merge_pairs))
        return errf(err, cap, "tokenizer: %d merges but no merge list", sp->n_merges), NULL;
    int32_t nv = sp->n_vocab;
    for (int32_t i = 0; i < sp->n_added; i++) {
        if (sp->added[i].id < 0 || sp->added[i].id >= (1 << 24))
            return errf(err, cap, "tokenizer: added token %d has id %d out of range", i, sp->added[i].id), NULL;
        if (sp->added[i].id >= nv) nv = sp->added[i].id + 1;
    }
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return errf(err, cap, "out of memory"), NULL;
    pthread_mutex_init(&t->cache_mu, NULL);
    t->n_vocab = nv;
    t->bos = sp->bos_id; t->eos = sp->eos_id; t->pad = sp->pad_id; t->unk = sp->unk_id;
    t->add_bos = sp->add_bos;
    t->ignore_merges = sp->ignore_merges;
    int32_t ids4[4] = {t->bos, t->eos, t->pad, t->unk};
    for (int i = 0; i < 4; i++)
        if (ids4[i] < -1 || ids4[i] >= nv) {
            errf(err, cap, "tokenizer: %s id %d out of range [0, %d)", (const char *[]){"bos", "eos", "pad", "unk"}[i],
                 ids4[i], nv);
            goto fail;
        }

    /* strings: vocab entries, then added-token contents override/extend */
    const char **strs = calloc((size_t)nv, sizeof *strs);
    size_t *lens = calloc((size_t)nv, sizeof *lens);
    t->type = malloc((size_t)nv);
    if (!strs || !lens || !t->type) { free(strs); free(lens); errf(err, cap, "out of memory"); goto fail; }
    for (int32_t i = 0; i < nv; i++) { strs[i] = ""; t->type[i] = TOK_TYPE_UNUSED; }
    for (int32_t i = 0; i < sp->n_vocab; i++) {
        if (!sp->tokens[i]) { free(strs); free(lens); errf(err, cap, "tokenizer: token %d is missing", i); goto fail; }
        strs[i] = sp->tokens[i];
        lens[i] = sp->token_lens ? sp->token_lens[i] : strlen(sp->tokens[i]);
        int ty = sp->token_types ? sp->token_types[i] : TOK_TYPE_NORMAL;
        if (ty < 0 || ty > TOK_TYPE_BYTE) {
            free(strs); free(lens);
            errf(err, cap, "tokenizer: token %d has unknown type %d", i, ty);
            goto fail;
        }
        t->type[i] = (int8_t)ty;
    }
    for (int32_t i = 0; i < sp->n_added; i++) {
        const tok_added *a = &sp->added[i];
        if (!a->content) { free(strs); free(lens); errf(err, cap, "tokenizer: added token %d has no content", i); goto fail; }
        strs[a->id] = a->content;
        lens[a->id] = a->len ? a->len : strlen(a->content);
        t->type[a->id] = a->special ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    size_t total = 0;
    for (int32_t i = 0; i < nv; i++) {
        if (lens[i] > (1u << 20)) { free(strs); free(lens); errf(err, cap, "tokenizer: token %d is %zu bytes long", i, lens[i]); goto fail; }
        total += lens[i] + 1;
    }
    t->str_arena = malloc(total); t->dec_arena = malloc(total);
    t->str_off = malloc((size_t)nv * sizeof(size_t)); t->dec_off = malloc((size_t)nv * sizeof(size_t));
    t->str_len = malloc((size_t)nv * sizeof(uint32_t)); t->dec_len = malloc((size_t)nv * sizeof(uint32_t));
    if (!t->str_arena || !t->dec_arena || !t->str_off || !t->dec_off || !t->str_len || !t->dec_len) {
        free(strs); free(lens); errf(err, cap, "out of memory (tokenizer, %zu bytes)", total); goto fail;
    }
    size_t so = 0, dof = 0;
    for (int32_t i = 0; i < nv; i++) {
        t->str_off[i] = so; t->str_len[i] = (uint32_t)lens[i];
        memcpy(t->str_arena + so, strs[i], lens[i]); t->str_arena[so + lens[i]] = 0;
        so += lens[i] + 1;
        t->dec_off[i] = dof;
        size_t dl;
        if (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) {
            memcpy(t->dec_arena + dof, strs[i], lens[i]); dl = lens[i];
        } else if (t->type[i] == TOK_TYPE_UNUSED && lens[i] == 0) {
            dl = 0;
        } else {
            dl = token_decode_bytes(strs[i], lens[i], t->dec_arena + dof);
        }
        t->dec_len[i] = (uint32_t)dl;
        dof += dl;
    }
    free(strs); free(lens);

    /* vocabulary hash; a string that occurs twice (possible in GGUF, not in
       tokenizer.json) maps to its first id */
    uint32_t vs = pow2_at_least((uint64_t)nv * 2);
    t->vocab_mask = vs - 1;
    if (!(t->vocab_tab = malloc(vs * sizeof(int32_t)))) { errf(err, cap, "out of memory"); goto fail; }
    memset(t->vocab_tab, 0xff, vs * sizeof(int32_t));
    for (int32_t i = 0; i < nv; i++) {
        if (t->str_len[i] == 0) continue;
        if (vocab_find(t, tok_str(t, i), t->str_len[i]) >= 0) continue;
        uint32_t h = (uint32_t)hash_bytes(tok_str(t, i), t->str_len[i]) & t->vocab_mask;
        while (t->vocab_tab[h] >= 0) h = (h + 1) & t->vocab_mask;
        t->vocab_tab[h] = i;
    }
    for (int b = 0; b < 256; b++) {
        char u[4];
        int n = utf8_put(u, byte_to_cp[b]);
        t->byte_id[b] = vocab_find(t, u, (size_t)n);
    }

    /* merges */
    t->n_merges = sp->n_merges;
    uint32_t ms = pow2_at_least((uint64_t)sp->n_merges * 2 + 2);
    t->merge_mask = ms - 1;
    t->merge_tab = malloc(ms * sizeof(merge_slot));
    t->merge_l = malloc(((size_t)sp->n_merges + 1) * sizeof(int32_t));
    t->merge_r = malloc(((size_t)sp->n_merges + 1) * sizeof(int32_t));
    char *buf = malloc(2 * (1u << 20) + 2);
    if (!t->merge_tab || !t->merge_l || !t->merge_r || !buf) { free(buf); errf(err, cap, "out of memory"); goto fail; }
    for (uint32_t i = 0; i < ms; i++) t->merge_tab[i].key = UINT64_MAX;
    for (int32_t i = 0; i < sp->n_merges; i++) {
        const char *l, *r;
        size_t ll, rl;
        if (sp->merges) {
            const char *m = sp->merges[i];
            const char *sp1 = m ? strchr(m, ' ') : NULL;
            if (!sp1) { free(buf); errf(err, cap, "tokenizer: merge %d (\"%s\") is not \"left right\"", i, m ? m : "(null)"); goto fail; }
            l = m; ll = (size_t)(sp1 - m); r = sp1 + 1; rl = strlen(r);
        } else {
            l = sp->merge_pairs[2 * i]; r = sp->merge_pairs[2 * i + 1];
            if (!l || !r) { free(buf); errf(err, cap, "tokenizer: merge %d is missing a side", i); goto fail; }
            ll = strlen(l); rl = strlen(r);
        }
        int32_t li = vocab_find(t, l, ll), ri = vocab_find(t, r, rl);
        if (li < 0 || ri < 0 || ll + rl > 2 * (1u << 20)) {
            free(buf);
            errf(err, cap, "tokenizer: merge %d (\"%.*s\" \"%.*s\"): %s not in the vocabulary", i, (int)(ll > 64 ? 64 : ll), l,
                 (int)(rl > 64 ? 64 : rl), r, li < 0 ? "left" : "right");
            goto fail;
        }
        memcpy(buf, l, ll); memcpy(buf + ll, r, rl);
        int32_t res = vocab_find(t, buf, ll + rl);
        if (res < 0) {
            free(buf);
            errf(err, cap, "tokenizer: merge %d (\"%.*s\" \"%.*s\"): result not in the vocabulary", i, (int)(ll > 64 ? 64 : ll), l,
                 (int)(rl > 64 ? 64 : rl), r);
            goto fail;
        }
        t->merge_l[i] = li; t->merge_r[i] = ri;
        uint64_t key = ((uint64_t)(uint32_t)li << 32) | (uint32_t)ri;
        uint32_t h = (uint32_t)hash_u64(key) & t->merge_mask;
        while (t->merge_tab[h].key != UINT64_MAX && t->merge_tab[h].key != key) h = (h + 1) & t->merge_mask;
        if (t->merge_tab[h].key == key) continue;   /* duplicate merge: the first (lowest rank) wins */
        t->merge_tab[h].key = key; t->merge_tab[h].rank = i; t->merge_tab[h].result = res;
    }
    free(buf);

    /* added tokens: CONTROL and USER_DEFINED types with non-empty text */
    int32_t na = 0;
    for (int32_t i = 0; i < nv; i++)
        if ((t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) && t->str_len[i] > 0) na++;
    t->added_ids = malloc(((size_t)na + 1) * sizeof(int32_t));
    if (!t->added_ids) { errf(err, cap, "out of memory"); goto fail; }
    na = 0;
    for (int32_t i = 0; i < nv; i++)
        if ((t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) && t->str_len[i] > 0) t->added_ids[na++] = i;
    t->n_added = na;
    qsort_r(t->added_ids, (size_t)na, sizeof(int32_t), cmp_added, t);
    int32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (b < 256 && k < na && (uint8_t)tok_str(t, t->added_ids[k])[0] < b) k++;
        t->added_start[b] = b < 256 ? k : na;
    }

    if (pre_init(t, sp, err, cap)) goto fail;
    if (!sp->normalizer) t->nfc = !strcmp(t->pre_name, "qwen2");
    else if (!strcmp(sp->normalizer, "nfc")) t->nfc = 1;
    else if (strcmp(sp->normalizer, "none")) {
        errf(err, cap, "tokenizer: unknown normalizer \"%s\" (none, nfc)", sp->normalizer);
        goto fail;
    }

    t->cache = calloc(CACHE_SLOTS, sizeof(cache_slot));
    t->cache_keys = malloc(CACHE_ARENA);
    t->cache_ids = malloc(CACHE_ARENA * sizeof(int32_t) / 4);
    if (!t->cache || !t->cache_keys || !t->cache_ids) { errf(err, cap, "out of memory"); goto fail; }

    if (sp->chat_template) {
        if (!(t->chat_text = strdup(sp->chat_template))) { errf(err, cap, "out of memory"); goto fail; }
        const char *nm = chat_template_detect(sp->chat_template);
        snprintf(t->chat_name, sizeof t->chat_name, "%s", nm ? nm : "raw");
    } else {
        /* no template in the metadata: pick from the special tokens */
        const char *nm = vocab_find(t, "<|im_start|>", 12) >= 0 ? "chatml"
                         : vocab_find(t, "<|start_header_id|>", 19) >= 0 ? "llama3" : "raw";
        snprintf(t->chat_name, sizeof t->chat_name, "%s", nm);
    }
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- BPE */

typedef struct sym {
    int32_t id;
    int32_t prev, next;   /* -1 ends */
} sym;

typedef struct hent {
    int32_t rank, pos, l_id, r_id;
} hent;

typedef struct enc_ctx {
    const tokenizer *t;
    tok_ids *out;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    sym *syms; size_t syms_cap;
    hent *heap; size_t heap_cap;
    char *mapped; size_t mapped_cap;
    char *err; size_t err_cap;
} enc_ctx;

static int ids_push(tok_ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->ids, nc * sizeof(int32_t));
        if (!p) return -1;
        o->ids = p; o->cap = nc;
    }
    o->ids[o->n++] = id;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q; *cap = nc;
    return 0;
}

static inline int hless(const hent *a, const hent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(hent *h, size_t *n, hent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&e, &h[p])) break;
        h[i] = h[p]; i = p;
    }
    h[i] = e;
}

static hent heap_pop(hent *h, size_t *n) {
    hent top = h[0], e = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && hless(&h[c + 1], &h[c])) c++;
        if (!hless(&h[c], &e)) break;
        h[i] = h[c]; i = c;
    }
    if (*n > 0) h[i] = e;
    return top;
}

/* merges symbols s[0..n) (a list by prev/next); result: the surviving
   symbols in list order starting at index 0 */
static int bpe_merge(enc_ctx *c, sym *s, int32_t n) {
    const tokenizer *t = c->t;
    if (n <= 24) {
        /* short pre-token: scan for the lowest-rank adjacent pair */
        int32_t m = n;
        int32_t ids[24];
        for (int32_t i = 0; i < n; i++) ids[i] = s[i].id;
        while (m > 1) {
            int32_t best = INT32_MAX, bi = -1, bres = -1;
            for (int32_t i = 0; i + 1 < m; i++) {
                const merge_slot *ms = merge_find(t, ids[i], ids[i + 1]);
                if (ms && ms->rank < best) { best = ms->rank; bi = i; bres = ms->result; }
            }
            if (bi < 0) break;
            ids[bi] = bres;
            memmove(ids + bi + 1, ids + bi + 2, (size_t)(m - bi - 2) * sizeof(int32_t));
            m--;
        }
        for (int32_t i = 0; i < m; i++) {
            s[i].id = ids[i]; s[i].prev = i - 1; s[i].next = i + 1 < m ? i + 1 : -1;
        }
        return 0;
    }
    if (grow((void **)&c->heap, &c->heap_cap, (size_t)n, sizeof(hent))) return -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        const merge_slot *ms = merge_find(t, s[i].id, s[i + 1].id);
        if (ms) heap_push(c->heap, &hn, (hent){ms->rank, i, s[i].id, s[i + 1].id});
    }
    while (hn > 0) {
        hent e = heap_pop(c->heap, &hn);
        sym *a = &s[e.pos];
        if (a->id != e.l_id || a->next < 0) continue;       /* stale */
        sym *b = &s[a->next];
        if (b->id != e.r_id) continue;
        const merge_slot *ms = merge_find(t, a->id, b->id);
        a->id = ms->result;
        b->id = -1;                                          /* dead */
        a->next = b->next;
        if (b->next >= 0) s[b->next].prev = e.pos;
        if (a->prev >= 0) {
            const merge_slot *m2 = merge_find(t, s[a->prev].id, a->id);
            if (m2) heap_push(c->heap, &hn, (hent){m2->rank, a->prev, s[a->prev].id, a->id});
        }
        if (a->next >= 0) {
            const merge_slot *m2 = merge_find(t, a->id, s[a->next].id);
            if (m2) heap_push(c->heap, &hn, (hent){m2->rank, e.pos, a->id, s[a->next].id});
        }
    }
    return 0;
}

static int cache_get(const tokenizer *tc, const char *p, size_t n, uint64_t h, tok_ids *out, int *hit) {
    tokenizer *t = (tokenizer *)tc;
    *hit = 0;
    pthread_mutex_lock(&t->cache_mu);
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    for (int probe = 0; probe < 8; probe++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        cache_slot *s = &t->cache[i];
        if (s->hash == 0) break;
        if (s->hash == h && s->key_len == n && memcmp(t->cache_keys + s->key_off, p, n) == 0) {
            for (uint32_t k = 0; k < s->ids_len; k++)
                if (ids_push(out, t->cache_ids[s->ids_off + k])) { pthread_mutex_unlock(&t->cache_mu); return -1; }
            *hit = 1;
            break;
        }
    }
    pthread_mutex_unlock(&t->cache_mu);
    return 0;
}

static void cache_put(const tokenizer *tc, const char *p, size_t n, uint64_t h, const int32_t *ids, size_t m) {
    tokenizer *t = (tokenizer *)tc;
    pthread_mutex_lock(&t->cache_mu);
    if (t->cache_count >= CACHE_SLOTS / 2 || t->cache_keys_used + n > CACHE_ARENA ||
        t->cache_ids_used + m > CACHE_ARENA / 4) {
        memset(t->cache, 0, CACHE_SLOTS * sizeof(cache_slot));
        t->cache_count = t->cache_keys_used = t->cache_ids_used = 0;
    }
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    for (int probe = 0; probe < 8; probe++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        cache_slot *s = &t->cache[i];
        if (s->hash == h && s->key_len == n && memcmp(t->cache_keys + s->key_off, p, n) == 0) break;  /* raced */
        if (s->hash != 0) continue;
        memcpy(t->cache_keys + t->cache_keys_used, p, n);
        if (m) memcpy(t->cache_ids + t->cache_ids_used, ids, m * sizeof(int32_t));
        *s = (cache_slot){h, t->cache_keys_used, (uint32_t)n, t->cache_ids_used, (uint32_t)m};
        t->cache_keys_used += (uint32_t)n; t->cache_ids_used += (uint32_t)m; t->cache_count++;
        break;
    }
    pthread_mutex_unlock(&t->cache_mu);
}

/* one pre-token -> ids */
static int bpe_piece(enc_ctx *c, const char *p, size_t n) {
    const tokenizer *t = c->t;
    if (n == 0) return 0;
    if (n == 1 && t->byte_id[(uint8_t)p[0]] >= 0) {
        if (ids_push(c->out, t->byte_id[(uint8_t)p[0]])) return errf(c->err, c->err_cap, "out of memory");
        return 0;
    }
    uint64_t h = 0;
    if (n <= CACHE_MAX_KEY) {
        int hit;
        h = hash_bytes(p, n) | 1;
        if (cache_get(t, p, n, h, c->out, &hit)) return errf(c->err, c->err_cap, "out of memory");
        if (hit) return 0;
    }
    size_t start = c->out->n;
    if (t->ignore_merges) {
        if (grow((void **)&c->mapped, &c->mapped_cap, n * 2, 1)) return errf(c->err, c->err_cap, "out of memory");
        size_t o = 0;
        for (size_t i = 0; i < n; i++) o += (size_t)utf8_put(c->mapped + o, byte_to_cp[(uint8_t)p[i]]);
        int32_t id = vocab_find(t, c->mapped, o);
        if (id >= 0) {
            if (ids_push(c->out, id)) return errf(c->err, c->err_cap, "out of memory");
            goto done;
        }
    }
    if (n > INT32_MAX / 2 || grow((void **)&c->syms, &c->syms_cap, n, sizeof(sym)))
        return errf(c->err, c->err_cap, "out of memory (pre-token of %zu bytes)", n);
    sym *s = c->syms;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)p[i]];
        if (id < 0) {
            /* byte without a token: unk if there is one (consecutive unks fuse as HF does
               not: each is kept), else dropped as HF does without unk_token */
            if (t->unk < 0) continue;
            id = t->unk;
        }
        s[m].id = id; s[m].prev = m - 1; s[m].next = m + 1; m++;
    }
    if (m == 0) goto done;
    s[m - 1].next = -1;
    if (bpe_merge(c, s, m)) return errf(c->err, c->err_cap, "out of memory");
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (ids_push(c->out, s[i].id)) return errf(c->err, c->err_cap, "out of memory");
done:
    if (n <= CACHE_MAX_KEY) cache_put(t, p, n, h, c->out->n > start ? c->out->ids + start : NULL, c->out->n - start);
    return 0;
}

/* splits [p, p+n) by regex step k (matches and the gaps between them are
   pieces, HF "Isolated"), recursing into step k+1; after the last step BPE */
static int pre_split(enc_ctx *c, int k, const char *p, size_t n) {
    const tokenizer *t = c->t;
    if (k == t->n_steps) return bpe_piece(c, p, n);
    pcre2_code *code = t->steps[k].code;
    size_t off = 0, prev = 0;
    if (t->steps[k].digits) {
        /* ASCII text: isolate each 0-9 by hand (no other ASCII character is \p{N}) */
        size_t i = 0;
        while (i < n && (uint8_t)p[i] < 0x80) i++;
        if (i == n) {
            for (i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9') continue;
                if (i > prev && pre_split(c, k + 1, p + prev, i - prev)) return -1;
                if (pre_split(c, k + 1, p + i, 1)) return -1;
                prev = i + 1;
            }
            if (n > prev && pre_split(c, k + 1, p + prev, n - prev)) return -1;
            return 0;
        }
    }
    while (off < n) {
        int rc = t->steps[k].jit ? pcre2_jit_match(code, (PCRE2_SPTR)p, n, off, 0, c->md, c->mctx)
                                 : pcre2_match(code, (PCRE2_SPTR)p, n, off, 0, c->md, c->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jstack) {
            c->jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            if (!c->jstack) return errf(c->err, c->err_cap, "out of memory (regex stack)");
            pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return errf(c->err, c->err_cap, "pre-tokenizer regex failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t s = ov[0], e = ov[1];
        if (e == s) {   /* empty match: step over one character */
            off = e + 1;
            while (off < n && ((uint8_t)p[off] & 0xC0) == 0x80) off++;
            continue;
        }
        if (s > prev && pre_split(c, k + 1, p + prev, s - prev)) return -1;
        if (pre_split(c, k + 1, p + s, e - s)) return -1;
        prev = off = e;
    }
    if (n > prev && pre_split(c, k + 1, p + prev, n - prev)) return -1;
    return 0;
}

/* one stretch of text between added tokens: normalise, pre-tokenize, BPE */
static int encode_segment(enc_ctx *c, const char *p, size_t n) {
    if (!c->t->nfc) return pre_split(c, 0, p, n);
    char *q;
    size_t qn;
    if (tokenizer_nfc(p, n, &q, &qn)) return errf(c->err, c->err_cap, "out of memory (NFC)");
    if (!q) return pre_split(c, 0, p, n);
    int rc = pre_split(c, 0, q, qn);
    free(q);
    return rc;
}

/* the longest added token starting at p[0..n), or -1 */
static int32_t added_at(const tokenizer *t, const char *p, size_t n, int allow_special) {
    uint8_t b = (uint8_t)p[0];
    for (int32_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
        int32_t id = t->added_ids[k];
        if (!allow_special && t->type[id] == TOK_TYPE_CONTROL) continue;
        if (t->str_len[id] <= n && memcmp(tok_str(t, id), p, t->str_len[id]) == 0) return id;
    }
    return -1;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int flags, tok_ids *out, char *err,
                     size_t cap) {
    enc_ctx c = {.t = t, .out = out, .err = err, .err_cap = cap};
    int rc = -1;
    if (!text && len) return errf(err, cap, "tokenizer_encode: NULL text");
    if ((flags & TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0 && ids_push(out, t->bos))
        return errf(err, cap, "out of memory");
    c.md = pcre2_match_data_create(4, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    if (!c.md || !c.mctx) { errf(err, cap, "out of memory"); goto done; }
    int allow = flags & TOK_ALLOW_SPECIAL;
    size_t prev = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        if (t->added_start[b] == t->added_start[b + 1]) continue;
        int32_t id = added_at(t, text + i, len - i, allow);
        if (id < 0) continue;
        if (i > prev && encode_segment(&c, text + prev, i - prev)) goto done;
        if (ids_push(out, id)) { errf(err, cap, "out of memory"); goto done; }
        i += t->str_len[id] - 1;
        prev = i + 1;
    }
    if (len > prev && encode_segment(&c, text + prev, len - prev)) goto done;
    rc = 0;
done:
    pcre2_match_data_free(c.md);
    pcre2_match_context_free(c.mctx);
    if (c.jstack) pcre2_jit_stack_free(c.jstack);
    free(c.syms); free(c.heap); free(c.mapped);
    return rc;
}

/* ---------------------------------------------------------------- decode, accessors */

size_t tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        if (skip_special && t->type[id] == TOK_TYPE_CONTROL) continue;
        size_t l = t->dec_len[id];
        if (o < cap) memcpy(out + o, t->dec_arena + t->dec_off[id], o + l <= cap ? l : cap - o);
        o += l;
    }
    return o;
}

const char *tokenizer_token_bytes(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->dec_len[id];
    return t->dec_arena + t->dec_off[id];
}

int32_t tokenizer_vocab_size(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_token_to_id(const tokenizer *t, const char *s, size_t len) { return vocab_find(t, s, len); }
const char *tokenizer_id_to_token(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->str_len[id];
    return tok_str(t, id);
}
int tokenizer_token_type(const tokenizer *t, int32_t id) { return id < 0 || id >= t->n_vocab ? -1 : t->type[id]; }
int tokenizer_is_special(const tokenizer *t, int32_t id) { return tokenizer_token_type(t, id) == TOK_TYPE_CONTROL; }
int32_t tokenizer_bos_id(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos_id(const tokenizer *t) { return t->eos; }
int32_t tokenizer_pad_id(const tokenizer *t) { return t->pad; }
int32_t tokenizer_unk_id(const tokenizer *t) { return t->unk; }
int tokenizer_add_bos(const tokenizer *t) { return t->add_bos; }
const char *tokenizer_pretokenizer(const tokenizer *t) { return t->pre_name; }
int tokenizer_pre_regex(const tokenizer *t, const char *const **patterns) {
    if (patterns) *patterns = (const char *const *)t->pre_regex;
    return t->n_pre_regex;
}
int tokenizer_ignore_merges(const tokenizer *t) { return t->ignore_merges; }
const char *tokenizer_normalizer(const tokenizer *t) { return t->nfc ? "nfc" : "none"; }
int32_t tokenizer_n_merges(const tokenizer *t) { return t->n_merges; }
void tokenizer_merge(const tokenizer *t, int32_t i, int32_t *l, int32_t *r) {
    *l = t->merge_l[i];
    *r = t->merge_r[i];
}
const char *tokenizer_chat_template_text(const tokenizer *t) { return t->chat_text; }
const char *tokenizer_chat_template_name(const tokenizer *t) { return t->chat_name; }
int tokenizer_set_chat_template(tokenizer *t, const char *name, char *err, size_t cap) {
    if (!name || !chat_template_valid(name))
        return errf(err, cap, "unknown chat_template \"%s\" (chatml, llama3, raw)", name ? name : "(null)");
    snprintf(t->chat_name, sizeof t->chat_name, "%s", name);
    return 0;
}

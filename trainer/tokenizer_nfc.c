/* trainer/tokenizer_nfc.c: Unicode NFC normalisation (canonical decomposition,
 * canonical ordering, canonical composition; Hangul algorithmically) for
 * tokenizers whose tokenizer.json has an NFC normalizer (Qwen2). Tables in
 * tokenizer_nfc_data.h. Bytes that are not valid UTF-8 pass through
 * unchanged and block composition. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "tokenizer_nfc_data.h"

#define N_CCC (sizeof nfc_ccc / sizeof nfc_ccc[0])
#define N_DEC (sizeof nfc_decomp / sizeof nfc_decomp[0])
#define RAW_BYTE 0x80000000u   /* an invalid byte kept as is */

enum { SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28,
       NCount = VCount * TCount, SCount = LCount * NCount };

static int ccc_of(uint32_t cp) {
    if (cp < 0x300 || (cp & RAW_BYTE)) return 0;
    size_t lo = 0, hi = N_CCC;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (cp < nfc_ccc[m][0]) hi = m;
        else if (cp > nfc_ccc[m][1]) lo = m + 1;
        else return (int)nfc_ccc[m][2];
    }
    return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
    if (cp < 0xC0 || (cp & RAW_BYTE)) return NULL;
    size_t lo = 0, hi = N_DEC;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (cp < nfc_decomp[m][0]) hi = m;
        else if (cp > nfc_decomp[m][0]) lo = m + 1;
        else return nfc_decomp[m];
    }
    return NULL;
}

/* composition pairs: open-addressing table built once from the decompositions */
#define COMP_SLOTS 4096
static uint64_t comp_key[COMP_SLOTS];
static uint32_t comp_val[COMP_SLOTS];
static pthread_once_t comp_once = PTHREAD_ONCE_INIT;

static uint32_t comp_hash(uint64_t k) {
    k ^= k >> 31; k *= 0x9E3779B97F4A7C15ull; k ^= k >> 29;
    return (uint32_t)k & (COMP_SLOTS - 1);
}

static void comp_init(void) {
    for (size_t i = 0; i < N_DEC; i++) {
        if (nfc_decomp[i][3] & 1 || nfc_decomp[i][2] == 0) continue;
        uint64_t k = ((uint64_t)nfc_decomp[i][1] << 32) | nfc_decomp[i][2];
        uint32_t h = comp_hash(k);
        while (comp_key[h]) h = (h + 1) & (COMP_SLOTS - 1);
        comp_key[h] = k;
        comp_val[h] = nfc_decomp[i][0];
    }
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if ((a | b) & RAW_BYTE) return 0;
    if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
        return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
    if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
        return a + (b - TBase);
    uint64_t k = ((uint64_t)a << 32) | b;
    for (uint32_t h = comp_hash(k); comp_key[h]; h = (h + 1) & (COMP_SLOTS - 1))
        if (comp_key[h] == k) return comp_val[h];
    return 0;
}

typedef struct cpbuf {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static int cp_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint32_t *p = realloc(b->v, nc * sizeof *p);
        if (!p) return -1;
        b->v = p; b->cap = nc;
    }
    b->v[b->n++] = c;
    return 0;
}

static int decompose(cpbuf *b, uint32_t cp) {
    if (cp >= SBase && cp < SBase + SCount) {
        uint32_t s = cp - SBase, t = s % TCount;
        if (cp_push(b, LBase + s / NCount) || cp_push(b, VBase + (s % NCount) / TCount)) return -1;
        return t ? cp_push(b, TBase + t) : 0;
    }
    const uint32_t *d = decomp_of(cp);
    if (!d) return cp_push(b, cp);
    if (decompose(b, d[1])) return -1;
    return d[2] ? decompose(b, d[2]) : 0;
}

static size_t utf8_dec(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 1) { *cp = c; return 1; }
    if (!len || (size_t)len > n) { *cp = RAW_BYTE | c; return 1; }
    uint32_t v = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = RAW_BYTE | c; return 1; }
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = RAW_BYTE | c; return 1; }
    *cp = v;
    return (size_t)len;
}

int tokenizer_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    /* code points below U+0300 are all NFC-stable and never compose with a
       preceding character: text made only of them is unchanged */
    size_t i = 0;
    while (i < n && (uint8_t)s[i] < 0xCC) i++;
    if (i == n) return 0;
    pthread_once(&comp_once, comp_init);
    cpbuf b = {0};
    for (i = 0; i < n;) {
        uint32_t cp;
        i += utf8_dec((const uint8_t *)s + i, n - i, &cp);
        if (decompose(&b, cp)) { free(b.v); return -1; }
    }
    /* canonical ordering: stable sort of each run of non-starters by ccc */
    for (size_t k = 1; k < b.n; k++) {
        int c = ccc_of(b.v[k]);
        if (!c) continue;
        size_t j = k;
        uint32_t x = b.v[k];
        while (j > 0 && ccc_of(b.v[j - 1]) > c) { b.v[j] = b.v[j - 1]; j--; }
        b.v[j] = x;
    }
    /* canonical composition */
    size_t o = 0;
    long starter = -1;
    int last_ccc = 0;
    for (size_t k = 0; k < b.n; k++) {
        uint32_t c = b.v[k];
        int cc = ccc_of(c);
        if (starter >= 0) {
            int blocked = (size_t)starter + 1 < o && (last_ccc == 0 || last_ccc >= cc);
            if (!blocked) {
                uint32_t p = compose(b.v[starter], c);
                if (p) { b.v[starter] = p; continue; }
            }
        }
        if (cc == 0) { starter = (long)o; last_ccc = 0; }
        else last_ccc = cc;
        b.v[o++] = c;
    }
    char *r = malloc(o * 4 + 1);
    if (!r) { free(b.v); return -1; }
    size_t w = 0;
    for (size_t k = 0; k < o; k++) {
        uint32_t c = b.v[k];
        if (c & RAW_BYTE) r[w++] = (char)(c & 0xFF);
        else if (c < 0x80) r[w++] = (char)c;
        else if (c < 0x800) { r[w++] = (char)(0xC0 | (c >> 6)); r[w++] = (char)(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) {
            r[w++] = (char)(0xE0 | (c >> 12)); r[w++] = (char)(0x80 | ((c >> 6) & 0x3F)); r[w++] = (char)(0x80 | (c & 0x3F));
        } else {
            r[w++] = (char)(0xF0 | (c >> 18)); r[w++] = (char)(0x80 | ((c >> 12) & 0x3F));
            r[w++] = (char)(0x80 | ((c >> 6) & 0x3F)); r[w++] = (char)(0x80 | (c & 0x3F));
        }
    }
    free(b.v);
    *out = r;
    *out_len = w;
    return 0;
}

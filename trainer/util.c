/* trainer/util.c: error formatting, checked allocation, file reads, clock, RNG. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int errf(char *err, size_t cap, const char *fmt, ...) {
    if (err && cap) {
        char tmp[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        /* one line, whatever a quoted value holds: control characters as \n, \r, \t, \xHH */
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)tmp; *p && o + 1 < cap; p++) {
            char e[5] = {(char)*p, 0};
            if (*p < 0x20 || *p == 0x7f)
                snprintf(e, sizeof e, *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : "\\x%02x", *p);
            size_t k = strlen(e);
            if (o + k >= cap) break;
            memcpy(err + o, e, k);
            o += k;
        }
        err[o] = 0;
    }
    return -1;
}

void *xmalloc(size_t n, char *err, size_t cap) {
    void *p = malloc(n ? n : 1);
    if (!p) errf(err, cap, "out of memory (%zu bytes)", n);
    return p;
}

void *xcalloc(size_t n, size_t size, char *err, size_t cap) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) errf(err, cap, "out of memory (%zu x %zu bytes)", n, size);
    return p;
}

char *read_file(const char *path, size_t *len, char *err, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = 0, alloc = 1 << 16;
    char *buf = malloc(alloc);
    if (!buf) {
        fclose(f);
        errf(err, cap, "%s: out of memory", path);
        return NULL;
    }
    for (;;) {
        if (n + 1 >= alloc) {
            char *nb = realloc(buf, alloc * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                errf(err, cap, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
            alloc *= 2;
        }
        size_t r = fread(buf + n, 1, alloc - 1 - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        errf(err, cap, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int file_map(const char *path, size_t min_size, const char *kind, void **data, size_t *size, char *err, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errf(err, cap, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return errf(err, cap, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return errf(err, cap, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n < min_size) {
        close(fd);
        return errf(err, cap, "%s: too small to be a %s file (%zu bytes)", path, kind, n);
    }
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return errf(err, cap, "%s: mmap: %s", path, strerror(e));
    *data = p;
    *size = n;
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t k = rng_mix(seed + 0x9E3779B97F4A7C15ull);
    k = rng_mix(k ^ (a + 0xD1B54A32D192ED03ull));
    k = rng_mix(k ^ (b + 0x8CB92BA72F3D8DD7ull));
    k = rng_mix(k ^ (c + 0xABC98388FB8FAC03ull));
    return k;
}

double rng_normal(uint64_t key, uint64_t i) {
    double u1 = rng_uniform(key, 2 * i), u2 = rng_uniform(key, 2 * i + 1);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* length of the well-formed UTF-8 sequence at s (at most n bytes), 0 if none */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range (no overlongs, surrogates, > U+10FFFF) */
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

char *utf8_sanitize(const char *s, size_t n, size_t *out_n) {
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        size_t len = utf8_seq(u + i, n - i);
        if (len) {
            memcpy(out + k, s + i, len);
            k += len, i += len;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3, i++;
        }
    }
    out[k] = 0;
    if (out_n) *out_n = k;
    return out;
}

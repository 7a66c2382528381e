/* trainer/util.h: small shared helpers: error formatting, checked allocation
 * that reports instead of exiting, whole-file reads, timing, and the
 * counter-based random numbers every part of rft draws from. */
#ifndef RFT_UTIL_H
#define RFT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* exit statuses of the rft program (DESIGN.md "Command line") */
enum { RFT_EXIT_OK = 0, RFT_EXIT_RUNTIME = 1, RFT_EXIT_BADINPUT = 2 };

/* snprintf into err (if err != NULL), as one line: control characters a
   quoted value brings (a newline in a JSON string) are written as \n, \r,
   \t, \xHH; always returns -1 so callers can `return errf(err, cap, "...")`. */
int errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* malloc/calloc that write "out of memory (N bytes)" into err on failure */
void *xmalloc(size_t n, char *err, size_t cap);
void *xcalloc(size_t n, size_t size, char *err, size_t cap);

/* Reads a whole file into a NUL-terminated buffer; NULL + err naming the path. */
char *read_file(const char *path, size_t *len, char *err, size_t cap);

/* Maps a whole regular file read-only; files shorter than min_size are an
   error "path: too small to be a <kind> file (N bytes)". Unmap with munmap. */
int file_map(const char *path, size_t min_size, const char *kind, void **data, size_t *size, char *err, size_t cap);

/* seconds from a monotonic clock */
double now_seconds(void);

/* s[0..n) as valid UTF-8: every byte that does not begin a well-formed
   sequence becomes U+FFFD (for JSON output of model text, which may end in
   a partial character). malloc'ed, NUL-terminated, length in *out_n; NULL
   when out of memory. */
char *utf8_sanitize(const char *s, size_t n, size_t *out_n);

/* ---- counter-based random numbers ----
 * rng_u64(key, counter) is a pure function (SplitMix64 finaliser over a
 * mixed key/counter): every stream is addressed by a key derived from
 * (seed, purpose, ids...), so results never depend on thread count or on
 * what else ran before. */
uint64_t rng_mix(uint64_t x);
uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
static inline uint64_t rng_u64(uint64_t key, uint64_t counter) { return rng_mix(key ^ rng_mix(counter + 0x9E3779B97F4A7C15ull)); }
/* uniform in [0, 1) with 53 random bits */
static inline double rng_uniform(uint64_t key, uint64_t counter) { return (double)(rng_u64(key, counter) >> 11) * 0x1.0p-53; }
/* standard normal (Box-Muller on two counters 2i, 2i+1) */
double rng_normal(uint64_t key, uint64_t i);

#endif

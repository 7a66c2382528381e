/* trainer/cli.c: option parsing shared by the rft subcommands (cli.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

int cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int cli_option(int argc, char **argv, int *i, const char *flag, const char **val, char *err, size_t cap) {
    const char *a = argv[*i];
    size_t n = strlen(flag);
    if (strncmp(a, flag, n)) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n]) return 0; /* another option that starts like this one */
    if (*i + 1 >= argc) return errf(err, cap, "%s: needs a value", flag);
    *val = argv[++*i];
    return 1;
}

/* a plain decimal number: no leading space or '+', no hex (strtol / strtod would take them) */
static int plain_number(const char *s, int real) {
    const char *p = s + (s[0] == '-');
    if (!(isdigit((unsigned char)p[0]) || (real && p[0] == '.' && isdigit((unsigned char)p[1])))) return 0;
    return !real || !strpbrk(s, "xX");
}

int cli_parse_int(const char *flag, const char *s, long lo, long hi, const char *what, long *out, char *err, size_t cap) {
    char *end = (char *)s; /* stays s (refused) when s is not a plain number */
    errno = 0;
    long v = plain_number(s, 0) ? strtol(s, &end, 10) : 0;
    if (end == s || *end || errno || v < lo || v > hi) {
        if (what) return errf(err, cap, "%s %s: expected %s", flag, s, what);
        return errf(err, cap, "%s %s: expected an integer from %ld to %ld", flag, s, lo, hi);
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *flag, const char *s, double lo, double hi, const char *what, double *out, char *err,
                     size_t cap) {
    char *end = (char *)s; /* stays s (refused) when s is not a plain number */
    errno = 0;
    double v = plain_number(s, 1) ? strtod(s, &end) : 0;
    if (end == s || *end || !isfinite(v) || v < lo || v > hi) {
        if (what) return errf(err, cap, "%s %s: expected %s", flag, s, what);
        return errf(err, cap, "%s %s: expected a number from %g to %g", flag, s, lo, hi);
    }
    *out = v;
    return 0;
}

int cli_parse_seed(const char *flag, const char *s, uint64_t *out, char *err, size_t cap) {
    char *end = (char *)s;
    errno = 0;
    int digit = s[0] >= '0' && s[0] <= '9'; /* strtoull would take "-1" as 2^64-1 */
    unsigned long long v = digit ? strtoull(s, &end, 10) : 0;
    if (!digit || *end || errno)
        return errf(err, cap, "%s %s: expected a non-negative integer", flag, s);
    *out = (uint64_t)v;
    return 0;
}

int cli_int_option(int argc, char **argv, int *i, const char *flag, long lo, long hi, const char *what, int *out,
                   char *err, size_t cap) {
    const char *s;
    long v;
    int r = cli_option(argc, argv, i, flag, &s, err, cap);
    if (r <= 0) return r;
    if (cli_parse_int(flag, s, lo, hi, what, &v, err, cap)) return -1;
    *out = (int)v;
    return 1;
}

int cli_double_option(int argc, char **argv, int *i, const char *flag, double lo, double hi, const char *what,
                      double *out, char *err, size_t cap) {
    const char *s;
    int r = cli_option(argc, argv, i, flag, &s, err, cap);
    if (r <= 0) return r;
    return cli_parse_double(flag, s, lo, hi, what, out, err, cap) ? -1 : 1;
}

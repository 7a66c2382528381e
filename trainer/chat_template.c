/* trainer/chat_template.c: built-in chat templates (chatml, llama3, raw):
 * recognition from jinja text, default system prompt extraction, rendering
 * of a conversation to text and to token ids. */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

const char *chat_template_detect(const char *j) {
    if (!j) return NULL;
    if (strstr(j, "<|im_start|>")) return "chatml";
    if (strstr(j, "<|start_header_id|>") && strstr(j, "<|eot_id|>")) return "llama3";
    return NULL;
}

int chat_template_valid(const char *name) {
    return name && (!strcmp(name, "chatml") || !strcmp(name, "llama3") || !strcmp(name, "raw"));
}

/* Finds '<|im_start|>system' + newline (a real one or the jinja escape \n)
   followed by literal text up to '<|im_end|>' with no quote in between: the
   fixed system turn the template writes when the conversation has none. */
char *chat_template_default_system(const char *j) {
    static const char mark[] = "<|im_start|>system";
    if (!j) return NULL;
    for (const char *p = strstr(j, mark); p; p = strstr(p + 1, mark)) {
        const char *q = p + sizeof mark - 1;
        if (q[0] == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *e = strstr(q, "<|im_end|>");
        if (!e || e == q) continue;
        if (memchr(q, '\'', (size_t)(e - q)) || memchr(q, '"', (size_t)(e - q)) || memchr(q, '{', (size_t)(e - q)))
            continue;
        char *out = malloc((size_t)(e - q) + 1);
        if (!out) return NULL;
        size_t o = 0;
        for (const char *s = q; s < e; s++) {
            if (s[0] == '\\' && s + 1 < e) {
                char d = s[1];
                out[o++] = d == 'n' ? '\n' : d == 't' ? '\t' : d;
                s++;
            } else {
                out[o++] = *s;
            }
        }
        out[o] = 0;
        return out;
    }
    return NULL;
}

char *chat_template_jinja(const char *name, const char *sys) {
    char *out = NULL;
    size_t n;
    if (!strcmp(name, "chatml")) {
        const char *a = "{% for message in messages %}";
        const char *b = "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        n = strlen(a) + strlen(b) + (sys ? strlen(sys) * 2 + 256 : 0) + 1;
        if (!(out = malloc(n))) return NULL;
        size_t o = (size_t)snprintf(out, n, "%s", a);
        if (sys) {
            o += (size_t)snprintf(out + o, n - o,
                                  "{%% if loop.first and messages[0]['role'] != 'system' %%}{{ '<|im_start|>system\\n");
            for (const char *s = sys; *s; s++) {
                if (*s == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
                else if (*s == '\'' || *s == '\\') { out[o++] = '\\'; out[o++] = *s; }
                else out[o++] = *s;
            }
            o += (size_t)snprintf(out + o, n - o, "<|im_end|>\\n' }}{%% endif %%}");
        }
        snprintf(out + o, n - o, "%s", b);
    } else if (!strcmp(name, "llama3")) {
        out = strdup("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                     "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                     "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}");
    } else {
        out = strdup("{% for message in messages %}{{ message['content'] }}{% endfor %}");
    }
    return out;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) { b->oom = 1; return; }
        b->p = q; b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* length of the whitespace character at s[0..n) as Python's str.isspace
   (what jinja's trim strips), 0 if none */
static size_t ws_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c == 0xC2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (c == 0xE1 && n >= 3 && s[1] == 0x9A && s[2] == 0x80) return 3;                     /* U+1680 */
    if (c == 0xE2 && n >= 3 && s[1] == 0x80 && (s[2] <= 0x8A || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;                                                                           /* U+2000-200A, 2028, 2029, 202F */
    if (c == 0xE2 && n >= 3 && s[1] == 0x81 && s[2] == 0x9F) return 3;                     /* U+205F */
    if (c == 0xE3 && n >= 3 && s[1] == 0x80 && s[2] == 0x80) return 3;                     /* U+3000 */
    return 0;
}

/* jinja's trim: strips leading and trailing whitespace */
static const char *trim(const char *c, size_t *len) {
    size_t n = strlen(c), k;
    while ((k = ws_len((const unsigned char *)c, n))) { c += k; n -= k; }
    for (;;) {
        size_t cut = 0;
        for (size_t back = 1; back <= 3 && back <= n; back++)
            if (ws_len((const unsigned char *)c + n - back, back) == back) { cut = back; break; }
        if (!cut) break;
        n -= cut;
    }
    *len = n;
    return c;
}

/* Llama 3.1+ templates write a system turn with a knowledge-date header:
   the date is the template's date_string fallback, or today's date when the
   template asks for strftime_now (as transformers provides it). */
static void llama31_date(const char *j, char *out, size_t cap) {
    snprintf(out, cap, "26 Jul 2024");
    const char *d = j ? strstr(j, "date_string = \"") : NULL;
    if (d) {
        d += strlen("date_string = \"");
        const char *e = strchr(d, '"');
        if (e && (size_t)(e - d) < cap) snprintf(out, cap, "%.*s", (int)(e - d), d);
    }
    if (j && strstr(j, "strftime_now(")) {
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        strftime(out, cap, "%d %b %Y", &tmv);
    }
}

int chat_format(const tokenizer *t, const chat_msg *msgs, size_t n, int gen, char **text, size_t *len, char *err,
                size_t cap) {
    const char *name = tokenizer_chat_template_name(t);
    sbuf b = {0};
    sb_add(&b, "", 0);
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) {
            free(b.p);
            return errf(err, cap, "chat message %zu has no %s", i, msgs[i].role ? "content" : "role");
        }
    if (!strcmp(name, "chatml")) {
        char *sys = chat_template_default_system(tokenizer_chat_template_text(t));
        if (sys && n > 0 && strcmp(msgs[0].role, "system") != 0) {
            sb_str(&b, "<|im_start|>system\n"); sb_str(&b, sys); sb_str(&b, "<|im_end|>\n");
        }
        free(sys);
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|im_start|>"); sb_str(&b, msgs[i].role); sb_str(&b, "\n");
            sb_str(&b, msgs[i].content); sb_str(&b, "<|im_end|>\n");
        }
        if (gen) sb_str(&b, "<|im_start|>assistant\n");
    } else if (!strcmp(name, "llama3")) {
        int32_t bos = tokenizer_bos_id(t);
        size_t bl = 0, cl;
        const char *bs = bos >= 0 ? tokenizer_id_to_token(t, bos, &bl) : NULL, *c;
        const char *j = tokenizer_chat_template_text(t);
        size_t first = 0;
        if (j && strstr(j, "Cutting Knowledge Date")) {
            /* Llama 3.1 / 3.2: bos, a system turn always (date header + the
               first message if it is a system message, trimmed), then the rest */
            char date[64];
            llama31_date(j, date, sizeof date);
            if (bs) sb_add(&b, bs, bl);
            else sb_str(&b, "<|begin_of_text|>");
            sb_str(&b, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
            sb_str(&b, date);
            sb_str(&b, "\n\n");
            if (n > 0 && !strcmp(msgs[0].role, "system")) {
                c = trim(msgs[0].content, &cl);
                sb_add(&b, c, cl);
                first = 1;
            }
            sb_str(&b, "<|eot_id|>");
        } else if (n > 0) {
            if (bs) sb_add(&b, bs, bl);
            else sb_str(&b, "<|begin_of_text|>");
        }
        for (size_t i = first; i < n; i++) {
            sb_str(&b, "<|start_header_id|>"); sb_str(&b, msgs[i].role); sb_str(&b, "<|end_header_id|>\n\n");
            c = trim(msgs[i].content, &cl);
            sb_add(&b, c, cl);
            sb_str(&b, "<|eot_id|>");
        }
        if (gen) sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else {
        for (size_t i = 0; i < n; i++) sb_str(&b, msgs[i].content);
    }
    if (b.oom) { free(b.p); return errf(err, cap, "out of memory (chat template)"); }
    *text = b.p;
    if (len) *len = b.n;
    return 0;
}

int chat_stop_tokens(const tokenizer *t, int32_t *out, int cap) {
    static const char *const names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
    int n = 0;
    int32_t cand[6];
    cand[0] = tokenizer_eos_id(t);
    for (int i = 0; i < 5; i++) {
        int32_t id = tokenizer_token_to_id(t, names[i], strlen(names[i]));
        cand[i + 1] = tokenizer_is_special(t, id) ? id : -1;
    }
    for (int i = 0; i < 6 && n < cap; i++) {
        if (cand[i] < 0) continue;
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= out[k] == cand[i];
        if (!dup) out[n++] = cand[i];
    }
    return n;
}

int chat_encode(const tokenizer *t, const chat_msg *msgs, size_t n, int gen, tok_ids *out, char *err, size_t cap) {
    char *text;
    size_t len;
    if (chat_format(t, msgs, n, gen, &text, &len, err, cap)) return -1;
    int rc = tokenizer_encode(t, text, len, TOK_ALLOW_SPECIAL, out, err, cap);
    free(text);
    return rc;
}

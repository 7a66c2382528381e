/* trainer/tokenizer.h: byte-level BPE tokenizer (GPT-2, SmolLM2, Qwen2.5,
 * Llama 3): vocabulary, merge ranks, added/special tokens split out before
 * pre-tokenization (leftmost-longest), PCRE2 pre-tokenizers selected by name,
 * encode and decode. Built from arrays (GGUF tokenizer.ggml.* metadata), from
 * a Hugging Face tokenizer.json (tokenizer_json.c) or from the /tokenizer
 * group of a checkpoint (tokenizer_h5.c).
 *
 * Token strings are in the vocabulary's own form: for byte-level tokens the
 * GPT-2 byte-to-unicode mapping ("Ġthe"), for added tokens their literal
 * content ("<|im_start|>"). Decode returns raw bytes, which may be invalid
 * UTF-8 when an id sequence cuts a character.
 *
 * A tokenizer is immutable after creation except for its internal pre-token
 * cache (mutex-protected): encode/decode may run concurrently. */
#ifndef RFT_TOKENIZER_H
#define RFT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* token types, numbered as GGUF's tokenizer.ggml.token_type (llama.cpp) */
enum {
    TOK_TYPE_UNDEFINED = 0, TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6
};

/* Pre-tokenizers by name:
 *   "gpt2"   GPT-2 regex ('s|'t|...| ?\p{L}+| ?\p{N}+|...)
 *   "smollm" every \p{N} character isolated, then the GPT-2 regex
 *            (HF: Sequence[Digits(individual_digits), ByteLevel(use_regex)])
 *   "llama3" Llama 3 regex (\p{N}{1,3}, case-insensitive contractions)
 *   "qwen2"  Qwen2 regex (single \p{N})
 *   "custom" a list of regexes given in tokenizer_spec.pre_regex, applied
 *            in order, each splitting every piece (HF Split, Isolated).
 * GGUF tokenizer.ggml.pre names map through tokenizer_pre_from_gguf. */
#define TOK_MAX_PRE_STEPS 8

typedef struct tokenizer tokenizer;

/* An added token (HF added_tokens / GGUF CONTROL or USER_DEFINED type). */
typedef struct tok_added {
    int32_t id;
    const char *content;   /* literal text */
    size_t len;            /* 0: strlen(content) */
    int special;           /* 1: a special (control) token: split out only with TOK_ALLOW_SPECIAL */
} tok_added;

/* Everything needed to build a tokenizer. Strings are copied. */
typedef struct tokenizer_spec {
    int32_t n_vocab;
    const char *const *tokens;   /* [n_vocab] token strings (vocabulary form) */
    const size_t *token_lens;    /* [n_vocab] or NULL: strlen */
    const int32_t *token_types;  /* [n_vocab] TOK_TYPE_* or NULL: all NORMAL; CONTROL and
                                    USER_DEFINED entries become added tokens (CONTROL special) */
    int32_t n_merges;
    const char *const *merges;       /* [n_merges] "left right" (split at the first space), or NULL */
    const char *const *merge_pairs;  /* [2 * n_merges] left0, right0, left1, ... (used when merges is NULL) */
    int32_t n_added;                 /* extra added tokens (HF added_tokens), may overlap token_types */
    const tok_added *added;
    const char *pretokenizer;        /* name (see above) */
    const char *const *pre_regex;    /* "custom": n_pre_regex patterns (HF/Oniguruma syntax) */
    int n_pre_regex;
    int ignore_merges;               /* 1: a pre-token found whole in the vocabulary is one token (Llama 3) */
    const char *normalizer;          /* "none" or "nfc" (Unicode NFC before pre-tokenization, as Qwen2's
                                        tokenizer.json has); NULL: "nfc" for qwen2, else "none" */
    int32_t bos_id, eos_id, pad_id, unk_id;  /* -1: none */
    int add_bos;                     /* encode with TOK_ADD_SPECIAL prepends bos */
    const char *chat_template;       /* jinja text from the model's metadata, or NULL */
} tokenizer_spec;

/* Fills every field with "absent" values (ids -1, NULL pointers, "gpt2"). */
void tokenizer_spec_init(tokenizer_spec *s);

tokenizer *tokenizer_create(const tokenizer_spec *spec, char *err, size_t err_cap);
void tokenizer_free(tokenizer *t);

/* GGUF tokenizer.ggml.pre -> our pre-tokenizer name and ignore_merges
   ("smollm", "llama-bpe"/"llama3", "qwen2", "gpt2"/"default"...); NULL if unknown. */
const char *tokenizer_pre_from_gguf(const char *gguf_pre, int *ignore_merges);

/* Growable id buffer; encode appends to it. Free ids with free(). */
typedef struct tok_ids {
    int32_t *ids;
    size_t n, cap;
} tok_ids;

enum {
    TOK_ALLOW_SPECIAL = 1,   /* special tokens in the text become their ids (else plain text) */
    TOK_ADD_SPECIAL = 2,     /* prepend bos when the tokenizer's add_bos is set */
};

/* Encodes len bytes of text (any bytes; invalid UTF-8 is BPE'd byte by
   byte) and appends the ids to out. 0, or -1 + err (out of memory, regex
   engine failure). */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
                     char *err, size_t err_cap);

/* Decodes n ids into out[cap] as raw bytes; returns the number of bytes the
   whole decoding needs (like snprintf: out holds min(ret, cap) of them, no
   NUL added). Ids outside [0, vocab) decode to nothing (as HF does);
   skip_special drops added special tokens. */
size_t tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char *out, size_t cap);

/* Raw bytes of one token (its decoded piece); NULL for an id out of range. */
const char *tokenizer_token_bytes(const tokenizer *t, int32_t id, size_t *len);

int32_t tokenizer_vocab_size(const tokenizer *t);
/* -1 if absent; s is in vocabulary form */
int32_t tokenizer_token_to_id(const tokenizer *t, const char *s, size_t len);
/* vocabulary-form string (NUL-terminated) or NULL */
const char *tokenizer_id_to_token(const tokenizer *t, int32_t id, size_t *len);
int tokenizer_token_type(const tokenizer *t, int32_t id);   /* TOK_TYPE_*, -1 out of range */
int tokenizer_is_special(const tokenizer *t, int32_t id);   /* CONTROL added token */
int32_t tokenizer_bos_id(const tokenizer *t);
int32_t tokenizer_eos_id(const tokenizer *t);
int32_t tokenizer_pad_id(const tokenizer *t);
int32_t tokenizer_unk_id(const tokenizer *t);
int tokenizer_add_bos(const tokenizer *t);
const char *tokenizer_pretokenizer(const tokenizer *t);     /* name */
int tokenizer_pre_regex(const tokenizer *t, const char *const **patterns);  /* custom patterns, count */
int tokenizer_ignore_merges(const tokenizer *t);
const char *tokenizer_normalizer(const tokenizer *t);       /* "none" or "nfc" */

/* Unicode NFC of s[0..n) (tokenizer_nfc.c): *out = malloc'ed result, or NULL
   when s is already NFC by the quick check (all code points below U+0300).
   Invalid UTF-8 bytes pass through. 0, or -1 when out of memory. */
int tokenizer_nfc(const char *s, size_t n, char **out, size_t *out_len);

/* merges in rank order: left and right token ids of merge i */
int32_t tokenizer_n_merges(const tokenizer *t);
void tokenizer_merge(const tokenizer *t, int32_t i, int32_t *left, int32_t *right);

/* chat template: jinja text as read from the model (NULL if none) and the
   built-in template name in use ("chatml", "llama3", "raw"; see
   chat_template.h). Setting the name by hand overrides detection. */
const char *tokenizer_chat_template_text(const tokenizer *t);
const char *tokenizer_chat_template_name(const tokenizer *t);
int tokenizer_set_chat_template(tokenizer *t, const char *name, char *err, size_t err_cap);

/* ---- loaders (tokenizer_json.c) ---- */

/* Hugging Face tokenizer.json (BPE model, byte-level). tokenizer_config_path
   may be NULL; if given (tokenizer_config.json) it supplies chat_template,
   bos/eos/pad tokens and add_bos_token. Errors name the file and field. */
tokenizer *tokenizer_load_json(const char *path, const char *tokenizer_config_path, char *err, size_t err_cap);
tokenizer *tokenizer_parse_json(const char *text, size_t len, const char *name, const char *config_text,
                                size_t config_len, char *err, size_t err_cap);
/* Writes tokenizer.json (and, if config_path != NULL, tokenizer_config.json
   with the chat template) that `tokenizers` / transformers load. */
int tokenizer_save_json(const tokenizer *t, const char *path, const char *config_path, char *err, size_t err_cap);

#endif
